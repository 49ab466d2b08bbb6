//! Message digests: SHA-2 and SHA-3 through aws-lc-rs.
//!
//! [`HashAlg`] is the one name for a hash function across the crate: HMAC, HKDF,
//! ECDSA, RSA and OAEP all take it. [`digest`] and [`DigestCtx`] hash with any of
//! them; [`sha256`], [`sha384`], [`sha512`] and their `_parts` and `_reader` forms
//! are the same code with the output typed as an array, for the fixed-function
//! callers (the root of trust, the store). SHA-1 and SHA-224 are here only so that legacy
//! inputs can be parsed and checked (a DigestInfo naming SHA-1, an OAEP ciphertext
//! made with SHA-1, a SHA-1 signature to verify); the signing and MAC functions of
//! this crate refuse them.

use core::fmt;

use aws_lc_rs::digest;

/// A hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1, for parsing and verifying legacy inputs only.
    Sha1,
    /// SHA-224, for parsing and verifying legacy inputs only.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-384.
    Sha3_384,
    /// SHA3-512.
    Sha3_512,
}

impl HashAlg {
    /// Every hash function, in declaration order.
    pub const ALL: [HashAlg; 8] = [
        Self::Sha1,
        Self::Sha224,
        Self::Sha256,
        Self::Sha384,
        Self::Sha512,
        Self::Sha3_256,
        Self::Sha3_384,
        Self::Sha3_512,
    ];

    /// The digest length in bytes.
    #[must_use]
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha224 => 28,
            Self::Sha256 | Self::Sha3_256 => 32,
            Self::Sha384 | Self::Sha3_384 => 48,
            Self::Sha512 | Self::Sha3_512 => 64,
        }
    }

    /// The conventional name ("SHA-256", "SHA3-384").
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA-1",
            Self::Sha224 => "SHA-224",
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
            Self::Sha3_256 => "SHA3-256",
            Self::Sha3_384 => "SHA3-384",
            Self::Sha3_512 => "SHA3-512",
        }
    }

    /// True for the hash functions this crate only accepts on legacy inputs.
    #[must_use]
    pub const fn is_legacy(self) -> bool {
        matches!(self, Self::Sha1 | Self::Sha224)
    }

    pub(crate) fn aws(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha224 => &digest::SHA224,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
            Self::Sha3_256 => &digest::SHA3_256,
            Self::Sha3_384 => &digest::SHA3_384,
            Self::Sha3_512 => &digest::SHA3_512,
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Length of a SHA-384 digest.
pub const SHA384_LEN: usize = HashAlg::Sha384.output_len();
/// Length of a SHA-512 digest.
pub const SHA512_LEN: usize = HashAlg::Sha512.output_len();

/// The digest of `data` under `alg`.
#[must_use]
pub fn digest(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    digest::digest(alg.aws(), data).as_ref().to_vec()
}

/// The digest under `alg` of the concatenation of `parts`, as an `N`-byte array.
/// `N` is the digest length at every call site below; were it not, the array would
/// be truncated or zero-padded, never overrun.
fn fixed<const N: usize>(alg: HashAlg, parts: &[&[u8]]) -> [u8; N] {
    let mut ctx = DigestCtx::new(alg);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish_into()
}

/// SHA-256 of `data`.
#[must_use]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    fixed(HashAlg::Sha256, &[data])
}

/// SHA-384 of `data`.
#[must_use]
pub fn sha384(data: &[u8]) -> [u8; SHA384_LEN] {
    fixed(HashAlg::Sha384, &[data])
}

/// SHA-512 of `data`.
#[must_use]
pub fn sha512(data: &[u8]) -> [u8; SHA512_LEN] {
    fixed(HashAlg::Sha512, &[data])
}

/// SHA-384 over the concatenation of `parts`, without concatenating them.
#[must_use]
pub fn sha384_parts(parts: &[&[u8]]) -> [u8; SHA384_LEN] {
    fixed(HashAlg::Sha384, parts)
}

/// SHA-512 over the concatenation of `parts`.
#[must_use]
pub fn sha512_parts(parts: &[&[u8]]) -> [u8; SHA512_LEN] {
    fixed(HashAlg::Sha512, parts)
}

