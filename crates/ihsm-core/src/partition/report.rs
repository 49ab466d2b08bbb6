//! Key attestation reports (docs/attestation.md §2): for a key of this partition,
//! a fixed CBOR payload (its public key, size, flags, attribute digest and
//! extractability history; the partition, the device's TCB and this start's launch
//! id; a report counter and the caller's 128 bytes of report_data) signed ES384 by
//! the partition's ECC identity key and ML-DSA-87 by its ML-DSA identity key, both
//! certified by the RT Alias.
//!
//! Nothing the caller passes reaches a signature except as report_data inside the
//! fixed structure. The counter is the sequence number of the report's audit entry
//! (`KeyReported`), written durably before the report is signed, so counters are
//! strictly increasing per partition across restarts, and every report an auditor
//! is shown has its entry in the partition's log.

use std::collections::BTreeSet;

use cryptoki_sys as ck;
use ihsm_rot::cose;

use super::{Caller, Need, Partition, Rate};
use crate::attr::{self, AttrResult, AttrValue, Reveal, class};
use crate::audit::AuditEvent;
use crate::error::{CoreError, Result};
use crate::key::Material;
use crate::object::Object;

/// The caller's bytes: a nonce, or the hash of one; shorter input is zero-padded.
pub const REPORT_DATA_LEN: usize = 128;
/// Field 1's fixed size: a COSE_Key, zero-padded (fits RSA-4096).
const PUBLIC_KEY_FIELD_LEN: usize = 525;
/// The payload's version.
const VERSION: u64 = 1;

/// Flag bits of field 3 (the Azure Integrated HSM's).
mod flag {
    pub(super) const IMPORTED: u32 = 1;
    pub(super) const SESSION: u32 = 1 << 1;
    pub(super) const GENERATED: u32 = 1 << 2;
    pub(super) const ENCRYPT: u32 = 1 << 3;
    pub(super) const DECRYPT: u32 = 1 << 4;
    pub(super) const SIGN: u32 = 1 << 5;
    pub(super) const VERIFY: u32 = 1 << 6;
    pub(super) const WRAP: u32 = 1 << 7;
    pub(super) const UNWRAP: u32 = 1 << 8;
    pub(super) const DERIVE: u32 = 1 << 9;
}

/// What a report says of one key, gathered before anything is signed.
struct Facts {
    cose_key: Vec<u8>,
    key_size: u64,
    flags: u32,
    cka_id: Vec<u8>,
    attributes_digest: [u8; 48],
    never_extractable: bool,
    always_sensitive: bool,
    local: bool,
}

impl Partition {
    /// A key report for `key` (docs/attestation.md §2), `report_data` (at most 128
    /// bytes) zero-padded into field 5. The key must be visible to the session (a
    /// private key needs a login); keys only: EC (P-256, P-384, P-521), Ed25519
    /// and RSA keys carry their public key, secret keys carry none. The report's audit
    /// entry is durable before the report is returned.
    ///
    /// # Errors
    /// [`CoreError::DataLenRange`] for more than 128 bytes of report_data,
    /// [`CoreError::KeyTypeInconsistent`] for an object that is not a key or a key
    /// whose public key the 525-byte field cannot carry (ML-DSA, ML-KEM), session,
    /// handle and device state errors.
    pub fn key_report(
        &self,
        app: u64,
        session: u64,
        key: u64,
        report_data: &[u8],
    ) -> Result<Vec<u8>> {
        let Caller { login, .. } = self.enter(app, session, Need::Session, Rate::Counted)?;
        let o = self.object(login, key)?;
        self.report_of(&o, report_data)
    }

    /// The report of an object the caller may see (also `CKM_IHSM_KEY_REPORT`
    /// through C_Sign).
    pub(super) fn report_of(&self, o: &Object, report_data: &[u8]) -> Result<Vec<u8>> {
        if report_data.len() > REPORT_DATA_LEN {
            return Err(CoreError::DataLenRange(
                "report_data is at most 128 bytes (a nonce, or the hash of one)",
            ));
        }
        let mut data = [0u8; REPORT_DATA_LEN];
        data.iter_mut().zip(report_data).for_each(|(d, s)| *d = *s);
        let facts = facts(o)?;
        let shared = self.check()?;
        let tcb = shared.tcb()?;
        let launch_id = shared.launch_id();
        let counter = self.audit_event(AuditEvent::KeyReported {
            handle: o.handle,
            report_data: ihsm_crypto::hash::sha384(&data),
        })?;
        let payload = payload(
            &facts,
            &self.uuid(),
            &data,
            &launch_id,
            counter,
            &tcb,
            self.name(),
            self.id(),
        );
        self.with_secrets(|s| Ok(cose::envelope(&payload, &s.identity, &s.identity_mldsa)?))
    }
}

