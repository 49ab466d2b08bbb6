//! Key sets: a directory of signing keys, for a vendor (1 to 4 keys per algorithm)
//! or an owner (one per algorithm).
//!
//! ```text
//! ecc384-0.pub.pem   ecc384-0.key.pem   (PKCS#8, mode 0600)
//! mldsa87-0.pub.pem  mldsa87-0.key.pem
//! ecc384-1.pub.pem   ...
//! ```
//!
//! Public keys are what fuses and manifests need; a private key need only be
//! present for the index that signs, so production private keys can stay offline.

use std::fs;
use std::path::{Path, PathBuf};

use ihsm_crypto::ec::{EccP384PrivateKey, EccP384PublicKey};
use ihsm_crypto::keyfile::PublicKey;
use ihsm_crypto::mldsa::{MlDsa87PrivateKey, MlDsa87PublicKey};

use crate::error::{Result, RotError};
use crate::fuses::write_atomic;
use crate::manifest::{self, MAX_VENDOR_KEYS, OwnerSigner, VendorSigner};

/// A loaded key set.
#[derive(Debug)]
pub struct KeySet {
    dir: PathBuf,
    /// ECC P-384 public keys, by index.
    pub ecc_public: Vec<EccP384PublicKey>,
    /// ML-DSA-87 public keys, by index.
    pub mldsa_public: Vec<MlDsa87PublicKey>,
    ecc_private: Vec<Option<EccP384PrivateKey>>,
    mldsa_private: Vec<Option<MlDsa87PrivateKey>>,
}

fn err(dir: &Path, reason: impl Into<String>) -> RotError {
    RotError::KeySet {
        dir: dir.to_owned(),
        reason: reason.into(),
    }
}

/// A private key, when its file is present, must be the one of its public key.
fn private_key<K>(
    dir: &Path,
    name: String,
    text: Option<zeroize::Zeroizing<String>>,
    parse: impl Fn(&str) -> core::result::Result<K, ihsm_crypto::CryptoError>,
    matches: impl Fn(&K) -> bool,
) -> Result<Option<K>> {
    let Some(text) = text else { return Ok(None) };
    let key = parse(&text).map_err(|x| err(dir, format!("{name}: {x}")))?;
    if !matches(&key) {
        return Err(err(dir, format!("{name} does not match its .pub.pem")));
    }
    Ok(Some(key))
}

impl KeySet {
    /// Generates `count` fresh key pairs per algorithm (in memory).
    ///
    /// # Errors
    /// [`RotError::KeySet`] for a bad count, or [`RotError::Crypto`].
    pub fn generate(dir: &Path, count: usize) -> Result<Self> {
        if count == 0 || count > MAX_VENDOR_KEYS {
            return Err(err(dir, "a key set holds 1 to 4 keys per algorithm"));
        }
        let mut s = Self {
            dir: dir.to_owned(),
            ecc_public: Vec::new(),
            mldsa_public: Vec::new(),
            ecc_private: Vec::new(),
            mldsa_private: Vec::new(),
        };
        for _ in 0..count {
            let e = EccP384PrivateKey::generate()?;
            let m = MlDsa87PrivateKey::generate()?;
            s.ecc_public.push(e.public_key().clone());
            s.mldsa_public.push(m.public_key().clone());
            s.ecc_private.push(Some(e));
            s.mldsa_private.push(Some(m));
        }
        Ok(s)
    }

