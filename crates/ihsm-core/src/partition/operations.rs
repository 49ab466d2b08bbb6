//! The cryptographic operations: sign and verify, encrypt and decrypt (single- and
//! multi-part, and the daemon's one-call fast paths), digest, random.

use ihsm_crypto::SecretVec;

use super::{Caller, Need, Partition, Rate};
use crate::error::{CoreError, Result};
use crate::mech::{HashExt, Mechanism};
use crate::ops::{self, Usage};
use crate::session::{CryptOp, SignOp};

impl Partition {
    /// C_SignInit / C_VerifyInit.
    ///
    /// # Errors
    /// [`CoreError::OperationActive`], key and mechanism errors.
    pub fn sign_init(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        key: u64,
        verify: bool,
    ) -> Result<()> {
        let Caller { login, .. } = self.enter(app, session, Need::Session, Rate::Free)?;
        let k = self.key(login, key)?;
        let usage = if verify { Usage::Verify } else { Usage::Sign };
        if *mech == Mechanism::KeyReport {
            // A report describes any key; it signs nothing the caller chose.
            if verify {
                return Err(CoreError::MechanismInvalid(
                    "CKM_IHSM_KEY_REPORT makes reports; verify them with ihsm verify".into(),
                ));
            }
        } else {
            ops::permitted(&k, usage)?;
            // Validate mechanism against the key now, as PKCS#11 wants errors at Init.
            let _ = ops::SignCtx::new(mech, &k, usage, self.policy)?;
        }
        self.with_session(app, session, |s, _| {
            let slot = if verify { &mut s.verify } else { &mut s.sign };
            if slot.is_some() {
                return Err(CoreError::OperationActive);
            }
            *slot = Some(SignOp {
                mech: mech.clone(),
                key: k,
                ctx: None,
            });
            Ok(())
        })
    }

    /// The preamble of a call that continues a signing (or verifying) operation,
    /// taking the operation out of its session.
    fn take_sign(&self, app: u64, session: u64, verify: bool, rate: Rate) -> Result<SignOp> {
        let (_, op) = self.enter_with(app, session, Need::Session, rate, |s| {
            let slot = if verify { &mut s.verify } else { &mut s.sign };
            slot.take().ok_or(CoreError::OperationNotInitialized)
        })?;
        Ok(op)
    }

    fn put_sign(&self, app: u64, session: u64, verify: bool, op: SignOp) -> Result<()> {
        self.with_session(app, session, |s, _| {
            if verify {
                s.verify = Some(op);
            } else {
                s.sign = Some(op);
            }
            Ok(())
        })
    }

    /// C_Sign: single-part; ends the operation.
    ///
    /// # Errors
    /// Operation, data and key errors.
    pub fn sign(&self, app: u64, session: u64, data: &[u8]) -> Result<Vec<u8>> {
        let op = self.take_sign(app, session, false, Rate::Counted)?;
        if op.ctx.is_some() {
            return Err(CoreError::OperationActive);
        }
        if op.mech == Mechanism::KeyReport {
            return self.report_of(&op.key, data);
        }
        self.watch(ops::sign(&op.mech, &op.key, data, self.policy))
    }

    /// Sign in one call (SignInit + Sign), the daemon's fast path. It touches no
    /// operation in progress, and is refused, as C_SignInit would be, while a
    /// signing operation is: never an answer as if there were none.
    ///
    /// # Errors
    /// As [`Partition::sign_init`] and [`Partition::sign`].
    pub fn sign_once(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        key: u64,
        data: &[u8],
    ) -> Result<Vec<u8>> {
        let (Caller { login, .. }, ()) =
            self.enter_with(app, session, Need::Session, Rate::Counted, |s| {
                idle(s.sign.is_some())
            })?;
        let k = self.key(login, key)?;
        if *mech == Mechanism::KeyReport {
            return self.report_of(&k, data);
        }
        self.watch(ops::sign(mech, &k, data, self.policy))
    }

    /// C_SignUpdate / C_VerifyUpdate.
    ///
    /// # Errors
    /// Operation and data errors; an error ends the operation.
    pub fn sign_update(&self, app: u64, session: u64, data: &[u8], verify: bool) -> Result<()> {
        let mut op = self.take_sign(app, session, verify, Rate::Free)?;
        let usage = if verify { Usage::Verify } else { Usage::Sign };
        let mut ctx = match op.ctx.take() {
            Some(c) => c,
            None => ops::SignCtx::new(&op.mech, &op.key, usage, self.policy)?,
        };
        ctx.update(data)?;
        op.ctx = Some(ctx);
        self.put_sign(app, session, verify, op)
    }

