//! Attributes as they cross the wire: typed booleans and integers, bytes for the
//! rest. Byte values may be key material (a `CKA_VALUE` being imported), so
//! `Debug` shows only their length and every copy is wiped when it is dropped.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// An attribute type (`CKA_*`).
pub type AttrType = u64;

/// Vendor-defined attribute: a key's release policy (docs/attestation.md §5), the
/// JSON of Azure Key Vault's secure key release grammar 1.0.0. Set at creation;
/// afterwards only tightened by the user, or replaced by the Security Officer. A
/// key with one leaves its partition only through `CKM_IHSM_KEY_RELEASE`.
pub const CKA_IHSM_RELEASE_POLICY: AttrType = cryptoki_sys::CKA_VENDOR_DEFINED | 0x4948_0001;

/// An attribute value. Booleans and integers are typed; everything else is bytes,
/// wiped (the whole buffer) when the value is dropped: a clone is a copy that is
/// wiped too.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub enum AttrValue {
    /// `CK_BBOOL`.
    Bool(bool),
    /// `CK_ULONG`.
    Ulong(u64),
    /// A byte array.
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl Drop for AttrValue {
    fn drop(&mut self) {
        if let Self::Bytes(b) = self {
            crate::wipe_vec(b);
        }
    }
}

impl core::fmt::Debug for AttrValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "Bool({b})"),
            Self::Ulong(u) => write!(f, "Ulong({u})"),
            // Values may be key material; print only their length.
            Self::Bytes(b) => write!(f, "Bytes(<{} bytes>)", b.len()),
        }
    }
}

/// One attribute of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    /// The type.
    pub ty: AttrType,
    /// The value.
    pub value: AttrValue,
}

impl Attribute {
    /// A boolean attribute.
    #[must_use]
    pub fn bool(ty: AttrType, v: bool) -> Self {
        Self {
            ty,
            value: AttrValue::Bool(v),
        }
    }
    /// An integer attribute.
    #[must_use]
    pub fn ulong(ty: AttrType, v: u64) -> Self {
        Self {
            ty,
            value: AttrValue::Ulong(v),
        }
    }
    /// A byte-array attribute.
    #[must_use]
    pub fn bytes(ty: AttrType, v: impl Into<Vec<u8>>) -> Self {
        Self {
            ty,
            value: AttrValue::Bytes(v.into()),
        }
    }
}

/// What a get-attribute returns for one requested type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttrResult {
    /// The value.
    Value(AttrValue),
    /// Sensitive or unextractable: `CKR_ATTRIBUTE_SENSITIVE`.
    Sensitive,
    /// Not an attribute of this object: `CKR_ATTRIBUTE_TYPE_INVALID`.
    Invalid,
}

/// How an attribute's value is encoded in a `CK_ATTRIBUTE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `CK_BBOOL`: one byte.
    Bool,
    /// `CK_ULONG`.
    Ulong,
    /// A byte array (also dates and big integers).
    Bytes,
}

/// The encoding of every attribute the HSM knows: booleans and integers by name,
/// everything else bytes. The core's rule table agrees (a test there checks it),
/// and the PKCS#11 module decodes templates with it.
#[must_use]
pub const fn kind(ty: AttrType) -> Kind {
    use cryptoki_sys as ck;
    match ty {
        ck::CKA_TOKEN
        | ck::CKA_PRIVATE
        | ck::CKA_MODIFIABLE
        | ck::CKA_COPYABLE
        | ck::CKA_DESTROYABLE
        | ck::CKA_TRUSTED
        | ck::CKA_DERIVE
        | ck::CKA_LOCAL
        | ck::CKA_ENCRYPT
        | ck::CKA_DECRYPT
        | ck::CKA_WRAP
        | ck::CKA_UNWRAP
        | ck::CKA_SIGN
        | ck::CKA_VERIFY
        | ck::CKA_SIGN_RECOVER
        | ck::CKA_VERIFY_RECOVER
        | ck::CKA_ENCAPSULATE
        | ck::CKA_DECAPSULATE
        | ck::CKA_SENSITIVE
        | ck::CKA_EXTRACTABLE
        | ck::CKA_ALWAYS_SENSITIVE
        | ck::CKA_NEVER_EXTRACTABLE
        | ck::CKA_WRAP_WITH_TRUSTED
        | ck::CKA_ALWAYS_AUTHENTICATE => Kind::Bool,
        ck::CKA_CLASS
        | ck::CKA_KEY_TYPE
        | ck::CKA_CERTIFICATE_TYPE
        | ck::CKA_CERTIFICATE_CATEGORY
        | ck::CKA_KEY_GEN_MECHANISM
        | ck::CKA_VALUE_LEN
        | ck::CKA_MODULUS_BITS
        | ck::CKA_PARAMETER_SET => Kind::Ulong,
        _ => Kind::Bytes,
    }
}