/// SHA-384 of everything `reader` yields, for hashing files.
///
/// # Errors
/// Any I/O error from `reader`.
pub fn sha384_reader(mut reader: impl std::io::Read) -> std::io::Result<[u8; SHA384_LEN]> {
    let mut ctx = DigestCtx::new(HashAlg::Sha384);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(ctx.finish_into());
        }
        ctx.update(buf.get(..n).unwrap_or_default());
    }
}

/// A streaming digest: absorb with [`DigestCtx::update`], then [`DigestCtx::finish`].
///
/// `Clone` forks the state, so a common prefix can be hashed once.
#[derive(Clone)]
pub struct DigestCtx {
    alg: HashAlg,
    ctx: digest::Context,
}

impl DigestCtx {
    /// A fresh context for `alg`.
    #[must_use]
    pub fn new(alg: HashAlg) -> Self {
        Self {
            alg,
            ctx: digest::Context::new(alg.aws()),
        }
    }

    /// The hash function of this context.
    #[must_use]
    pub fn alg(&self) -> HashAlg {
        self.alg
    }

    /// Absorbs `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    /// The digest of everything absorbed.
    #[must_use]
    pub fn finish(self) -> Vec<u8> {
        self.ctx.finish().as_ref().to_vec()
    }

    /// The digest of everything absorbed, into an array of the digest's length.
    fn finish_into<const N: usize>(self) -> [u8; N] {
        let d = self.ctx.finish();
        let mut out = [0u8; N];
        let n = d.as_ref().len().min(N);
        out[..n].copy_from_slice(&d.as_ref()[..n]);
        out
    }
}

impl fmt::Debug for DigestCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestCtx")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // FIPS 180-4 / FIPS 202 examples and NIST CSRC "Examples with intermediate
    // values": the digest of "abc" under each function.
    const ABC: [(HashAlg, &str); 8] = [
        (HashAlg::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (
            HashAlg::Sha224,
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
        ),
        (
            HashAlg::Sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            HashAlg::Sha384,
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7",
        ),
        (
            HashAlg::Sha512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
        (
            HashAlg::Sha3_256,
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
        ),
        (
            HashAlg::Sha3_384,
            "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b2\
             98d88cea927ac7f539f1edf228376d25",
        ),
        (
            HashAlg::Sha3_512,
            "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e\
             10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0",
        ),
    ];

    #[test]
    fn abc_vectors_one_shot_and_streaming() {
        for (alg, hex_digest) in ABC {
            let d = digest(alg, b"abc");
            assert_eq!(hex::encode(&d), hex_digest, "{alg}");
            assert_eq!(d.len(), alg.output_len(), "{alg}");
            let mut ctx = DigestCtx::new(alg);
            ctx.update(b"a");
            let fork = ctx.clone();
            ctx.update(b"bc");
            assert_eq!(ctx.finish(), d, "{alg}");
            let mut fork = fork;
            fork.update(b"b");
            fork.update(b"");
            fork.update(b"c");
            assert_eq!(fork.finish(), d, "{alg}");
        }
    }

    /// The typed SHA-2 functions are the same digests, whole and in parts.
    #[test]
    fn fixed_size_functions_agree_with_digest() {
        let msg: Vec<u8> = (0..200u8).collect();
        assert_eq!(sha256(&msg).to_vec(), digest(HashAlg::Sha256, &msg));
        assert_eq!(sha384(&msg).to_vec(), digest(HashAlg::Sha384, &msg));
        assert_eq!(sha512(&msg).to_vec(), digest(HashAlg::Sha512, &msg));
        assert_eq!(sha384_parts(&[&msg[..7], &[], &msg[7..]]), sha384(&msg));
        assert_eq!(sha512_parts(&[&msg[..100], &msg[100..]]), sha512(&msg));
        assert_eq!(sha384_reader(&msg[..]).unwrap(), sha384(&msg));
        assert_eq!(hex::encode(sha384(b"abc")), ABC[3].1.replace(' ', ""));
    }

    #[test]
    fn names_and_legacy_flags() {
        assert_eq!(HashAlg::ALL.len(), 8);
        assert_eq!(HashAlg::Sha3_256.to_string(), "SHA3-256");
        assert!(HashAlg::Sha1.is_legacy() && HashAlg::Sha224.is_legacy());
        assert!(!HashAlg::Sha256.is_legacy());
        assert!(format!("{:?}", DigestCtx::new(HashAlg::Sha256)).contains("Sha256"));
    }
}