    /// C_SignFinal.
    ///
    /// # Errors
    /// Operation and key errors.
    pub fn sign_final(&self, app: u64, session: u64) -> Result<Vec<u8>> {
        let op = self.take_sign(app, session, false, Rate::Counted)?;
        let ctx = match op.ctx {
            Some(c) => c,
            None => ops::SignCtx::new(&op.mech, &op.key, Usage::Sign, self.policy)?,
        };
        self.watch(ctx.sign(&op.mech, &op.key, self.policy))
    }

    /// C_Verify: single-part; ends the operation.
    ///
    /// # Errors
    /// [`CoreError::SignatureInvalid`] and the rest.
    pub fn verify(&self, app: u64, session: u64, data: &[u8], sig: &[u8]) -> Result<()> {
        let op = self.take_sign(app, session, true, Rate::Counted)?;
        if op.ctx.is_some() {
            return Err(CoreError::OperationActive);
        }
        ops::verify(&op.mech, &op.key, data, sig)
    }

    /// C_VerifyFinal.
    ///
    /// # Errors
    /// [`CoreError::SignatureInvalid`] and the rest.
    pub fn verify_final(&self, app: u64, session: u64, sig: &[u8]) -> Result<()> {
        let op = self.take_sign(app, session, true, Rate::Counted)?;
        let ctx = match op.ctx {
            Some(c) => c,
            None => ops::SignCtx::new(&op.mech, &op.key, Usage::Verify, self.policy)?,
        };
        ctx.verify(&op.mech, &op.key, sig)
    }

    /// C_EncryptInit / C_DecryptInit.
    ///
    /// # Errors
    /// [`CoreError::OperationActive`], key and mechanism errors.
    pub fn crypt_init(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        key: u64,
        encrypt: bool,
    ) -> Result<()> {
        let Caller { login, .. } = self.enter(app, session, Need::Session, Rate::Free)?;
        let k = self.key(login, key)?;
        ops::CryptCtx::validate(mech, &k, encrypt)?;
        self.with_session(app, session, |s, _| {
            let slot = if encrypt {
                &mut s.encrypt
            } else {
                &mut s.decrypt
            };
            if slot.is_some() {
                return Err(CoreError::OperationActive);
            }
            *slot = Some(CryptOp {
                mech: mech.clone(),
                key: k,
                ctx: None,
            });
            Ok(())
        })
    }

    /// The preamble of a call that continues an encrypting (or decrypting)
    /// operation, taking the operation out of its session.
    fn take_crypt(&self, app: u64, session: u64, encrypt: bool, rate: Rate) -> Result<CryptOp> {
        let (_, op) = self.enter_with(app, session, Need::Session, rate, |s| {
            let slot = if encrypt {
                &mut s.encrypt
            } else {
                &mut s.decrypt
            };
            slot.take().ok_or(CoreError::OperationNotInitialized)
        })?;
        Ok(op)
    }

    /// C_Encrypt: single-part; returns the ciphertext and a generated GCM IV.
    ///
    /// # Errors
    /// Operation, data and key errors.
    pub fn encrypt(
        &self,
        app: u64,
        session: u64,
        data: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        let op = self.take_crypt(app, session, true, Rate::Counted)?;
        if op.ctx.is_some() {
            return Err(CoreError::OperationActive);
        }
        self.watch(ops::encrypt(&op.mech, &op.key, data))
    }

    /// Encrypt in one call (EncryptInit + Encrypt), the daemon's fast path; as
    /// [`Partition::sign_once`], refused while an encryption is in progress.
    ///
    /// # Errors
    /// As [`Partition::crypt_init`] and [`Partition::encrypt`].
    pub fn encrypt_once(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        key: u64,
        data: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        let (Caller { login, .. }, ()) =
            self.enter_with(app, session, Need::Session, Rate::Counted, |s| {
                idle(s.encrypt.is_some())
            })?;
        let k = self.key(login, key)?;
        self.watch(ops::encrypt(mech, &k, data))
    }

    /// C_Decrypt: single-part.
    ///
    /// # Errors
    /// [`CoreError::EncryptedDataInvalid`] and the rest.
    pub fn decrypt(&self, app: u64, session: u64, data: &[u8]) -> Result<SecretVec> {
        let op = self.take_crypt(app, session, false, Rate::Counted)?;
        if op.ctx.is_some() {
            return Err(CoreError::OperationActive);
        }
        self.watch(ops::decrypt(&op.mech, &op.key, data))
    }

