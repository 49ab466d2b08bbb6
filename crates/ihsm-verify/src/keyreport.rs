//! Key attestation reports (docs/attestation.md, "Key reports"): the Azure
//! Integrated HSM's payload plus ihsm's fields, in the two-signature envelope.

use ciborium::Value;

use crate::cbor;
use crate::envelope::{self, EnvelopeRefusal};

/// The payload version this crate reads and writes.
pub const VERSION: u64 = 1;
/// The fixed size of the zero-padded COSE_Key (field 1), as in AziHSM.
pub const COSE_KEY_LEN: usize = 525;
/// The caller's bytes (field 5).
pub const REPORT_DATA_LEN: usize = 128;

/// Key flags (field 3), AziHSM's bits 0..=9; bits 10..=31 are reserved (zero).
pub mod flags {
    /// Imported (unwrapped or created from a value) rather than generated.
    pub const IMPORTED: u32 = 1 << 0;
    /// A session object.
    pub const SESSION: u32 = 1 << 1;
    /// Generated inside the HSM.
    pub const GENERATED: u32 = 1 << 2;
    /// May encrypt.
    pub const ENCRYPT: u32 = 1 << 3;
    /// May decrypt.
    pub const DECRYPT: u32 = 1 << 4;
    /// May sign.
    pub const SIGN: u32 = 1 << 5;
    /// May verify.
    pub const VERIFY: u32 = 1 << 6;
    /// May wrap.
    pub const WRAP: u32 = 1 << 7;
    /// May unwrap.
    pub const UNWRAP: u32 = 1 << 8;
    /// May derive.
    pub const DERIVE: u32 = 1 << 9;
    /// Every defined bit.
    pub const ALL: u32 = (1 << 10) - 1;
}

/// Payload map keys.
pub mod keys {
    /// version (uint, 1).
    pub const VERSION: i64 = 0;
    /// public key: bstr of 525 bytes, a COSE_Key zero-padded (all zero: no public key).
    pub const PUBLIC_KEY: i64 = 1;
    /// key size in bits (uint).
    pub const KEY_SIZE: i64 = 2;
    /// flags (uint, [`super::flags`]).
    pub const FLAGS: i64 = 3;
    /// application id: the partition UUID (bstr 16).
    pub const APP_ID: i64 = 4;
    /// report_data (bstr 128).
    pub const REPORT_DATA: i64 = 5;
    /// launch id (bstr 16).
    pub const LAUNCH_ID: i64 = 6;
    /// ihsm: report counter (uint, monotonic per partition).
    pub const COUNTER: i64 = 100;
    /// ihsm: TCB digests, the RT Alias TcbInfo FWIDs (array of two bstr 48).
    pub const TCB: i64 = 101;
    /// ihsm: partition name (tstr).
    pub const PARTITION_NAME: i64 = 102;
    /// ihsm: partition id (uint).
    pub const PARTITION_ID: i64 = 103;
    /// ihsm: CKA_ID (bstr).
    pub const CKA_ID: i64 = 104;
    /// ihsm: SHA-384 of the canonical attribute set (bstr 48).
    pub const ATTRIBUTES_DIGEST: i64 = 105;
    /// ihsm: CKA_NEVER_EXTRACTABLE (bool).
    pub const NEVER_EXTRACTABLE: i64 = 106;
    /// ihsm: CKA_ALWAYS_SENSITIVE (bool).
    pub const ALWAYS_SENSITIVE: i64 = 107;
    /// ihsm: CKA_LOCAL (bool).
    pub const LOCAL: i64 = 108;
}

/// The public key a report attests (field 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestedKey {
    /// A secret key: the field is all zeros.
    None,
    /// EC2 `{1: 2, -1: crv, -2: x, -3: y}`; crv 1 P-256, 2 P-384, 3 P-521.
    Ec2 {
        /// COSE curve id.
        crv: i64,
        /// x, big-endian.
        x: Vec<u8>,
        /// y, big-endian.
        y: Vec<u8>,
    },
    /// OKP `{1: 1, -1: crv, -2: x}`; crv 6 Ed25519.
    Okp {
        /// COSE curve id.
        crv: i64,
        /// The public key.
        x: Vec<u8>,
    },
    /// RSA `{1: 3, -1: n, -2: e}`.
    Rsa {
        /// Modulus, big-endian.
        n: Vec<u8>,
        /// Public exponent, big-endian.
        e: Vec<u8>,
    },
}

