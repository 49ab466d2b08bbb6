//! Templates: how a caller's template becomes an object's attributes (defaults,
//! the attribute table's checks, key separation, what a made key inherits).

use std::collections::BTreeMap;

use cryptoki_sys as ck;

use super::UNAVAILABLE;
use crate::attr::{self, AttrType, AttrValue, Attribute, Phase, class};
use crate::error::{CoreError, Result};
use crate::key::Material;
use crate::object::Object;

/// Defaults of a new object's storage and key attributes.
fn apply_defaults(m: &mut BTreeMap<AttrType, AttrValue>, class_bit: u8, key_type: Option<u64>) {
    let mut default = |ty: AttrType, v: AttrValue| {
        m.entry(ty).or_insert(v);
    };
    let secret_or_private = class_bit & (class::SECRET | class::PRIV) != 0;
    default(ck::CKA_TOKEN, AttrValue::Bool(false));
    default(ck::CKA_PRIVATE, AttrValue::Bool(secret_or_private));
    default(ck::CKA_MODIFIABLE, AttrValue::Bool(true));
    default(ck::CKA_COPYABLE, AttrValue::Bool(true));
    default(ck::CKA_DESTROYABLE, AttrValue::Bool(true));
    default(ck::CKA_LABEL, AttrValue::Bytes(Vec::new()));
    if class_bit & class::KEY != 0 {
        default(ck::CKA_ID, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_DERIVE, AttrValue::Bool(false));
        default(ck::CKA_START_DATE, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_END_DATE, AttrValue::Bytes(Vec::new()));
        // Usage defaults: each key type's primary function only. Wrapping,
        // unwrapping and deriving must be asked for.
        let (sign, crypt, kem) = match key_type {
            Some(ck::CKK_AES) => (false, true, false),
            Some(ck::CKK_ML_KEM) => (false, false, true),
            Some(ck::CKK_GENERIC_SECRET | ck::CKK_HKDF) => (true, false, false),
            _ => (true, false, false),
        };
        for (ty, classes, v) in [
            (ck::CKA_SIGN, class::PRIV | class::SECRET, sign),
            (ck::CKA_VERIFY, class::PUB | class::SECRET, sign),
            (ck::CKA_ENCRYPT, class::PUB | class::SECRET, crypt),
            (ck::CKA_DECRYPT, class::PRIV | class::SECRET, crypt),
            (ck::CKA_WRAP, class::PUB | class::SECRET, false),
            (ck::CKA_UNWRAP, class::PRIV | class::SECRET, false),
            (ck::CKA_SIGN_RECOVER, class::PRIV, false),
            (ck::CKA_VERIFY_RECOVER, class::PUB, false),
            (ck::CKA_ENCAPSULATE, class::PUB, kem),
            (ck::CKA_DECAPSULATE, class::PRIV, kem),
        ] {
            if classes & class_bit != 0 {
                default(ty, AttrValue::Bool(v));
            }
        }
        if secret_or_private {
            default(ck::CKA_SENSITIVE, AttrValue::Bool(true));
            default(ck::CKA_EXTRACTABLE, AttrValue::Bool(false));
            default(ck::CKA_WRAP_WITH_TRUSTED, AttrValue::Bool(false));
        }
        if class_bit & class::PRIV != 0 {
            default(ck::CKA_ALWAYS_AUTHENTICATE, AttrValue::Bool(false));
            default(ck::CKA_SUBJECT, AttrValue::Bytes(Vec::new()));
        }
        if class_bit & class::PUB != 0 {
            default(ck::CKA_SUBJECT, AttrValue::Bytes(Vec::new()));
        }
        if class_bit & (class::PUB | class::SECRET) != 0 {
            default(ck::CKA_TRUSTED, AttrValue::Bool(false));
        }
    }
    if class_bit == class::DATA {
        default(ck::CKA_APPLICATION, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_OBJECT_ID, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_VALUE, AttrValue::Bytes(Vec::new()));
    }
    if class_bit == class::CERT {
        default(ck::CKA_CERTIFICATE_CATEGORY, AttrValue::Ulong(0));
        default(ck::CKA_TRUSTED, AttrValue::Bool(false));
        default(ck::CKA_ID, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_ISSUER, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_SERIAL_NUMBER, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_START_DATE, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_END_DATE, AttrValue::Bytes(Vec::new()));
    }
}

/// How a key object came to be, for its HSM-set attributes.
#[derive(Clone, Copy)]
pub(super) struct Provenance {
    pub(super) local: bool,
    pub(super) gen_mech: u64,
    /// For derived or unwrapped keys: the base key's (always sensitive, never
    /// extractable), which the new key can only inherit downwards.
    pub(super) inherited: Option<(bool, bool)>,
}

