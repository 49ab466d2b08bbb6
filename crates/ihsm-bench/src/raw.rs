//! `--raw`: the same operations called directly on aws-lc-rs in this process, no
//! boundary of any kind: the ceiling of this machine.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, ML_KEM_768};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    KeyPair as RsaKeyPair, KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    ML_DSA_65_SIGNING, PqdsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use aws_lc_rs::{hmac, signature::KeyPair};

use crate::measure::{Bench, Op};
use crate::workload::Workload;
use crate::{Error, Result};

/// The name the ceiling has in reports.
pub const NAME: &str = "raw aws-lc-rs";

fn lib(what: &str) -> Error {
    Error::Raw(format!("aws-lc-rs refused {what}"))
}

enum Keys {
    Ecdsa(EcdsaKeyPair, &'static digest::Algorithm),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, bool),
    Oaep(OaepPrivateDecryptingKey, Vec<u8>),
    Gcm(LessSafeKey),
    Hmac(Box<hmac::Key>),
    MlDsa(PqdsaKeyPair),
    MlKem(DecapsulationKey, Vec<u8>),
    Random,
    GenAes,
    GenEc,
}

/// A workload's keys in this process.
pub struct Raw {
    workload: Workload,
    keys: Keys,
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Raw({})", self.workload)
    }
}

impl Raw {
    /// Makes the keys `w` needs.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a find (there is nothing to find without a
    /// token); [`Error::Raw`] if aws-lc-rs fails.
    pub fn prepare(w: Workload) -> Result<Self> {
        let keys = match w {
            Workload::EcdsaP256 => Keys::Ecdsa(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| lib("P-256"))?,
                &digest::SHA256,
            ),
            Workload::EcdsaP384 => Keys::Ecdsa(
                EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
                    .map_err(|_| lib("P-384"))?,
                &digest::SHA384,
            ),
            Workload::Ed25519 => {
                Keys::Ed25519(Ed25519KeyPair::generate().map_err(|_| lib("Ed25519"))?)
            }
            Workload::RsaPkcs1 | Workload::RsaPss => Keys::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| lib("RSA-2048"))?,
                w == Workload::RsaPss,
            ),
            Workload::RsaOaepDecrypt => {
                let sk = PrivateDecryptingKey::generate(KeySize::Rsa2048)
                    .map_err(|_| lib("RSA-2048"))?;
                let pk = OaepPublicEncryptingKey::new(sk.public_key()).map_err(|_| lib("OAEP"))?;
                let mut ct = vec![0; pk.ciphertext_size()];
                let n = pk
                    .encrypt(&OAEP_SHA256_MGF1SHA256, &w.input(), &mut ct, None)
                    .map_err(|_| lib("OAEP encryption"))?
                    .len();
                ct.truncate(n);
                Keys::Oaep(
                    OaepPrivateDecryptingKey::new(sk).map_err(|_| lib("OAEP"))?,
                    ct,
                )
            }
            Workload::AesGcm(_) => {
                let mut k = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut k)
                    .map_err(|_| lib("random"))?;
                let key = UnboundKey::new(&AES_256_GCM, &k).map_err(|_| lib("AES-256"))?;
                Keys::Gcm(LessSafeKey::new(key))
            }
            Workload::HmacSha256 => Keys::Hmac(Box::new(
                hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
                    .map_err(|_| lib("HMAC key"))?,
            )),
            Workload::MlDsa65 => Keys::MlDsa(
                PqdsaKeyPair::generate(&ML_DSA_65_SIGNING).map_err(|_| lib("ML-DSA-65"))?,
            ),
            Workload::MlKem768Decap => {
                let dk = DecapsulationKey::generate(&ML_KEM_768).map_err(|_| lib("ML-KEM-768"))?;
                let ek = dk.encapsulation_key().map_err(|_| lib("ML-KEM-768"))?;
                let (ct, _) = ek.encapsulate().map_err(|_| lib("ML-KEM encapsulation"))?;
                Keys::MlKem(dk, ct.as_ref().to_vec())
            }
            Workload::Random32 => Keys::Random,
            Workload::GenAes256 => Keys::GenAes,
            Workload::GenEcP256 => Keys::GenEc,
            Workload::Find(_) => {
                return Err(Error::Unsupported(format!("{NAME} has nothing to find in")));
            }
        };
        Ok(Self { workload: w, keys })
    }
}

impl Bench for Raw {
    fn name(&self) -> &str {
        NAME
    }

    fn worker(&self, index: usize) -> Result<Box<dyn Op + Send + '_>> {
        Ok(Box::new(Worker {
            raw: self,
            rng: SystemRandom::new(),
            data: self.workload.input(),
            out: vec![0; 8192],
            counter: 0,
            index: index as u32,
        }))
    }
}

struct Worker<'r> {
    raw: &'r Raw,
    rng: SystemRandom,
    data: Vec<u8>,
    out: Vec<u8>,
    counter: u64,
    index: u32,
}

impl Op for Worker<'_> {
    fn once(&mut self) -> Result<()> {
        let fail = |what| move |_| lib(what);
        match &self.raw.keys {
            Keys::Ecdsa(k, hash) => {
                let d = Digest::import_less_safe(&self.data, hash).map_err(fail("digest"))?;
                k.sign_digest(&d).map(drop).map_err(fail("ECDSA"))
            }
            Keys::Ed25519(k) => {
                std::hint::black_box(k.sign(&self.data));
                Ok(())
            }
            Keys::Rsa(k, pss) => {
                let enc = if *pss {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                let n = k.public_modulus_len();
                k.sign(enc, &self.rng, &self.data, &mut self.out[..n])
                    .map_err(fail("RSA signing"))
            }
            Keys::Oaep(k, ct) => k
                .decrypt(&OAEP_SHA256_MGF1SHA256, ct, &mut self.out, None)
                .map(drop)
                .map_err(fail("OAEP decryption")),
            Keys::Gcm(k) => {
                // Encrypt a fresh copy, as a module does with the caller's buffer.
                self.counter += 1;
                let mut iv = [0u8; 12];
                iv[..4].copy_from_slice(&self.index.to_be_bytes());
                iv[4..].copy_from_slice(&self.counter.to_be_bytes());
                let mut buf = self.data.clone();
                k.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(iv),
                    Aad::empty(),
                    &mut buf,
                )
                .map_err(fail("AES-GCM"))?;
                std::hint::black_box(buf);
                Ok(())
            }
            Keys::Hmac(k) => {
                std::hint::black_box(hmac::sign(k, &self.data));
                Ok(())
            }
            Keys::MlDsa(k) => k
                .sign(&self.data, &mut self.out)
                .map(drop)
                .map_err(fail("ML-DSA")),
            Keys::MlKem(k, ct) => k
                .decapsulate(Ciphertext::from(ct.as_slice()))
                .map(drop)
                .map_err(fail("ML-KEM decapsulation")),
            Keys::Random => self.rng.fill(&mut self.out[..32]).map_err(fail("random")),
            Keys::GenAes => {
                let mut k = [0u8; 32];
                self.rng.fill(&mut k).map_err(fail("random"))?;
                let key = UnboundKey::new(&AES_256_GCM, &k).map_err(fail("AES-256"))?;
                std::hint::black_box(LessSafeKey::new(key));
                Ok(())
            }
            Keys::GenEc => {
                let k = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(fail("P-256 key generation"))?;
                std::hint::black_box(k.public_key());
                Ok(())
            }
        }
    }
}