/// The report payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// The attested public key.
    pub public_key: AttestedKey,
    /// Key size in bits.
    pub key_size: u32,
    /// [`flags`].
    pub flags: u32,
    /// The partition UUID.
    pub app_id: [u8; 16],
    /// The caller's 128 bytes.
    pub report_data: [u8; REPORT_DATA_LEN],
    /// The launch id.
    pub launch_id: [u8; 16],
    /// Monotonic per partition.
    pub counter: u64,
    /// The RT Alias TcbInfo FWIDs: [RT TCI, SHA-384 of the manifest].
    pub tcb: [[u8; 48]; 2],
    /// The partition's name.
    pub partition_name: String,
    /// The partition's id.
    pub partition_id: u32,
    /// CKA_ID.
    pub cka_id: Vec<u8>,
    /// SHA-384 of the canonical attribute set ([`attributes_digest`]).
    pub attributes_digest: [u8; 48],
    /// CKA_NEVER_EXTRACTABLE.
    pub never_extractable: bool,
    /// CKA_ALWAYS_SENSITIVE.
    pub always_sensitive: bool,
    /// CKA_LOCAL.
    pub local: bool,
}

/// Which part of a report is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The payload is not one CBOR map with integer keys, or not in the canonical
    /// encoding, or has a key this version does not define.
    Structure,
    /// A field (its map key).
    Key(i64),
}

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Structure => f.write_str("structure"),
            Self::Key(k) => write!(f, "field {k}"),
        }
    }
}

/// Why a key report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyReportRefusal {
    /// The envelope or a signature.
    #[error("key report: {0}")]
    Envelope(#[from] EnvelopeRefusal),
    /// A payload field is missing, of the wrong type or size.
    #[error("key report payload is malformed ({0})")]
    Malformed(Field),
    /// Another payload version.
    #[error("key report version {0} is not {VERSION}")]
    Version(u64),
    /// report_data is not the verifier's.
    #[error("key report's report_data is not the verifier's")]
    ReportData,
    /// The partition (name, id or UUID) is not the expected one.
    #[error("key report is from another partition")]
    Partition,
    /// The TCB digests are not the RT Alias FWIDs of the verified chain.
    #[error("key report's TCB digests are not the device's RT Alias FWIDs")]
    Tcb,
    /// Flags the policy requires are missing, or flags it forbids are set.
    #[error(
        "key report flags {flags:#x} break the policy (missing {missing:#x}, forbidden {forbidden:#x})"
    )]
    Flags {
        /// The report's flags.
        flags: u32,
        /// Required and not set.
        missing: u32,
        /// Set and forbidden.
        forbidden: u32,
    },
    /// The policy requires CKA_NEVER_EXTRACTABLE.
    #[error("the attested key may have been extractable")]
    NeverExtractable,
    /// The policy requires CKA_ALWAYS_SENSITIVE.
    #[error("the attested key may not always have been sensitive")]
    AlwaysSensitive,
    /// The policy requires CKA_LOCAL.
    #[error("the attested key was not generated in the HSM (CKA_LOCAL false)")]
    NotLocal,
    /// The policy requires a public key of a kind the report does not carry.
    #[error("the attested key is not of the kind the policy requires")]
    KeyKind,
}

/// What a relying party requires of the attested key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Flags that must be set.
    pub required: u32,
    /// Flags that must not be set.
    pub forbidden: u32,
    /// CKA_NEVER_EXTRACTABLE must be true.
    pub never_extractable: bool,
    /// CKA_ALWAYS_SENSITIVE must be true.
    pub always_sensitive: bool,
    /// CKA_LOCAL must be true.
    pub local: bool,
    /// The report must carry a public key.
    pub public_key: bool,
}

impl KeyPolicy {
    /// "Sign-only, never extractable, generated in the HSM": GENERATED and SIGN
    /// set; IMPORTED, SESSION, ENCRYPT, DECRYPT, WRAP, UNWRAP, DERIVE clear;
    /// never extractable, always sensitive, local; a public key present.
    #[must_use]
    pub const fn sign_only_generated() -> Self {
        use flags::*;
        Self {
            required: GENERATED | SIGN,
            forbidden: IMPORTED | SESSION | ENCRYPT | DECRYPT | WRAP | UNWRAP | DERIVE,
            never_extractable: true,
            always_sensitive: true,
            local: true,
            public_key: true,
        }
    }

