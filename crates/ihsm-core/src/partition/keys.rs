//! Key management: C_GenerateKey and C_GenerateKeyPair, C_WrapKey and C_UnwrapKey,
//! C_DeriveKey, ML-KEM encapsulation, and masked keys. (Key import is
//! C_CreateObject, in `objects`.)

use std::collections::BTreeMap;

use cryptoki_sys as ck;
use ihsm_crypto::aes::AesKey;
use ihsm_crypto::ec::EcPrivateKey;
use ihsm_crypto::ed25519::Ed25519PrivateKey;
use ihsm_crypto::mldsa::{MlDsaLevel, MlDsaPrivateKey};
use ihsm_crypto::mlkem::{MlKemLevel, MlKemPrivateKey};
use ihsm_crypto::rsa::RsaPrivateKey;
use ihsm_crypto::{ExposeSecret, SecretVec};

use super::template::{Provenance, build, inherit_protection, map_template};
use super::{Caller, Need, Partition, Rate, UNAVAILABLE};
use crate::attr::{self, AttrType, AttrValue, Attribute, Phase, class};
use crate::audit::{AuditEvent, Origin};
use crate::error::{CoreError, Result};
use crate::key::{self, Material};
use crate::mech::Mechanism;
use crate::object::Object;
use crate::ops;
use crate::session::UserType;

/// Whether a wrapping key keeps what it wraps inside an HSM, so that wrapping a
/// sensitive key under it does not reveal the key to whoever asked for the wrap.
///
/// Either the Security Officer vouched for it (`CKA_TRUSTED`: for a public key, that
/// its private half lives in a genuine HSM), or it is a secret key generated here
/// that was never extractable: nobody outside holds its value, and key separation
/// keeps it from decrypting what it wrapped. Any other secret key may be known to
/// the caller: created from a value, unwrapped, derived (ECDH with the caller's
/// public key), encapsulated to the caller's public key, or once extractable. An
/// untrusted public key is refused too: the HSM cannot tell whether the caller holds
/// its private half, or whether a private half here may decrypt what it wrapped
/// (the key-pair form of the wrap-and-decrypt attack).
fn keeps_secrets(wk: &Object) -> bool {
    wk.flag(ck::CKA_TRUSTED)
        || (wk.class_bit == class::SECRET
            && wk.flag(ck::CKA_LOCAL)
            && wk.flag(ck::CKA_NEVER_EXTRACTABLE))
}

fn param_set(
    pubm: &BTreeMap<AttrType, AttrValue>,
    privm: &BTreeMap<AttrType, AttrValue>,
) -> Result<u64> {
    let a = attr::get_ulong(pubm, ck::CKA_PARAMETER_SET)?;
    let b = attr::get_ulong(privm, ck::CKA_PARAMETER_SET)?;
    match (a, b) {
        (Some(x), Some(y)) if x != y => Err(CoreError::TemplateInconsistent(
            "CKA_PARAMETER_SET differs between the templates",
        )),
        (Some(x), _) | (None, Some(x)) => Ok(x),
        (None, None) => Err(CoreError::TemplateIncomplete(ck::CKA_PARAMETER_SET)),
    }
}

