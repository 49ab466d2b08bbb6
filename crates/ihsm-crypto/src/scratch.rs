//! A working buffer for plaintext or key bytes that are being turned into output
//! that may leave the crate (a ciphertext, a wrapped key, an encoding).
//!
//! The bytes are copied into the buffer and then transformed in place. Until the
//! transformation succeeds the buffer holds the secret, so every error path must
//! wipe it: [`Scratch`] is wiped on drop, and [`Scratch::release`] hands out the
//! finished bytes without a copy (the wiped-on-drop shell left behind is empty).
//!
//! Wiping on drop does not cover a reallocation, which frees the old block as it
//! was: allocate at the final size (`with_capacity`, `zeroed`) and stay within it.

use core::ops::{Deref, DerefMut};

use zeroize::Zeroizing;

/// A `Vec<u8>` wiped on drop unless it is [released](Scratch::release).
pub(crate) struct Scratch(Zeroizing<Vec<u8>>);

impl Scratch {
    /// An empty buffer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Zeroizing::new(Vec::with_capacity(capacity)))
    }

    /// `len` zero bytes, for an output that a library writes into.
    pub(crate) fn zeroed(len: usize) -> Self {
        Self(Zeroizing::new(vec![0; len]))
    }

    /// A copy of `bytes`, with room for `extra` more.
    pub(crate) fn copy_of(bytes: &[u8], extra: usize) -> Self {
        let mut s = Self::with_capacity(bytes.len().saturating_add(extra));
        s.extend_from_slice(bytes);
        s
    }

    /// The finished output: what is in it now is no longer secret.
    pub(crate) fn release(mut self) -> Vec<u8> {
        core::mem::take(&mut *self.0)
    }
}

/// The concatenation of `parts` in a buffer wiped on drop, allocated once at its
/// final size so no stale copy is left behind by a reallocation.
pub(crate) fn concat(parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut v = Zeroizing::new(Vec::with_capacity(len));
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

impl Deref for Scratch {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl core::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Scratch<{}>([REDACTED])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_keeps_the_bytes_and_the_allocation() {
        let mut s = Scratch::copy_of(b"abc", 5);
        let ptr = s.as_ptr();
        s.extend_from_slice(b"defgh");
        assert!(s.capacity() >= 8);
        let out = s.release();
        assert_eq!(out, b"abcdefgh");
        assert_eq!(out.as_ptr(), ptr, "released without a copy");
        assert_eq!(
            format!("{:?}", Scratch::zeroed(4)),
            "Scratch<4>([REDACTED])"
        );
    }
}
