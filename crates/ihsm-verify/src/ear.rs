//! The attestation result: an EAR (draft-ietf-rats-ear, profile
//! `tag:ietf.org,2026:rats/ear#04`, the claim names of Veraison's `ear` 0.6) as a
//! JWT signed ES384 by the verifier's key with aws-lc-rs (docs/attestation.md,
//! "The attestation result", says why not the `ear` crate).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};

use crate::appraise::{Appraisal, Check};
use crate::keyreport::AttestedKey;
use crate::refvals::lifecycle;

/// The EAR profile.
pub const EAR_PROFILE: &str = "tag:ietf.org,2026:rats/ear#04";
/// The submodule the appraisal is reported under.
pub const SUBMOD: &str = "ihsm";
/// Largest token [`verify_ear`] reads.
pub const MAX_EAR_LEN: usize = 64 * 1024;

/// AR4SI trust claim values used here (draft-ietf-rats-ar4si).
pub mod ar4si {
    /// instance-identity: recognised and trustworthy.
    pub const TRUSTWORTHY_INSTANCE: i8 = 2;
    /// instance-identity: not recognised.
    pub const UNRECOGNIZED_INSTANCE: i8 = 97;
    /// configuration: approved.
    pub const APPROVED_CONFIG: i8 = 2;
    /// configuration: unsafe (SVN below minimum, development device).
    pub const UNSAFE_CONFIG: i8 = 32;
    /// executables: approved runtime.
    pub const APPROVED_RUNTIME: i8 = 2;
    /// executables: unrecognised runtime (digests not in the reference values).
    pub const UNRECOGNIZED_RUNTIME: i8 = 33;
    /// executables: contraindicated (evidence that does not verify).
    pub const CONTRAINDICATED_RUNTIME: i8 = 96;
    /// hardware: genuine.
    pub const GENUINE_HARDWARE: i8 = 2;
    /// hardware: not recognised.
    pub const UNRECOGNIZED_HARDWARE: i8 = 97;
    /// Cryptographic validation of the evidence failed (any claim).
    pub const CRYPTO_FAILED: i8 = 99;
}

/// Why an EAR was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EarRefusal {
    /// Not a compact JWS of three base64url parts with JSON header and claims.
    #[error("the EAR is not a well-formed JWT")]
    Malformed,
    /// The header's algorithm is not ES384.
    #[error("the EAR is not signed ES384")]
    Algorithm,
    /// The signature does not verify with the verifier's key.
    #[error("the EAR's signature does not verify with the verifier's key")]
    Signature,
    /// Another profile.
    #[error("the EAR's profile is not {EAR_PROFILE}")]
    Profile,
    /// Issued in the future or expired.
    #[error("the EAR is not valid now (iat/exp)")]
    Expired,
}

/// Why the verifier's signing key could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the EAR signing key is not a PKCS#8 ECC P-384 private key")]
pub struct SignerKeyError;

/// The verifier's EAR signing key (ECC P-384).
pub struct EarSigner {
    key: EcdsaKeyPair,
}

impl core::fmt::Debug for EarSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The public half only, whatever aws-lc-rs's own Debug prints.
        f.debug_struct("EarSigner")
            .field("public_key", &hex::encode(self.key.public_key().as_ref()))
            .finish()
    }
}

impl EarSigner {
    /// From a PKCS#8 DER private key.
    ///
    /// # Errors
    /// [`SignerKeyError`].
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SignerKeyError> {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der)
            .map(|key| Self { key })
            .map_err(|_| SignerKeyError)
    }

    /// The public key, a SEC1 point, for [`verify_ear`].
    #[must_use]
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// The public key as a JWK (RFC 7518 §6.2).
    #[must_use]
    pub fn public_jwk(&self) -> Value {
        ec_jwk(self.key.public_key().as_ref().get(1..).unwrap_or_default())
    }
}

fn ec_jwk(xy: &[u8]) -> Value {
    let (x, y) = xy.split_at(xy.len() / 2);
    let crv = match x.len() {
        32 => "P-256",
        66 => "P-521",
        _ => "P-384",
    };
    json!({"kty": "EC", "crv": crv, "x": B64.encode(x), "y": B64.encode(y)})
}

