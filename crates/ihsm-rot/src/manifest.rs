//! The signed firmware manifest, in the spirit of Caliptra's image manifest.
//!
//! In software the "firmware" is the executable that runs the root of trust and its
//! security-relevant configuration. The manifest lists their SHA-384 digests in a
//! table of contents, with the firmware SVN and optional validity dates, in a header
//! that the vendor signs with ECC P-384 *and* ML-DSA-87 (both must verify) and that
//! an owner may countersign with both algorithms. The vendor keys are not fused
//! themselves: the fuses hold the SHA-384 of two key descriptors (up to four key
//! hashes per algorithm), and the manifest carries the descriptors and the active
//! keys, so keys can be rotated or revoked by index.
//!
//! The layout is fixed-size and little-endian; `docs/manifest.md` lists every field.

use ihsm_crypto::ec::{EccP384PrivateKey, EccP384PublicKey, EccP384Signature};
use ihsm_crypto::hash::sha384;
use ihsm_crypto::mldsa::{self, MlDsa87PrivateKey, MlDsa87PublicKey, MlDsa87Signature};
use serde::Serialize;

use crate::codec::{Reader, Writer};
use crate::error::{Alg, Result, RotError};
use crate::fuses::{Fuses, MAX_SVN};

/// Size of a manifest.
pub const MANIFEST_LEN: usize = 15_512;
/// Most vendor keys per algorithm in a descriptor.
pub const MAX_VENDOR_KEYS: usize = 4;

const MAGIC: [u8; 4] = *b"IHMF";
const FORMAT: u32 = 1;
const HEADER_MAGIC: [u8; 4] = *b"IHMH";
const HEADER_VERSION: u32 = 1;
const DESCRIPTOR_VERSION: u16 = 1;
const DESCRIPTOR_LEN: usize = 4 + 48 * MAX_VENDOR_KEYS;
const HEADER_LEN: usize = 108;
const TOC_ENTRY_LEN: usize = 80;
const TOC_LEN: usize = 2 * TOC_ENTRY_LEN;
const HEADER_OFFSET: usize = MANIFEST_LEN - HEADER_LEN - TOC_LEN;
const MLDSA_SIG_FIELD: usize = mldsa::SIGNATURE_LEN + 1;
const OWNER_PRESENT: u32 = 1;
const NAME_LEN: usize = 24;

/// Table-of-contents id of the firmware image (the executable).
pub const TOC_IMAGE: u32 = 1;
/// Table-of-contents id of the security configuration.
pub const TOC_CONFIG: u32 = 2;

/// A list of vendor public-key hashes for one algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescriptor {
    /// SHA-384 of each raw public key, in index order (1 to 4 entries).
    pub key_hashes: Vec<[u8; 48]>,
}

impl KeyDescriptor {
    fn encode(&self, w: &mut Writer) {
        w.u16(DESCRIPTOR_VERSION)
            .u8(u8::try_from(self.key_hashes.len()).unwrap_or(0))
            .u8(0);
        for h in &self.key_hashes {
            w.bytes(h);
        }
        w.zeros(48 * (MAX_VENDOR_KEYS - self.key_hashes.len().min(MAX_VENDOR_KEYS)));
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let short = |_| RotError::ManifestMalformed("truncated key descriptor");
        if r.u16().map_err(short)? != DESCRIPTOR_VERSION {
            return Err(RotError::ManifestMalformed(
                "unknown key descriptor version",
            ));
        }
        let count = usize::from(r.u8().map_err(short)?);
        if r.u8().map_err(short)? != 0 {
            return Err(RotError::ManifestMalformed(
                "key descriptor reserved byte is not zero",
            ));
        }
        if count == 0 || count > MAX_VENDOR_KEYS {
            return Err(RotError::ManifestMalformed(
                "key descriptor must list 1 to 4 keys",
            ));
        }
        let mut key_hashes = Vec::with_capacity(count);
        for i in 0..MAX_VENDOR_KEYS {
            let h: [u8; 48] = r.array().map_err(short)?;
            if i < count {
                key_hashes.push(h);
            } else if h != [0; 48] {
                return Err(RotError::ManifestMalformed(
                    "unused key descriptor slot is not zero",
                ));
            }
        }
        Ok(Self { key_hashes })
    }
}

