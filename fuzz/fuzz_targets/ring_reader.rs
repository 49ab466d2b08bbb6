//! The daemon's ring reader against a hostile writer: the input is a script of
//! writes anywhere in the region (the control page's indexes, slot headers,
//! payloads) interleaved with honest pushes, pops and replies. Every outcome
//! must be a value or an error: no panic, no access outside the region.
#![no_main]

use ihsm_ring::{Geometry, Region, Which};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let geo = Geometry {
        slots: 4,
        slot_bytes: 256,
    };
    let Ok((daemon, fd)) = Region::create(geo) else {
        return;
    };
    let Ok(client) = Region::attach(&fd, geo) else {
        return;
    };
    let len = daemon.len();
    let mut buf = Vec::new();
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 4 {
            // A hostile write: offset (u16, scaled over the region), length, bytes.
            0 => {
                if rest.len() < 3 {
                    break;
                }
                let at = usize::from(u16::from_le_bytes([rest[0], rest[1]])) * len / 65536;
                let n = usize::from(rest[2] % 32).min(rest.len() - 3);
                client.hostile_write(at, &rest[3..3 + n]);
                rest = &rest[3 + n..];
            }
            // An honest request of the next byte's length.
            1 => {
                let n = usize::from(rest.first().copied().unwrap_or(0));
                let _ = client.ring(Which::Submission).push(&rest[..n.min(rest.len())], 0);
            }
            // The daemon reads and answers.
            2 => {
                if let Ok(Some(_)) = daemon.ring(Which::Submission).pop(&mut buf) {
                    assert!(buf.len() <= daemon.capacity());
                    let _ = daemon.ring(Which::Completion).push(&buf, 0);
                }
            }
            // The daemon goes to sleep and is woken.
            _ => {
                let sq = daemon.ring(Which::Submission);
                if sq.arm() {
                    sq.disarm();
                }
                let _ = sq.ready();
                let _ = client.ring(Which::Completion).pop(&mut buf);
            }
        }
    }
});