impl Partition {
    /// C_GenerateKey: AES (CKA_VALUE_LEN 16, 24, 32) and generic secrets (1..=512).
    ///
    /// # Errors
    /// Mechanism, template, session errors.
    pub fn generate_key(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        template: &[Attribute],
    ) -> Result<u64> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Counted)?;
        let mut m = map_template(template)?;
        let (kt, material) = match mech {
            Mechanism::AesKeyGen => {
                let len = attr::get_ulong(&m, ck::CKA_VALUE_LEN)?
                    .ok_or(CoreError::TemplateIncomplete(ck::CKA_VALUE_LEN))?;
                if !matches!(len, 16 | 24 | 32) {
                    return Err(CoreError::KeySizeRange("AES keys are 16, 24 or 32 bytes"));
                }
                (
                    ck::CKK_AES,
                    Material::Aes(
                        self.watch(AesKey::generate(len as usize * 8).map_err(CoreError::from))?,
                    ),
                )
            }
            Mechanism::GenericSecretKeyGen => {
                let len = attr::get_ulong(&m, ck::CKA_VALUE_LEN)?
                    .ok_or(CoreError::TemplateIncomplete(ck::CKA_VALUE_LEN))?;
                if !(1..=512).contains(&len) {
                    return Err(CoreError::KeySizeRange(
                        "generic secrets are 1 to 512 bytes",
                    ));
                }
                let kt = attr::get_ulong(&m, ck::CKA_KEY_TYPE)?.unwrap_or(ck::CKK_GENERIC_SECRET);
                if !matches!(kt, ck::CKK_GENERIC_SECRET | ck::CKK_HKDF) {
                    return Err(CoreError::TemplateInconsistent("generic secret key type"));
                }
                (
                    kt,
                    Material::Generic(
                        self.watch(SecretVec::random(len as usize).map_err(CoreError::from))?,
                    ),
                )
            }
            _ => {
                return Err(CoreError::MechanismInvalid(format!(
                    "0x{:x} does not generate secret keys",
                    mech.ckm()
                )));
            }
        };
        m.remove(&ck::CKA_VALUE_LEN);
        self.may_create(login, rw, &m, class::SECRET)?;
        let prov = Provenance {
            local: true,
            gen_mech: mech.ckm(),
            inherited: None,
        };
        let so = login == Some(UserType::SecurityOfficer);
        let o = build(
            ck::CKO_SECRET_KEY,
            Some(kt),
            m,
            Some(material),
            Phase::Generate,
            so,
            prov,
        )?;
        self.insert(session, o, Origin::Generated)
    }

    /// C_GenerateKeyPair: EC (P-256/384/521 by CKA_EC_PARAMS), Ed25519, RSA
    /// (CKA_MODULUS_BITS 2048/3072/4096, exponent 65537), ML-DSA and ML-KEM
    /// (CKA_PARAMETER_SET). Returns (public, private).
    ///
    /// # Errors
    /// Mechanism, template, session errors.
    pub fn generate_key_pair(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        public_template: &[Attribute],
        private_template: &[Attribute],
    ) -> Result<(u64, u64)> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Counted)?;
        let mut pubm = map_template(public_template)?;
        let mut privm = map_template(private_template)?;
        let ec_params = attr::get_bytes(&pubm, ck::CKA_EC_PARAMS)?
            .or(attr::get_bytes(&privm, ck::CKA_EC_PARAMS)?)
            .map(<[u8]>::to_vec);
        let private = self.watch((|| -> Result<Material> {
            Ok(match mech {
                Mechanism::EcKeyPairGen => {
                    let p = ec_params
                        .as_deref()
                        .ok_or(CoreError::TemplateIncomplete(ck::CKA_EC_PARAMS))?;
                    Material::EcPrivate(EcPrivateKey::generate(key::curve_from_params(p)?)?)
                }
                Mechanism::EcEdwardsKeyPairGen => {
                    if let Some(p) = &ec_params
                        && !key::is_ed25519_params(p)
                    {
                        return Err(CoreError::AttributeValueInvalid(ck::CKA_EC_PARAMS));
                    }
                    Material::EdPrivate(Ed25519PrivateKey::generate()?)
                }
                Mechanism::RsaKeyPairGen => {
                    let bits = attr::get_ulong(&pubm, ck::CKA_MODULUS_BITS)?
                        .ok_or(CoreError::TemplateIncomplete(ck::CKA_MODULUS_BITS))?;
                    if !matches!(bits, 2048 | 3072 | 4096) {
                        return Err(CoreError::KeySizeRange(
                            "RSA keys are 2048, 3072 or 4096 bits",
                        ));
                    }
                    if let Some(e) = attr::get_bytes(&pubm, ck::CKA_PUBLIC_EXPONENT)? {
                        let trimmed: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
                        if trimmed != [0x01, 0x00, 0x01] {
                            return Err(CoreError::AttributeValueInvalid(ck::CKA_PUBLIC_EXPONENT));
                        }
                    }
                    Material::RsaPrivate(RsaPrivateKey::generate(bits as usize)?)
                }
                Mechanism::MlDsaKeyPairGen => {
                    let level = match param_set(&pubm, &privm)? {
                        1 => MlDsaLevel::L44,
                        2 => MlDsaLevel::L65,
                        3 => MlDsaLevel::L87,
                        _ => return Err(CoreError::AttributeValueInvalid(ck::CKA_PARAMETER_SET)),
                    };
                    Material::MlDsaPrivate(MlDsaPrivateKey::generate(level)?)
                }
                Mechanism::MlKemKeyPairGen => {
                    let level = match param_set(&pubm, &privm)? {
                        1 => MlKemLevel::L512,
                        2 => MlKemLevel::L768,
                        3 => MlKemLevel::L1024,
                        _ => return Err(CoreError::AttributeValueInvalid(ck::CKA_PARAMETER_SET)),
                    };
                    Material::MlKemPrivate(MlKemPrivateKey::generate(level)?)
                }
                _ => {
                    return Err(CoreError::MechanismInvalid(format!(
                        "0x{:x} does not generate key pairs",
                        mech.ckm()
                    )));
                }
            })
        })())?;
        let kt = private.key_type();
        let public = private.public_half()?;
        for m in [&mut pubm, &mut privm] {
            m.remove(&ck::CKA_EC_PARAMS);
            m.remove(&ck::CKA_MODULUS_BITS);
            m.remove(&ck::CKA_PUBLIC_EXPONENT);
            m.remove(&ck::CKA_PARAMETER_SET);
        }
        self.may_create(login, rw, &pubm, class::PUB)?;
        self.may_create(login, rw, &privm, class::PRIV)?;
        let so = login == Some(UserType::SecurityOfficer);
        let prov = Provenance {
            local: true,
            gen_mech: mech.ckm(),
            inherited: None,
        };
        let pubo = build(
            ck::CKO_PUBLIC_KEY,
            Some(kt),
            pubm,
            Some(public),
            Phase::Generate,
            so,
            prov,
        )?;
        let privo = build(
            ck::CKO_PRIVATE_KEY,
            Some(kt),
            privm,
            Some(private),
            Phase::Generate,
            so,
            prov,
        )?;
        let hpub = self.insert(session, pubo, Origin::Generated)?;
        match self.insert(session, privo, Origin::Generated) {
            Ok(hpriv) => Ok((hpub, hpriv)),
            Err(e) => {
                // No half pair: take the public half back.
                let _ = self.destroy_object(app, session, hpub);
                Err(e)
            }
        }
    }
}