fn facts(o: &Object) -> Result<Facts> {
    let private = o.class_bit == class::PRIV;
    let (cose_key, key_size) = match (&o.material, o.class_bit) {
        (Some(Material::EcPrivate(k)), _) => ec2(k.public_key())?,
        (Some(Material::EcPublic(k)), _) => ec2(k)?,
        (Some(Material::RsaPrivate(k)), _) => rsa(k.public_key())?,
        (Some(Material::RsaPublic(k)), _) => rsa(k)?,
        (Some(Material::EdPrivate(k)), _) => okp_ed25519(&k.public_key()),
        (Some(Material::EdPublic(k)), _) => okp_ed25519(k),
        (Some(Material::Aes(k)), class::SECRET) => (Vec::new(), k.bits() as u64),
        (Some(Material::Generic(s)), class::SECRET) => (Vec::new(), s.len() as u64 * 8),
        _ => return Err(CoreError::KeyTypeInconsistent),
    };
    let f = |ty| o.flag(ty);
    let mut flags = 0u32;
    let mut set = |bit: u32, on: bool| {
        if on {
            flags |= bit;
        }
    };
    set(flag::IMPORTED, !f(ck::CKA_LOCAL));
    set(flag::SESSION, !o.is_token());
    set(flag::GENERATED, f(ck::CKA_LOCAL));
    // A private key's public operations (verify, encrypt, wrap) are anyone's who
    // holds the public key: the report names the operations the pair permits.
    set(
        flag::ENCRYPT,
        f(ck::CKA_ENCRYPT) || (private && f(ck::CKA_DECRYPT)),
    );
    set(flag::DECRYPT, f(ck::CKA_DECRYPT));
    set(flag::SIGN, f(ck::CKA_SIGN));
    set(
        flag::VERIFY,
        f(ck::CKA_VERIFY) || (private && f(ck::CKA_SIGN)),
    );
    set(
        flag::WRAP,
        f(ck::CKA_WRAP) || (private && f(ck::CKA_UNWRAP)),
    );
    set(flag::UNWRAP, f(ck::CKA_UNWRAP));
    set(flag::DERIVE, f(ck::CKA_DERIVE));
    let cka_id = match o.attrs.get(&ck::CKA_ID) {
        Some(AttrValue::Bytes(b)) => b.clone(),
        _ => Vec::new(),
    };
    Ok(Facts {
        cose_key,
        key_size,
        flags,
        cka_id,
        attributes_digest: attributes_digest(o)?,
        never_extractable: f(ck::CKA_NEVER_EXTRACTABLE),
        always_sensitive: f(ck::CKA_ALWAYS_SENSITIVE),
        local: f(ck::CKA_LOCAL),
    })
}

/// `{1: 2, -1: crv, -2: x, -3: y}`, and the curve's size in bits.
fn ec2(k: &ihsm_crypto::ec::EcPublicKey) -> Result<(Vec<u8>, u64)> {
    use ihsm_crypto::ec::Curve;
    let (crv, bits) = match k.curve() {
        Curve::P256 => (1, 256),
        Curve::P384 => (2, 384),
        Curve::P521 => (3, 521),
    };
    let point = k.as_bytes();
    let n = k.curve().scalar_len();
    let (x, y) = match point.get(1..).map(|xy| xy.split_at_checked(n)) {
        Some(Some((x, y))) if point.first() == Some(&4) && y.len() == n => (x, y),
        _ => return Err(CoreError::Internal("EC point is not uncompressed SEC1")),
    };
    let mut c = Vec::with_capacity(PUBLIC_KEY_FIELD_LEN);
    cose::map(&mut c, 4);
    cose::uint(&mut c, 1);
    cose::uint(&mut c, 2);
    cose::nint(&mut c, 0);
    cose::uint(&mut c, crv);
    cose::nint(&mut c, 1);
    cose::bstr(&mut c, x);
    cose::nint(&mut c, 2);
    cose::bstr(&mut c, y);
    Ok((c, bits))
}

/// `{1: 1, -1: 6, -2: x}` (OKP, Ed25519: RFC 9053 §7.2), and 256 bits.
fn okp_ed25519(x: &[u8; 32]) -> (Vec<u8>, u64) {
    let mut c = Vec::with_capacity(PUBLIC_KEY_FIELD_LEN);
    cose::map(&mut c, 3);
    cose::uint(&mut c, 1);
    cose::uint(&mut c, 1);
    cose::nint(&mut c, 0);
    cose::uint(&mut c, 6);
    cose::nint(&mut c, 1);
    cose::bstr(&mut c, x);
    (c, 256)
}

