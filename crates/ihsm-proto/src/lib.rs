//! The ihsm wire protocol, shared by the daemon and its clients.
//!
//! - [`frame`]: length-prefixed postcard frames, bounded, read without trusting the
//!   announced length.
//! - [`msg`]: the hello (revision negotiation), requests and replies.
//! - [`error`]: stable error numbers and their `CKR_*` mapping.
//! - [`layout`]: where a device's sockets are, and the limits every side checks.
//! - [`mech`], [`attr`], [`types`]: the data the HSM takes and reports. The core
//!   uses these same types, so nothing is translated between wire and core.
//!
//! This crate has no cryptography and no I/O beyond `std::io::{Read, Write}`:
//! the PKCS#11 module links it without pulling the HSM in.
#![forbid(unsafe_code)]

pub mod attr;
pub mod error;
pub mod frame;
pub mod layout;
pub mod mech;
pub mod msg;
pub mod types;

pub use error::{ErrorCode, WireError};
pub use msg::{Hello, HelloReply, Reply, Request, Response, SecretBytes};

/// Zeroes `buf` with volatile writes that the compiler may not remove, eight
/// bytes at a time: `zeroize` on a byte slice writes one byte per store, about a
/// nanosecond per byte here, which a request of a few KiB would pay at every copy.
pub fn wipe(buf: &mut [u8]) {
    use zeroize::Zeroize;
    let (head, words, tail) = bytemuck::pod_align_to_mut::<u8, u64>(buf);
    head.zeroize();
    words.zeroize();
    tail.zeroize();
}

/// Wipes the whole buffer of `v` (its spare capacity too, where an earlier,
/// longer value may have been) and leaves it empty.
pub fn wipe_vec(v: &mut Vec<u8>) {
    v.resize(v.capacity(), 0);
    wipe(v);
    v.clear();
}

/// Whether `a` and `b` are equal, in time that depends on their lengths only (the
/// length is not secret): every byte pair is compared, through a barrier the
/// optimiser does not see past, as `subtle` does it.
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= core::hint::black_box(x ^ y);
    }
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn ct_eq_is_equality() {
        assert!(super::ct_eq(b"", b""));
        assert!(super::ct_eq(b"secret", b"secret"));
        assert!(!super::ct_eq(b"secret", b"secreT"));
        assert!(!super::ct_eq(b"Secret", b"secret"));
        assert!(!super::ct_eq(b"secret", b"secrets"));
    }

    #[test]
    fn wipe_zeroes_every_byte_at_every_alignment() {
        let mut v = vec![0xa5u8; 4099];
        for start in 0..9 {
            for end in [start, start + 1, start + 7, start + 8, start + 64, 4099] {
                v.fill(0xa5);
                super::wipe(&mut v[start..end]);
                assert!(v[start..end].iter().all(|b| *b == 0));
                assert!(v[..start].iter().chain(&v[end..]).all(|b| *b == 0xa5));
            }
        }
    }
}
