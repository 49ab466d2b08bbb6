//! Message digests by algorithm identifier: SHA-2 and SHA-3 through aws-lc-rs.
//!
//! [`HashAlg`] is the one name for a hash function across the crate: HMAC, HKDF,
//! ECDSA, RSA and OAEP all take it. SHA-1 and SHA-224 are here only so that legacy
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

/// The digest of `data` under `alg`.
#[must_use]
pub fn digest(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    digest::digest(alg.aws(), data).as_ref().to_vec()
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

    #[test]
    fn names_and_legacy_flags() {
        assert_eq!(HashAlg::ALL.len(), 8);
        assert_eq!(HashAlg::Sha3_256.to_string(), "SHA3-256");
        assert!(HashAlg::Sha1.is_legacy() && HashAlg::Sha224.is_legacy());
        assert!(!HashAlg::Sha256.is_legacy());
        assert!(format!("{:?}", DigestCtx::new(HashAlg::Sha256)).contains("Sha256"));
    }
}
