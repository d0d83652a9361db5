//! Why a request to a server got no response: no connection
//! ([`ConnectError`], HAProxy's 503), or an exchange that failed after it
//! ([`ExchangeError`], 502, 504, or the client's 408).

use std::{io, net::SocketAddr, time::Duration};

use super::BoxError;

/// Why no connection to a server could be made (HAProxy answers 503).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr}: no answer within {} ms", .timeout.as_millis())]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connect to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The proxy's own limit (no server is to blame): every server
    /// connection the descriptor budget allows is in use.
    #[error(
        "connect to {addr}: every server connection the budget allows stayed in use for timeout_connect"
    )]
    NoSlot { addr: SocketAddr },
    /// The TLS handshake with the server failed (its certificate refused,
    /// no common version or suite...).
    #[error("TLS to {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// This host ran out of something (descriptors, memory, local ports):
    /// no fault of the server's.
    #[error("connect to {addr}: {source} (on this host)")]
    Local {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl ConnectError {
    /// The proxy's own limits or this host's resources, not the server.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            ConnectError::NoSlot { .. } | ConnectError::Local { .. }
        )
    }
}

/// What went wrong in an exchange with a server, after the connection was
/// made (HAProxy answers 502).
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("server closed the connection before a complete response head")]
    Closed,
    #[error("connection to the server: {0}")]
    Io(#[from] io::Error),
    #[error("malformed response from the server: {0}")]
    Malformed(&'static str),
    #[error("reading the client's request body: {0}")]
    ClientBody(#[source] BoxError),
    /// The client sent none of its request body for `timeout client`
    /// (HAProxy answers 408).
    #[error("the client sent no request body for {} ms", .0.as_millis())]
    ClientTimeout(Duration),
    /// The server sent nothing (or took none of the request) for
    /// `timeout server` (HAProxy answers 504, or cuts a response that
    /// has started).
    #[error("the server was silent for {} ms", .0.as_millis())]
    ServerTimeout(Duration),
}

/// Why a request got no response head.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}
