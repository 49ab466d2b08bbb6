//! HPKE in Auth mode (RFC 9180 section 5.1.3) with one suite: DHKEM(P-384,
//! HKDF-SHA384), HKDF-SHA384, AES-256-GCM. It carries a migrating partition from
//! one attested host to another: sealed to the recipient's attested transfer key and
//! authenticated by the sender's, so only that recipient opens it and it knows who
//! sealed it.
//!
//! The `hpke` crate (RustCrypto's P-384) does the work; keys come in and out as
//! ihsm's own types. A private key crosses into the crate's type only for the
//! duration of a call, as its 48-byte scalar in a buffer wiped on drop, and the
//! crate's key type zeroizes itself. An opened plaintext is decrypted in place,
//! inside locked memory.

use ::hpke::aead::{AeadTag, AesGcm256};
use ::hpke::kdf::HkdfSha384;
use ::hpke::kem::DhP384HkdfSha384;
use ::hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use p384::pkcs8::DecodePrivateKey;
use zeroize::Zeroizing;

use crate::ec::{EccP384PrivateKey, EccP384PublicKey};
use crate::{CryptoError, ExposeSecretMut, SecretVec};

type Kem = DhP384HkdfSha384;

/// The suite's name, for documents and logs.
pub const SUITE: &str = "DHKEM(P-384, HKDF-SHA384), HKDF-SHA384, AES-256-GCM";
/// The encapsulated key's length: an uncompressed P-384 point.
pub const ENC_LEN: usize = 97;
/// The AEAD tag's length, appended to the ciphertext.
pub const TAG_LEN: usize = 16;

/// A sealed message: the encapsulated key and the ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The sender's ephemeral public key (`enc`), SEC1 uncompressed.
    pub enc: Vec<u8>,
    /// The ciphertext, then the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

fn private(key: &EccP384PrivateKey) -> Result<<Kem as ::hpke::Kem>::PrivateKey, CryptoError> {
    let der = key.to_pkcs8_der()?;
    let sk = p384::SecretKey::from_pkcs8_der(&der)
        .map_err(|_| CryptoError::InvalidKey("ECC P-384 private"))?;
    let scalar = Zeroizing::new(sk.to_bytes());
    <Kem as ::hpke::Kem>::PrivateKey::from_bytes(&scalar)
        .map_err(|_| CryptoError::InvalidKey("ECC P-384 private"))
}

fn public(key: &EccP384PublicKey) -> Result<<Kem as ::hpke::Kem>::PublicKey, CryptoError> {
    <Kem as ::hpke::Kem>::PublicKey::from_bytes(key.as_bytes())
        .map_err(|_| CryptoError::InvalidKey("ECC P-384 public"))
}

