//! The workloads: one operation each, the same for every module and for the raw
//! ceiling, named as on the command line.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// One benchmarked operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// ECDSA P-256 of a SHA-256 digest (`CKM_ECDSA`, as TLS stacks and OpenSSL's
    /// engines call it; SoftHSM2 2.6 has no `CKM_ECDSA_SHA256`).
    EcdsaP256,
    /// ECDSA P-384 of a SHA-384 digest (`CKM_ECDSA`).
    EcdsaP384,
    /// Ed25519 over 32 bytes (`CKM_EDDSA`).
    Ed25519,
    /// RSA-2048 PKCS#1 v1.5 with SHA-256 (`CKM_SHA256_RSA_PKCS`).
    RsaPkcs1,
    /// RSA-2048 PSS with SHA-256, MGF1-SHA-256, 32-byte salt (`CKM_SHA256_RSA_PKCS_PSS`).
    RsaPss,
    /// RSA-2048 OAEP (SHA-256) decryption of a 32-byte secret (`CKM_RSA_PKCS_OAEP`).
    RsaOaepDecrypt,
    /// AES-256-GCM encryption of this many bytes, 96-bit IV, 128-bit tag.
    AesGcm(usize),
    /// HMAC-SHA-256 over 1 KiB (`CKM_SHA256_HMAC`).
    HmacSha256,
    /// ML-DSA-65 signature over 32 bytes (`CKM_ML_DSA`).
    MlDsa65,
    /// ML-KEM-768 decapsulation (`C_DecapsulateKey`, `CKM_ML_KEM`).
    MlKem768Decap,
    /// 32 random bytes (`C_GenerateRandom`).
    Random32,
    /// A find by label among this many keys (`C_FindObjects*`).
    Find(usize),
    /// An AES-256 session key generated (`CKM_AES_KEY_GEN`).
    GenAes256,
    /// An EC P-256 session key pair generated (`CKM_EC_KEY_PAIR_GEN`).
    GenEcP256,
}

impl Workload {
    /// What `all` runs: every workload, finds among 100 and 10,000 keys (a find
    /// among 1,000,000 is asked for by name: making the keys takes minutes).
    pub const ALL: &'static [Self] = &[
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Ed25519,
        Self::RsaPkcs1,
        Self::RsaPss,
        Self::RsaOaepDecrypt,
        Self::AesGcm(64),
        Self::AesGcm(4096),
        Self::AesGcm(1 << 20),
        Self::HmacSha256,
        Self::MlDsa65,
        Self::MlKem768Decap,
        Self::Random32,
        Self::Find(100),
        Self::Find(10_000),
        Self::GenAes256,
        Self::GenEcP256,
    ];

    /// Bytes processed per operation, where throughput in bytes means something.
    #[must_use]
    pub fn bytes(self) -> Option<usize> {
        match self {
            Self::AesGcm(n) => Some(n),
            Self::HmacSha256 => Some(1024),
            _ => None,
        }
    }

    /// The message signed, encrypted or MACed by one operation.
    #[must_use]
    pub fn input(self) -> Vec<u8> {
        let len = match self {
            Self::EcdsaP384 => 48,
            Self::AesGcm(n) => n,
            Self::HmacSha256 => 1024,
            _ => 32,
        };
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Parses a comma-separated list; `all` is [`Self::ALL`].
    ///
    /// # Errors
    /// [`Error::Usage`] naming the first unknown workload.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, Error> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                out.extend_from_slice(Self::ALL);
            } else {
                out.push(part.parse()?);
            }
        }
        if out.is_empty() {
            return Err(Error::Usage("no workload given".into()));
        }
        Ok(out)
    }
}

fn size_name(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}m", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}k", n >> 10),
        n => n.to_string(),
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ecdsa-p256"),
            Self::EcdsaP384 => f.write_str("ecdsa-p384"),
            Self::Ed25519 => f.write_str("ed25519"),
            Self::RsaPkcs1 => f.write_str("rsa2048-pkcs1"),
            Self::RsaPss => f.write_str("rsa2048-pss"),
            Self::RsaOaepDecrypt => f.write_str("rsa2048-oaep-decrypt"),
            Self::AesGcm(n) => write!(f, "aes-gcm-{}", size_name(*n)),
            Self::HmacSha256 => f.write_str("hmac-sha256-1k"),
            Self::MlDsa65 => f.write_str("ml-dsa-65"),
            Self::MlKem768Decap => f.write_str("ml-kem-768-decap"),
            Self::Random32 => f.write_str("random-32"),
            Self::Find(n) => write!(f, "find-{n}"),
            Self::GenAes256 => f.write_str("gen-aes256"),
            Self::GenEcP256 => f.write_str("gen-ec-p256"),
        }
    }
}

fn parse_size(s: &str) -> Option<usize> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        _ => (s, 0),
    };
    let n: usize = digits.replace('_', "").parse().ok()?;
    n.checked_mul(1 << shift).filter(|n| *n > 0)
}

impl FromStr for Workload {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if let Some(w) = Self::ALL.iter().find(|w| w.to_string() == s) {
            return Ok(*w);
        }
        let bad = || {
            let names: Vec<String> = Self::ALL.iter().map(ToString::to_string).collect();
            Error::Usage(format!(
                "unknown workload {s:?}: one of all, {}, aes-gcm-<size>, find-<keys>",
                names.join(", ")
            ))
        };
        if let Some(n) = s.strip_prefix("aes-gcm-") {
            return parse_size(n).map(Self::AesGcm).ok_or_else(bad);
        }
        if let Some(n) = s.strip_prefix("find-") {
            return parse_size(n).map(Self::Find).ok_or_else(bad);
        }
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_garbage_is_refused() {
        for w in Workload::ALL {
            assert_eq!(w.to_string().parse::<Workload>().ok(), Some(*w));
        }
        assert_eq!(
            "find-1000000".parse::<Workload>().ok(),
            Some(Workload::Find(1_000_000))
        );
        assert_eq!(
            "find-2k".parse::<Workload>().ok(),
            Some(Workload::Find(2048))
        );
        assert_eq!(
            "aes-gcm-1m".parse::<Workload>().ok(),
            Some(Workload::AesGcm(1 << 20))
        );
        for bad in [
            "",
            "ecdsa",
            "find-",
            "find-0",
            "find-x",
            "aes-gcm-99999999999999999999m",
        ] {
            assert!(bad.parse::<Workload>().is_err(), "{bad}");
        }
        assert_eq!(
            Workload::parse_list("all").unwrap().len(),
            Workload::ALL.len()
        );
        assert!(Workload::parse_list(" , ").is_err());
        assert!(Workload::parse_list("ecdsa-p256,nope").is_err());
    }
}
