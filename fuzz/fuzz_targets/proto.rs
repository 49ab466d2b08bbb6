//! The wire protocol as the daemon meets it: arbitrary bytes through the frame
//! reader (in arbitrary read sizes) and decoded as a hello, a request and a
//! response. Nothing may panic; a request that decodes re-encodes to the same value.
#![no_main]

use std::io::Read;

use ihsm_proto::frame::{self, Inbox};
use ihsm_proto::msg::{Hello, HelloReply, Request};
use ihsm_proto::Response;
use libfuzzer_sys::fuzz_target;

/// Hands out the input in pieces whose sizes come from the input itself.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.len().min(self.step).min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = frame::decode::<Hello>(data);
    let _ = frame::decode::<HelloReply>(data);
    let _ = frame::decode::<Response>(data);
    if let Ok(req) = frame::decode::<Request>(data) {
        let _ = req.serves();
        let _ = req.name();
        // postcard accepts overlong varints, so the bytes need not match; the
        // value must.
        let again = frame::encode(&req).unwrap();
        assert_eq!(frame::decode::<Request>(&again[frame::PREFIX..]).unwrap(), req);
    }
    let Some((&step, rest)) = data.split_first() else { return };
    let mut r = Pieces { data: rest, step: usize::from(step % 64) + 1 };
    let mut inbox = Inbox::default();
    for _ in 0..64 {
        match inbox.read(&mut r) {
            Ok(range) => {
                assert!(range.end <= inbox.bytes().len());
                let _ = frame::decode::<Request>(&inbox.bytes()[range.clone()]);
                inbox.consume(range.end);
            }
            Err(_) => break,
        }
    }
});