    /// Writes the set into its directory (created 0700; private keys 0600).
    ///
    /// # Errors
    /// [`RotError::Io`] or [`RotError::KeySet`] when files already exist.
    pub fn write(&self, readme: Option<&str>) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(RotError::io("cannot create key directory", &self.dir))?;
        for (i, (e, m)) in self.ecc_public.iter().zip(&self.mldsa_public).enumerate() {
            for (name, text) in [
                (
                    format!("ecc384-{i}.pub.pem"),
                    PublicKey::EccP384(e.clone()).to_pem()?,
                ),
                (
                    format!("mldsa87-{i}.pub.pem"),
                    PublicKey::MlDsa87(m.clone()).to_pem()?,
                ),
            ] {
                let path = self.dir.join(&name);
                if path.exists() {
                    return Err(err(
                        &self.dir,
                        format!("{name} already exists; refusing to overwrite keys"),
                    ));
                }
                write_atomic(&path, text.as_bytes(), 0o644)?;
            }
            if let Some(Some(k)) = self.ecc_private.get(i) {
                write_atomic(
                    &self.dir.join(format!("ecc384-{i}.key.pem")),
                    k.to_pem()?.as_bytes(),
                    0o600,
                )?;
            }
            if let Some(Some(k)) = self.mldsa_private.get(i) {
                write_atomic(
                    &self.dir.join(format!("mldsa87-{i}.key.pem")),
                    k.to_pem()?.as_bytes(),
                    0o600,
                )?;
            }
        }
        if let Some(text) = readme {
            write_atomic(&self.dir.join("README"), text.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    /// The same keys, to be written to `dir` ([`KeySet::write`]): a development
    /// device provisioned under another's development keys keeps its own copy.
    #[must_use]
    pub fn with_dir(mut self, dir: &Path) -> Self {
        dir.clone_into(&mut self.dir);
        self
    }

    /// Loads a set: public keys `0..n` until the first missing index, and private
    /// keys where present (each must match its public key).
    ///
    /// # Errors
    /// [`RotError::KeySet`] saying which file is wrong.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(err(dir, "no such directory"));
        }
        let read = |name: &str| -> Result<Option<zeroize::Zeroizing<String>>> {
            let path = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(t) => Ok(Some(zeroize::Zeroizing::new(t))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(RotError::io("cannot read key file", path)(e)),
            }
        };
        let mut s = Self {
            dir: dir.to_owned(),
            ecc_public: Vec::new(),
            mldsa_public: Vec::new(),
            ecc_private: Vec::new(),
            mldsa_private: Vec::new(),
        };
        for i in 0..MAX_VENDOR_KEYS {
            let (ecc_name, ml_name) = (
                format!("ecc384-{i}.pub.pem"),
                format!("mldsa87-{i}.pub.pem"),
            );
            let (e, m) = match (read(&ecc_name)?, read(&ml_name)?) {
                (Some(e), Some(m)) => (e, m),
                (None, None) => break,
                (Some(_), None) => {
                    return Err(err(dir, format!("{ecc_name} has no partner {ml_name}")));
                }
                (None, Some(_)) => {
                    return Err(err(dir, format!("{ml_name} has no partner {ecc_name}")));
                }
            };
            let e = match PublicKey::from_pem(&e) {
                Ok(PublicKey::EccP384(k)) => k,
                Ok(_) => return Err(err(dir, format!("{ecc_name} is not an ECC P-384 key"))),
                Err(x) => return Err(err(dir, format!("{ecc_name}: {x}"))),
            };
            let m = match PublicKey::from_pem(&m) {
                Ok(PublicKey::MlDsa87(k)) => k,
                Ok(_) => return Err(err(dir, format!("{ml_name} is not an ML-DSA-87 key"))),
                Err(x) => return Err(err(dir, format!("{ml_name}: {x}"))),
            };
            let ecc_name = format!("ecc384-{i}.key.pem");
            let ml_name = format!("mldsa87-{i}.key.pem");
            let ecc_priv = private_key(
                dir,
                ecc_name.clone(),
                read(&ecc_name)?,
                EccP384PrivateKey::from_pem,
                |k| k.public_key() == &e,
            )?;
            let ml_priv = private_key(
                dir,
                ml_name.clone(),
                read(&ml_name)?,
                MlDsa87PrivateKey::from_pem,
                |k| k.public_key() == &m,
            )?;
            s.ecc_public.push(e);
            s.mldsa_public.push(m);
            s.ecc_private.push(ecc_priv);
            s.mldsa_private.push(ml_priv);
        }
        if s.ecc_public.is_empty() {
            return Err(err(dir, "no key pair ecc384-0.pub.pem + mldsa87-0.pub.pem"));
        }
        Ok(s)
    }

    /// The hash a device of this vendor fuses.
    ///
    /// # Errors
    /// As [`manifest::vendor_key_hash_for`].
    pub fn vendor_key_hash(&self) -> Result<[u8; 48]> {
        manifest::vendor_key_hash_for(&self.ecc_public, &self.mldsa_public)
    }