/// Class, key type and value length of a secret-key template (derive, KEM).
fn secret_template(
    m: &mut BTreeMap<AttrType, AttrValue>,
    default_len: Option<u64>,
) -> Result<(u64, usize)> {
    if let Some(c) = attr::get_ulong(m, ck::CKA_CLASS)?
        && c != ck::CKO_SECRET_KEY
    {
        return Err(CoreError::TemplateInconsistent(
            "derived keys are secret keys",
        ));
    }
    let kt = attr::get_ulong(m, ck::CKA_KEY_TYPE)?.unwrap_or(ck::CKK_GENERIC_SECRET);
    let len = match (attr::get_ulong(m, ck::CKA_VALUE_LEN)?, default_len) {
        (Some(l), _) | (None, Some(l)) => l,
        (None, None) => return Err(CoreError::TemplateIncomplete(ck::CKA_VALUE_LEN)),
    };
    match kt {
        ck::CKK_AES if matches!(len, 16 | 24 | 32) => {}
        ck::CKK_AES => {
            return Err(CoreError::TemplateInconsistent(
                "AES keys are 16, 24 or 32 bytes",
            ));
        }
        ck::CKK_GENERIC_SECRET | ck::CKK_HKDF if (1..=512).contains(&len) => {}
        ck::CKK_GENERIC_SECRET | ck::CKK_HKDF => {
            return Err(CoreError::TemplateInconsistent(
                "generic secrets are 1 to 512 bytes",
            ));
        }
        _ => {
            return Err(CoreError::TemplateInconsistent(
                "derived keys are AES or generic secrets",
            ));
        }
    }
    m.remove(&ck::CKA_VALUE_LEN);
    Ok((kt, len as usize))
}

fn secret_material(kt: u64, bytes: SecretVec) -> Result<Material> {
    if kt == ck::CKK_AES {
        Ok(Material::Aes(AesKey::from_bytes(bytes.expose_secret())?))
    } else {
        Ok(Material::Generic(bytes))
    }
}

