//! The fleet trust bundle: what a host accepts of its peers, in one PEM file.
//!
//! ```text
//! -----BEGIN IHSM FLEET ANCHOR ECC384-----    an anchor certificate (DER): a
//! -----BEGIN IHSM FLEET ANCHOR MLDSA87-----   manufacturer root or a pinned IDevID,
//!                                             each ECC one followed by its ML-DSA one
//! -----BEGIN IHSM FLEET VENDOR ECC384-----    a vendor's reference-value keys (raw:
//! -----BEGIN IHSM FLEET VENDOR MLDSA87-----   SEC1 point, ML-DSA-87 key), in pairs
//! ```
//!
//! `security.toml` `[fleet]` pins the file by its SHA-384 ([`TrustBundle::digest`]),
//! so what a host trusts is measured. Reference values are separate files, signed
//! by a vendor of the bundle (`FleetPolicy::load`).

use ihsm_verify::chain::TrustAnchor;
use ihsm_verify::refvals::RefValues;

use crate::policy::{FleetPolicy, SignedRefvals};

/// The largest bundle read.
pub const MAX_BUNDLE: usize = 1024 * 1024;
/// The most anchors and vendors a bundle holds.
pub const MAX_ENTRIES: usize = 256;

const ANCHOR_ECC: &str = "IHSM FLEET ANCHOR ECC384";
const ANCHOR_MLDSA: &str = "IHSM FLEET ANCHOR MLDSA87";
const VENDOR_ECC: &str = "IHSM FLEET VENDOR ECC384";
const VENDOR_MLDSA: &str = "IHSM FLEET VENDOR MLDSA87";
const ECC_POINT: usize = 97;
const MLDSA87_KEY: usize = 2592;

/// Why a bundle or the reference values could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Too long, not PEM, or a block out of place.
    #[error("the fleet trust bundle is malformed: {0}")]
    Malformed(String),
    /// Its SHA-384 is not the pinned one.
    #[error("the fleet trust bundle's SHA-384 is {found}, security.toml pins {pinned}")]
    NotPinned {
        /// The file's.
        found: String,
        /// security.toml's.
        pinned: String,
    },
    /// Reference values that no vendor of the bundle signed, or malformed ones.
    #[error("reference values {0}: not signed by a vendor of the trust bundle, or malformed")]
    RefvalsUnsigned(String),
}

/// The parsed bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustBundle {
    /// (ECC P-384, ML-DSA-87) anchor certificates, DER.
    pub anchors: Vec<(Vec<u8>, Vec<u8>)>,
    /// (ECC P-384 point, ML-DSA-87 key) vendor reference-value keys.
    pub vendors: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TrustBundle {
    /// The PEM text.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let block = |tag: &str, der: &[u8]| pem::encode(&pem::Pem::new(tag, der.to_vec()));
        for (e, m) in &self.anchors {
            out.push_str(&block(ANCHOR_ECC, e));
            out.push_str(&block(ANCHOR_MLDSA, m));
        }
        for (e, m) in &self.vendors {
            out.push_str(&block(VENDOR_ECC, e));
            out.push_str(&block(VENDOR_MLDSA, m));
        }
        out
    }

    /// Parses a bundle strictly: pairs in order, keys of the right sizes,
    /// certificates that parse as anchors.
    ///
    /// # Errors
    /// [`TrustError::Malformed`] saying what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, TrustError> {
        let bad = |s: &str| Err(TrustError::Malformed(s.to_owned()));
        if bytes.len() > MAX_BUNDLE {
            return bad("over 1 MiB");
        }
        let blocks = pem::parse_many(bytes).map_err(|e| TrustError::Malformed(e.to_string()))?;
        if blocks.len() > 2 * MAX_ENTRIES {
            return bad("too many blocks");
        }
        let mut b = Self::default();
        let mut it = blocks.iter();
        while let Some(first) = it.next() {
            let Some(second) = it.next() else {
                return bad(
                    "a block without its partner (anchors and vendor keys come in ECC, ML-DSA pairs)",
                );
            };
            match (first.tag(), second.tag()) {
                (ANCHOR_ECC, ANCHOR_MLDSA) => {
                    for c in [first, second] {
                        if TrustAnchor::from_der(c.contents()).is_err() {
                            return bad("an anchor is not a certificate");
                        }
                    }
                    b.anchors
                        .push((first.contents().to_vec(), second.contents().to_vec()));
                }
                (VENDOR_ECC, VENDOR_MLDSA) => {
                    if first.contents().len() != ECC_POINT
                        || first.contents().first() != Some(&0x04)
                        || second.contents().len() != MLDSA87_KEY
                    {
                        return bad("a vendor key has the wrong size");
                    }
                    b.vendors
                        .push((first.contents().to_vec(), second.contents().to_vec()));
                }
                (a, z) => {
                    return Err(TrustError::Malformed(format!(
                        "blocks {a} then {z}: expected an {ANCHOR_ECC}/{ANCHOR_MLDSA} or {VENDOR_ECC}/{VENDOR_MLDSA} pair"
                    )));
                }
            }
        }
        if b.anchors.is_empty() || b.vendors.is_empty() {
            return bad("it needs at least one anchor pair and one vendor key pair");
        }
        Ok(b)
    }

    /// The SHA-384 of the file's bytes, hex: what `security.toml` pins.
    #[must_use]
    pub fn digest(bytes: &[u8]) -> String {
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, bytes))
    }
}

