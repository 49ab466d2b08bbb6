//! Attributes and the one table of rules that governs them.
//!
//! PKCS#11's attribute rules — which attribute belongs to which class, who may set
//! it and when, which may only turn one way, which are never revealed — live in
//! `RULES`, a table of data, as kryoptic's object factory keeps them. Every check
//! in the core (create, copy, set, get, generate, unwrap, derive) reads this table.

use std::collections::BTreeMap;

use cryptoki_sys as ck;

use crate::error::{CoreError, Result};

pub use ihsm_proto::attr::{AttrResult, AttrType, AttrValue, Attribute, CKA_IHSM_RELEASE_POLICY};

/// Object classes as a bit mask.
pub(crate) mod class {
    pub(crate) const DATA: u8 = 1;
    pub(crate) const CERT: u8 = 2;
    pub(crate) const PUB: u8 = 4;
    pub(crate) const PRIV: u8 = 8;
    pub(crate) const SECRET: u8 = 16;
    pub(crate) const KEY: u8 = PUB | PRIV | SECRET;
    pub(crate) const ALL: u8 = DATA | CERT | KEY;
}

/// The class bit of a `CKO_*` value.
pub(crate) fn class_bit(class: u64) -> Option<u8> {
    match class {
        ck::CKO_DATA => Some(class::DATA),
        ck::CKO_CERTIFICATE => Some(class::CERT),
        ck::CKO_PUBLIC_KEY => Some(class::PUB),
        ck::CKO_PRIVATE_KEY => Some(class::PRIV),
        ck::CKO_SECRET_KEY => Some(class::SECRET),
        _ => None,
    }
}

/// The value's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Ulong,
    Bytes,
}

/// Who may give an attribute its value, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Set {
    /// Only the HSM sets it (local, always-sensitive, unique id, ...).
    Hsm,
    /// In the creating template only; never changed afterwards.
    Create,
    /// At creation and later, when the object is modifiable.
    Modify,
    /// At creation; later only from false to true (sensitive, wrap-with-trusted).
    ToTrue,
    /// At creation; later only from true to false (extractable, copyable, destroyable).
    ToFalse,
    /// Only by the Security Officer (trusted).
    SecurityOfficer,
    /// A release policy: at creation; later only replaced by one that implies it
    /// (tightened), or by the Security Officer; never added or removed.
    Tighten,
}

/// Whether a value may be revealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reveal {
    /// Always.
    Public,
    /// Never when the key is sensitive or unextractable (key material).
    KeyMaterial,
}

/// One rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) ty: AttrType,
    pub(crate) kind: Kind,
    pub(crate) classes: u8,
    pub(crate) set: Set,
    pub(crate) reveal: Reveal,
    /// Whether the HSM computes it from the key material (not stored).
    pub(crate) derived: bool,
    /// The key types it belongs to (empty: every type of its classes).
    pub(crate) key_types: &'static [u64],
}

const fn rule(ty: AttrType, kind: Kind, classes: u8, set: Set) -> Rule {
    Rule {
        ty,
        kind,
        classes,
        set,
        reveal: Reveal::Public,
        derived: false,
        key_types: &[],
    }
}
const fn material(ty: AttrType, classes: u8, key_types: &'static [u64]) -> Rule {
    Rule {
        ty,
        kind: Kind::Bytes,
        classes,
        set: Set::Create,
        reveal: Reveal::KeyMaterial,
        derived: true,
        key_types,
    }
}
const fn derived(ty: AttrType, kind: Kind, classes: u8, key_types: &'static [u64]) -> Rule {
    Rule {
        ty,
        kind,
        classes,
        set: Set::Create,
        reveal: Reveal::Public,
        derived: true,
        key_types,
    }
}

const RSA: &[u64] = &[ck::CKK_RSA];
const EC: &[u64] = &[ck::CKK_EC, ck::CKK_EC_EDWARDS];
const PQC: &[u64] = &[ck::CKK_ML_DSA, ck::CKK_ML_KEM];

use Kind::{Bool, Bytes, Ulong};
use class::{ALL, CERT, DATA, KEY, PRIV, PUB, SECRET};