    /// "A release target": a key that unwraps and never leaves its partition:
    /// GENERATED and UNWRAP set; IMPORTED, SESSION, SIGN, DECRYPT (C_Decrypt of a
    /// wrapped AES key would give it in the clear) and DERIVE clear; never
    /// extractable, always sensitive, local; a public key present.
    #[must_use]
    pub const fn unwrap_target() -> Self {
        use flags::*;
        Self {
            required: GENERATED | UNWRAP,
            forbidden: IMPORTED | SESSION | SIGN | DECRYPT | DERIVE,
            never_extractable: true,
            always_sensitive: true,
            local: true,
            public_key: true,
        }
    }

    /// Checks a decoded report.
    ///
    /// # Errors
    /// The first clause the report breaks.
    pub fn check(&self, r: &KeyReport) -> Result<(), KeyReportRefusal> {
        let missing = self.required & !r.flags;
        let forbidden = self.forbidden & r.flags;
        if missing != 0 || forbidden != 0 {
            return Err(KeyReportRefusal::Flags {
                flags: r.flags,
                missing,
                forbidden,
            });
        }
        if self.never_extractable && !r.never_extractable {
            return Err(KeyReportRefusal::NeverExtractable);
        }
        if self.always_sensitive && !r.always_sensitive {
            return Err(KeyReportRefusal::AlwaysSensitive);
        }
        if self.local && !r.local {
            return Err(KeyReportRefusal::NotLocal);
        }
        if self.public_key && r.public_key == AttestedKey::None {
            return Err(KeyReportRefusal::KeyKind);
        }
        Ok(())
    }
}

fn cose_key_value(k: &AttestedKey) -> Option<Value> {
    use cbor::{bytes, int};
    match k {
        AttestedKey::None => None,
        AttestedKey::Ec2 { crv, x, y } => Some(Value::Map(vec![
            (int(1), int(2)),
            (int(-1), int(*crv)),
            (int(-2), bytes(x)),
            (int(-3), bytes(y)),
        ])),
        AttestedKey::Okp { crv, x } => Some(Value::Map(vec![
            (int(1), int(1)),
            (int(-1), int(*crv)),
            (int(-2), bytes(x)),
        ])),
        AttestedKey::Rsa { n, e } => Some(Value::Map(vec![
            (int(1), int(3)),
            (int(-1), bytes(n)),
            (int(-2), bytes(e)),
        ])),
    }
}

fn decode_cose_key(padded: &[u8]) -> Option<AttestedKey> {
    if padded.len() != COSE_KEY_LEN {
        return None;
    }
    if padded.iter().all(|b| *b == 0) {
        return Some(AttestedKey::None);
    }
    let mut rest = padded;
    let v: Value = ciborium::de::from_reader(&mut rest).ok()?;
    if rest.iter().any(|b| *b != 0) {
        return None;
    }
    let m = cbor::int_map(&v)?;
    let key = match cbor::as_i64(cbor::get(&m, 1)?)? {
        2 if m.len() == 4 => AttestedKey::Ec2 {
            crv: cbor::as_i64(cbor::get(&m, -1)?)?,
            x: cbor::as_bytes(cbor::get(&m, -2)?)?.to_vec(),
            y: cbor::as_bytes(cbor::get(&m, -3)?)?.to_vec(),
        },
        1 if m.len() == 3 => AttestedKey::Okp {
            crv: cbor::as_i64(cbor::get(&m, -1)?)?,
            x: cbor::as_bytes(cbor::get(&m, -2)?)?.to_vec(),
        },
        3 if m.len() == 3 => AttestedKey::Rsa {
            n: cbor::as_bytes(cbor::get(&m, -1)?)?.to_vec(),
            e: cbor::as_bytes(cbor::get(&m, -2)?)?.to_vec(),
        },
        _ => return None,
    };
    // The padded encoding must be the canonical one.
    (cose_key_value(&key).map(|v| cbor::encode(&v)).as_deref()
        == padded.get(..padded.len() - rest.len()))
    .then_some(key)
}

