//! Secure key release (docs/attestation.md §5): a key whose release policy an EAR
//! satisfies leaves its partition wrapped with `CKM_RSA_AES_KEY_WRAP` to the RSA
//! key that EAR attests, and no other way. The EAR must be signed by a verifier
//! this partition trusts: an ECC P-384 public key object the Security Officer
//! marked `CKA_TRUSTED`. Each release, granted or refused, is an audit entry
//! naming the verifier.

use cryptoki_sys as ck;
use ihsm_verify::release::{self, ReleasePolicy};

use super::{Caller, Need, Partition, Rate};
use crate::attr::{AttrValue, CKA_IHSM_RELEASE_POLICY, class};
use crate::audit::AuditEvent;
use crate::error::{CoreError, Result};
use crate::key::Material;
use crate::object::Object;
use crate::session::UserType;

/// What a release wraps with: AES-256 for the key, RSA-OAEP with SHA-256 (and
/// MGF1-SHA-256) for the AES key.
const WRAP_AES_BITS: usize = 256;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Partition {
    /// Releases `key` to the destination `ear` attests (`CKM_IHSM_KEY_RELEASE`
    /// through C_WrapKey): the user must be logged in, the key must carry a
    /// release policy and be extractable, and `release::authorize` must grant it
    /// (a trusted verifier's signature, fresh, not replayed, affirming, an RSA
    /// key attested, the policy holding).
    ///
    /// # Errors
    /// [`CoreError::UserNotLoggedIn`], [`CoreError::KeyUnextractable`] for a key
    /// without a release policy or not extractable, [`CoreError::ReleaseRefused`]
    /// with the reason, session and handle errors.
    pub(super) fn release_key(
        &self,
        app: u64,
        session: u64,
        key: u64,
        ear: &[u8],
    ) -> Result<Vec<u8>> {
        let Caller { login, .. } = self.enter(app, session, Need::Session, Rate::Counted)?;
        if login != Some(UserType::User) {
            return Err(CoreError::UserNotLoggedIn);
        }
        let k = self.key(login, key)?;
        let policy = release_policy(&k)?
            .ok_or(CoreError::KeyUnextractable("the key has no release policy"))?;
        if !k.flag(ck::CKA_EXTRACTABLE) {
            return Err(CoreError::KeyUnextractable("CKA_EXTRACTABLE is false"));
        }
        let trusted = self.trusted_verifiers(app, session, login)?;
        let token = core::str::from_utf8(ear)
            .map_err(|_| CoreError::ReleaseRefused("the EAR is not text (a JWT)".into()))?;
        let shared = self.check()?;
        let decision = {
            let mut cache = shared
                .release_replays
                .lock()
                .map_err(|_| CoreError::Internal("lock poisoned"))?;
            release::authorize(token.trim(), &trusted, &policy, &mut cache, now())
        };
        let target = match decision {
            Ok(t) => t,
            Err(e) => {
                // A refusal is an attestation event too; the entry names no secret.
                let authority = match &e {
                    release::ReleaseRefusal::NoVerifier | release::ReleaseRefusal::Ear(_) => {
                        String::new()
                    }
                    _ => trusted
                        .iter()
                        .find(|t| ihsm_verify::ear::verify_ear(token.trim(), t, now()).is_ok())
                        .and_then(|t| release::verifier_authority(t))
                        .unwrap_or_default(),
                };
                self.audit_event(AuditEvent::KeyReleased {
                    handle: key,
                    authority,
                    granted: false,
                })?;
                return Err(CoreError::ReleaseRefused(e.to_string()));
            }
        };
        let rsa = ihsm_crypto::rsa::RsaPublicKey::from_components(&target.n, &target.e)
            .map_err(|_| CoreError::ReleaseRefused("the attested RSA key is not usable".into()))?;
        let bytes = k
            .material
            .as_ref()
            .ok_or(CoreError::KeyHandleInvalid)?
            .wrap_bytes()?;
        let wrapped = ihsm_crypto::rsa::rsa_aes_wrap(
            &rsa,
            ihsm_crypto::hash::HashAlg::Sha256,
            WRAP_AES_BITS,
            &bytes,
        )?;
        // Durable before the wrapped key goes out.
        self.audit_event(AuditEvent::KeyReleased {
            handle: key,
            authority: target.authority,
            granted: true,
        })?;
        Ok(wrapped)
    }

    /// The SEC1 points of the ECC P-384 public keys the Security Officer trusts.
    fn trusted_verifiers(
        &self,
        app: u64,
        session: u64,
        login: Option<UserType>,
    ) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let template = [
            crate::attr::Attribute::ulong(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
            crate::attr::Attribute::bool(ck::CKA_TRUSTED, true),
        ];
        for h in self.find(app, session, &template)? {
            let Ok(o) = self.object(login, h) else {
                continue;
            };
            if o.class_bit == class::PUB
                && o.flag(ck::CKA_TRUSTED)
                && let Some(Material::EcPublic(k)) = &o.material
                && k.curve() == ihsm_crypto::ec::Curve::P384
            {
                out.push(k.as_bytes().to_vec());
            }
        }
        Ok(out)
    }
}

/// The key's release policy, if it has one.
pub(super) fn release_policy(o: &Object) -> Result<Option<ReleasePolicy>> {
    match o.attrs.get(&CKA_IHSM_RELEASE_POLICY) {
        None => Ok(None),
        Some(AttrValue::Bytes(b)) => ReleasePolicy::parse(b)
            .map(Some)
            .map_err(|_| CoreError::Internal("a stored release policy does not parse")),
        Some(_) => Err(CoreError::Internal("a stored release policy is not bytes")),
    }
}