fn key_jwk(k: &AttestedKey) -> Option<Value> {
    match k {
        AttestedKey::None => None,
        AttestedKey::Ec2 { crv, x, y } => {
            let crv = match crv {
                1 => "P-256",
                2 => "P-384",
                3 => "P-521",
                _ => return None,
            };
            Some(json!({"kty": "EC", "crv": crv, "x": B64.encode(x), "y": B64.encode(y)}))
        }
        AttestedKey::Okp { crv: 6, x } => {
            Some(json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(x)}))
        }
        AttestedKey::Okp { .. } => None,
        AttestedKey::Rsa { n, e } => {
            Some(json!({"kty": "RSA", "n": B64.encode(n), "e": B64.encode(e)}))
        }
    }
}

fn ok(a: &Appraisal, checks: &[Check]) -> bool {
    checks.iter().all(|c| matches!(a.verdict(*c), Some(Ok(()))))
}

/// The EAR claims set of an appraisal: the status, the AR4SI trustworthiness
/// vector, a verdict per check (`ihsm_checks`), the UEID, the TCB, the lifecycle
/// and, when a key report affirmed, the partition and the attested key.
#[must_use]
pub fn claims(a: &Appraisal, iat: i64, exp: Option<i64>, policy_id: &str) -> Value {
    use ar4si::*;
    let identity = ok(a, &[Check::EccChain, Check::MlDsaChain]);
    let evidence_ok = ok(
        a,
        &[
            Check::EccQuote,
            Check::MlDsaQuote,
            Check::PcrLog,
            Check::ReferenceValues,
        ],
    );
    let executables = if !identity || !evidence_ok {
        CONTRAINDICATED_RUNTIME
    } else if ok(a, &[Check::FmcFirmware, Check::RtFirmware, Check::Pcrs]) {
        APPROVED_RUNTIME
    } else {
        UNRECOGNIZED_RUNTIME
    };
    let configuration = if !identity || !evidence_ok {
        CRYPTO_FAILED
    } else if ok(a, &[Check::Svn, Check::Lifecycle, Check::VendorKeys]) {
        APPROVED_CONFIG
    } else {
        UNSAFE_CONFIG
    };
    let mut checks = Map::new();
    for (c, v) in &a.verdicts {
        checks.insert(
            c.name().to_string(),
            match v {
                Ok(()) => json!({"status": "affirming"}),
                Err(e) => json!({"status": "contraindicated", "reason": e.to_string()}),
            },
        );
    }
    let status = if a.affirms() {
        "affirming"
    } else {
        "contraindicated"
    };
    let mut sub = Map::new();
    sub.insert("ear_status".into(), json!(status));
    sub.insert(
        "ear_trustworthiness_vector".into(),
        json!({
            "instance-identity": if identity { TRUSTWORTHY_INSTANCE } else { UNRECOGNIZED_INSTANCE },
            "hardware": if identity { GENUINE_HARDWARE } else { UNRECOGNIZED_HARDWARE },
            "executables": executables,
            "configuration": configuration,
        }),
    );
    sub.insert("ear_appraisal_policy_ids".into(), json!([policy_id]));
    sub.insert("ihsm_checks".into(), Value::Object(checks));
    if let Some(u) = a.ueid {
        sub.insert("ihsm_ueid".into(), json!(B64.encode(u)));
    }
    if let (Some(fmc), Some(rt)) = (a.fmc_fwid, a.tcb) {
        sub.insert(
            "ihsm_tcb".into(),
            json!({"fmc": hex::encode(fmc), "rt": [hex::encode(rt[0]), hex::encode(rt[1])], "svn": a.svn}),
        );
    }
    if let Some(l) = a.lifecycle {
        let name = match l {
            lifecycle::PRODUCTION => "production",
            lifecycle::MANUFACTURING => "manufacturing",
            _ => "unknown",
        };
        sub.insert("ihsm_lifecycle".into(), json!(name));
    }
    if let Some((name, id)) = &a.partition {
        sub.insert("ihsm_partition".into(), json!({"name": name, "id": id}));
    }
    if let Some(k) = a.attested_key.as_ref().and_then(key_jwk) {
        sub.insert("ihsm_attested_key".into(), k);
    }
    if let Some(t) = &a.attested_attributes {
        use crate::keyreport::flags;
        let f = |bit| t.flags & bit != 0;
        sub.insert(
            "ihsm_attested_key_attributes".into(),
            json!({
                "flags": t.flags,
                "generated": f(flags::GENERATED), "imported": f(flags::IMPORTED),
                "session": f(flags::SESSION), "sign": f(flags::SIGN),
                "decrypt": f(flags::DECRYPT), "unwrap": f(flags::UNWRAP),
                "derive": f(flags::DERIVE),
                "never_extractable": t.never_extractable,
                "always_sensitive": t.always_sensitive, "local": t.local,
            }),
        );
    }
    let mut top = Map::new();
    top.insert("eat_profile".into(), json!(EAR_PROFILE));
    top.insert("iat".into(), json!(iat));
    if let Some(e) = exp {
        top.insert("exp".into(), json!(e));
    }
    top.insert(
        "ear_verifier_id".into(),
        json!({"developer": "ihsm", "build": concat!("ihsm-verify ", env!("CARGO_PKG_VERSION"))}),
    );
    if let Some(n) = a.nonce {
        top.insert("eat_nonce".into(), json!(B64.encode(n)));
    }
    let mut submods = Map::new();
    submods.insert(SUBMOD.into(), Value::Object(sub));
    top.insert("submods".into(), Value::Object(submods));
    Value::Object(top)
}