/// The SHA-384 to fuse for a pair of vendor key descriptors.
#[must_use]
pub fn vendor_key_hash(ecc: &KeyDescriptor, mldsa: &KeyDescriptor) -> [u8; 48] {
    let mut w = Writer::with_capacity(2 * DESCRIPTOR_LEN);
    ecc.encode(&mut w);
    mldsa.encode(&mut w);
    sha384(&w.buf)
}

/// The SHA-384 to fuse for an owner's pair of public keys.
#[must_use]
pub fn owner_key_hash(ecc: &EccP384PublicKey, mldsa: &MlDsa87PublicKey) -> [u8; 48] {
    ihsm_crypto::hash::sha384_parts(&[ecc.as_bytes(), mldsa.as_bytes()])
}

/// One measured component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TocEntry {
    /// [`TOC_IMAGE`] or [`TOC_CONFIG`].
    pub id: u32,
    /// A version number for people (not security-relevant; the SVN is).
    pub version: u32,
    /// SHA-384 of the component.
    #[serde(with = "hex_bytes")]
    pub digest: [u8; 48],
    /// A short ASCII name.
    pub name: String,
}

/// The signed part of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Index of the ECC P-384 vendor key that signed.
    pub vendor_ecc_key_index: u32,
    /// Index of the ML-DSA-87 vendor key that signed.
    pub vendor_mldsa_key_index: u32,
    /// Firmware security version number (anti-rollback; 0..=128).
    pub svn: u32,
    /// Vendor validity start, Unix seconds (0: unset).
    pub vendor_not_before: u64,
    /// Vendor validity end, Unix seconds (0: unset).
    pub vendor_not_after: u64,
    /// Owner validity start, Unix seconds (0: unset).
    pub owner_not_before: u64,
    /// Owner validity end, Unix seconds (0: unset).
    pub owner_not_after: u64,
    /// SHA-384 over the encoded table of contents.
    #[serde(with = "hex_bytes")]
    pub toc_digest: [u8; 48],
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_LEN);
        w.bytes(&HEADER_MAGIC)
            .u32(HEADER_VERSION)
            .u32(self.vendor_ecc_key_index)
            .u32(self.vendor_mldsa_key_index)
            .u32(0)
            .u32(self.svn)
            .u64(self.vendor_not_before)
            .u64(self.vendor_not_after)
            .u64(self.owner_not_before)
            .u64(self.owner_not_after)
            .u32(2)
            .bytes(&self.toc_digest);
        w.buf
    }

    /// The validity window certificates derived from this firmware carry: the
    /// owner's dates when both are set, else the vendor's when both are set.
    #[must_use]
    pub fn validity(&self) -> Option<(u64, u64)> {
        if self.owner_not_before != 0 && self.owner_not_after != 0 {
            Some((self.owner_not_before, self.owner_not_after))
        } else if self.vendor_not_before != 0 && self.vendor_not_after != 0 {
            Some((self.vendor_not_before, self.vendor_not_after))
        } else {
            None
        }
    }
}

/// The owner's keys and signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerPart {
    /// Owner ECC P-384 public key.
    pub ecc_key: EccP384PublicKey,
    /// Owner ML-DSA-87 public key.
    pub mldsa_key: MlDsa87PublicKey,
    /// Owner ECC signature over the header.
    pub ecc_sig: EccP384Signature,
    /// Owner ML-DSA signature over the header.
    pub mldsa_sig: MlDsa87Signature,
}

/// A parsed (not yet verified) manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Vendor ECC key descriptor.
    pub vendor_ecc_descriptor: KeyDescriptor,
    /// Vendor ML-DSA key descriptor.
    pub vendor_mldsa_descriptor: KeyDescriptor,
    /// Preamble copy of the ECC key index.
    pub preamble_ecc_index: u32,
    /// The active vendor ECC key.
    pub vendor_ecc_key: EccP384PublicKey,
    /// Preamble copy of the ML-DSA key index.
    pub preamble_mldsa_index: u32,
    /// The active vendor ML-DSA key.
    pub vendor_mldsa_key: MlDsa87PublicKey,
    /// Vendor ECC signature over the header.
    pub vendor_ecc_sig: EccP384Signature,
    /// Vendor ML-DSA signature over the header.
    pub vendor_mldsa_sig: MlDsa87Signature,
    /// Owner part, when the owner countersigned.
    pub owner: Option<OwnerPart>,
    /// The signed header.
    pub header: Header,
    /// Table of contents: image, then configuration.
    pub toc: [TocEntry; 2],
    /// SHA-384 of the whole manifest as stored.
    pub digest: [u8; 48],
}