impl Partition {
    /// C_WrapKey. The key must be extractable; a wrap-with-trusted key only under a
    /// trusted wrapping key; a sensitive key only under a key that keeps secrets
    /// (`keeps_secrets`); a key never wraps itself.
    ///
    /// # Errors
    /// [`CoreError::KeyUnextractable`], [`CoreError::KeyNotWrappable`] and the rest.
    pub fn wrap_key(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        wrapping: u64,
        key: u64,
    ) -> Result<Vec<u8>> {
        if let Mechanism::KeyRelease { ear } = mech {
            return self.release_key(app, session, key, ear);
        }
        let Caller { login, .. } = self.enter(app, session, Need::Session, Rate::Counted)?;
        let wk = self.key(login, wrapping)?;
        let k = self.key(login, key)?;
        if k.attrs.contains_key(&crate::attr::CKA_IHSM_RELEASE_POLICY) {
            return Err(CoreError::KeyUnextractable(
                "a key with a release policy leaves only through a release (CKM_IHSM_KEY_RELEASE)",
            ));
        }
        if wrapping == key {
            return Err(CoreError::KeyUnextractable("a key cannot wrap itself"));
        }
        if !k.flag(ck::CKA_EXTRACTABLE) {
            return Err(CoreError::KeyUnextractable("CKA_EXTRACTABLE is false"));
        }
        if k.flag(ck::CKA_WRAP_WITH_TRUSTED) && !wk.flag(ck::CKA_TRUSTED) {
            return Err(CoreError::KeyNotWrappable(
                "CKA_WRAP_WITH_TRUSTED needs a trusted wrapping key",
            ));
        }
        if k.flag(ck::CKA_SENSITIVE) && !keeps_secrets(&wk) {
            return Err(CoreError::KeyNotWrappable(
                "a sensitive key is wrapped only under a key the Security Officer trusts, or a secret key made in this HSM that was never extractable",
            ));
        }
        let bytes = k
            .material
            .as_ref()
            .ok_or(CoreError::KeyHandleInvalid)?
            .wrap_bytes()?;
        let out = ops::wrap(mech, &wk, &bytes)?;
        if k.is_token() {
            self.audited(|_| {
                Ok((
                    (),
                    vec![AuditEvent::KeyWrapped {
                        handle: key,
                        wrapping_key: wrapping,
                    }],
                ))
            })?;
        }
        Ok(out)
    }