/// The attribute rules. An attribute absent from this table, or present but not
/// for the object's class, is `CKR_ATTRIBUTE_TYPE_INVALID`.
pub(crate) static RULES: &[Rule] = &[
    // Common storage attributes.
    rule(ck::CKA_CLASS, Ulong, ALL, Set::Create),
    rule(ck::CKA_TOKEN, Bool, ALL, Set::Create),
    rule(ck::CKA_PRIVATE, Bool, ALL, Set::Create),
    rule(ck::CKA_MODIFIABLE, Bool, ALL, Set::Create),
    rule(ck::CKA_COPYABLE, Bool, ALL, Set::ToFalse),
    rule(ck::CKA_DESTROYABLE, Bool, ALL, Set::ToFalse),
    rule(ck::CKA_LABEL, Bytes, ALL, Set::Modify),
    rule(ck::CKA_UNIQUE_ID, Bytes, ALL, Set::Hsm),
    // Data objects.
    rule(ck::CKA_APPLICATION, Bytes, DATA, Set::Modify),
    rule(ck::CKA_OBJECT_ID, Bytes, DATA, Set::Modify),
    rule(ck::CKA_VALUE, Bytes, DATA, Set::Modify),
    // Certificates.
    rule(ck::CKA_CERTIFICATE_TYPE, Ulong, CERT, Set::Create),
    rule(ck::CKA_CERTIFICATE_CATEGORY, Ulong, CERT, Set::Modify),
    rule(ck::CKA_VALUE, Bytes, CERT, Set::Create),
    rule(ck::CKA_ISSUER, Bytes, CERT, Set::Modify),
    rule(ck::CKA_SERIAL_NUMBER, Bytes, CERT, Set::Modify),
    rule(ck::CKA_SUBJECT, Bytes, CERT | PUB | PRIV, Set::Modify),
    rule(
        ck::CKA_TRUSTED,
        Bool,
        CERT | PUB | SECRET,
        Set::SecurityOfficer,
    ),
    // Keys.
    rule(ck::CKA_KEY_TYPE, Ulong, KEY, Set::Create),
    rule(ck::CKA_ID, Bytes, KEY | CERT, Set::Modify),
    rule(ck::CKA_START_DATE, Bytes, KEY | CERT, Set::Modify),
    rule(ck::CKA_END_DATE, Bytes, KEY | CERT, Set::Modify),
    rule(ck::CKA_DERIVE, Bool, KEY, Set::Modify),
    rule(ck::CKA_LOCAL, Bool, KEY, Set::Hsm),
    rule(ck::CKA_KEY_GEN_MECHANISM, Ulong, KEY, Set::Hsm),
    rule(ck::CKA_ENCRYPT, Bool, PUB | SECRET, Set::Modify),
    rule(ck::CKA_DECRYPT, Bool, PRIV | SECRET, Set::Modify),
    rule(ck::CKA_WRAP, Bool, PUB | SECRET, Set::Modify),
    rule(ck::CKA_UNWRAP, Bool, PRIV | SECRET, Set::Modify),
    rule(ck::CKA_SIGN, Bool, PRIV | SECRET, Set::Modify),
    rule(ck::CKA_VERIFY, Bool, PUB | SECRET, Set::Modify),
    rule(ck::CKA_SIGN_RECOVER, Bool, PRIV, Set::Modify),
    rule(ck::CKA_VERIFY_RECOVER, Bool, PUB, Set::Modify),
    rule(ck::CKA_ENCAPSULATE, Bool, PUB, Set::Modify),
    rule(ck::CKA_DECAPSULATE, Bool, PRIV, Set::Modify),
    rule(ck::CKA_SENSITIVE, Bool, PRIV | SECRET, Set::ToTrue),
    rule(ck::CKA_EXTRACTABLE, Bool, PRIV | SECRET, Set::ToFalse),
    rule(ck::CKA_ALWAYS_SENSITIVE, Bool, PRIV | SECRET, Set::Hsm),
    rule(ck::CKA_NEVER_EXTRACTABLE, Bool, PRIV | SECRET, Set::Hsm),
    rule(ck::CKA_WRAP_WITH_TRUSTED, Bool, PRIV | SECRET, Set::ToTrue),
    rule(ck::CKA_ALWAYS_AUTHENTICATE, Bool, PRIV, Set::Create),
    rule(CKA_IHSM_RELEASE_POLICY, Bytes, PRIV | SECRET, Set::Tighten),
    // Key material and values computed from it.
    material(ck::CKA_VALUE, SECRET, &[]),
    material(
        ck::CKA_VALUE,
        PRIV,
        &[ck::CKK_EC, ck::CKK_EC_EDWARDS, ck::CKK_ML_KEM],
    ),
    derived(ck::CKA_VALUE, Bytes, PUB, PQC),
    derived(ck::CKA_VALUE_LEN, Ulong, SECRET, &[]),
    derived(ck::CKA_PUBLIC_KEY_INFO, Bytes, PUB | PRIV, &[]),
    derived(ck::CKA_MODULUS, Bytes, PUB | PRIV, RSA),
    derived(ck::CKA_MODULUS_BITS, Ulong, PUB, RSA),
    derived(ck::CKA_PUBLIC_EXPONENT, Bytes, PUB | PRIV, RSA),
    material(ck::CKA_PRIVATE_EXPONENT, PRIV, RSA),
    material(ck::CKA_PRIME_1, PRIV, RSA),
    material(ck::CKA_PRIME_2, PRIV, RSA),
    material(ck::CKA_EXPONENT_1, PRIV, RSA),
    material(ck::CKA_EXPONENT_2, PRIV, RSA),
    material(ck::CKA_COEFFICIENT, PRIV, RSA),
    derived(ck::CKA_EC_PARAMS, Bytes, PUB | PRIV, EC),
    derived(ck::CKA_EC_POINT, Bytes, PUB, EC),
    derived(ck::CKA_PARAMETER_SET, Ulong, PUB | PRIV, PQC),
    material(ck::CKA_SEED, PRIV, &[ck::CKK_ML_DSA]),
];