impl TrustBundle {
    /// Parses a bundle whose SHA-384 must be `pinned_sha384` (hex).
    ///
    /// # Errors
    /// [`TrustError::NotPinned`], or what [`TrustBundle::decode`] refuses.
    pub fn pinned(bytes: &[u8], pinned_sha384: &str) -> Result<Self, TrustError> {
        let found = Self::digest(bytes);
        if !found.eq_ignore_ascii_case(pinned_sha384) {
            return Err(TrustError::NotPinned {
                found,
                pinned: pinned_sha384.to_owned(),
            });
        }
        Self::decode(bytes)
    }
}

impl FleetPolicy {
    /// The policy of a bundle and a set of reference values, each given with a
    /// name for errors. Every reference-value file must be signed by a vendor of
    /// the bundle.
    ///
    /// # Errors
    /// [`TrustError`].
    pub fn new(
        bundle: &TrustBundle,
        refvals: &[(String, Vec<u8>)],
        accept_development: bool,
        max_age: u64,
    ) -> Result<Self, TrustError> {
        let mut anchors = Vec::with_capacity(bundle.anchors.len());
        for (e, m) in &bundle.anchors {
            let a = |d: &[u8]| {
                TrustAnchor::from_der(d)
                    .map_err(|_| TrustError::Malformed("an anchor is not a certificate".into()))
            };
            anchors.push((a(e)?, a(m)?));
        }
        let mut signed = Vec::with_capacity(refvals.len());
        for (name, envelope) in refvals {
            let vendor = bundle
                .vendors
                .iter()
                .find(|(e, m)| RefValues::open(envelope, e, m).is_ok())
                .ok_or_else(|| TrustError::RefvalsUnsigned(name.clone()))?;
            signed.push(SignedRefvals {
                envelope: envelope.clone(),
                vendor_ecc: vendor.0.clone(),
                vendor_mldsa: vendor.1.clone(),
            });
        }
        Ok(Self {
            anchors,
            refvals: signed,
            accept_development,
            max_age,
            min_svn: None,
            cache: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any X.509 certificate parses as an anchor: one from rcgen.
    fn ihsm_rot_free_cert() -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        rcgen::CertificateParams::new(vec!["anchor".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn bundles_out_of_shape_are_refused() {
        let c = ihsm_rot_free_cert();
        let v = TrustBundle {
            anchors: vec![(c.clone(), c)],
            vendors: vec![(
                {
                    let mut p = vec![4u8];
                    p.extend([1u8; 96]);
                    p
                },
                vec![2u8; MLDSA87_KEY],
            )],
        };
        let text = v.encode();
        assert_eq!(TrustBundle::decode(text.as_bytes()).unwrap(), v);
        // One block alone, blocks swapped, a short key, garbage.
        let one = text[..text.find("-----END").unwrap()].to_owned()
            + "-----END IHSM FLEET VENDOR ECC384-----\n";
        assert!(TrustBundle::decode(one.as_bytes()).is_err());
        let swapped = text
            .replace(VENDOR_ECC, "X")
            .replace(VENDOR_MLDSA, VENDOR_ECC)
            .replace("X", VENDOR_MLDSA);
        assert!(TrustBundle::decode(swapped.as_bytes()).is_err());
        let short = TrustBundle {
            anchors: v.anchors.clone(),
            vendors: vec![(vec![4u8; 96], vec![2u8; MLDSA87_KEY])],
        };
        assert!(TrustBundle::decode(short.encode().as_bytes()).is_err());
        let anchor = TrustBundle {
            anchors: vec![(vec![0x30, 0], vec![0x30, 0])],
            vendors: v.vendors.clone(),
        };
        assert!(TrustBundle::decode(anchor.encode().as_bytes()).is_err());
        assert!(TrustBundle::decode(&[0xff; 100]).is_err());
        assert!(TrustBundle::decode(b"").is_err());
        assert!(matches!(
            TrustBundle::pinned(text.as_bytes(), &"0".repeat(96)),
            Err(TrustError::NotPinned { .. })
        ));
        let pin = TrustBundle::digest(text.as_bytes());
        let b = TrustBundle::pinned(text.as_bytes(), &pin.to_uppercase()).unwrap();
        assert!(matches!(
            FleetPolicy::new(&b, &[("r.cose".into(), vec![1, 2, 3])], false, 60),
            Err(TrustError::RefvalsUnsigned(n)) if n == "r.cose"
        ));
    }
}
