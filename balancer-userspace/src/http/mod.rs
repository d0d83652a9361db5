//! The HTTP path: `mode = "http"` frontends, a hyper reverse proxy with
//! HAProxy's cookie persistence.

mod accept;
pub mod balance;
mod body;
mod choose;
pub mod conn;
pub mod cookie;
mod headers;
pub mod listen;
pub mod log;
mod pages;
pub mod pp;
pub mod proxy;
pub mod queue;
mod sniff;
pub mod stats;
pub mod stick;
pub mod timer;
pub mod tls;
mod tunnel;
pub mod upstream;
