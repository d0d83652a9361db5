//! The HTTP path: `mode = "http"` frontends, a hyper reverse proxy with
//! HAProxy's cookie persistence.

pub mod balance;
mod body;
pub mod conn;
pub mod cookie;
mod headers;
pub mod proxy;
mod sniff;
pub mod stats;
pub mod timer;
mod tunnel;
pub mod upstream;
