//! The PROXY protocol header parser (`http/pp/parse.rs`), on the bytes a
//! client opens its connection with (the whole input).
//!
//! Properties: no panic; a whole header claims no more bytes than it was
//! given, reads the same from exactly its own bytes and from more of them,
//! and its every prefix is incomplete (a reader that waits for more never
//! takes a prefix for a header); addresses it gives read back the same
//! once written by the sender (`SendProxy::header`).

use crate::config::SendProxy;
use crate::http::pp::parse::{Addresses, Parse, parse};

pub fn proxy_header(data: &[u8]) {
    let Parse::Done {
        len,
        version,
        addrs,
    } = parse(data)
    else {
        return;
    };
    assert!(len <= data.len());
    let whole = &data[..len];
    assert_eq!(
        parse(whole),
        Parse::Done {
            len,
            version,
            addrs
        }
    );
    for n in 0..len {
        assert_eq!(parse(&whole[..n]), Parse::Incomplete, "prefix of {n} bytes");
    }
    if let Addresses::Proxied { src, dst } = addrs
        && src.is_ipv4() == dst.is_ipv4()
    {
        for v in [SendProxy::V1, SendProxy::V2] {
            let h = v.header(src, dst);
            let Parse::Done { addrs: back, .. } = parse(&h) else {
                panic!("{v:?} header of {src} {dst} not read back");
            };
            assert_eq!(back, addrs);
        }
    }
}
