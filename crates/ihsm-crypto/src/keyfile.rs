//! Key files: PKCS#8 private keys and SubjectPublicKeyInfo public keys, DER or PEM,
//! for ECC P-384 and ML-DSA-87 (RFC 5480, RFC 5915 and the ML-DSA X.509 profile,
//! id-ml-dsa-87 = 2.16.840.1.101.3.4.3.19 with absent parameters).

use der::asn1::{BitStringRef, ObjectIdentifier};
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::ec::{EccP384PrivateKey, EccP384PublicKey};
use crate::mldsa::{MlDsa87PrivateKey, MlDsa87PublicKey};

/// id-ecPublicKey (RFC 5480).
pub const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp384r1.
pub const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// id-ml-dsa-87.
pub const OID_ML_DSA_87: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.19");

const PUBLIC_LABEL: &str = "PUBLIC KEY";
const PRIVATE_LABEL: &str = "PRIVATE KEY";

fn spki_der(alg: AlgorithmIdentifierRef<'_>, key: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let bits = BitStringRef::from_bytes(key).map_err(|_| CryptoError::Internal("SPKI encoding"))?;
    SubjectPublicKeyInfoRef {
        algorithm: alg,
        subject_public_key: bits,
    }
    .to_der()
    .map_err(|_| CryptoError::Internal("SPKI encoding"))
}

impl MlDsa87PublicKey {
    /// The SubjectPublicKeyInfo DER encoding.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, CryptoError> {
        spki_der(
            AlgorithmIdentifierRef {
                oid: OID_ML_DSA_87,
                parameters: None,
            },
            self.as_bytes(),
        )
    }
}

/// A public key of either kind ihsm signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// ECC P-384.
    EccP384(EccP384PublicKey),
    /// ML-DSA-87.
    MlDsa87(MlDsa87PublicKey),
}

impl PublicKey {
    /// Parses a SubjectPublicKeyInfo (DER).
    ///
    /// # Errors
    /// [`CryptoError::KeyFile`] for anything but a P-384 or ML-DSA-87 public key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|_| CryptoError::KeyFile("not a DER SubjectPublicKeyInfo"))?;
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or(CryptoError::KeyFile(
                "public key bit string is not octet-aligned",
            ))?;
        match spki.algorithm.oid {
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters_oid()
                    .map_err(|_| CryptoError::KeyFile("EC public key without a named curve"))?;
                if curve != OID_SECP384R1 {
                    return Err(CryptoError::KeyFile("EC public key is not on P-384"));
                }
                Ok(Self::EccP384(EccP384PublicKey::from_sec1(key)?))
            }
            OID_ML_DSA_87 => {
                if spki.algorithm.parameters.is_some() {
                    return Err(CryptoError::KeyFile(
                        "ML-DSA-87 algorithm must have no parameters",
                    ));
                }
                Ok(Self::MlDsa87(MlDsa87PublicKey::from_bytes(key)?))
            }
            _ => Err(CryptoError::KeyFile(
                "public key is neither ECC P-384 nor ML-DSA-87",
            )),
        }
    }

    /// Parses a PEM `PUBLIC KEY`.
    ///
    /// # Errors
    /// [`CryptoError::KeyFile`] when it is not one.
    pub fn from_pem(pem_text: &str) -> Result<Self, CryptoError> {
        let block = pem::parse(pem_text).map_err(|_| CryptoError::KeyFile("not a PEM file"))?;
        if block.tag() != PUBLIC_LABEL {
            return Err(CryptoError::KeyFile("PEM block is not a PUBLIC KEY"));
        }
        Self::from_spki_der(block.contents())
    }

    /// The SubjectPublicKeyInfo DER.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, CryptoError> {
        match self {
            Self::EccP384(k) => k.to_spki_der(),
            Self::MlDsa87(k) => k.to_spki_der(),
        }
    }

    /// PEM `PUBLIC KEY`.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_pem(&self) -> Result<String, CryptoError> {
        Ok(pem::encode(&pem::Pem::new(
            PUBLIC_LABEL,
            self.to_spki_der()?,
        )))
    }
}

/// Encodes a private key as PEM `PRIVATE KEY` (PKCS#8), in a buffer wiped on drop.
///
/// Encoded straight into that buffer, at its final size: no base64 copy of the key
/// is made elsewhere. The text is that of the `pem` crate (64-column lines, CRLF).
///
/// # Errors
/// [`CryptoError::Internal`] if encoding fails.
pub fn private_pem(pkcs8_der: &[u8]) -> Result<Zeroizing<String>, CryptoError> {
    let fail = CryptoError::Internal("PEM encoding");
    let eol = pem_rfc7468::LineEnding::CRLF;
    let len = pem_rfc7468::encoded_len(PRIVATE_LABEL, eol, pkcs8_der).map_err(|_| fail)?;
    let mut buf = Zeroizing::new(vec![0u8; len]);
    let written = pem_rfc7468::encode(PRIVATE_LABEL, eol, pkcs8_der, &mut buf)
        .map_err(|_| fail)?
        .len();
    buf.truncate(written);
    // A move, not a copy: the allocation goes from one wiped-on-drop owner to the
    // other. The encoder writes ASCII only, so the conversion cannot fail; were it
    // to, the bytes it hands back are wiped.
    match String::from_utf8(core::mem::take(&mut *buf)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(fail)
        }
    }
}

