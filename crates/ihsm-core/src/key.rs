//! Key material inside the core: one enum over every key kind, its storage
//! encoding (inside the sealed object record), the attributes computed from it, and
//! construction from a C_CreateObject template.

use std::collections::BTreeMap;

use cryptoki_sys as ck;
use der::asn1::{ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Encode};
use ihsm_crypto::aes::AesKey;
use ihsm_crypto::ec::{Curve, EcPrivateKey, EcPublicKey};
use ihsm_crypto::ed25519::Ed25519PrivateKey;
use ihsm_crypto::mldsa::{MlDsaLevel, MlDsaPrivateKey};
use ihsm_crypto::mlkem::{MlKemLevel, MlKemPrivateKey};
use ihsm_crypto::rsa::{RsaPrivateKey, RsaPublicKey};
use ihsm_crypto::{ExposeSecret, Secret, SecretVec};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::attr::{AttrType, AttrValue};
use crate::error::{CoreError, Result};

/// DER of the named-curve OIDs, as CKA_EC_PARAMS carries them.
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
/// id-Ed25519 (RFC 8410), and the PrintableString form PKCS#11 3.0 also allows.
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const NAME_ED25519: &[u8] = b"\x13\x0cedwards25519";

/// Key material of an object.
pub(crate) enum Material {
    /// An AES key, ready to use.
    Aes(AesKey),
    /// A generic secret (HMAC, HKDF base, derived secrets).
    Generic(SecretVec),
    /// EC private key.
    EcPrivate(EcPrivateKey),
    /// EC public key.
    EcPublic(EcPublicKey),
    /// Ed25519 private key.
    EdPrivate(Ed25519PrivateKey),
    /// Ed25519 public key.
    EdPublic([u8; 32]),
    /// RSA private key.
    RsaPrivate(RsaPrivateKey),
    /// RSA public key.
    RsaPublic(RsaPublicKey),
    /// ML-DSA private key.
    MlDsaPrivate(MlDsaPrivateKey),
    /// ML-DSA public key.
    MlDsaPublic(MlDsaLevel, Vec<u8>),
    /// ML-KEM private key.
    MlKemPrivate(MlKemPrivateKey),
    /// ML-KEM public key.
    MlKemPublic(MlKemLevel, Vec<u8>),
}

impl core::fmt::Debug for Material {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Aes(_) => "Aes([REDACTED])",
            Self::Generic(_) => "Generic([REDACTED])",
            Self::EcPrivate(_) => "EcPrivate([REDACTED])",
            Self::EcPublic(_) => "EcPublic",
            Self::EdPrivate(_) => "EdPrivate([REDACTED])",
            Self::EdPublic(_) => "EdPublic",
            Self::RsaPrivate(_) => "RsaPrivate([REDACTED])",
            Self::RsaPublic(_) => "RsaPublic",
            Self::MlDsaPrivate(_) => "MlDsaPrivate([REDACTED])",
            Self::MlDsaPublic(..) => "MlDsaPublic",
            Self::MlKemPrivate(_) => "MlKemPrivate([REDACTED])",
            Self::MlKemPublic(..) => "MlKemPublic",
        })
    }
}

/// The storage encoding of [`Material`] (inside the sealed record only).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) enum MaterialRecord {
    Aes(Vec<u8>),
    Generic(Vec<u8>),
    EcPrivate(u8, Vec<u8>),
    EcPublic(u8, Vec<u8>),
    EdPrivate(Vec<u8>),
    EdPublic(Vec<u8>),
    RsaPrivate(Vec<u8>),
    RsaPublic(Vec<u8>),
    MlDsaPrivate(u8, Vec<u8>),
    MlDsaPublic(u8, Vec<u8>),
    MlKemPrivate(u8, Vec<u8>),
    MlKemPublic(u8, Vec<u8>),
}