    /// C_UnwrapKey: the template names the class and key type of what is inside.
    ///
    /// # Errors
    /// [`CoreError::WrappedKeyInvalid`] and the rest.
    pub fn unwrap_key(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        unwrapping: u64,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> Result<u64> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Counted)?;
        let uk = self.key(login, unwrapping)?;
        let mut m = map_template(template)?;
        // A key that arrives wrapped stays secret: unwrapping a wrapping of a
        // sensitive key as readable would undo the wrap (the Clulow attack). A
        // caller holding a key's value in the clear creates it with C_CreateObject.
        if matches!(m.get(&ck::CKA_SENSITIVE), Some(AttrValue::Bool(false))) {
            return Err(CoreError::TemplateInconsistent(
                "an unwrapped key is sensitive: a wrapped key is not made readable by unwrapping it",
            ));
        }
        m.insert(ck::CKA_SENSITIVE, AttrValue::Bool(true));
        let class = attr::get_ulong(&m, ck::CKA_CLASS)?
            .ok_or(CoreError::TemplateIncomplete(ck::CKA_CLASS))?;
        let kt = attr::get_ulong(&m, ck::CKA_KEY_TYPE)?
            .ok_or(CoreError::TemplateIncomplete(ck::CKA_KEY_TYPE))?;
        let class_bit =
            attr::class_bit(class).ok_or(CoreError::AttributeValueInvalid(ck::CKA_CLASS))?;
        if class_bit & (class::SECRET | class::PRIV) == 0 {
            return Err(CoreError::TemplateInconsistent(
                "only secret and private keys are unwrapped",
            ));
        }
        let params = attr::get_ulong(&m, ck::CKA_PARAMETER_SET)?;
        m.remove(&ck::CKA_PARAMETER_SET);
        let want_len = attr::get_ulong(&m, ck::CKA_VALUE_LEN)?;
        m.remove(&ck::CKA_VALUE_LEN);
        let bytes = ops::unwrap(mech, &uk, wrapped)?;
        if let Some(l) = want_len
            && class == ck::CKO_SECRET_KEY
            && l as usize != bytes.len()
        {
            return Err(CoreError::TemplateInconsistent(
                "CKA_VALUE_LEN does not match the unwrapped key",
            ));
        }
        let material = Material::from_unwrapped(class, kt, bytes.expose_secret(), params)?;
        self.may_create(login, rw, &m, class_bit)?;
        let so = login == Some(UserType::SecurityOfficer);
        let prov = Provenance {
            local: false,
            gen_mech: UNAVAILABLE,
            inherited: Some((false, false)),
        };
        let o = build(
            class,
            Some(kt),
            m,
            Some(material),
            Phase::Generate,
            so,
            prov,
        )?;
        self.insert(session, o, Origin::Unwrapped)
    }

    /// C_DeriveKey: ECDH, HKDF, SP 800-108 counter KDF, TLS 1.3 Expand-Label. A key
    /// derived from a sensitive base is sensitive, and from an unextractable base is
    /// unextractable (stricter than PKCS#11 requires: no route from a sensitive key to
    /// an extractable copy of its secrets).
    ///
    /// # Errors
    /// Template, mechanism and key errors.
    pub fn derive_key(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        base: u64,
        template: &[Attribute],
    ) -> Result<u64> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Counted)?;
        let b = self.key(login, base)?;
        let mut m = map_template(template)?;
        let (kt, len) = secret_template(&mut m, None)?;
        inherit_protection(&b, &mut m)?;
        let bytes = ops::derive(mech, &b, len)?;
        let material = secret_material(kt, bytes)?;
        self.may_create(login, rw, &m, class::SECRET)?;
        let so = login == Some(UserType::SecurityOfficer);
        let inherited = (
            b.flag(ck::CKA_ALWAYS_SENSITIVE),
            b.flag(ck::CKA_NEVER_EXTRACTABLE),
        );
        let prov = Provenance {
            local: false,
            gen_mech: UNAVAILABLE,
            inherited: Some(inherited),
        };
        let o = build(
            ck::CKO_SECRET_KEY,
            Some(kt),
            m,
            Some(material),
            Phase::Generate,
            so,
            prov,
        )?;
        self.insert(session, o, Origin::Derived)
    }

    /// C_EncapsulateKey (ML-KEM): returns the ciphertext and the new secret key's
    /// handle (32 bytes unless the template asks for less).
    ///
    /// # Errors
    /// Template, mechanism and key errors.
    pub fn encapsulate(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        public: u64,
        template: &[Attribute],
    ) -> Result<(Vec<u8>, u64)> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Counted)?;
        if *mech != Mechanism::MlKem {
            return Err(CoreError::MechanismInvalid(format!(
                "0x{:x} does not encapsulate",
                mech.ckm()
            )));
        }
        let k = self.key(login, public)?;
        let mut m = map_template(template)?;
        let (kt, len) = secret_template(&mut m, Some(32))?;
        let (ct, ss) = ops::encapsulate(&k)?;
        if len > ss.len() {
            return Err(CoreError::TemplateInconsistent(
                "CKA_VALUE_LEN is longer than the shared secret",
            ));
        }
        let material = secret_material(
            kt,
            SecretVec::from_slice(ss.expose_secret().get(..len).unwrap_or_default())?,
        )?;
        self.may_create(login, rw, &m, class::SECRET)?;
        let so = login == Some(UserType::SecurityOfficer);
        let prov = Provenance {
            local: false,
            gen_mech: UNAVAILABLE,
            inherited: Some((true, true)),
        };
        let o = build(
            ck::CKO_SECRET_KEY,
            Some(kt),
            m,
            Some(material),
            Phase::Generate,
            so,
            prov,
        )?;
        Ok((ct, self.insert(session, o, Origin::Derived)?))
    }

    /// C_DecapsulateKey (ML-KEM).
    ///
    /// # Errors
    /// Template, mechanism and key errors.
    pub fn decapsulate(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        private: u64,
        ct: &[u8],
        template: &[Attribute],
    ) -> Result<u64> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Counted)?;
        if *mech != Mechanism::MlKem {
            return Err(CoreError::MechanismInvalid(format!(
                "0x{:x} does not decapsulate",
                mech.ckm()
            )));
        }
        let k = self.key(login, private)?;
        let mut m = map_template(template)?;
        let (kt, len) = secret_template(&mut m, Some(32))?;
        // The shared secret is the private key's to protect: readable from a
        // sensitive key, it would hand the private key's use to anyone who can
        // read a key's value.
        inherit_protection(&k, &mut m)?;
        let ss = ops::decapsulate(&k, ct)?;
        if len > ss.len() {
            return Err(CoreError::TemplateInconsistent(
                "CKA_VALUE_LEN is longer than the shared secret",
            ));
        }
        let material = secret_material(
            kt,
            SecretVec::from_slice(ss.expose_secret().get(..len).unwrap_or_default())?,
        )?;
        self.may_create(login, rw, &m, class::SECRET)?;
        let so = login == Some(UserType::SecurityOfficer);
        let inherited = (
            k.flag(ck::CKA_ALWAYS_SENSITIVE),
            k.flag(ck::CKA_NEVER_EXTRACTABLE),
        );
        let prov = Provenance {
            local: false,
            gen_mech: UNAVAILABLE,
            inherited: Some(inherited),
        };
        let o = build(
            ck::CKO_SECRET_KEY,
            Some(kt),
            m,
            Some(material),
            Phase::Generate,
            so,
            prov,
        )?;
        self.insert(session, o, Origin::Decapsulated)
    }

    // ---- masked keys ------------------------------------------------------------------

    /// Exports a key as a masked blob: its attributes and material sealed under the
    /// partition's masking key, bound to this partition and firmware SVN. Only this
    /// partition of this device can import it again; on a device that holds the
    /// fleet masking domain, the partition of this name on any host of the fleet.
    ///
    /// # Errors
    /// Handle and session errors.
    pub fn export_masked(&self, app: u64, session: u64, h: u64, svn: u32) -> Result<Vec<u8>> {
        let Caller { login, .. } = self.enter(app, session, Need::Session, Rate::Free)?;
        let o = self.key(login, h)?;
        if o.class_bit & class::KEY == 0 {
            return Err(CoreError::KeyHandleInvalid);
        }
        if o.attrs.contains_key(&crate::attr::CKA_IHSM_RELEASE_POLICY) {
            return Err(CoreError::KeyUnextractable(
                "a key with a release policy leaves only through a release (CKM_IHSM_KEY_RELEASE)",
            ));
        }
        let blob = match self.fleet_domain() {
            Some(d) => {
                let (epoch, key) = d
                    .current()
                    .ok_or(CoreError::Internal("an empty fleet domain"))?;
                crate::masked::mask_fleet(self.name(), epoch, svn, &o, key)?
            }
            None => self.with_secrets(|s| crate::masked::mask(self.id, svn, &o, &s.mask))?,
        };
        if o.is_token() {
            self.audited(|_| Ok(((), vec![AuditEvent::KeyMasked { handle: h }])))?;
        }
        Ok(blob)
    }

    /// Imports a masked blob made by [`Partition::export_masked`] as a new object
    /// (token or session, as it was).
    ///
    /// # Errors
    /// [`CoreError::MaskedKeyInvalid`] for another partition's, another device's, a
    /// newer firmware's, or an altered blob.
    pub fn import_masked(&self, app: u64, session: u64, blob: &[u8], svn: u32) -> Result<u64> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Free)?;
        let o = match crate::masked::domain_of(blob)? {
            crate::masked::Domain::Partition => {
                self.with_secrets(|s| crate::masked::unmask(self.id, svn, blob, &s.mask))?
            }
            crate::masked::Domain::Fleet(epoch) => {
                let d = self.fleet_domain().ok_or(CoreError::MaskedKeyInvalid(
                    "masked under a fleet domain this device does not hold",
                ))?;
                let key = d.key(epoch).ok_or(CoreError::MaskedKeyInvalid(
                    "masked under a fleet domain epoch this device does not hold (an epoch it was evicted from, or one its policy no longer keeps)",
                ))?;
                crate::masked::unmask_fleet(self.name(), svn, blob, key)?
            }
        };
        self.may_create(login, rw, &o.attrs, o.class_bit)?;
        self.insert(session, o, Origin::Unmasked)
    }
}
