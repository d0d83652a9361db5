//! HAProxy's cookie persistence, as the proxy applies it.

mod codec;
mod request;

pub use request::{
    Cacheability, Persist, dynamic_value, process_request, process_response, response_cacheability,
};