    /// The hash a device of this owner fuses (key pair 0).
    ///
    /// # Errors
    /// [`RotError::KeySet`] if the set is empty.
    pub fn owner_key_hash(&self) -> Result<[u8; 48]> {
        match (self.ecc_public.first(), self.mldsa_public.first()) {
            (Some(e), Some(m)) => Ok(manifest::owner_key_hash(e, m)),
            _ => Err(err(&self.dir, "empty key set")),
        }
    }

    /// Signing material for a vendor signature with the given indices.
    ///
    /// # Errors
    /// [`RotError::KeySet`] when a private key is missing.
    pub fn vendor_signer(&self, ecc_index: u32, mldsa_index: u32) -> Result<VendorSigner<'_>> {
        let get = |i: u32| usize::try_from(i).ok();
        let ecc = get(ecc_index)
            .and_then(|i| self.ecc_private.get(i))
            .and_then(Option::as_ref)
            .ok_or_else(|| {
                err(
                    &self.dir,
                    format!("no private key ecc384-{ecc_index}.key.pem to sign with"),
                )
            })?;
        let mldsa = get(mldsa_index)
            .and_then(|i| self.mldsa_private.get(i))
            .and_then(Option::as_ref)
            .ok_or_else(|| {
                err(
                    &self.dir,
                    format!("no private key mldsa87-{mldsa_index}.key.pem to sign with"),
                )
            })?;
        Ok(VendorSigner {
            ecc_keys: &self.ecc_public,
            mldsa_keys: &self.mldsa_public,
            ecc_index,
            mldsa_index,
            ecc,
            mldsa,
        })
    }

    /// Signing material for an owner countersignature (key pair 0).
    ///
    /// # Errors
    /// [`RotError::KeySet`] when a private key is missing.
    pub fn owner_signer(&self) -> Result<OwnerSigner<'_>> {
        match (
            self.ecc_private.first().and_then(Option::as_ref),
            self.mldsa_private.first().and_then(Option::as_ref),
        ) {
            (Some(ecc), Some(mldsa)) => Ok(OwnerSigner { ecc, mldsa }),
            _ => Err(err(
                &self.dir,
                "owner private keys ecc384-0.key.pem and mldsa87-0.key.pem are needed",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_sets_load_back_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("vendor");
        let set = KeySet::generate(&d, 2).unwrap();
        set.write(None).unwrap();
        let back = KeySet::load(&d).unwrap();
        assert_eq!(
            back.vendor_key_hash().unwrap(),
            set.vendor_key_hash().unwrap()
        );
        assert!(back.vendor_signer(1, 1).is_ok());
        // Writing again refuses to overwrite keys.
        assert!(matches!(set.write(None), Err(RotError::KeySet { .. })));
        // A private key that belongs to another public key.
        fs::copy(d.join("ecc384-0.key.pem"), d.join("ecc384-1.key.pem")).unwrap();
        let e = KeySet::load(&d).unwrap_err().to_string();
        assert!(e.contains("ecc384-1.key.pem does not match"), "{e}");
        fs::remove_file(d.join("ecc384-1.key.pem")).unwrap();
        // Without its private key, index 1 can no longer sign.
        let e = KeySet::load(&d)
            .unwrap()
            .vendor_signer(1, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no private key ecc384-1.key.pem"), "{e}");
        // A key without its partner.
        fs::remove_file(d.join("mldsa87-1.pub.pem")).unwrap();
        let e = KeySet::load(&d).unwrap_err().to_string();
        assert!(
            e.contains("ecc384-1.pub.pem has no partner mldsa87-1.pub.pem"),
            "{e}"
        );
        // Garbage in a key file.
        fs::write(d.join("mldsa87-0.pub.pem"), "garbage").unwrap();
        assert!(
            KeySet::load(&d)
                .unwrap_err()
                .to_string()
                .contains("mldsa87-0.pub.pem")
        );
        assert!(KeySet::load(&dir.path().join("missing")).is_err());
        assert!(KeySet::generate(&d, 5).is_err());
    }
}