/// `{1: 3, -1: n, -2: e}` (big-endian, no leading zeros), and the modulus bits.
fn rsa(k: &ihsm_crypto::rsa::RsaPublicKey) -> Result<(Vec<u8>, u64)> {
    let strip = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|&x| x == 0).collect() };
    let (n, e) = (strip(k.modulus()), strip(k.exponent()));
    let mut c = Vec::with_capacity(PUBLIC_KEY_FIELD_LEN);
    cose::map(&mut c, 3);
    cose::uint(&mut c, 1);
    cose::uint(&mut c, 3);
    cose::nint(&mut c, 0);
    cose::bstr(&mut c, &n);
    cose::nint(&mut c, 1);
    cose::bstr(&mut c, &e);
    if c.len() > PUBLIC_KEY_FIELD_LEN {
        return Err(CoreError::KeyTypeInconsistent);
    }
    Ok((c, k.bits() as u64))
}

/// SHA-384 of the key's attribute set (docs/attestation.md §2, key 105): every
/// attribute `C_GetAttributeValue` would return, key material never, as a
/// canonical CBOR map from the type to its value bytes (`CK_BBOOL` one byte,
/// `CK_ULONG` 8 bytes big-endian).
fn attributes_digest(o: &Object) -> Result<[u8; 48]> {
    let types: BTreeSet<u64> = attr::RULES
        .iter()
        .filter(|r| r.reveal == Reveal::Public)
        .map(|r| r.ty)
        .collect();
    let mut entries = Vec::new();
    for ty in types {
        // The rule that applies to this object, which may differ from the one
        // the set was built from (CKA_VALUE is public for some classes only).
        match attr::rule_for(ty, o.class_bit, o.key_type()) {
            Some(r) if r.reveal == Reveal::Public => {}
            _ => continue,
        }
        if let AttrResult::Value(v) = o.get(ty)? {
            entries.push((ty, v));
        }
    }
    let mut m = Vec::new();
    cose::map(&mut m, entries.len() as u64);
    for (ty, v) in &entries {
        cose::uint(&mut m, *ty);
        match v {
            AttrValue::Bool(b) => cose::bstr(&mut m, &[u8::from(*b)]),
            AttrValue::Ulong(n) => cose::bstr(&mut m, &n.to_be_bytes()),
            AttrValue::Bytes(b) => cose::bstr(&mut m, b),
        }
    }
    Ok(ihsm_crypto::hash::sha384(&m))
}

/// The canonical payload map (keys ascending, shortest heads).
#[allow(clippy::too_many_arguments)]
fn payload(
    f: &Facts,
    uuid: &[u8; 16],
    report_data: &[u8; REPORT_DATA_LEN],
    launch_id: &[u8; 16],
    counter: u64,
    tcb: &[[u8; 48]; 2],
    name: &str,
    pid: u32,
) -> Vec<u8> {
    let mut o = Vec::with_capacity(1024);
    cose::map(&mut o, 16);
    cose::uint(&mut o, 0);
    cose::uint(&mut o, VERSION);
    cose::uint(&mut o, 1);
    let mut key = [0u8; PUBLIC_KEY_FIELD_LEN];
    key.iter_mut().zip(&f.cose_key).for_each(|(d, s)| *d = *s);
    cose::bstr(&mut o, &key);
    cose::uint(&mut o, 2);
    cose::uint(&mut o, f.key_size);
    cose::uint(&mut o, 3);
    cose::uint(&mut o, u64::from(f.flags));
    cose::uint(&mut o, 4);
    cose::bstr(&mut o, uuid);
    cose::uint(&mut o, 5);
    cose::bstr(&mut o, report_data);
    cose::uint(&mut o, 6);
    cose::bstr(&mut o, launch_id);
    cose::uint(&mut o, 100);
    cose::uint(&mut o, counter);
    cose::uint(&mut o, 101);
    cose::array(&mut o, 2);
    cose::bstr(&mut o, &tcb[0]);
    cose::bstr(&mut o, &tcb[1]);
    cose::uint(&mut o, 102);
    cose::tstr(&mut o, name);
    cose::uint(&mut o, 103);
    cose::uint(&mut o, u64::from(pid));
    cose::uint(&mut o, 104);
    cose::bstr(&mut o, &f.cka_id);
    cose::uint(&mut o, 105);
    cose::bstr(&mut o, &f.attributes_digest);
    cose::uint(&mut o, 106);
    cose::boolean(&mut o, f.never_extractable);
    cose::uint(&mut o, 107);
    cose::boolean(&mut o, f.always_sensitive);
    cose::uint(&mut o, 108);
    cose::boolean(&mut o, f.local);
    o
}