/// The rule for `ty` on objects of class bit `class` and key type `key_type`
/// (`None`: not a key, or not known yet).
pub(crate) fn rule_for(ty: AttrType, class: u8, key_type: Option<u64>) -> Option<&'static Rule> {
    RULES.iter().find(|r| {
        r.ty == ty
            && r.classes & class != 0
            && (r.key_types.is_empty() || key_type.is_none_or(|k| r.key_types.contains(&k)))
    })
}

/// Checks a value's type against the rule.
pub(crate) fn check_kind(rule: &Rule, value: &AttrValue) -> Result<()> {
    let ok = matches!(
        (rule.kind, value),
        (Kind::Bool, AttrValue::Bool(_))
            | (Kind::Ulong, AttrValue::Ulong(_))
            | (Kind::Bytes, AttrValue::Bytes(_))
    );
    if ok {
        Ok(())
    } else {
        Err(CoreError::AttributeValueInvalid(rule.ty))
    }
}

/// A template as a map, rejecting duplicates with different values.
pub(crate) fn to_map(template: &[Attribute]) -> Result<BTreeMap<AttrType, AttrValue>> {
    let mut m = BTreeMap::new();
    for a in template {
        if let Some(prev) = m.insert(a.ty, a.value.clone())
            && prev != a.value
        {
            return Err(CoreError::TemplateInconsistent(
                "an attribute appears twice with different values",
            ));
        }
    }
    Ok(m)
}

/// The boolean in `m` for `ty`, or `default`.
pub(crate) fn get_bool(
    m: &BTreeMap<AttrType, AttrValue>,
    ty: AttrType,
    default: bool,
) -> Result<bool> {
    match m.get(&ty) {
        None => Ok(default),
        Some(AttrValue::Bool(b)) => Ok(*b),
        Some(_) => Err(CoreError::AttributeValueInvalid(ty)),
    }
}

/// The integer in `m` for `ty`, if any.
pub(crate) fn get_ulong(m: &BTreeMap<AttrType, AttrValue>, ty: AttrType) -> Result<Option<u64>> {
    match m.get(&ty) {
        None => Ok(None),
        Some(AttrValue::Ulong(u)) => Ok(Some(*u)),
        Some(_) => Err(CoreError::AttributeValueInvalid(ty)),
    }
}

/// The bytes in `m` for `ty`, if any.
pub(crate) fn get_bytes(m: &BTreeMap<AttrType, AttrValue>, ty: AttrType) -> Result<Option<&[u8]>> {
    match m.get(&ty) {
        None => Ok(None),
        Some(AttrValue::Bytes(b)) => Ok(Some(b)),
        Some(_) => Err(CoreError::AttributeValueInvalid(ty)),
    }
}

/// Where a template is being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// C_CreateObject: the caller supplies values, key material included.
    Create,
    /// Generate, unwrap, derive, decapsulate: the HSM makes the material.
    Generate,
    /// C_SetAttributeValue.
    Modify,
    /// C_CopyObject.
    Copy,
}

