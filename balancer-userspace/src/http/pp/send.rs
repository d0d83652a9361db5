//! The PROXY header a server gets first on a connection made for a
//! backend with `send_proxy` is [`crate::config::SendProxy::header`] (the
//! health checks use it too); here, that what it writes reads back.

#[cfg(test)]
mod tests {
    use super::super::parse::{Addresses, Parse, parse};
    use crate::config::SendProxy;
    use std::net::SocketAddr;

    #[test]
    fn what_is_sent_reads_back() {
        for (s, d) in [
            ("192.0.2.1:56324", "198.18.0.1:443"),
            ("[2001:db8::1]:1", "[2001:db8::2]:65535"),
        ] {
            let (src, dst) = (s.parse().unwrap(), d.parse().unwrap());
            for (v, n) in [(SendProxy::V1, 1), (SendProxy::V2, 2)] {
                let h = v.header(src, dst);
                assert_eq!(
                    parse(&h),
                    Parse::Done {
                        len: h.len(),
                        version: n,
                        addrs: Addresses::Proxied { src, dst }
                    }
                );
            }
        }
        let h = SendProxy::V1.header(
            "192.0.2.1:5".parse().unwrap(),
            "198.18.0.1:80".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.18.0.1 5 80\r\n");
    }

    #[test]
    fn mapped_and_mixed() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:5".parse().unwrap();
        let dst: SocketAddr = "198.18.0.1:80".parse().unwrap();
        assert_eq!(
            SendProxy::V1.header(mapped, dst),
            b"PROXY TCP4 192.0.2.1 198.18.0.1 5 80\r\n"
        );
        let six: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(SendProxy::V1.header(six, dst), b"PROXY UNKNOWN\r\n");
        let h = SendProxy::V2.header(six, dst);
        assert!(matches!(
            parse(&h),
            Parse::Done {
                addrs: Addresses::Own,
                ..
            }
        ));
    }
}
