//! The peers link's frames (`peers/wire.rs`): `peers_frame`.

use std::{
    future::Future as _,
    pin::pin,
    task::{Context, Poll, Waker},
};

use crate::peers::wire::{self, MAX_FRAME, MAX_HANDSHAKE_FRAME, Msg, WireError};

/// `read_msg` on bytes already there: it completes on its first poll.
fn read_now(mut bytes: &[u8], max: usize) -> Result<Msg, WireError> {
    let mut fut = pin!(wire::read_msg(&mut bytes, max));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("read_msg waited on a byte slice"),
    }
}

/// Input: a frame body (what follows the length prefix).
///
/// Asserts: a body that decodes encodes back to the same message, in as
/// many bytes or fewer (fuzzing found that over-long varints decode too: a
/// message has more than one encoding, harmlessly); a frame read off a
/// stream (length prefix, then body) is the body decoded, or is refused for
/// its length before anything is decoded, whichever the bound.
pub fn peers_frame(data: &[u8]) {
    let decoded = wire::decode(data);
    if let Ok(msg) = &decoded {
        let frame = wire::encode(msg).expect("a decoded message encodes");
        assert_eq!(wire::decode(&frame[4..]).as_ref().ok(), Some(msg));
        // Not always the same bytes: postcard reads over-long varints
        // (`ff 00` for 127) as well, which encode shorter.
        assert!(frame.len() - 4 <= data.len(), "{msg:?} encodes longer");
    }
    let framed = [&(data.len() as u32).to_be_bytes()[..], data].concat();
    for max in [MAX_HANDSHAKE_FRAME, MAX_FRAME] {
        match (read_now(&framed, max), &decoded) {
            (Err(WireError::TooLarge { len, .. }), _) => {
                assert!(len == data.len() && len > max);
            }
            (Ok(read), Ok(msg)) => assert_eq!(&read, msg),
            (Err(WireError::Decode(a)), Err(WireError::Decode(b))) => assert_eq!(&a, b),
            (read, decoded) => panic!("read {read:?}, decoded {decoded:?}"),
        }
    }
}