    /// C_EncryptUpdate / C_DecryptUpdate.
    ///
    /// # Errors
    /// Operation and data errors; an error ends the operation.
    pub fn crypt_update(
        &self,
        app: u64,
        session: u64,
        data: &[u8],
        encrypt: bool,
    ) -> Result<Vec<u8>> {
        let mut op = self.take_crypt(app, session, encrypt, Rate::Free)?;
        let mut ctx = match op.ctx.take() {
            Some(c) => c,
            None => ops::CryptCtx::new(&op.mech, &op.key, encrypt)?,
        };
        let out = ctx.update(data)?;
        op.ctx = Some(ctx);
        self.with_session(app, session, |s, _| {
            if encrypt {
                s.encrypt = Some(op);
            } else {
                s.decrypt = Some(op);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// C_EncryptFinal.
    ///
    /// # Errors
    /// Operation and data errors.
    pub fn encrypt_final(&self, app: u64, session: u64) -> Result<Vec<u8>> {
        let op = self.take_crypt(app, session, true, Rate::Counted)?;
        let ctx = match op.ctx {
            Some(c) => c,
            None => ops::CryptCtx::new(&op.mech, &op.key, true)?,
        };
        ctx.finish_encrypt(&op.mech, &op.key)
    }

    /// C_DecryptFinal.
    ///
    /// # Errors
    /// Operation and data errors.
    pub fn decrypt_final(&self, app: u64, session: u64) -> Result<SecretVec> {
        let op = self.take_crypt(app, session, false, Rate::Counted)?;
        let ctx = match op.ctx {
            Some(c) => c,
            None => ops::CryptCtx::new(&op.mech, &op.key, false)?,
        };
        ctx.finish_decrypt(&op.mech, &op.key)
    }

    /// C_DigestInit.
    ///
    /// # Errors
    /// [`CoreError::OperationActive`], mechanism errors.
    pub fn digest_init(&self, app: u64, session: u64, mech: &Mechanism) -> Result<()> {
        self.enter_with(app, session, Need::Session, Rate::Free, |s| {
            let Mechanism::Digest(h) = mech else {
                return Err(CoreError::MechanismInvalid(format!(
                    "0x{:x} is not a digest",
                    mech.ckm()
                )));
            };
            if s.digest.is_some() {
                return Err(CoreError::OperationActive);
            }
            s.digest = Some(ihsm_crypto::hash::DigestCtx::new(h.alg()));
            Ok(())
        })?;
        Ok(())
    }

    /// C_DigestUpdate.
    ///
    /// # Errors
    /// [`CoreError::OperationNotInitialized`].
    pub fn digest_update(&self, app: u64, session: u64, data: &[u8]) -> Result<()> {
        self.enter_with(app, session, Need::Session, Rate::Free, |s| {
            s.digest
                .as_mut()
                .ok_or(CoreError::OperationNotInitialized)?
                .update(data);
            Ok(())
        })?;
        Ok(())
    }

    /// C_DigestFinal (and C_Digest after init).
    ///
    /// # Errors
    /// [`CoreError::OperationNotInitialized`].
    pub fn digest_final(&self, app: u64, session: u64) -> Result<Vec<u8>> {
        let (_, ctx) = self.enter_with(app, session, Need::Session, Rate::Free, |s| {
            s.digest.take().ok_or(CoreError::OperationNotInitialized)
        })?;
        Ok(ctx.finish())
    }

    /// C_GenerateRandom (at most 1 MiB per call).
    ///
    /// # Errors
    /// [`CoreError::DataLenRange`], [`CoreError::RandomFailure`].
    pub fn random(&self, app: u64, session: u64, len: usize) -> Result<Vec<u8>> {
        self.enter(app, session, Need::Session, Rate::Free)?;
        if len > 1 << 20 {
            return Err(CoreError::DataLenRange("at most 1 MiB of random per call"));
        }
        let mut out = vec![0u8; len];
        self.watch(ihsm_crypto::rand::fill(&mut out).map_err(CoreError::from))?;
        Ok(out)
    }
}

/// `OperationActive` when an operation of the kind is in progress.
fn idle(active: bool) -> Result<()> {
    if active {
        Err(CoreError::OperationActive)
    } else {
        Ok(())
    }
}