fn toc_encode(toc: &[TocEntry; 2]) -> Vec<u8> {
    let mut w = Writer::with_capacity(TOC_LEN);
    for e in toc {
        let mut name = [0u8; NAME_LEN];
        let n = e.name.len().min(NAME_LEN);
        name[..n].copy_from_slice(&e.name.as_bytes()[..n]);
        w.u32(e.id).u32(e.version).bytes(&e.digest).bytes(&name);
    }
    w.buf
}

fn ecc_key(bytes: &[u8], what: &'static str) -> Result<EccP384PublicKey> {
    EccP384PublicKey::from_sec1(bytes).map_err(|_| RotError::ManifestMalformed(what))
}

fn mldsa_key(bytes: &[u8], what: &'static str) -> Result<MlDsa87PublicKey> {
    MlDsa87PublicKey::from_bytes(bytes).map_err(|_| RotError::ManifestMalformed(what))
}

fn mldsa_sig_field(r: &mut Reader<'_>) -> Result<MlDsa87Signature> {
    let field = r
        .take(MLDSA_SIG_FIELD)
        .map_err(|_| RotError::ManifestMalformed("truncated signature"))?;
    let (sig, pad) = field.split_at(mldsa::SIGNATURE_LEN);
    if pad != [0] {
        return Err(RotError::ManifestMalformed(
            "ML-DSA signature padding byte is not zero",
        ));
    }
    Ok(MlDsa87Signature::from_bytes(sig)?)
}