fn curve_code(c: Curve) -> u8 {
    match c {
        Curve::P256 => 1,
        Curve::P384 => 2,
        Curve::P521 => 3,
    }
}
fn curve_of(code: u8) -> Result<Curve> {
    match code {
        1 => Ok(Curve::P256),
        2 => Ok(Curve::P384),
        3 => Ok(Curve::P521),
        _ => Err(CoreError::Internal("unknown curve in a stored record")),
    }
}
fn mldsa_code(l: MlDsaLevel) -> u8 {
    match l {
        MlDsaLevel::L44 => 1,
        MlDsaLevel::L65 => 2,
        MlDsaLevel::L87 => 3,
    }
}
fn mldsa_of(code: u64) -> Result<MlDsaLevel> {
    match code {
        1 => Ok(MlDsaLevel::L44),
        2 => Ok(MlDsaLevel::L65),
        3 => Ok(MlDsaLevel::L87),
        _ => Err(CoreError::AttributeValueInvalid(ck::CKA_PARAMETER_SET)),
    }
}
fn mlkem_code(l: MlKemLevel) -> u8 {
    match l {
        MlKemLevel::L512 => 1,
        MlKemLevel::L768 => 2,
        MlKemLevel::L1024 => 3,
    }
}
fn mlkem_of(code: u64) -> Result<MlKemLevel> {
    match code {
        1 => Ok(MlKemLevel::L512),
        2 => Ok(MlKemLevel::L768),
        3 => Ok(MlKemLevel::L1024),
        _ => Err(CoreError::AttributeValueInvalid(ck::CKA_PARAMETER_SET)),
    }
}

/// The curve named by a CKA_EC_PARAMS value.
pub(crate) fn curve_from_params(params: &[u8]) -> Result<Curve> {
    match params {
        OID_P256 => Ok(Curve::P256),
        OID_P384 => Ok(Curve::P384),
        OID_P521 => Ok(Curve::P521),
        _ => Err(CoreError::AttributeValueInvalid(ck::CKA_EC_PARAMS)),
    }
}

/// Whether a CKA_EC_PARAMS value names Ed25519.
pub(crate) fn is_ed25519_params(params: &[u8]) -> bool {
    params == OID_ED25519 || params == NAME_ED25519
}

fn curve_params(c: Curve) -> &'static [u8] {
    match c {
        Curve::P256 => OID_P256,
        Curve::P384 => OID_P384,
        Curve::P521 => OID_P521,
    }
}

/// A point in CKA_EC_POINT form (DER OCTET STRING); accepts the raw point too, as
/// many clients send one or the other.
pub(crate) fn ec_point_raw(value: &[u8]) -> Vec<u8> {
    match OctetStringRef::from_der(value) {
        Ok(os) => os.as_bytes().to_vec(),
        Err(_) => value.to_vec(),
    }
}

fn octet_string(bytes: &[u8]) -> Result<Vec<u8>> {
    OctetStringRef::new(bytes)
        .and_then(|o| o.to_der())
        .map_err(|_| CoreError::Internal("DER encoding"))
}

fn spki(oid: &str, params: Option<&[u8]>, key: &[u8]) -> Result<Vec<u8>> {
    let oid = ObjectIdentifier::new(oid).map_err(|_| CoreError::Internal("OID"))?;
    let params = params
        .map(der::asn1::AnyRef::from_der)
        .transpose()
        .map_err(|_| CoreError::Internal("DER encoding"))?;
    spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid,
            parameters: params,
        },
        subject_public_key: der::asn1::BitStringRef::from_bytes(key)
            .map_err(|_| CoreError::Internal("DER encoding"))?,
    }
    .to_der()
    .map_err(|_| CoreError::Internal("DER encoding"))
}

impl Material {
    /// The `CKK_*` of this material (`CKK_AES`/`CKK_GENERIC_SECRET` for secrets).
    pub(crate) fn key_type(&self) -> u64 {
        match self {
            Self::Aes(_) => ck::CKK_AES,
            Self::Generic(_) => ck::CKK_GENERIC_SECRET,
            Self::EcPrivate(_) | Self::EcPublic(_) => ck::CKK_EC,
            Self::EdPrivate(_) | Self::EdPublic(_) => ck::CKK_EC_EDWARDS,
            Self::RsaPrivate(_) | Self::RsaPublic(_) => ck::CKK_RSA,
            Self::MlDsaPrivate(_) | Self::MlDsaPublic(..) => ck::CKK_ML_DSA,
            Self::MlKemPrivate(_) | Self::MlKemPublic(..) => ck::CKK_ML_KEM,
        }
    }