impl KeyReport {
    /// The canonical payload encoding: the map in ascending key order, shortest
    /// integer and length encodings (RFC 8949 §4.2.1).
    ///
    /// # Errors
    /// [`KeyReportRefusal::Malformed`] naming field 1 when the COSE_Key does not fit
    /// in its 525 bytes (an RSA modulus over 4096 bits).
    pub fn to_payload(&self) -> Result<Vec<u8>, KeyReportRefusal> {
        use cbor::{bytes, int};
        let mut key = cose_key_value(&self.public_key)
            .map(|v| cbor::encode(&v))
            .unwrap_or_default();
        if key.len() > COSE_KEY_LEN {
            return Err(KeyReportRefusal::Malformed(Field::Key(keys::PUBLIC_KEY)));
        }
        key.resize(COSE_KEY_LEN, 0);
        let v = Value::Map(vec![
            (int(keys::VERSION), int(i64::try_from(VERSION).unwrap_or(1))),
            (int(keys::PUBLIC_KEY), Value::Bytes(key)),
            (int(keys::KEY_SIZE), int(i64::from(self.key_size))),
            (int(keys::FLAGS), int(i64::from(self.flags))),
            (int(keys::APP_ID), bytes(&self.app_id)),
            (int(keys::REPORT_DATA), bytes(&self.report_data)),
            (int(keys::LAUNCH_ID), bytes(&self.launch_id)),
            (int(keys::COUNTER), Value::Integer(self.counter.into())),
            (
                int(keys::TCB),
                Value::Array(self.tcb.iter().map(|d| bytes(d)).collect()),
            ),
            (
                int(keys::PARTITION_NAME),
                Value::Text(self.partition_name.clone()),
            ),
            (int(keys::PARTITION_ID), int(i64::from(self.partition_id))),
            (int(keys::CKA_ID), bytes(&self.cka_id)),
            (int(keys::ATTRIBUTES_DIGEST), bytes(&self.attributes_digest)),
            (
                int(keys::NEVER_EXTRACTABLE),
                Value::Bool(self.never_extractable),
            ),
            (
                int(keys::ALWAYS_SENSITIVE),
                Value::Bool(self.always_sensitive),
            ),
            (int(keys::LOCAL), Value::Bool(self.local)),
        ]);
        Ok(cbor::encode(&v))
    }

    /// Decodes a payload strictly: every field present with its type and size, no
    /// other key, and the bytes the canonical encoding of what they say.
    ///
    /// # Errors
    /// [`KeyReportRefusal::Malformed`] or [`KeyReportRefusal::Version`].
    pub fn from_payload(bytes: &[u8]) -> Result<Self, KeyReportRefusal> {
        use KeyReportRefusal::Malformed;
        let v = cbor::decode(bytes).ok_or(Malformed(Field::Structure))?;
        let m = cbor::int_map(&v).ok_or(Malformed(Field::Structure))?;
        let f = |k: i64| cbor::get(&m, k).ok_or(Malformed(Field::Key(k)));
        let version =
            cbor::as_u64(f(keys::VERSION)?).ok_or(Malformed(Field::Key(keys::VERSION)))?;
        if version != VERSION {
            return Err(KeyReportRefusal::Version(version));
        }
        if m.len() != 16 {
            return Err(Malformed(Field::Structure));
        }
        let bad = |k| Malformed(Field::Key(k));
        let u32f = |k| {
            f(k).and_then(|v| {
                cbor::as_u64(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(bad(k))
            })
        };
        let boolf = |k| match f(k)? {
            Value::Bool(b) => Ok(*b),
            _ => Err(bad(k)),
        };
        let tcb = match f(keys::TCB)? {
            Value::Array(a) if a.len() == 2 => {
                let mut t = [[0u8; 48]; 2];
                for (d, s) in t.iter_mut().zip(a) {
                    *d = cbor::as_array(s).ok_or(bad(keys::TCB))?;
                }
                t
            }
            _ => return Err(bad(keys::TCB)),
        };
        let flags = u32f(keys::FLAGS)?;
        if flags & !flags::ALL != 0 {
            return Err(bad(keys::FLAGS));
        }
        let r = Self {
            public_key: cbor::as_bytes(f(keys::PUBLIC_KEY)?)
                .and_then(decode_cose_key)
                .ok_or(bad(keys::PUBLIC_KEY))?,
            key_size: u32f(keys::KEY_SIZE)?,
            flags,
            app_id: cbor::as_array(f(keys::APP_ID)?).ok_or(bad(keys::APP_ID))?,
            report_data: cbor::as_array(f(keys::REPORT_DATA)?).ok_or(bad(keys::REPORT_DATA))?,
            launch_id: cbor::as_array(f(keys::LAUNCH_ID)?).ok_or(bad(keys::LAUNCH_ID))?,
            counter: cbor::as_u64(f(keys::COUNTER)?).ok_or(bad(keys::COUNTER))?,
            tcb,
            partition_name: match f(keys::PARTITION_NAME)? {
                Value::Text(t) => t.clone(),
                _ => return Err(bad(keys::PARTITION_NAME)),
            },
            partition_id: u32f(keys::PARTITION_ID)?,
            cka_id: cbor::as_bytes(f(keys::CKA_ID)?)
                .ok_or(bad(keys::CKA_ID))?
                .to_vec(),
            attributes_digest: cbor::as_array(f(keys::ATTRIBUTES_DIGEST)?)
                .ok_or(bad(keys::ATTRIBUTES_DIGEST))?,
            never_extractable: boolf(keys::NEVER_EXTRACTABLE)?,
            always_sensitive: boolf(keys::ALWAYS_SENSITIVE)?,
            local: boolf(keys::LOCAL)?,
        };
        if r.to_payload()? != bytes {
            return Err(Malformed(Field::Structure));
        }
        Ok(r)
    }
}

/// What the verifier expects of a report beyond its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReportExpectation {
    /// The report_data the verifier asked for.
    pub report_data: [u8; REPORT_DATA_LEN],
    /// The RT Alias TcbInfo FWIDs of the verified chain.
    pub tcb: [[u8; 48]; 2],
    /// The partition name its identity certificate names.
    pub partition_name: String,
    /// The partition id, when the verifier knows it.
    pub partition_id: Option<u32>,
    /// The partition UUID, when the verifier knows it.
    pub app_id: Option<[u8; 16]>,
}