impl Manifest {
    /// Parses a manifest: every length, magic, version, reserved field and count is
    /// checked; nothing is verified cryptographically yet (see [`Manifest::verify`]).
    ///
    /// # Errors
    /// [`RotError::ManifestWrongLength`], [`RotError::ManifestBadMagic`] or
    /// [`RotError::ManifestMalformed`] naming the field.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != MANIFEST_LEN {
            return Err(RotError::ManifestWrongLength {
                actual: bytes.len(),
                expected: MANIFEST_LEN,
            });
        }
        let short = |_| RotError::ManifestMalformed("truncated");
        let mut r = Reader::new(bytes);
        if r.array::<4>().map_err(short)? != MAGIC {
            return Err(RotError::ManifestBadMagic);
        }
        if r.u32().map_err(short)? != FORMAT {
            return Err(RotError::ManifestMalformed(
                "unsupported manifest format version",
            ));
        }
        let vendor_ecc_descriptor = KeyDescriptor::decode(&mut r)?;
        let vendor_mldsa_descriptor = KeyDescriptor::decode(&mut r)?;
        let preamble_ecc_index = r.u32().map_err(short)?;
        let vendor_ecc_key = ecc_key(
            r.take(97).map_err(short)?,
            "vendor ECC key is not a P-384 point",
        )?;
        if r.take(3).map_err(short)? != [0; 3] {
            return Err(RotError::ManifestMalformed(
                "reserved bytes after vendor ECC key are not zero",
            ));
        }
        let preamble_mldsa_index = r.u32().map_err(short)?;
        let vendor_mldsa_key = mldsa_key(
            r.take(mldsa::PUBLIC_KEY_LEN).map_err(short)?,
            "vendor ML-DSA-87 key is malformed",
        )?;
        let vendor_ecc_sig = EccP384Signature::from_fixed(r.take(96).map_err(short)?)?;
        let vendor_mldsa_sig = mldsa_sig_field(&mut r)?;

        let owner_flags = r.u32().map_err(short)?;
        let owner_ecc = r.take(100).map_err(short)?;
        let owner_mldsa = r.take(mldsa::PUBLIC_KEY_LEN).map_err(short)?;
        let owner_ecc_sig = r.take(96).map_err(short)?;
        let owner_mldsa_sig_pos = r.take(MLDSA_SIG_FIELD).map_err(short)?;
        let owner = match owner_flags {
            0 => {
                let all_zero = owner_ecc
                    .iter()
                    .chain(owner_mldsa)
                    .chain(owner_ecc_sig)
                    .chain(owner_mldsa_sig_pos)
                    .all(|&b| b == 0);
                if !all_zero {
                    return Err(RotError::ManifestMalformed(
                        "owner fields are set but the owner flag is not",
                    ));
                }
                None
            }
            OWNER_PRESENT => {
                let (key, reserved) = owner_ecc.split_at(97);
                if reserved != [0; 3] {
                    return Err(RotError::ManifestMalformed(
                        "reserved bytes after owner ECC key are not zero",
                    ));
                }
                let mut sr = Reader::new(owner_mldsa_sig_pos);
                Some(OwnerPart {
                    ecc_key: ecc_key(key, "owner ECC key is not a P-384 point")?,
                    mldsa_key: mldsa_key(owner_mldsa, "owner ML-DSA-87 key is malformed")?,
                    ecc_sig: EccP384Signature::from_fixed(owner_ecc_sig)?,
                    mldsa_sig: mldsa_sig_field(&mut sr)?,
                })
            }
            _ => return Err(RotError::ManifestMalformed("unknown owner flags")),
        };

        debug_assert_eq!(MANIFEST_LEN - r.remaining(), HEADER_OFFSET);
        if r.array::<4>().map_err(short)? != HEADER_MAGIC {
            return Err(RotError::ManifestMalformed("bad header magic"));
        }
        if r.u32().map_err(short)? != HEADER_VERSION {
            return Err(RotError::ManifestMalformed("unsupported header version"));
        }
        let vendor_ecc_key_index = r.u32().map_err(short)?;
        let vendor_mldsa_key_index = r.u32().map_err(short)?;
        if r.u32().map_err(short)? != 0 {
            return Err(RotError::ManifestMalformed(
                "header flags are reserved and must be zero",
            ));
        }
        let svn = r.u32().map_err(short)?;
        if svn > MAX_SVN {
            return Err(RotError::ManifestMalformed("SVN above 128"));
        }
        let header = Header {
            vendor_ecc_key_index,
            vendor_mldsa_key_index,
            svn,
            vendor_not_before: r.u64().map_err(short)?,
            vendor_not_after: r.u64().map_err(short)?,
            owner_not_before: r.u64().map_err(short)?,
            owner_not_after: r.u64().map_err(short)?,
            toc_digest: {
                if r.u32().map_err(short)? != 2 {
                    return Err(RotError::ManifestMalformed(
                        "table of contents must have 2 entries",
                    ));
                }
                r.array().map_err(short)?
            },
        };
        for (nb, na) in [
            (header.vendor_not_before, header.vendor_not_after),
            (header.owner_not_before, header.owner_not_after),
        ] {
            if (nb == 0) != (na == 0) || nb > na {
                return Err(RotError::ManifestMalformed(
                    "validity dates are half set or not before is after not after",
                ));
            }
        }
        let mut entries = Vec::with_capacity(2);
        for expected_id in [TOC_IMAGE, TOC_CONFIG] {
            let id = r.u32().map_err(short)?;
            if id != expected_id {
                return Err(RotError::ManifestMalformed(
                    "table of contents must list the image, then the configuration",
                ));
            }
            let version = r.u32().map_err(short)?;
            let digest = r.array().map_err(short)?;
            let raw: [u8; NAME_LEN] = r.array().map_err(short)?;
            let end = raw.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
            let (name, pad) = raw.split_at(end);
            if !name.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
                || pad.iter().any(|&b| b != 0)
            {
                return Err(RotError::ManifestMalformed(
                    "component name is not zero-padded printable ASCII",
                ));
            }
            entries.push(TocEntry {
                id,
                version,
                digest,
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        let config = entries
            .pop()
            .ok_or(RotError::ManifestMalformed("truncated"))?;
        let image = entries
            .pop()
            .ok_or(RotError::ManifestMalformed("truncated"))?;
        Ok(Self {
            vendor_ecc_descriptor,
            vendor_mldsa_descriptor,
            preamble_ecc_index,
            vendor_ecc_key,
            preamble_mldsa_index,
            vendor_mldsa_key,
            vendor_ecc_sig,
            vendor_mldsa_sig,
            owner,
            header,
            toc: [image, config],
            digest: sha384(bytes),
        })
    }

    /// The firmware image entry.
    #[must_use]
    pub fn image(&self) -> &TocEntry {
        &self.toc[0]
    }

    /// The configuration entry.
    #[must_use]
    pub fn config(&self) -> &TocEntry {
        &self.toc[1]
    }

    /// The owner key hash this manifest carries, if it has owner keys.
    #[must_use]
    pub fn owner_key_hash(&self) -> Option<[u8; 48]> {
        self.owner
            .as_ref()
            .map(|o| owner_key_hash(&o.ecc_key, &o.mldsa_key))
    }

    /// Verifies the manifest against the fuses, as Caliptra's ROM does: descriptor
    /// hash, key indices, active keys, both vendor signatures, owner keys and
    /// signatures, table-of-contents digest, anti-rollback. Measurements are compared
    /// by the boot, which knows them.
    ///
    /// # Errors
    /// The first check that fails, each with its own error.
    pub fn verify(&self, fuses: &Fuses) -> Result<()> {
        if !ihsm_crypto::ct_eq(
            &vendor_key_hash(&self.vendor_ecc_descriptor, &self.vendor_mldsa_descriptor),
            &fuses.vendor_key_hash,
        ) {
            return Err(RotError::VendorDescriptorMismatch);
        }
        let header_bytes = self.header.encode();
        for (alg, pre, signed, desc, key_hash) in [
            (
                Alg::Ecc384,
                self.preamble_ecc_index,
                self.header.vendor_ecc_key_index,
                &self.vendor_ecc_descriptor,
                sha384(self.vendor_ecc_key.as_bytes()),
            ),
            (
                Alg::MlDsa87,
                self.preamble_mldsa_index,
                self.header.vendor_mldsa_key_index,
                &self.vendor_mldsa_descriptor,
                sha384(self.vendor_mldsa_key.as_bytes()),
            ),
        ] {
            if pre != signed {
                return Err(RotError::VendorKeyIndexMismatch { alg });
            }
            let count = u32::try_from(desc.key_hashes.len()).unwrap_or(u32::MAX);
            let listed = usize::try_from(signed)
                .ok()
                .and_then(|i| desc.key_hashes.get(i))
                .ok_or(RotError::VendorKeyIndexOutOfRange {
                    alg,
                    index: signed,
                    count,
                })?;
            if !ihsm_crypto::ct_eq(listed, &key_hash) {
                return Err(RotError::VendorKeyNotInDescriptor { alg, index: signed });
            }
        }
        self.vendor_ecc_key
            .verify(&header_bytes, &self.vendor_ecc_sig)
            .map_err(|_| RotError::VendorSignature {
                alg: Alg::Ecc384,
                index: self.header.vendor_ecc_key_index,
            })?;
        self.vendor_mldsa_key
            .verify(&header_bytes, &self.vendor_mldsa_sig)
            .map_err(|_| RotError::VendorSignature {
                alg: Alg::MlDsa87,
                index: self.header.vendor_mldsa_key_index,
            })?;
        match (&self.owner, fuses.owner_fused()) {
            (None, true) => return Err(RotError::OwnerSignatureMissing),
            (None, false) => {}
            (Some(owner), fused) => {
                if fused
                    && !ihsm_crypto::ct_eq(
                        &owner_key_hash(&owner.ecc_key, &owner.mldsa_key),
                        &fuses.owner_key_hash,
                    )
                {
                    return Err(RotError::OwnerKeyMismatch);
                }
                owner
                    .ecc_key
                    .verify(&header_bytes, &owner.ecc_sig)
                    .map_err(|_| RotError::OwnerSignature(Alg::Ecc384))?;
                owner
                    .mldsa_key
                    .verify(&header_bytes, &owner.mldsa_sig)
                    .map_err(|_| RotError::OwnerSignature(Alg::MlDsa87))?;
            }
        }
        if !ihsm_crypto::ct_eq(&sha384(&toc_encode(&self.toc)), &self.header.toc_digest) {
            return Err(RotError::TocDigestMismatch);
        }
        let fused = fuses.svn.svn();
        if self.header.svn < fused {
            return Err(RotError::SvnRollback {
                manifest: self.header.svn,
                fused,
            });
        }
        Ok(())
    }

    /// A summary for people and for `--json`.
    #[must_use]
    pub fn summary(&self) -> ManifestSummary {
        ManifestSummary {
            svn: self.header.svn,
            vendor_ecc_key_index: self.header.vendor_ecc_key_index,
            vendor_mldsa_key_index: self.header.vendor_mldsa_key_index,
            vendor_ecc_keys: self.vendor_ecc_descriptor.key_hashes.len(),
            vendor_mldsa_keys: self.vendor_mldsa_descriptor.key_hashes.len(),
            vendor_key_hash: hex::encode(vendor_key_hash(
                &self.vendor_ecc_descriptor,
                &self.vendor_mldsa_descriptor,
            )),
            owner_signed: self.owner.is_some(),
            owner_key_hash: self.owner_key_hash().map(hex::encode),
            validity: self.header.validity(),
            components: self.toc.to_vec(),
            digest: hex::encode(self.digest),
        }
    }
}

/// What `ihsm manifest show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestSummary {
    /// Firmware SVN.
    pub svn: u32,
    /// Signing ECC vendor key index.
    pub vendor_ecc_key_index: u32,
    /// Signing ML-DSA vendor key index.
    pub vendor_mldsa_key_index: u32,
    /// ECC keys in the descriptor.
    pub vendor_ecc_keys: usize,
    /// ML-DSA keys in the descriptor.
    pub vendor_mldsa_keys: usize,
    /// The vendor key hash the fuses must hold.
    pub vendor_key_hash: String,
    /// Whether an owner countersigned.
    pub owner_signed: bool,
    /// The owner key hash, when present.
    pub owner_key_hash: Option<String>,
    /// Certificate validity (Unix seconds), when set.
    pub validity: Option<(u64, u64)>,
    /// The measured components.
    pub components: Vec<TocEntry>,
    /// SHA-384 of the manifest file.
    pub digest: String,
}