    /// Encodes for storage.
    pub(crate) fn to_record(&self) -> Result<MaterialRecord> {
        Ok(match self {
            Self::Aes(k) => MaterialRecord::Aes(k.expose().expose_secret().to_vec()),
            Self::Generic(s) => MaterialRecord::Generic(s.expose_secret().to_vec()),
            Self::EcPrivate(k) => {
                MaterialRecord::EcPrivate(curve_code(k.curve()), k.to_pkcs8()?.to_vec())
            }
            Self::EcPublic(k) => {
                MaterialRecord::EcPublic(curve_code(k.curve()), k.as_bytes().to_vec())
            }
            Self::EdPrivate(k) => MaterialRecord::EdPrivate(k.to_pkcs8()?.to_vec()),
            Self::EdPublic(k) => MaterialRecord::EdPublic(k.to_vec()),
            Self::RsaPrivate(k) => MaterialRecord::RsaPrivate(k.to_pkcs8()?.to_vec()),
            Self::RsaPublic(k) => MaterialRecord::RsaPublic(k.to_spki_der()?),
            Self::MlDsaPrivate(k) => {
                MaterialRecord::MlDsaPrivate(mldsa_code(k.level()), k.to_pkcs8()?.to_vec())
            }
            Self::MlDsaPublic(l, k) => MaterialRecord::MlDsaPublic(mldsa_code(*l), k.clone()),
            Self::MlKemPrivate(k) => {
                MaterialRecord::MlKemPrivate(mlkem_code(k.level()), k.to_bytes()?.to_vec())
            }
            Self::MlKemPublic(l, k) => MaterialRecord::MlKemPublic(mlkem_code(*l), k.clone()),
        })
    }

    /// Decodes from storage.
    pub(crate) fn from_record(r: &MaterialRecord) -> Result<Self> {
        let bad = |_| CoreError::Internal("stored key material does not parse");
        Ok(match r {
            MaterialRecord::Aes(b) => Self::Aes(AesKey::from_bytes(b).map_err(bad)?),
            MaterialRecord::Generic(b) => Self::Generic(SecretVec::from_slice(b)?),
            MaterialRecord::EcPrivate(c, d) => {
                Self::EcPrivate(EcPrivateKey::from_pkcs8(curve_of(*c)?, d).map_err(bad)?)
            }
            MaterialRecord::EcPublic(c, p) => {
                Self::EcPublic(EcPublicKey::from_sec1(curve_of(*c)?, p).map_err(bad)?)
            }
            MaterialRecord::EdPrivate(d) => {
                Self::EdPrivate(Ed25519PrivateKey::from_pkcs8(d).map_err(bad)?)
            }
            MaterialRecord::EdPublic(p) => Self::EdPublic(
                p.as_slice()
                    .try_into()
                    .map_err(|_| CoreError::Internal("Ed25519 key length"))?,
            ),
            MaterialRecord::RsaPrivate(d) => {
                Self::RsaPrivate(RsaPrivateKey::from_pkcs8(d).map_err(bad)?)
            }
            MaterialRecord::RsaPublic(d) => {
                Self::RsaPublic(RsaPublicKey::from_spki_der(d).map_err(bad)?)
            }
            MaterialRecord::MlDsaPrivate(l, d) => Self::MlDsaPrivate(
                MlDsaPrivateKey::from_pkcs8(mldsa_of(u64::from(*l))?, d).map_err(bad)?,
            ),
            MaterialRecord::MlDsaPublic(l, k) => {
                Self::MlDsaPublic(mldsa_of(u64::from(*l))?, k.clone())
            }
            MaterialRecord::MlKemPrivate(l, d) => Self::MlKemPrivate(
                MlKemPrivateKey::from_bytes(mlkem_of(u64::from(*l))?, d).map_err(bad)?,
            ),
            MaterialRecord::MlKemPublic(l, k) => {
                Self::MlKemPublic(mlkem_of(u64::from(*l))?, k.clone())
            }
        })
    }

    /// The public half of a private key, as material of a public key object.
    pub(crate) fn public_half(&self) -> Result<Material> {
        Ok(match self {
            Self::EcPrivate(k) => Self::EcPublic(k.public_key().clone()),
            Self::EdPrivate(k) => Self::EdPublic(k.public_key()),
            Self::RsaPrivate(k) => Self::RsaPublic(k.public_key().clone()),
            Self::MlDsaPrivate(k) => Self::MlDsaPublic(k.level(), k.public_key().to_vec()),
            Self::MlKemPrivate(k) => Self::MlKemPublic(k.level(), k.public_key()),
            _ => return Err(CoreError::Internal("public half of a non-private key")),
        })
    }