/// Checks one attribute of a caller template against the table.
///
/// `current` is the object's current value (Modify and Copy), `so` whether the
/// Security Officer is logged in.
pub(crate) fn check_settable(
    class: u8,
    key_type: Option<u64>,
    ty: AttrType,
    value: &AttrValue,
    phase: Phase,
    current: Option<&AttrValue>,
    so: bool,
) -> Result<()> {
    let rule = rule_for(ty, class, key_type).ok_or(CoreError::AttributeTypeInvalid(ty))?;
    check_kind(rule, value)?;
    let unchanged = current == Some(value);
    match (rule.set, phase) {
        (Set::Hsm, _) => {
            if unchanged {
                Ok(())
            } else {
                Err(CoreError::AttributeReadOnly(ty))
            }
        }
        (Set::SecurityOfficer, _) => {
            if so || value == &AttrValue::Bool(false) || unchanged {
                Ok(())
            } else {
                Err(CoreError::AttributeReadOnly(ty))
            }
        }
        (Set::Tighten, _) => check_release_policy(ty, value, phase, current, so),
        // Key material and derived values come with C_CreateObject only.
        (_, Phase::Generate) if rule.derived => Err(CoreError::AttributeReadOnly(ty)),
        (_, Phase::Create | Phase::Generate) => Ok(()),
        (Set::Create, Phase::Modify) => {
            if unchanged {
                Ok(())
            } else {
                Err(CoreError::AttributeReadOnly(ty))
            }
        }
        // Copy may choose token, private and modifiable for the new object.
        (Set::Create, Phase::Copy) => {
            if unchanged || matches!(ty, ck::CKA_TOKEN | ck::CKA_PRIVATE | ck::CKA_MODIFIABLE) {
                Ok(())
            } else {
                Err(CoreError::AttributeReadOnly(ty))
            }
        }
        (Set::Modify, Phase::Modify | Phase::Copy) => Ok(()),
        (Set::ToTrue, Phase::Modify | Phase::Copy) => {
            if value == &AttrValue::Bool(true) || unchanged {
                Ok(())
            } else {
                Err(CoreError::AttributeReadOnly(ty))
            }
        }
        (Set::ToFalse, Phase::Modify | Phase::Copy) => {
            if value == &AttrValue::Bool(false) || unchanged {
                Ok(())
            } else {
                Err(CoreError::AttributeReadOnly(ty))
            }
        }
    }
}