/// A vendor's signing material: every public key of the descriptors and the private
/// keys of the active indices.
#[derive(Debug)]
pub struct VendorSigner<'a> {
    /// All vendor ECC public keys, in index order.
    pub ecc_keys: &'a [EccP384PublicKey],
    /// All vendor ML-DSA public keys, in index order.
    pub mldsa_keys: &'a [MlDsa87PublicKey],
    /// Index of the signing ECC key.
    pub ecc_index: u32,
    /// Index of the signing ML-DSA key.
    pub mldsa_index: u32,
    /// The signing ECC key.
    pub ecc: &'a EccP384PrivateKey,
    /// The signing ML-DSA key.
    pub mldsa: &'a MlDsa87PrivateKey,
}

/// An owner's signing keys.
#[derive(Debug)]
pub struct OwnerSigner<'a> {
    /// Owner ECC key.
    pub ecc: &'a EccP384PrivateKey,
    /// Owner ML-DSA key.
    pub mldsa: &'a MlDsa87PrivateKey,
}

/// What to sign.
#[derive(Debug, Clone)]
pub struct ManifestBody {
    /// Firmware SVN.
    pub svn: u32,
    /// The image component.
    pub image: TocEntry,
    /// The configuration component.
    pub config: TocEntry,
    /// Vendor validity (Unix seconds), if any.
    pub vendor_validity: Option<(u64, u64)>,
    /// Owner validity (Unix seconds), if any.
    pub owner_validity: Option<(u64, u64)>,
}

