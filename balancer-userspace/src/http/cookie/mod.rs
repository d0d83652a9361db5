//! HAProxy 2.6 `cookie` persistence, reproduced byte for byte. The
//! `cookie` keyword's parser and model
//! ([`CookieConfig`](crate::config::cookie::CookieConfig)) are the config
//! layer's (`config/cookie.rs`); here is what the proxy does with them, one
//! file per concern:
//!
//! * `request.rs`: the `Cookie` editor, [`process_request`]: finds,
//!   validates and edits the persistence cookie, returns a [`Persist`].
//! * `response.rs`: the `Set-Cookie` editor, [`process_response`], and
//!   HAProxy's cacheability verdict ([`response_cacheability`]).
//! * `codec.rs`: what both editors share: header-value scanning, the
//!   cookie pair scanner, the dates' base64, replacing a header's values.
//!
//! Everything follows HAProxy 2.6's source, not its documentation alone
//! (the two disagree in places, and the source wins); each file names the
//! functions it follows. No HAProxy code is copied; the algorithms are
//! re-implemented, and where HAProxy's behaviour is surprising the doc
//! comment of the function says what HAProxy does and that this code does
//! the same on purpose.
//!
//! # The model
//!
//! A backend configured with HAProxy's `cookie <name> [options]` keyword pins
//! each client to a server through an HTTP cookie. Every server has a *cookie
//! value* (its `cookie` keyword, or a [`dynamic_value`]). One HTTP transaction
//! goes through this module twice:
//!
//! 1. [`process_request`] reads the client's `Cookie` headers, finds the
//!    persistence cookie `<name>`, validates it (its value must equal one of
//!    the servers' values exactly, and its dates must be fresh when `maxidle`
//!    / `maxlife` are set) and edits the headers the way HAProxy does before
//!    forwarding (`insert indirect` removes the cookie, `prefix` strips the
//!    `VALUE~` prefix). It returns a [`Persist`]: the server the cookie names,
//!    if any. The caller then picks the server: the named one when it can take
//!    the request, otherwise its usual load-balancing choice (HAProxy's
//!    `option redispatch`).
//! 2. [`process_response`] edits the server's response headers: in `insert`
//!    mode it adds `Set-Cookie: <name>=<value>; path=/...` when the client
//!    did not already present a valid cookie for the server that answered (or
//!    when the cookie's dates need refreshing); in `rewrite` / `prefix` mode it
//!    rewrites the server's own `Set-Cookie: <name>=...`; `nocache` adds
//!    `Cache-control: private` to cacheable responses that get a cookie.
//!
//! The [`Persist`] value returned by the first call carries the per-transaction
//! state HAProxy keeps in its `struct http_txn` (`SF_DIRECT`, the cookie's
//! "last seen" and "first seen" dates) to the second call.
//!
//! # Things the caller must know
//!
//! * **Server states.** HAProxy skips a cookie that names a *stopped* server
//!   (unless `option persist` / `force-persist`) and keeps looking for another
//!   running server with the same value. Pass `None` in `values` for a server
//!   that must not be chosen by cookie (down without `option persist`, or
//!   without a cookie at all) to get exactly that.
//! * **Redispatch.** When the named server cannot be used and the caller sends
//!   the request elsewhere, pass that server's value as `chosen` to
//!   [`process_response`]: it differs from [`Persist::value`], so, like HAProxy
//!   after clearing `SF_DIRECT`, a fresh cookie is inserted. Clearing
//!   [`Persist::server`] has the same effect.
//! * **Responses the balancer generates itself** (errors, redirects) have no
//!   server: do not call [`process_response`] for them (HAProxy only inserts
//!   when `objt_server(s->target)` is set).
//! * **HTTP/2.** HAProxy's H2 demultiplexer joins all `cookie` fields into one
//!   `Cookie` header before analysis; the proxy does the same before calling
//!   [`process_request`] (which would otherwise process each field alone).

mod codec;
#[cfg(test)]
mod log_tests;
mod request;
mod response;
#[cfg(test)]
mod test_util;

pub use request::{Persist, process_request, process_request_down};
pub use response::{Cacheability, process_response, response_cacheability};

pub use crate::config::cookie::dynamic_value;