    /// An attribute computed from the material, if this material has it.
    pub(crate) fn attribute(&self, ty: AttrType) -> Result<Option<AttrValue>> {
        let b = |v: Vec<u8>| Ok(Some(AttrValue::Bytes(v)));
        match (ty, self) {
            (ck::CKA_VALUE, Self::Aes(k)) => b(k.expose().expose_secret().to_vec()),
            (ck::CKA_VALUE, Self::Generic(s)) => b(s.expose_secret().to_vec()),
            (ck::CKA_VALUE, Self::MlDsaPublic(_, k) | Self::MlKemPublic(_, k)) => b(k.clone()),
            (ck::CKA_VALUE_LEN, Self::Aes(k)) => Ok(Some(AttrValue::Ulong((k.bits() / 8) as u64))),
            (ck::CKA_VALUE_LEN, Self::Generic(s)) => Ok(Some(AttrValue::Ulong(s.len() as u64))),
            (ck::CKA_EC_PARAMS, Self::EcPrivate(k)) => b(curve_params(k.curve()).to_vec()),
            (ck::CKA_EC_PARAMS, Self::EcPublic(k)) => b(curve_params(k.curve()).to_vec()),
            (ck::CKA_EC_PARAMS, Self::EdPrivate(_) | Self::EdPublic(_)) => b(OID_ED25519.to_vec()),
            (ck::CKA_EC_POINT, Self::EcPublic(k)) => b(octet_string(k.as_bytes())?),
            (ck::CKA_EC_POINT, Self::EdPublic(k)) => b(octet_string(k)?),
            (ck::CKA_MODULUS, Self::RsaPrivate(k)) => b(k.public_key().modulus().to_vec()),
            (ck::CKA_MODULUS, Self::RsaPublic(k)) => b(k.modulus().to_vec()),
            (ck::CKA_PUBLIC_EXPONENT, Self::RsaPrivate(k)) => b(k.public_key().exponent().to_vec()),
            (ck::CKA_PUBLIC_EXPONENT, Self::RsaPublic(k)) => b(k.exponent().to_vec()),
            (ck::CKA_MODULUS_BITS, Self::RsaPublic(k)) => {
                Ok(Some(AttrValue::Ulong(k.modulus().len() as u64 * 8)))
            }
            (ck::CKA_PARAMETER_SET, Self::MlDsaPrivate(k)) => {
                Ok(Some(AttrValue::Ulong(u64::from(mldsa_code(k.level())))))
            }
            (ck::CKA_PARAMETER_SET, Self::MlDsaPublic(l, _)) => {
                Ok(Some(AttrValue::Ulong(u64::from(mldsa_code(*l)))))
            }
            (ck::CKA_PARAMETER_SET, Self::MlKemPrivate(k)) => {
                Ok(Some(AttrValue::Ulong(u64::from(mlkem_code(k.level())))))
            }
            (ck::CKA_PARAMETER_SET, Self::MlKemPublic(l, _)) => {
                Ok(Some(AttrValue::Ulong(u64::from(mlkem_code(*l)))))
            }
            (ck::CKA_PUBLIC_KEY_INFO, m) => match m.public_half_or_self_spki()? {
                Some(der) => b(der),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    fn public_half_or_self_spki(&self) -> Result<Option<Vec<u8>>> {
        let public;
        let m = match self {
            Self::EcPrivate(_)
            | Self::EdPrivate(_)
            | Self::RsaPrivate(_)
            | Self::MlDsaPrivate(_)
            | Self::MlKemPrivate(_) => {
                public = self.public_half()?;
                &public
            }
            other => other,
        };
        Ok(match m {
            Self::EcPublic(k) => Some(k.to_spki_der()?),
            Self::RsaPublic(k) => Some(k.to_spki_der()?),
            Self::EdPublic(k) => Some(spki("1.3.101.112", None, k)?),
            Self::MlDsaPublic(l, k) => Some(spki(
                match l {
                    MlDsaLevel::L44 => "2.16.840.1.101.3.4.3.17",
                    MlDsaLevel::L65 => "2.16.840.1.101.3.4.3.18",
                    MlDsaLevel::L87 => "2.16.840.1.101.3.4.3.19",
                },
                None,
                k,
            )?),
            Self::MlKemPublic(l, k) => Some(spki(
                match l {
                    MlKemLevel::L512 => "2.16.840.1.101.3.4.4.1",
                    MlKemLevel::L768 => "2.16.840.1.101.3.4.4.2",
                    MlKemLevel::L1024 => "2.16.840.1.101.3.4.4.3",
                },
                None,
                k,
            )?),
            _ => None,
        })
    }

    /// The bytes a wrap mechanism encrypts: the value of a secret key, PKCS#8 of a
    /// private key. Public keys are not wrapped.
    pub(crate) fn wrap_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        Ok(match self {
            Self::Aes(k) => Zeroizing::new(k.expose().expose_secret().to_vec()),
            Self::Generic(s) => Zeroizing::new(s.expose_secret().to_vec()),
            Self::EcPrivate(k) => k.to_pkcs8()?,
            Self::EdPrivate(k) => k.to_pkcs8()?,
            Self::RsaPrivate(k) => k.to_pkcs8()?,
            Self::MlDsaPrivate(k) => k.to_pkcs8()?,
            Self::MlKemPrivate(k) => k.to_bytes()?,
            _ => return Err(CoreError::KeyUnextractable("public keys are not wrapped")),
        })
    }

    /// Rebuilds material of `key_type` (and class) from unwrapped bytes.
    pub(crate) fn from_unwrapped(
        class: u64,
        key_type: u64,
        bytes: &[u8],
        params: Option<u64>,
    ) -> Result<Self> {
        let bad = |_| CoreError::WrappedKeyInvalid;
        match (class, key_type) {
            (ck::CKO_SECRET_KEY, ck::CKK_AES) => {
                Ok(Self::Aes(AesKey::from_bytes(bytes).map_err(bad)?))
            }
            (ck::CKO_SECRET_KEY, ck::CKK_GENERIC_SECRET | ck::CKK_HKDF) => {
                if bytes.is_empty() {
                    return Err(CoreError::WrappedKeyInvalid);
                }
                Ok(Self::Generic(SecretVec::from_slice(bytes)?))
            }
            (ck::CKO_PRIVATE_KEY, ck::CKK_EC) => {
                for c in [Curve::P256, Curve::P384, Curve::P521] {
                    if let Ok(k) = EcPrivateKey::from_pkcs8(c, bytes) {
                        return Ok(Self::EcPrivate(k));
                    }
                }
                Err(CoreError::WrappedKeyInvalid)
            }
            (ck::CKO_PRIVATE_KEY, ck::CKK_EC_EDWARDS) => Ok(Self::EdPrivate(
                Ed25519PrivateKey::from_pkcs8(bytes).map_err(bad)?,
            )),
            (ck::CKO_PRIVATE_KEY, ck::CKK_RSA) => Ok(Self::RsaPrivate(
                RsaPrivateKey::from_pkcs8(bytes).map_err(bad)?,
            )),
            (ck::CKO_PRIVATE_KEY, ck::CKK_ML_DSA) => {
                for l in [MlDsaLevel::L44, MlDsaLevel::L65, MlDsaLevel::L87] {
                    if let Ok(k) = MlDsaPrivateKey::from_pkcs8(l, bytes) {
                        return Ok(Self::MlDsaPrivate(k));
                    }
                }
                Err(CoreError::WrappedKeyInvalid)
            }
            (ck::CKO_PRIVATE_KEY, ck::CKK_ML_KEM) => {
                let level =
                    mlkem_of(params.ok_or(CoreError::TemplateIncomplete(ck::CKA_PARAMETER_SET))?)?;
                Ok(Self::MlKemPrivate(
                    MlKemPrivateKey::from_bytes(level, bytes).map_err(bad)?,
                ))
            }
            _ => Err(CoreError::TemplateInconsistent(
                "cannot unwrap into this class and key type",
            )),
        }
    }
}

/// Builds material from a C_CreateObject template (key import). The key's
/// values are read where they are, in the template's map (whose values are wiped
/// when it is dropped), and not copied out of it.
pub(crate) fn import(
    class: u64,
    key_type: u64,
    m: &BTreeMap<AttrType, AttrValue>,
) -> Result<Material> {
    let need = |ty| crate::attr::get_bytes(m, ty)?.ok_or(CoreError::TemplateIncomplete(ty));
    let get_ulong = |ty| crate::attr::get_ulong(m, ty);
    let invalid = |ty| move |_| CoreError::AttributeValueInvalid(ty);
    match (class, key_type) {
        (ck::CKO_SECRET_KEY, ck::CKK_AES) => {
            let v = need(ck::CKA_VALUE)?;
            Ok(Material::Aes(
                AesKey::from_bytes(v).map_err(invalid(ck::CKA_VALUE))?,
            ))
        }
        (ck::CKO_SECRET_KEY, ck::CKK_GENERIC_SECRET | ck::CKK_HKDF) => {
            let v = need(ck::CKA_VALUE)?;
            if v.is_empty() || v.len() > 512 {
                return Err(CoreError::AttributeValueInvalid(ck::CKA_VALUE));
            }
            Ok(Material::Generic(SecretVec::from_slice(v)?))
        }
        (ck::CKO_PUBLIC_KEY, ck::CKK_EC) => {
            let curve = curve_from_params(need(ck::CKA_EC_PARAMS)?)?;
            let point = ec_point_raw(need(ck::CKA_EC_POINT)?);
            Ok(Material::EcPublic(
                EcPublicKey::from_sec1(curve, &point).map_err(invalid(ck::CKA_EC_POINT))?,
            ))
        }
        (ck::CKO_PRIVATE_KEY, ck::CKK_EC) => {
            let curve = curve_from_params(need(ck::CKA_EC_PARAMS)?)?;
            let d = need(ck::CKA_VALUE)?;
            Ok(Material::EcPrivate(
                EcPrivateKey::from_scalar(curve, d).map_err(invalid(ck::CKA_VALUE))?,
            ))
        }
        (ck::CKO_PUBLIC_KEY, ck::CKK_EC_EDWARDS) => {
            if !is_ed25519_params(need(ck::CKA_EC_PARAMS)?) {
                return Err(CoreError::AttributeValueInvalid(ck::CKA_EC_PARAMS));
            }
            let p = ec_point_raw(need(ck::CKA_EC_POINT)?);
            Ok(Material::EdPublic(p.as_slice().try_into().map_err(
                |_| CoreError::AttributeValueInvalid(ck::CKA_EC_POINT),
            )?))
        }
        (ck::CKO_PRIVATE_KEY, ck::CKK_EC_EDWARDS) => {
            if !is_ed25519_params(need(ck::CKA_EC_PARAMS)?) {
                return Err(CoreError::AttributeValueInvalid(ck::CKA_EC_PARAMS));
            }
            let seed =
                Secret::<32>::from_slice(need(ck::CKA_VALUE)?).map_err(invalid(ck::CKA_VALUE))?;
            Ok(Material::EdPrivate(
                Ed25519PrivateKey::from_seed(&seed).map_err(invalid(ck::CKA_VALUE))?,
            ))
        }
        (ck::CKO_PUBLIC_KEY, ck::CKK_RSA) => {
            let n = need(ck::CKA_MODULUS)?;
            let e = need(ck::CKA_PUBLIC_EXPONENT)?;
            let der = rsa_public_spki(n, e)?;
            Ok(Material::RsaPublic(
                RsaPublicKey::from_spki_der(&der).map_err(invalid(ck::CKA_MODULUS))?,
            ))
        }
        (ck::CKO_PRIVATE_KEY, ck::CKK_RSA) => {
            let parts: Vec<&[u8]> = [
                ck::CKA_MODULUS,
                ck::CKA_PUBLIC_EXPONENT,
                ck::CKA_PRIVATE_EXPONENT,
                ck::CKA_PRIME_1,
                ck::CKA_PRIME_2,
                ck::CKA_EXPONENT_1,
                ck::CKA_EXPONENT_2,
                ck::CKA_COEFFICIENT,
            ]
            .into_iter()
            .map(need)
            .collect::<Result<_>>()?;
            let der = rsa_private_pkcs8(&parts)?;
            Ok(Material::RsaPrivate(
                RsaPrivateKey::from_pkcs8(&der).map_err(invalid(ck::CKA_PRIVATE_EXPONENT))?,
            ))
        }
        (ck::CKO_PUBLIC_KEY, ck::CKK_ML_DSA) => {
            let level = mldsa_of(
                get_ulong(ck::CKA_PARAMETER_SET)?
                    .ok_or(CoreError::TemplateIncomplete(ck::CKA_PARAMETER_SET))?,
            )?;
            let v = need(ck::CKA_VALUE)?;
            if v.len() != level.public_key_len() {
                return Err(CoreError::AttributeValueInvalid(ck::CKA_VALUE));
            }
            Ok(Material::MlDsaPublic(level, v.to_vec()))
        }
        (ck::CKO_PRIVATE_KEY, ck::CKK_ML_DSA) => {
            let level = mldsa_of(
                get_ulong(ck::CKA_PARAMETER_SET)?
                    .ok_or(CoreError::TemplateIncomplete(ck::CKA_PARAMETER_SET))?,
            )?;
            let seed =
                Secret::<32>::from_slice(need(ck::CKA_SEED)?).map_err(invalid(ck::CKA_SEED))?;
            Ok(Material::MlDsaPrivate(
                MlDsaPrivateKey::from_seed(level, &seed).map_err(invalid(ck::CKA_SEED))?,
            ))
        }
        (ck::CKO_PUBLIC_KEY, ck::CKK_ML_KEM) => {
            let level = mlkem_of(
                get_ulong(ck::CKA_PARAMETER_SET)?
                    .ok_or(CoreError::TemplateIncomplete(ck::CKA_PARAMETER_SET))?,
            )?;
            let v = need(ck::CKA_VALUE)?;
            // A trial encapsulation parses and validates the key.
            ihsm_crypto::mlkem::mlkem_encapsulate(level, v).map_err(invalid(ck::CKA_VALUE))?;
            Ok(Material::MlKemPublic(level, v.to_vec()))
        }
        (ck::CKO_PRIVATE_KEY, ck::CKK_ML_KEM) => {
            let level = mlkem_of(
                get_ulong(ck::CKA_PARAMETER_SET)?
                    .ok_or(CoreError::TemplateIncomplete(ck::CKA_PARAMETER_SET))?,
            )?;
            let v = need(ck::CKA_VALUE)?;
            Ok(Material::MlKemPrivate(
                MlKemPrivateKey::from_bytes(level, v).map_err(invalid(ck::CKA_VALUE))?,
            ))
        }
        _ => Err(CoreError::TemplateInconsistent(
            "unsupported class and key type",
        )),
    }
}

/// SubjectPublicKeyInfo of an RSA public key from its modulus and exponent.
fn rsa_public_spki(n: &[u8], e: &[u8]) -> Result<Vec<u8>> {
    #[derive(der::Sequence)]
    struct RsaPublicKeyDer<'a> {
        n: UintRef<'a>,
        e: UintRef<'a>,
    }
    let bad = |_| CoreError::AttributeValueInvalid(ck::CKA_MODULUS);
    let inner = RsaPublicKeyDer {
        n: UintRef::new(n).map_err(bad)?,
        e: UintRef::new(e).map_err(bad)?,
    }
    .to_der()
    .map_err(bad)?;
    spki("1.2.840.113549.1.1.1", Some(&[0x05, 0x00]), &inner)
}

/// PKCS#8 of an RSA private key from its CRT components (n, e, d, p, q, dp, dq, qi).
fn rsa_private_pkcs8(parts: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>> {
    #[derive(der::Sequence)]
    struct RsaPrivateKeyDer<'a> {
        version: u8,
        n: UintRef<'a>,
        e: UintRef<'a>,
        d: UintRef<'a>,
        p: UintRef<'a>,
        q: UintRef<'a>,
        dp: UintRef<'a>,
        dq: UintRef<'a>,
        qi: UintRef<'a>,
    }
    #[derive(der::Sequence)]
    struct PrivateKeyInfo<'a> {
        version: u8,
        algorithm: spki::AlgorithmIdentifierRef<'a>,
        private_key: OctetStringRef<'a>,
    }
    let bad = |_| CoreError::AttributeValueInvalid(ck::CKA_PRIVATE_EXPONENT);
    let u = |i: usize| UintRef::new(parts.get(i).copied().unwrap_or_default()).map_err(bad);
    let inner = Zeroizing::new(
        RsaPrivateKeyDer {
            version: 0,
            n: u(0)?,
            e: u(1)?,
            d: u(2)?,
            p: u(3)?,
            q: u(4)?,
            dp: u(5)?,
            dq: u(6)?,
            qi: u(7)?,
        }
        .to_der()
        .map_err(bad)?,
    );
    let null = der::asn1::AnyRef::from_der(&[0x05, 0x00]).map_err(bad)?;
    let der = PrivateKeyInfo {
        version: 0,
        algorithm: spki::AlgorithmIdentifierRef {
            oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1"),
            parameters: Some(null),
        },
        private_key: OctetStringRef::new(&inner).map_err(bad)?,
    }
    .to_der()
    .map_err(bad)?;
    Ok(Zeroizing::new(der))
}