/// A release policy parses (at creation), and a new one tightens the current one
/// unless the Security Officer replaces it; one is never added after creation
/// (a key without a policy cannot be released at all) nor removed.
fn check_release_policy(
    ty: AttrType,
    value: &AttrValue,
    phase: Phase,
    current: Option<&AttrValue>,
    so: bool,
) -> Result<()> {
    use ihsm_verify::release::ReleasePolicy;
    let parse = |v: &AttrValue| match v {
        AttrValue::Bytes(b) => ReleasePolicy::parse(b).map_err(|e| {
            CoreError::AttributeValueInvalidWhy(ty, format!("the release policy: {e}"))
        }),
        _ => Err(CoreError::AttributeValueInvalid(ty)),
    };
    let new = parse(value)?;
    match (phase, current) {
        (Phase::Create | Phase::Generate, _) => Ok(()),
        (_, _) if current == Some(value) => Ok(()),
        (Phase::Modify | Phase::Copy, None) => Err(CoreError::AttributeReadOnly(ty)),
        (Phase::Modify | Phase::Copy, Some(old)) => {
            if so || new.implies(&parse(old)?) {
                Ok(())
            } else {
                Err(CoreError::AttributeValueInvalidWhy(
                    ty,
                    "a release policy is only tightened (the new one must imply the old); the Security Officer may replace it".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_encoding_table_agrees_with_the_rules() {
        for r in RULES {
            let wire = match ihsm_proto::attr::kind(r.ty) {
                ihsm_proto::attr::Kind::Bool => Kind::Bool,
                ihsm_proto::attr::Kind::Ulong => Kind::Ulong,
                ihsm_proto::attr::Kind::Bytes => Kind::Bytes,
            };
            assert_eq!(wire, r.kind, "attribute 0x{:x}", r.ty);
        }
    }

    #[test]
    fn every_rule_is_unique_per_class() {
        for (i, a) in RULES.iter().enumerate() {
            for b in &RULES[i + 1..] {
                let types_overlap = a.key_types.is_empty()
                    || b.key_types.is_empty()
                    || a.key_types.iter().any(|k| b.key_types.contains(k));
                assert!(
                    !(a.ty == b.ty && a.classes & b.classes != 0 && types_overlap),
                    "0x{:x} has two rules for one class and key type",
                    a.ty
                );
            }
        }
    }

    #[test]
    fn one_way_attributes_only_go_their_way() {
        let t = AttrValue::Bool(true);
        let f = AttrValue::Bool(false);
        // sensitive: false -> true only
        check_settable(
            class::SECRET,
            None,
            ck::CKA_SENSITIVE,
            &t,
            Phase::Modify,
            Some(&f),
            false,
        )
        .unwrap();
        assert!(
            check_settable(
                class::SECRET,
                None,
                ck::CKA_SENSITIVE,
                &f,
                Phase::Modify,
                Some(&t),
                false
            )
            .is_err()
        );
        // extractable: true -> false only
        check_settable(
            class::PRIV,
            None,
            ck::CKA_EXTRACTABLE,
            &f,
            Phase::Modify,
            Some(&t),
            false,
        )
        .unwrap();
        assert!(
            check_settable(
                class::PRIV,
                None,
                ck::CKA_EXTRACTABLE,
                &t,
                Phase::Modify,
                Some(&f),
                false
            )
            .is_err()
        );
        // wrap-with-trusted: false -> true only
        assert!(
            check_settable(
                class::SECRET,
                None,
                ck::CKA_WRAP_WITH_TRUSTED,
                &f,
                Phase::Modify,
                Some(&t),
                false
            )
            .is_err()
        );
        // HSM-set attributes never from a caller, in any phase
        for phase in [Phase::Create, Phase::Generate, Phase::Modify, Phase::Copy] {
            assert!(
                check_settable(class::PRIV, None, ck::CKA_LOCAL, &t, phase, Some(&f), false)
                    .is_err()
            );
            assert!(
                check_settable(
                    class::SECRET,
                    None,
                    ck::CKA_ALWAYS_SENSITIVE,
                    &t,
                    phase,
                    Some(&f),
                    true
                )
                .is_err()
            );
            assert!(
                check_settable(
                    class::SECRET,
                    None,
                    ck::CKA_NEVER_EXTRACTABLE,
                    &t,
                    phase,
                    Some(&f),
                    true
                )
                .is_err()
            );
        }
        // trusted: only the SO sets it true
        assert!(
            check_settable(
                class::SECRET,
                None,
                ck::CKA_TRUSTED,
                &t,
                Phase::Create,
                None,
                false
            )
            .is_err()
        );
        check_settable(
            class::SECRET,
            None,
            ck::CKA_TRUSTED,
            &t,
            Phase::Create,
            None,
            true,
        )
        .unwrap();
        // key material is never handed in to a generation
        assert!(
            check_settable(
                class::SECRET,
                None,
                ck::CKA_VALUE,
                &AttrValue::Bytes(vec![1; 32]),
                Phase::Generate,
                None,
                false
            )
            .is_err()
        );
        // class and key type never change
        assert!(
            check_settable(
                class::SECRET,
                None,
                ck::CKA_KEY_TYPE,
                &AttrValue::Ulong(1),
                Phase::Modify,
                Some(&AttrValue::Ulong(31)),
                false
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_or_misplaced_attributes_are_invalid() {
        let t = AttrValue::Bool(true);
        assert!(matches!(
            check_settable(
                class::DATA,
                None,
                ck::CKA_SIGN,
                &t,
                Phase::Create,
                None,
                false
            ),
            Err(CoreError::AttributeTypeInvalid(_))
        ));
        assert!(matches!(
            check_settable(
                class::SECRET,
                None,
                0xdead_beef,
                &t,
                Phase::Create,
                None,
                false
            ),
            Err(CoreError::AttributeTypeInvalid(_))
        ));
        assert!(matches!(
            check_settable(
                class::SECRET,
                None,
                ck::CKA_SIGN,
                &AttrValue::Ulong(1),
                Phase::Create,
                None,
                false
            ),
            Err(CoreError::AttributeValueInvalid(_))
        ));
    }

    #[test]
    fn debug_of_bytes_hides_content() {
        assert_eq!(
            format!("{:?}", AttrValue::Bytes(vec![0xde, 0xad])),
            "Bytes(<2 bytes>)"
        );
    }
}