/// Builds an object of `class`/`key_type` from a caller template, defaults and
/// material, enforcing the attribute table. The template has been mapped already.
pub(super) fn build(
    class: u64,
    key_type: Option<u64>,
    mut m: BTreeMap<AttrType, AttrValue>,
    material: Option<Material>,
    phase: Phase,
    so: bool,
    prov: Provenance,
) -> Result<Object> {
    let class_bit =
        attr::class_bit(class).ok_or(CoreError::AttributeValueInvalid(ck::CKA_CLASS))?;
    for (ty, v) in &m {
        attr::check_settable(class_bit, key_type, *ty, v, phase, None, so)?;
    }
    match m.get(&ck::CKA_CLASS) {
        Some(AttrValue::Ulong(c)) if *c != class => {
            return Err(CoreError::TemplateInconsistent("CKA_CLASS does not match"));
        }
        _ => {}
    }
    m.insert(ck::CKA_CLASS, AttrValue::Ulong(class));
    if let Some(kt) = key_type {
        match m.get(&ck::CKA_KEY_TYPE) {
            Some(AttrValue::Ulong(k)) if *k != kt => {
                return Err(CoreError::TemplateInconsistent(
                    "CKA_KEY_TYPE does not match the mechanism",
                ));
            }
            _ => {}
        }
        m.insert(ck::CKA_KEY_TYPE, AttrValue::Ulong(kt));
    }
    if matches!(
        m.get(&ck::CKA_ALWAYS_AUTHENTICATE),
        Some(AttrValue::Bool(true))
    ) {
        return Err(CoreError::AttributeValueInvalid(
            ck::CKA_ALWAYS_AUTHENTICATE,
        ));
    }
    // Key material and derived values are never stored as attributes (an
    // imported key's value is wiped as it is dropped from the template, as every
    // attribute value is).
    m.retain(|ty, _| attr::rule_for(*ty, class_bit, key_type).is_none_or(|r| !r.derived));
    if class_bit == class::SECRET
        && [ck::CKA_WRAP, ck::CKA_UNWRAP]
            .iter()
            .any(|ty| matches!(m.get(ty), Some(AttrValue::Bool(true))))
    {
        // A key-encryption key encrypts no data unless asked to (and then only
        // in the direction separation allows).
        m.entry(ck::CKA_ENCRYPT).or_insert(AttrValue::Bool(false));
        m.entry(ck::CKA_DECRYPT).or_insert(AttrValue::Bool(false));
    }
    apply_defaults(&mut m, class_bit, key_type);
    separated(class_bit, &m)?;
    if class_bit & class::KEY != 0 {
        m.insert(ck::CKA_LOCAL, AttrValue::Bool(prov.local));
        m.insert(
            ck::CKA_KEY_GEN_MECHANISM,
            AttrValue::Ulong(if prov.local {
                prov.gen_mech
            } else {
                UNAVAILABLE
            }),
        );
    }
    if class_bit & (class::SECRET | class::PRIV) != 0 {
        let sensitive = matches!(m.get(&ck::CKA_SENSITIVE), Some(AttrValue::Bool(true)));
        let extractable = matches!(m.get(&ck::CKA_EXTRACTABLE), Some(AttrValue::Bool(true)));
        let (base_always, base_never) = prov.inherited.unwrap_or((prov.local, prov.local));
        m.insert(
            ck::CKA_ALWAYS_SENSITIVE,
            AttrValue::Bool(sensitive && base_always),
        );
        m.insert(
            ck::CKA_NEVER_EXTRACTABLE,
            AttrValue::Bool(!extractable && base_never),
        );
    }
    Ok(Object {
        handle: 0,
        class_bit,
        attrs: m,
        material,
        session: None,
    })
}

/// Key separation for secret keys (the Clulow attacks on PKCS#11): a key that
/// wraps may not decrypt, or wrapping a sensitive key under it and decrypting
/// the result reads that key (with AES-CBC, one block at a time); a key that
/// unwraps may not encrypt, or encrypting chosen bytes and unwrapping them plants
/// a key whose value the caller knows.
pub(super) fn separated(class_bit: u8, m: &BTreeMap<AttrType, AttrValue>) -> Result<()> {
    if class_bit != class::SECRET {
        return Ok(());
    }
    let on = |ty| matches!(m.get(&ty), Some(AttrValue::Bool(true)));
    if on(ck::CKA_WRAP) && on(ck::CKA_DECRYPT) {
        return Err(CoreError::TemplateInconsistent(
            "a secret key may not both wrap keys and decrypt data: decrypting what it wrapped would reveal the wrapped key",
        ));
    }
    if on(ck::CKA_UNWRAP) && on(ck::CKA_ENCRYPT) {
        return Err(CoreError::TemplateInconsistent(
            "a secret key may not both unwrap keys and encrypt data: unwrapping what it encrypted would make a key of known value",
        ));
    }
    Ok(())
}

/// A key made from another's secret (derived, decapsulated) is at least as
/// protected as that key: sensitive if it is, unextractable if it is. A template
/// asking otherwise is refused; one silent on sensitivity gets the base's.
pub(super) fn inherit_protection(
    base: &Object,
    m: &mut BTreeMap<AttrType, AttrValue>,
) -> Result<()> {
    let base_sensitive = base.flag(ck::CKA_SENSITIVE);
    if base_sensitive && matches!(m.get(&ck::CKA_SENSITIVE), Some(AttrValue::Bool(false))) {
        return Err(CoreError::TemplateInconsistent(
            "a key made from a sensitive key's secret must be sensitive",
        ));
    }
    if !base.flag(ck::CKA_EXTRACTABLE)
        && matches!(m.get(&ck::CKA_EXTRACTABLE), Some(AttrValue::Bool(true)))
    {
        return Err(CoreError::TemplateInconsistent(
            "a key made from an unextractable key's secret must be unextractable",
        ));
    }
    if base_sensitive {
        m.insert(ck::CKA_SENSITIVE, AttrValue::Bool(true));
    }
    Ok(())
}

/// Template maps of a key pair's two halves, each checked.
pub(super) fn map_template(t: &[Attribute]) -> Result<BTreeMap<AttrType, AttrValue>> {
    attr::to_map(t)
}