/// The DER inside a PEM `PRIVATE KEY`, decoded into a buffer wiped on drop (also
/// when the label is wrong or the base64 is bad: nothing of it is left behind).
fn private_der(pem_text: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    // Blank lines around the block, which the `pem` crate allowed, are not RFC
    // 7468's strict grammar: trimmed first.
    let mut decoder = pem_rfc7468::Decoder::new_detect_wrap(pem_text.trim().as_bytes())
        .map_err(|_| CryptoError::KeyFile("not a PEM file"))?;
    if decoder.type_label() != PRIVATE_LABEL {
        return Err(CryptoError::KeyFile(
            "PEM block is not a PRIVATE KEY (PKCS#8)",
        ));
    }
    let mut der = Zeroizing::new(vec![0u8; decoder.remaining_len()]);
    let len = decoder
        .decode(&mut der)
        .map_err(|_| CryptoError::KeyFile("PEM PRIVATE KEY has bad base64"))?
        .len();
    if !decoder.is_finished() {
        return Err(CryptoError::KeyFile("PEM PRIVATE KEY has bad base64"));
    }
    der.truncate(len);
    Ok(der)
}

impl EccP384PrivateKey {
    /// Reads a PEM `PRIVATE KEY` (PKCS#8).
    ///
    /// # Errors
    /// [`CryptoError::KeyFile`] or [`CryptoError::InvalidKey`].
    pub fn from_pem(pem_text: &str) -> Result<Self, CryptoError> {
        Self::from_der(&private_der(pem_text)?)
    }

    /// PEM `PRIVATE KEY` (PKCS#8), wiped on drop.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, CryptoError> {
        private_pem(&self.to_pkcs8_der()?)
    }
}

impl MlDsa87PrivateKey {
    /// Reads a PEM `PRIVATE KEY` (PKCS#8).
    ///
    /// # Errors
    /// [`CryptoError::KeyFile`] or [`CryptoError::InvalidKey`].
    pub fn from_pem(pem_text: &str) -> Result<Self, CryptoError> {
        Self::from_pkcs8_der(&private_der(pem_text)?)
    }

    /// PEM `PRIVATE KEY` (PKCS#8, seed form), wiped on drop.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, CryptoError> {
        private_pem(&self.to_pkcs8_der()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_pem_roundtrip_both_kinds() {
        let e = EccP384PrivateKey::generate().unwrap();
        let m = MlDsa87PrivateKey::generate().unwrap();
        for k in [
            PublicKey::EccP384(e.public_key().clone()),
            PublicKey::MlDsa87(m.public_key().clone()),
        ] {
            let pem = k.to_pem().unwrap();
            assert_eq!(PublicKey::from_pem(&pem).unwrap(), k);
        }
    }

    #[test]
    fn ecc_spki_is_what_p384_expects() {
        use p384::pkcs8::DecodePublicKey;
        let e = EccP384PrivateKey::generate().unwrap();
        let der = e.public_key().to_spki_der().unwrap();
        let pk = p384::PublicKey::from_public_key_der(&der).unwrap();
        assert_eq!(
            p384::PublicKey::from_sec1_bytes(e.public_key().as_bytes()).unwrap(),
            pk
        );
    }

    #[test]
    fn private_pem_roundtrip_and_label_checks() {
        let e = EccP384PrivateKey::generate().unwrap();
        let pem = e.to_pem().unwrap();
        assert_eq!(
            EccP384PrivateKey::from_pem(&pem).unwrap().public_key(),
            e.public_key()
        );
        assert!(MlDsa87PrivateKey::from_pem(&pem).is_err());
        let pub_pem = PublicKey::EccP384(e.public_key().clone()).to_pem().unwrap();
        assert_eq!(
            EccP384PrivateKey::from_pem(&pub_pem).unwrap_err(),
            CryptoError::KeyFile("PEM block is not a PRIVATE KEY (PKCS#8)")
        );
        assert!(PublicKey::from_pem("garbage").is_err());
        assert!(PublicKey::from_spki_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
    }

    /// The private PEM is byte for byte what the `pem` crate wrote before (so key
    /// files are unchanged), and files in that form, with LF line ends, or with
    /// another line width still read back.
    #[test]
    fn private_pem_is_the_pem_crates_text_and_reads_other_layouts() {
        for key in [
            EccP384PrivateKey::generate()
                .unwrap()
                .to_pkcs8_der()
                .unwrap(),
            MlDsa87PrivateKey::generate()
                .unwrap()
                .to_pkcs8_der()
                .unwrap(),
        ] {
            let ours = private_pem(&key).unwrap();
            let theirs = pem::encode(&pem::Pem::new(PRIVATE_LABEL, key.to_vec()));
            assert_eq!(ours.as_str(), theirs);
            assert_eq!(private_der(&ours).unwrap().as_slice(), key.as_slice());
            let lf = pem::encode_config(
                &pem::Pem::new(PRIVATE_LABEL, key.to_vec()),
                pem::EncodeConfig::new()
                    .set_line_ending(pem::LineEnding::LF)
                    .set_line_wrap(76),
            );
            assert_eq!(private_der(&lf).unwrap().as_slice(), key.as_slice());
            let padded = format!("a key\n\n{}\n\n", ours.as_str());
            assert_eq!(private_der(&padded).unwrap().as_slice(), key.as_slice());
            let mut bad = ours.to_string();
            bad.replace_range(40..41, "!");
            assert!(private_der(&bad).is_err());
        }
        let pub_pem = pem::encode(&pem::Pem::new("RSA PRIVATE KEY", vec![1, 2, 3]));
        assert_eq!(
            private_der(&pub_pem).unwrap_err(),
            CryptoError::KeyFile("PEM block is not a PRIVATE KEY (PKCS#8)")
        );
        assert!(private_der("").is_err());
    }
}