/// Builds the descriptor for a list of public keys.
fn descriptor<K>(keys: &[K], raw: impl Fn(&K) -> &[u8]) -> Result<KeyDescriptor> {
    if keys.is_empty() || keys.len() > MAX_VENDOR_KEYS {
        return Err(RotError::ManifestMalformed(
            "a vendor key set must have 1 to 4 keys per algorithm",
        ));
    }
    Ok(KeyDescriptor {
        key_hashes: keys.iter().map(|k| sha384(raw(k))).collect(),
    })
}

/// The vendor key hash for a vendor's public keys (what provisioning fuses).
///
/// # Errors
/// [`RotError::ManifestMalformed`] for an empty or oversized key list.
pub fn vendor_key_hash_for(
    ecc: &[EccP384PublicKey],
    mldsa: &[MlDsa87PublicKey],
) -> Result<[u8; 48]> {
    Ok(vendor_key_hash(
        &descriptor(ecc, |k| k.as_bytes().as_slice())?,
        &descriptor(mldsa, |k| k.as_bytes().as_slice())?,
    ))
}

/// Signs a manifest.
///
/// # Errors
/// [`RotError::ManifestMalformed`] when the inputs cannot make a valid manifest
/// (index out of range, signing key not at its index, SVN too large, bad dates), or
/// [`RotError::Crypto`].
pub fn sign(
    body: &ManifestBody,
    vendor: &VendorSigner<'_>,
    owner: Option<&OwnerSigner<'_>>,
) -> Result<Vec<u8>> {
    let ecc_desc = descriptor(vendor.ecc_keys, |k| k.as_bytes().as_slice())?;
    let mldsa_desc = descriptor(vendor.mldsa_keys, |k| k.as_bytes().as_slice())?;
    let at = |i: u32, n: usize| usize::try_from(i).ok().filter(|&i| i < n);
    let ecc_i = at(vendor.ecc_index, vendor.ecc_keys.len()).ok_or(RotError::ManifestMalformed(
        "ECC vendor key index out of range",
    ))?;
    let mldsa_i = at(vendor.mldsa_index, vendor.mldsa_keys.len()).ok_or(
        RotError::ManifestMalformed("ML-DSA vendor key index out of range"),
    )?;
    if vendor.ecc_keys.get(ecc_i) != Some(vendor.ecc.public_key())
        || vendor.mldsa_keys.get(mldsa_i) != Some(vendor.mldsa.public_key())
    {
        return Err(RotError::ManifestMalformed(
            "the signing vendor key is not the key at its index",
        ));
    }
    if body.svn > MAX_SVN {
        return Err(RotError::SvnTooLarge(body.svn));
    }
    let toc = [
        TocEntry {
            id: TOC_IMAGE,
            ..body.image.clone()
        },
        TocEntry {
            id: TOC_CONFIG,
            ..body.config.clone()
        },
    ];
    for e in &toc {
        if e.name.len() > NAME_LEN || !e.name.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(RotError::ManifestMalformed(
                "component names must be printable ASCII, at most 24 bytes",
            ));
        }
    }
    let (vnb, vna) = body.vendor_validity.unwrap_or((0, 0));
    let (onb, ona) = body.owner_validity.unwrap_or((0, 0));
    let header = Header {
        vendor_ecc_key_index: vendor.ecc_index,
        vendor_mldsa_key_index: vendor.mldsa_index,
        svn: body.svn,
        vendor_not_before: vnb,
        vendor_not_after: vna,
        owner_not_before: onb,
        owner_not_after: ona,
        toc_digest: sha384(&toc_encode(&toc)),
    };
    let header_bytes = header.encode();
    let mut w = Writer::with_capacity(MANIFEST_LEN);
    w.bytes(&MAGIC).u32(FORMAT);
    ecc_desc.encode(&mut w);
    mldsa_desc.encode(&mut w);
    w.u32(vendor.ecc_index)
        .bytes(vendor.ecc.public_key().as_bytes())
        .zeros(3)
        .u32(vendor.mldsa_index)
        .bytes(vendor.mldsa.public_key().as_bytes())
        .bytes(&vendor.ecc.sign(&header_bytes)?.to_fixed())
        .bytes(vendor.mldsa.sign(&header_bytes)?.as_bytes())
        .zeros(1);
    match owner {
        Some(o) => {
            w.u32(OWNER_PRESENT)
                .bytes(o.ecc.public_key().as_bytes())
                .zeros(3)
                .bytes(o.mldsa.public_key().as_bytes())
                .bytes(&o.ecc.sign(&header_bytes)?.to_fixed())
                .bytes(o.mldsa.sign(&header_bytes)?.as_bytes())
                .zeros(1);
        }
        None => {
            w.u32(0)
                .zeros(100 + mldsa::PUBLIC_KEY_LEN + 96 + MLDSA_SIG_FIELD);
        }
    }
    w.bytes(&header_bytes).bytes(&toc_encode(&toc));
    if w.buf.len() != MANIFEST_LEN {
        return Err(RotError::ManifestMalformed(
            "internal: manifest layout length",
        ));
    }
    // Refuse to emit something our own parser would not take.
    Manifest::parse(&w.buf)?;
    Ok(w.buf)
}

mod hex_bytes {
    pub(crate) fn serialize<S: serde::Serializer>(
        bytes: &[u8; 48],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}
