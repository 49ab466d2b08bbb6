//! Attributes as they cross the wire: typed booleans and integers, bytes for the
//! rest. Byte values may be key material, so `Debug` shows only their length and
//! they zeroize.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// An attribute type (`CKA_*`).
pub type AttrType = u64;

/// An attribute value. Booleans and integers are typed; everything else is bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub enum AttrValue {
    /// `CK_BBOOL`.
    Bool(bool),
    /// `CK_ULONG`.
    Ulong(u64),
    /// A byte array.
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
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