/// Signs claims as a compact JWS (`{"alg":"ES384","typ":"JWT"}`).
///
/// # Errors
/// [`SignerKeyError`] if aws-lc-rs cannot sign (it does not for a loaded key).
pub fn sign(signer: &EarSigner, claims: &Value) -> Result<String, SignerKeyError> {
    let header = B64.encode(br#"{"alg":"ES384","typ":"JWT"}"#);
    let body = B64.encode(claims.to_string());
    let input = format!("{header}.{body}");
    let sig = signer
        .key
        .sign(&SystemRandom::new(), input.as_bytes())
        .map_err(|_| SignerKeyError)?;
    Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
}

/// Verifies an EAR: ES384 by `verifier_key` (a SEC1 point), the profile, and
/// `iat <= now < exp` (when `exp` is present). Returns the claims.
///
/// # Errors
/// [`EarRefusal`].
pub fn verify_ear(token: &str, verifier_key: &[u8], now: i64) -> Result<Value, EarRefusal> {
    if token.len() > MAX_EAR_LEN {
        return Err(EarRefusal::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(b), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(EarRefusal::Malformed);
    };
    let header: Value = B64
        .decode(h)
        .ok()
        .and_then(|x| serde_json::from_slice(&x).ok())
        .ok_or(EarRefusal::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("ES384") {
        return Err(EarRefusal::Algorithm);
    }
    let sig = B64.decode(s).map_err(|_| EarRefusal::Malformed)?;
    let signed = token
        .get(..h.len() + 1 + b.len())
        .ok_or(EarRefusal::Malformed)?;
    if !crate::sig::ecdsa_fixed(verifier_key, signed.as_bytes(), &sig) {
        return Err(EarRefusal::Signature);
    }
    let claims: Value = B64
        .decode(b)
        .ok()
        .and_then(|x| serde_json::from_slice(&x).ok())
        .ok_or(EarRefusal::Malformed)?;
    if claims.get("eat_profile").and_then(Value::as_str) != Some(EAR_PROFILE) {
        return Err(EarRefusal::Profile);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(EarRefusal::Malformed)?;
    let exp = claims
        .get("exp")
        .map(|e| e.as_i64().ok_or(EarRefusal::Malformed))
        .transpose()?;
    if iat > now || exp.is_some_and(|e| now >= e) {
        return Err(EarRefusal::Expired);
    }
    Ok(claims)
}