/// Checks a key report: the envelope's two signatures by the partition identity
/// keys (ECC P-384 point, ML-DSA-87 key, from verified partition certificates), the
/// payload, report_data, partition and TCB, and the flag policy.
///
/// # Errors
/// The first [`KeyReportRefusal`].
pub fn verify_key_report(
    bytes: &[u8],
    ecc_partition_key: &[u8],
    mldsa_partition_key: &[u8],
    expect: &KeyReportExpectation,
    policy: &KeyPolicy,
) -> Result<KeyReport, KeyReportRefusal> {
    let payload = envelope::open(bytes, ecc_partition_key, mldsa_partition_key)?;
    let r = KeyReport::from_payload(&payload)?;
    if r.report_data != expect.report_data {
        return Err(KeyReportRefusal::ReportData);
    }
    if r.partition_name != expect.partition_name
        || expect.partition_id.is_some_and(|p| p != r.partition_id)
        || expect.app_id.is_some_and(|a| a != r.app_id)
    {
        return Err(KeyReportRefusal::Partition);
    }
    if r.tcb != expect.tcb {
        return Err(KeyReportRefusal::Tcb);
    }
    policy.check(&r)?;
    Ok(r)
}

/// SHA-384 of a key's attribute set in the canonical encoding of
/// docs/attestation.md: a CBOR map from the attribute type (uint) to its value (bstr,
/// CK_BBOOL as one byte 0/1, CK_ULONG as 8 bytes big-endian, everything else as
/// PKCS#11 returns it), keys ascending, sensitive values left out by the caller.
/// Returns `None` when a type repeats.
#[must_use]
pub fn attributes_digest(attrs: &[(u64, Vec<u8>)]) -> Option<[u8; 48]> {
    let mut sorted: Vec<&(u64, Vec<u8>)> = attrs.iter().collect();
    sorted.sort_by_key(|(t, _)| *t);
    if sorted.windows(2).any(|w| matches!(w, [a, b] if a.0 == b.0)) {
        return None;
    }
    let v = Value::Map(
        sorted
            .into_iter()
            .map(|(t, val)| (Value::Integer((*t).into()), cbor::bytes(val)))
            .collect(),
    );
    Some(crate::sig::sha384(&[&cbor::encode(&v)]))
}