/// Seals `plaintext` to `recipient`, authenticated by `sender` (SealAuth), with
/// `info` bound into the key schedule and `aad` into the AEAD.
///
/// # Errors
/// [`CryptoError::InvalidKey`] for a key the suite cannot use;
/// [`CryptoError::Internal`] when encapsulation or encryption fails.
pub fn seal_auth(
    recipient: &EccP384PublicKey,
    sender: &EccP384PrivateKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, CryptoError> {
    let pk_r = public(recipient)?;
    let mode = OpModeS::<Kem>::Auth((private(sender)?, public(sender.public_key())?));
    let mut ciphertext = Vec::with_capacity(plaintext.len() + TAG_LEN);
    ciphertext.extend_from_slice(plaintext);
    let (enc, tag) = ::hpke::single_shot_seal_inout_detached::<AesGcm256, HkdfSha384, Kem>(
        &mode,
        &pk_r,
        info,
        ciphertext.as_mut_slice().into(),
        aad,
    )
    .map_err(|_| CryptoError::Internal("HPKE seal"))?;
    ciphertext.extend_from_slice(&tag.to_bytes());
    Ok(Sealed {
        enc: enc.to_bytes().to_vec(),
        ciphertext,
    })
}

/// Opens a message sealed by [`seal_auth`] with `recipient`'s key, accepting it only
/// if `sender` sealed it with the same `info` and `aad`. The plaintext is in locked
/// memory.
///
/// # Errors
/// [`CryptoError::WrongLength`] for an `enc` or ciphertext of the wrong size;
/// [`CryptoError::VerificationFailed`] when it does not open (another sender,
/// recipient, `info` or `aad`, or any byte changed).
pub fn open_auth(
    recipient: &EccP384PrivateKey,
    sender: &EccP384PublicKey,
    info: &[u8],
    aad: &[u8],
    sealed: &Sealed,
) -> Result<SecretVec, CryptoError> {
    if sealed.enc.len() != ENC_LEN {
        return Err(CryptoError::WrongLength {
            what: "HPKE encapsulated key",
            expected: ENC_LEN,
            actual: sealed.enc.len(),
        });
    }
    let Some(body_len) = sealed.ciphertext.len().checked_sub(TAG_LEN) else {
        return Err(CryptoError::WrongLength {
            what: "HPKE ciphertext",
            expected: TAG_LEN,
            actual: sealed.ciphertext.len(),
        });
    };
    let enc = <Kem as ::hpke::Kem>::EncappedKey::from_bytes(&sealed.enc)
        .map_err(|_| CryptoError::VerificationFailed)?;
    let tag = AeadTag::<AesGcm256>::from_bytes(&sealed.ciphertext[body_len..])
        .map_err(|_| CryptoError::VerificationFailed)?;
    let mode = OpModeR::<Kem>::Auth(public(sender)?);
    let sk_r = private(recipient)?;
    let mut out = SecretVec::zeroed(body_len)?;
    out.expose_secret_mut()
        .copy_from_slice(&sealed.ciphertext[..body_len]);
    ::hpke::single_shot_open_inout_detached::<AesGcm256, HkdfSha384, Kem>(
        &mode,
        &sk_r,
        &enc,
        info,
        out.expose_secret_mut().into(),
        aad,
        &tag,
    )
    .map_err(|_| CryptoError::VerificationFailed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExposeSecret;

    fn keys() -> (EccP384PrivateKey, EccP384PrivateKey) {
        (
            EccP384PrivateKey::generate().unwrap(),
            EccP384PrivateKey::generate().unwrap(),
        )
    }

    #[test]
    fn seals_and_opens_only_between_the_two_keys() {
        let (s, r) = keys();
        let m = seal_auth(r.public_key(), &s, b"info", b"aad", b"the partition").unwrap();
        assert_eq!(m.enc.len(), ENC_LEN);
        assert_eq!(m.ciphertext.len(), 13 + TAG_LEN);
        let out = open_auth(&r, s.public_key(), b"info", b"aad", &m).unwrap();
        assert_eq!(out.expose_secret(), b"the partition");
        // Another sender, recipient, info or aad: nothing opens.
        let (other, _) = keys();
        assert!(open_auth(&r, other.public_key(), b"info", b"aad", &m).is_err());
        assert!(open_auth(&other, s.public_key(), b"info", b"aad", &m).is_err());
        assert!(open_auth(&r, s.public_key(), b"infx", b"aad", &m).is_err());
        assert!(open_auth(&r, s.public_key(), b"info", b"aax", &m).is_err());
        // Any byte changed, and every truncation.
        for i in 0..m.ciphertext.len() {
            let mut t = m.clone();
            t.ciphertext[i] ^= 1;
            assert!(open_auth(&r, s.public_key(), b"info", b"aad", &t).is_err());
        }
        for n in 0..m.ciphertext.len() {
            let mut t = m.clone();
            t.ciphertext.truncate(n);
            assert!(open_auth(&r, s.public_key(), b"info", b"aad", &t).is_err());
        }
        for n in [0, 1, 65, 96, 98] {
            let mut t = m.clone();
            t.enc.resize(n, 4);
            assert!(open_auth(&r, s.public_key(), b"info", b"aad", &t).is_err());
        }
        let mut t = m.clone();
        t.enc[10] ^= 1;
        assert!(open_auth(&r, s.public_key(), b"info", b"aad", &t).is_err());
    }

    #[test]
    fn an_empty_message_round_trips() {
        let (s, r) = keys();
        let m = seal_auth(r.public_key(), &s, b"", b"", b"").unwrap();
        assert!(
            open_auth(&r, s.public_key(), b"", b"", &m)
                .unwrap()
                .expose_secret()
                .is_empty()
        );
    }
}
