//! AES (FIPS 197) in the modes PKCS#11 tenants ask for: GCM, CBC with and without
//! PKCS#7 padding, CTR, key wrap (RFC 3394 / SP 800-38F KW) and key wrap with
//! padding (RFC 5649 / KWP), one-shot and, for CBC and CTR, streaming.
//!
//! Everything runs inside aws-lc. What this module adds is the checking of lengths
//! before aws-lc sees them, and the rule that anything decrypted or unwrapped that
//! may be a key lands in a [`SecretVec`].
//!
//! Limits inherited from aws-lc-rs, reported as errors rather than worked around:
//! - GCM takes only 96-bit IVs and 128-bit tags;
//! - key wrap (KW and KWP) takes only AES-128 and AES-256 key-encryption keys;
//! - PKCS#7 padding is removed by aws-lc-rs in Rust with an early exit, so CBC-PAD
//!   decryption is not constant time in the padding check (as in every PKCS#11
//!   module, whose `CKR_ENCRYPTED_DATA_INVALID` already tells the caller).

use core::fmt;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    self, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext,
    PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, StreamingDecryptingKey,
    StreamingEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::key_wrap::{self, AesKek, KeyWrap, KeyWrapPadded};
use zeroize::Zeroizing;

use crate::scratch::Scratch;
use crate::{CryptoError, ExposeSecret, ExposeSecretMut, SecretVec};

/// The AES block length.
pub const BLOCK_LEN: usize = 16;
/// The only GCM IV length aws-lc-rs accepts.
pub const GCM_IV_LEN: usize = 12;
/// The only GCM tag length aws-lc-rs produces and checks.
pub const GCM_TAG_LEN: usize = 16;

/// An AES-128, AES-192 or AES-256 key in locked memory. Not `Clone`; `Debug` shows
/// only the size.
///
/// The AES-GCM key schedule is built on first use and kept (inside aws-lc, which
/// wipes it when freed), so a key used for many messages pays for it once.
pub struct AesKey(SecretVec, std::sync::OnceLock<LessSafeKey>);

impl AesKey {
    /// Copies 16, 24 or 32 key bytes into locked memory.
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        match bytes.len() {
            16 | 24 | 32 => Ok(Self(
                SecretVec::from_slice(bytes)?,
                std::sync::OnceLock::new(),
            )),
            actual => Err(CryptoError::WrongLength {
                what: "AES key (16, 24 or 32 bytes)",
                expected: 32,
                actual,
            }),
        }
    }

    /// A fresh random key of `bits` (128, 192 or 256) bits.
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] for another size, [`CryptoError::Rng`].
    pub fn generate(bits: usize) -> Result<Self, CryptoError> {
        match bits {
            128 | 192 | 256 => Ok(Self(
                SecretVec::random(bits / 8)?,
                std::sync::OnceLock::new(),
            )),
            _ => Err(CryptoError::InvalidInput(
                "AES key size must be 128, 192 or 256 bits",
            )),
        }
    }

    /// The key size in bits: 128, 192 or 256.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.0.len() * 8
    }

    /// The key bytes. Named deliberately: the object store calls this to wrap the
    /// key under a partition key, and nothing else should.
    #[must_use]
    pub fn expose(&self) -> &SecretVec {
        &self.0
    }

    fn bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }

    fn cipher_alg(&self) -> &'static cipher::Algorithm {
        match self.0.len() {
            16 => &cipher::AES_128,
            24 => &cipher::AES_192,
            _ => &cipher::AES_256,
        }
    }

    fn unbound(&self) -> Result<UnboundCipherKey, CryptoError> {
        UnboundCipherKey::new(self.cipher_alg(), self.bytes())
            .map_err(|_| CryptoError::Internal("AES key setup"))
    }

    fn aead(&self) -> Result<&LessSafeKey, CryptoError> {
        if let Some(k) = self.1.get() {
            return Ok(k);
        }
        let alg = match self.0.len() {
            16 => &aead::AES_128_GCM,
            24 => &aead::AES_192_GCM,
            _ => &aead::AES_256_GCM,
        };
        let key = UnboundKey::new(alg, self.bytes())
            .map(LessSafeKey::new)
            .map_err(|_| CryptoError::Internal("AES-GCM key setup"))?;
        Ok(self.1.get_or_init(|| key))
    }

    fn kek(&self) -> Result<AesKek, CryptoError> {
        let cipher = match self.0.len() {
            16 => &key_wrap::AES_128,
            32 => &key_wrap::AES_256,
            _ => {
                return Err(CryptoError::Unsupported(
                    "AES key wrap with an AES-192 key-encryption key (aws-lc-rs has AES-128 and AES-256 only)",
                ));
            }
        };
        AesKek::new(cipher, self.bytes()).map_err(|_| CryptoError::Internal("AES KEK setup"))
    }
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AesKey<{}>([REDACTED])", self.bits())
    }
}

fn iv16(iv: &[u8], what: &'static str) -> Result<[u8; BLOCK_LEN], CryptoError> {
    iv.try_into().map_err(|_| CryptoError::WrongLength {
        what,
        expected: BLOCK_LEN,
        actual: iv.len(),
    })
}

fn enc_ctx(iv: [u8; BLOCK_LEN]) -> EncryptionContext {
    EncryptionContext::Iv128(FixedLength::from(iv))
}

fn dec_ctx(iv: [u8; BLOCK_LEN]) -> DecryptionContext {
    DecryptionContext::Iv128(FixedLength::from(iv))
}

fn whole_blocks(len: usize, what: &'static str) -> Result<(), CryptoError> {
    if len.is_multiple_of(BLOCK_LEN) {
        Ok(())
    } else {
        Err(CryptoError::WrongLength {
            what,
            expected: len.next_multiple_of(BLOCK_LEN),
            actual: len,
        })
    }
}

fn gcm_params(iv: &[u8], tag_len: usize) -> Result<Nonce, CryptoError> {
    if tag_len != GCM_TAG_LEN {
        return Err(CryptoError::WrongLength {
            what: "AES-GCM tag",
            expected: GCM_TAG_LEN,
            actual: tag_len,
        });
    }
    Nonce::try_assume_unique_for_key(iv).map_err(|_| CryptoError::WrongLength {
        what: "AES-GCM IV",
        expected: GCM_IV_LEN,
        actual: iv.len(),
    })
}

/// AES-GCM encryption (SP 800-38D): returns `ciphertext || tag`.
///
/// The caller owns IV uniqueness: an IV repeated under one key destroys both
/// confidentiality and authenticity. Draw it from [`crate::rand`] unless a protocol
/// dictates a counter.
///
/// # Errors
/// [`CryptoError::WrongLength`] with `what: "AES-GCM IV"` unless `iv` is 12 bytes,
/// or `"AES-GCM tag"` unless `tag_len` is 16.
pub fn gcm_encrypt(
    key: &AesKey,
    iv: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    tag_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let nonce = gcm_params(iv, tag_len)?;
    let aead = key.aead()?;
    let mut out = Scratch::copy_of(plaintext, GCM_TAG_LEN);
    aead.seal_in_place_append_tag(nonce, Aad::from(aad), &mut *out)
        .map_err(|_| CryptoError::Internal("AES-GCM encryption"))?;
    Ok(out.release())
}

/// AES-GCM decryption of `ciphertext || tag`; the plaintext lands in locked memory.
///
/// # Errors
/// [`CryptoError::VerificationFailed`] for a wrong key, IV, AAD or tag, or input
/// shorter than the tag; [`CryptoError::WrongLength`] as for [`gcm_encrypt`].
pub fn gcm_decrypt(
    key: &AesKey,
    iv: &[u8],
    aad: &[u8],
    ct_and_tag: &[u8],
    tag_len: usize,
) -> Result<SecretVec, CryptoError> {
    let nonce = gcm_params(iv, tag_len)?;
    let ct_len = ct_and_tag
        .len()
        .checked_sub(GCM_TAG_LEN)
        .ok_or(CryptoError::VerificationFailed)?;
    let (ct, tag) = ct_and_tag.split_at(ct_len);
    let aead = key.aead()?;
    let mut out = SecretVec::from_slice(ct)?;
    aead.open_in_place_separate_tag(nonce, Aad::from(aad), tag, out.expose_secret_mut())
        .map_err(|_| CryptoError::VerificationFailed)?;
    Ok(out)
}

/// AES-CBC encryption (SP 800-38A) with a 16-byte IV; with `pad`, PKCS#7 padding
/// is added (PKCS#11 `CKM_AES_CBC_PAD`), without it `data` must be whole blocks.
///
/// # Errors
/// [`CryptoError::WrongLength`] for an IV that is not 16 bytes or, without padding,
/// data that is not a multiple of 16 bytes.
pub fn cbc_encrypt(
    key: &AesKey,
    iv: &[u8],
    pad: bool,
    data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let iv = iv16(iv, "AES-CBC IV")?;
    if !pad {
        whole_blocks(data.len(), "AES-CBC data without padding")?;
    }
    let fail = |_| CryptoError::Internal("AES-CBC encryption");
    // Allocated once at its final size (so no reallocation leaves the plaintext
    // behind) and wiped if encryption fails.
    let mut out = Scratch::copy_of(data, BLOCK_LEN);
    if pad {
        PaddedBlockEncryptingKey::cbc_pkcs7(key.unbound()?)
            .map_err(fail)?
            .less_safe_encrypt(&mut *out, enc_ctx(iv))
            .map_err(fail)?;
    } else if !out.is_empty() {
        EncryptingKey::cbc(key.unbound()?)
            .map_err(fail)?
            .less_safe_encrypt(&mut out, enc_ctx(iv))
            .map_err(fail)?;
    }
    Ok(out.release())
}

/// AES-CBC decryption; the plaintext lands in locked memory. With `pad`, the
/// PKCS#7 padding is checked and removed.
///
/// # Errors
/// [`CryptoError::WrongLength`] for an IV that is not 16 bytes or data that is not
/// whole blocks (or empty, with padding); [`CryptoError::VerificationFailed`] for
/// bad padding.
pub fn cbc_decrypt(
    key: &AesKey,
    iv: &[u8],
    pad: bool,
    data: &[u8],
) -> Result<SecretVec, CryptoError> {
    let iv = iv16(iv, "AES-CBC IV")?;
    whole_blocks(data.len(), "AES-CBC ciphertext")?;
    if data.is_empty() {
        return if pad {
            Err(CryptoError::WrongLength {
                what: "AES-CBC-PAD ciphertext",
                expected: BLOCK_LEN,
                actual: 0,
            })
        } else {
            SecretVec::zeroed(0)
        };
    }
    let mut buf = SecretVec::from_slice(data)?;
    if pad {
        let plain = PaddedBlockDecryptingKey::cbc_pkcs7(key.unbound()?)
            .map_err(|_| CryptoError::Internal("AES-CBC-PAD key setup"))?
            .decrypt(buf.expose_secret_mut(), dec_ctx(iv))
            .map_err(|_| CryptoError::VerificationFailed)?;
        SecretVec::from_slice(plain)
    } else {
        DecryptingKey::cbc(key.unbound()?)
            .map_err(|_| CryptoError::Internal("AES-CBC key setup"))?
            .decrypt(buf.expose_secret_mut(), dec_ctx(iv))
            .map_err(|_| CryptoError::Internal("AES-CBC decryption"))?;
        Ok(buf)
    }
}

/// AES-CTR (SP 800-38A §6.5) in either direction. `iv` is the 16-byte initial
/// counter block; the whole block is incremented as one 128-bit big-endian integer.
///
/// # Errors
/// [`CryptoError::WrongLength`] unless `iv` is 16 bytes.
pub fn ctr_crypt(key: &AesKey, iv: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let iv = iv16(iv, "AES-CTR counter block")?;
    let mut out = Scratch::copy_of(data, 0);
    if !out.is_empty() {
        EncryptingKey::ctr(key.unbound()?)
            .map_err(|_| CryptoError::Internal("AES-CTR key setup"))?
            .less_safe_encrypt(&mut out, enc_ctx(iv))
            .map_err(|_| CryptoError::Internal("AES-CTR"))?;
    }
    Ok(out.release())
}

/// The modes [`AesStream`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AesMode {
    /// CBC without padding: the total length must be whole blocks.
    Cbc,
    /// CBC with PKCS#7 padding.
    CbcPad,
    /// CTR with a 128-bit big-endian counter.
    Ctr,
}

enum Engine {
    Encrypt(StreamingEncryptingKey),
    Decrypt(StreamingDecryptingKey),
    RawCbcEncrypt(EncryptingKey),
    RawCbcDecrypt(DecryptingKey),
}

/// A multi-part AES-CBC, AES-CBC-PAD or AES-CTR operation (PKCS#11
/// `C_EncryptUpdate`/`C_EncryptFinal` and their decrypting twins).
///
/// Output may lag input by up to a block (CBC holds back partial blocks, CBC-PAD
/// decryption holds back the last block until it knows it is the last); the
/// concatenation of every `update` and the `finish` output is the one-shot result.
pub struct AesStream {
    mode: AesMode,
    encrypt: bool,
    engine: Engine,
    /// The chaining value of unpadded CBC: the last ciphertext block.
    iv: [u8; BLOCK_LEN],
    /// Unpadded CBC: input bytes short of a whole block (plaintext when encrypting).
    pending: Zeroizing<Vec<u8>>,
    total_in: usize,
}

impl AesStream {
    /// Starts an operation in `mode` under `key` with the 16-byte `iv` (the initial
    /// counter block for CTR).
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] unless `iv` is 16 bytes.
    pub fn new(mode: AesMode, encrypt: bool, key: &AesKey, iv: &[u8]) -> Result<Self, CryptoError> {
        let iv = iv16(iv, "AES stream IV")?;
        let setup = |_| CryptoError::Internal("AES stream setup");
        let engine = match (mode, encrypt) {
            (AesMode::CbcPad, true) => Engine::Encrypt(
                StreamingEncryptingKey::less_safe_cbc_pkcs7(key.unbound()?, enc_ctx(iv))
                    .map_err(setup)?,
            ),
            (AesMode::CbcPad, false) => Engine::Decrypt(
                StreamingDecryptingKey::cbc_pkcs7(key.unbound()?, dec_ctx(iv)).map_err(setup)?,
            ),
            (AesMode::Ctr, true) => Engine::Encrypt(
                StreamingEncryptingKey::less_safe_ctr(key.unbound()?, enc_ctx(iv))
                    .map_err(setup)?,
            ),
            (AesMode::Ctr, false) => Engine::Decrypt(
                StreamingDecryptingKey::ctr(key.unbound()?, dec_ctx(iv)).map_err(setup)?,
            ),
            (AesMode::Cbc, true) => {
                Engine::RawCbcEncrypt(EncryptingKey::cbc(key.unbound()?).map_err(setup)?)
            }
            (AesMode::Cbc, false) => {
                Engine::RawCbcDecrypt(DecryptingKey::cbc(key.unbound()?).map_err(setup)?)
            }
        };
        Ok(Self {
            mode,
            encrypt,
            engine,
            iv,
            pending: Zeroizing::new(Vec::with_capacity(BLOCK_LEN)),
            total_in: 0,
        })
    }

    /// The mode of this operation.
    #[must_use]
    pub fn mode(&self) -> AesMode {
        self.mode
    }

    /// Processes `data`, returning whatever output is ready.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if aws-lc fails.
    pub fn update(&mut self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.total_in = self.total_in.saturating_add(data.len());
        let fail = |_| CryptoError::Internal("AES stream update");
        match &mut self.engine {
            Engine::Encrypt(key) => {
                let mut out = Scratch::zeroed(data.len() + BLOCK_LEN - 1);
                let n = key.update(data, &mut out).map_err(fail)?.written().len();
                out.truncate(n);
                Ok(out.release())
            }
            Engine::Decrypt(key) => {
                // Wiped if aws-lc fails after writing some plaintext.
                let mut out = Scratch::zeroed(data.len() + BLOCK_LEN - 1);
                let n = key.update(data, &mut out).map_err(fail)?.written().len();
                out.truncate(n);
                Ok(out.release())
            }
            Engine::RawCbcEncrypt(_) | Engine::RawCbcDecrypt(_) => self.raw_cbc_update(data),
        }
    }

    fn raw_cbc_update(&mut self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let available = self.pending.len() + data.len();
        let whole = available - available % BLOCK_LEN;
        if whole == 0 {
            // Fewer than 16 bytes in all: `pending` has room without reallocating.
            self.pending.extend_from_slice(data);
            return Ok(Vec::new());
        }
        let take = whole - self.pending.len();
        // Plaintext (encrypting) or plaintext-to-be (decrypting) until the cipher has
        // run: wiped if it fails.
        let mut out = Scratch::with_capacity(whole);
        out.extend_from_slice(&self.pending);
        out.extend_from_slice(data.get(..take).unwrap_or_default());
        self.pending.clear();
        self.pending
            .extend_from_slice(data.get(take..).unwrap_or_default());
        let last_block = |buf: &[u8]| -> [u8; BLOCK_LEN] {
            let mut block = [0u8; BLOCK_LEN];
            if let Some(tail) = buf.get(buf.len().saturating_sub(BLOCK_LEN)..) {
                block.copy_from_slice(tail);
            }
            block
        };
        let fail = |_| CryptoError::Internal("AES-CBC stream");
        match &self.engine {
            Engine::RawCbcEncrypt(key) => {
                key.less_safe_encrypt(&mut out, enc_ctx(self.iv))
                    .map_err(fail)?;
                self.iv = last_block(&out);
            }
            Engine::RawCbcDecrypt(key) => {
                let next_iv = last_block(&out);
                key.decrypt(&mut out, dec_ctx(self.iv)).map_err(fail)?;
                self.iv = next_iv;
            }
            Engine::Encrypt(_) | Engine::Decrypt(_) => {
                return Err(CryptoError::Internal("AES stream engine"));
            }
        }
        Ok(out.release())
    }

    /// Ends the operation, returning the last output (CBC-PAD: the padded or
    /// unpadded final block).
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] when CBC input was not whole blocks;
    /// [`CryptoError::VerificationFailed`] for bad CBC-PAD padding.
    pub fn finish(self) -> Result<Vec<u8>, CryptoError> {
        // Holds the last block's plaintext when decrypting. (aws-lc keeps that block
        // in its own context until the padding checks out, and writes here only
        // then; wiped on every path all the same.)
        let mut out = Scratch::zeroed(BLOCK_LEN);
        let not_whole = CryptoError::WrongLength {
            what: "AES-CBC total input",
            expected: self.total_in.next_multiple_of(BLOCK_LEN).max(BLOCK_LEN),
            actual: self.total_in,
        };
        let n = match self.engine {
            Engine::Encrypt(key) => key
                .finish(&mut out)
                .map_err(|_| CryptoError::Internal("AES stream final"))?
                .1
                .written()
                .len(),
            Engine::Decrypt(key) => {
                if self.mode == AesMode::CbcPad
                    && (self.total_in == 0 || !self.total_in.is_multiple_of(BLOCK_LEN))
                {
                    return Err(not_whole);
                }
                key.finish(&mut out)
                    .map_err(|_| CryptoError::VerificationFailed)?
                    .written()
                    .len()
            }
            Engine::RawCbcEncrypt(_) | Engine::RawCbcDecrypt(_) => {
                if !self.pending.is_empty() {
                    return Err(not_whole);
                }
                0
            }
        };
        out.truncate(n);
        Ok(out.release())
    }
}

impl fmt::Debug for AesStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AesStream")
            .field("mode", &self.mode)
            .field("encrypt", &self.encrypt)
            .finish_non_exhaustive()
    }
}

/// AES key wrap (RFC 3394, SP 800-38F KW) of `data`, which must be a multiple of 8
/// bytes and at least 16.
///
/// # Errors
/// [`CryptoError::WrongLength`] for other lengths; [`CryptoError::Unsupported`] for
/// an AES-192 key-encryption key.
pub fn key_wrap(kek: &AesKey, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if data.len() < 16 || !data.len().is_multiple_of(8) {
        return Err(CryptoError::WrongLength {
            what: "AES key wrap input (a multiple of 8 bytes, at least 16)",
            expected: data.len().next_multiple_of(8).max(16),
            actual: data.len(),
        });
    }
    let kek = kek.kek()?;
    // aws-lc copies the key data into the output and wraps it there. It checks the
    // lengths before the copy, so no failure leaves key data here today; the wiped
    // buffer keeps it so.
    let mut out = Scratch::zeroed(data.len() + 8);
    let n = kek
        .wrap(data, &mut out)
        .map_err(|_| CryptoError::Internal("AES key wrap"))?
        .len();
    out.truncate(n);
    Ok(out.release())
}

/// Unwraps an RFC 3394 blob; the key material lands in locked memory.
///
/// # Errors
/// [`CryptoError::VerificationFailed`] when the integrity check fails (wrong KEK,
/// edited blob) or the blob has an impossible length; [`CryptoError::Unsupported`]
/// for an AES-192 key-encryption key.
pub fn key_unwrap(kek: &AesKey, wrapped: &[u8]) -> Result<SecretVec, CryptoError> {
    if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) {
        return Err(CryptoError::VerificationFailed);
    }
    let kek = kek.kek()?;
    let mut out = SecretVec::zeroed(wrapped.len() - 8)?;
    kek.unwrap(wrapped, out.expose_secret_mut())
        .map_err(|_| CryptoError::VerificationFailed)?;
    Ok(out)
}

/// AES key wrap with padding (RFC 5649, SP 800-38F KWP) of 1 or more bytes.
///
/// # Errors
/// [`CryptoError::WrongLength`] for empty input; [`CryptoError::Unsupported`] for an
/// AES-192 key-encryption key.
pub fn key_wrap_pad(kek: &AesKey, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if data.is_empty() || u32::try_from(data.len()).is_err() {
        return Err(CryptoError::WrongLength {
            what: "AES key wrap with padding input (1 to 2^32-1 bytes)",
            expected: 1,
            actual: data.len(),
        });
    }
    let kek = kek.kek()?;
    // As for `key_wrap`: the padded key data is wrapped in place.
    let mut out = Scratch::zeroed(data.len().next_multiple_of(8) + 8);
    let n = kek
        .wrap_with_padding(data, &mut out)
        .map_err(|_| CryptoError::Internal("AES key wrap with padding"))?
        .len();
    out.truncate(n);
    Ok(out.release())
}

/// Unwraps an RFC 5649 blob; the key material lands in locked memory.
///
/// # Errors
/// [`CryptoError::VerificationFailed`] when the integrity or padding check fails or
/// the blob has an impossible length; [`CryptoError::Unsupported`] for an AES-192
/// key-encryption key.
pub fn key_unwrap_pad(kek: &AesKey, wrapped: &[u8]) -> Result<SecretVec, CryptoError> {
    if wrapped.len() < 16 || !wrapped.len().is_multiple_of(8) {
        return Err(CryptoError::VerificationFailed);
    }
    let kek = kek.kek()?;
    let mut buf = SecretVec::zeroed(wrapped.len() - 8)?;
    let plain = kek
        .unwrap_with_padding(wrapped, buf.expose_secret_mut())
        .map_err(|_| CryptoError::VerificationFailed)?;
    SecretVec::from_slice(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    fn key(hex_key: &str) -> AesKey {
        AesKey::from_bytes(&h(hex_key)).unwrap()
    }

    const K128: &str = "2b7e151628aed2a6abf7158809cf4f3c";
    const K256: &str = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
    const SP800_38A_PT: &str = "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51\
                                30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710";

    #[test]
    fn key_sizes_and_debug() {
        for bits in [128, 192, 256] {
            let k = AesKey::generate(bits).unwrap();
            assert_eq!(k.bits(), bits);
            assert_eq!(k.expose().len(), bits / 8);
            assert_eq!(format!("{k:?}"), format!("AesKey<{bits}>([REDACTED])"));
        }
        for bad in [0, 64, 127, 512] {
            assert!(matches!(
                AesKey::generate(bad),
                Err(CryptoError::InvalidInput(_))
            ));
        }
        for len in [0, 1, 15, 17, 23, 25, 31, 33, 64] {
            assert!(matches!(
                AesKey::from_bytes(&vec![0; len]),
                Err(CryptoError::WrongLength { actual, .. }) if actual == len
            ));
        }
        let a = AesKey::generate(256).unwrap();
        let b = AesKey::generate(256).unwrap();
        assert!(!a.expose().ct_eq(b.expose()));
    }

    // SP 800-38A F.2.1 and F.2.5 (CBC-AES128/256.Encrypt).
    #[test]
    fn cbc_sp800_38a() {
        let iv = h("000102030405060708090a0b0c0d0e0f");
        let pt = h(SP800_38A_PT);
        for (k, ct) in [
            (
                K128,
                "7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2\
                 73bed6b8e3c1743b7116e69e22229516 3ff1caa1681fac09120eca307586e1a7",
            ),
            (
                K256,
                "f58c4c04d6e5f1ba779eabfb5f7bfbd6 9cfc4e967edb808d679f777bc6702c7d\
                 39f23369a9d9bacfa530e26304231461 b2eb05e2c39be9fcda6c19078c6a9d1b",
            ),
        ] {
            let key = key(k);
            let out = cbc_encrypt(&key, &iv, false, &pt).unwrap();
            assert_eq!(out, h(ct));
            let back = cbc_decrypt(&key, &iv, false, &out).unwrap();
            assert_eq!(back.expose_secret(), pt.as_slice());
        }
    }

    // SP 800-38A F.5.1 and F.5.5 (CTR-AES128/256.Encrypt).
    #[test]
    fn ctr_sp800_38a() {
        let iv = h("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let pt = h(SP800_38A_PT);
        for (k, ct) in [
            (
                K128,
                "874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff\
                 5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee",
            ),
            (
                K256,
                "601ec313775789a5b7a7f504bbf3d228 f443e3ca4d62b59aca84e990cacaf5c5\
                 2b0930daa23de94ce87017ba2d84988d dfc9c58db67aada613c2dd08457941a6",
            ),
        ] {
            let key = key(k);
            assert_eq!(ctr_crypt(&key, &iv, &pt).unwrap(), h(ct));
            assert_eq!(ctr_crypt(&key, &iv, &h(ct)).unwrap(), pt);
            // A partial last block.
            assert_eq!(ctr_crypt(&key, &iv, &pt[..37]).unwrap(), h(ct)[..37]);
        }
    }

    /// The counter is one 128-bit big-endian integer: the carry crosses the 32- and
    /// 64-bit boundaries. Checked against AES-ECB of the counter blocks.
    #[test]
    fn ctr_counter_carries_through_all_128_bits() {
        let key = key(K256);
        let ecb = EncryptingKey::ecb(key.unbound().unwrap()).unwrap();
        for start in [
            "000000000000000000000000fffffffe",
            "0000000000000000fffffffffffffffe",
            "00fffffffffffffffffffffffffffffe",
            "fffffffffffffffffffffffffffffffe",
        ] {
            let start = h(start);
            let data = vec![0u8; 64];
            let stream = ctr_crypt(&key, &start, &data).unwrap();
            let mut counter = u128::from_be_bytes(start.clone().try_into().unwrap());
            for block in stream.chunks(16) {
                let mut expected = counter.to_be_bytes();
                ecb.encrypt(&mut expected).unwrap();
                assert_eq!(block, expected);
                counter = counter.wrapping_add(1);
            }
        }
    }

    #[test]
    fn cbc_pad_roundtrip_every_length() {
        let key = AesKey::generate(192).unwrap();
        let iv = [7u8; 16];
        for len in 0..50 {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ct = cbc_encrypt(&key, &iv, true, &data).unwrap();
            assert_eq!(ct.len(), (len / 16 + 1) * 16);
            let back = cbc_decrypt(&key, &iv, true, &ct).unwrap();
            assert_eq!(back.expose_secret(), data.as_slice());
        }
    }

    #[test]
    fn cbc_rejects_bad_lengths_and_padding() {
        let key = AesKey::generate(128).unwrap();
        let iv = [0u8; 16];
        for bad_iv in [&[0u8; 15][..], &[0u8; 17], &[]] {
            assert!(matches!(
                cbc_encrypt(&key, bad_iv, true, b"x"),
                Err(CryptoError::WrongLength {
                    what: "AES-CBC IV",
                    ..
                })
            ));
            assert!(cbc_decrypt(&key, bad_iv, true, &[0; 16]).is_err());
            assert!(ctr_crypt(&key, bad_iv, b"x").is_err());
            assert!(AesStream::new(AesMode::Ctr, true, &key, bad_iv).is_err());
        }
        assert!(matches!(
            cbc_encrypt(&key, &iv, false, &[0; 17]),
            Err(CryptoError::WrongLength { actual: 17, .. })
        ));
        assert!(cbc_decrypt(&key, &iv, false, &[0; 15]).is_err());
        assert!(cbc_decrypt(&key, &iv, true, &[0; 31]).is_err());
        assert!(cbc_decrypt(&key, &iv, true, &[]).is_err());
        assert!(cbc_encrypt(&key, &iv, false, &[]).unwrap().is_empty());
        assert!(cbc_decrypt(&key, &iv, false, &[]).unwrap().is_empty());

        // Flip bits of the last ciphertext block until the padding breaks.
        let ct = cbc_encrypt(&key, &iv, true, b"sixteen bytes!!!").unwrap();
        let mut bad = ct.clone();
        bad[31] ^= 0xff;
        assert_eq!(
            cbc_decrypt(&key, &iv, true, &bad).unwrap_err(),
            CryptoError::VerificationFailed
        );
        // The wrong key almost always gives bad padding; it must never panic.
        let other = AesKey::generate(128).unwrap();
        let _ = cbc_decrypt(&other, &iv, true, &ct);
    }

    // McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 14 and 16.
    #[test]
    fn gcm_known_answers() {
        let k = "0000000000000000000000000000000000000000000000000000000000000000";
        let ct = gcm_encrypt(&key(k), &[0; 12], &[], &[0; 16], 16).unwrap();
        assert_eq!(
            ct,
            h("cea7403d4d606b6e074ec5d3baf39d18 d0d1c8a799996bf0265b98b5d48ab919")
        );

        let key = key("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let iv = h("cafebabefacedbaddecaf888");
        let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let pt = h(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let expected = h(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                          8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
                          76fc6ece0f4e1768cddf8853bb2d551b",
        );
        let ct = gcm_encrypt(&key, &iv, &aad, &pt, 16).unwrap();
        assert_eq!(ct, expected);
        let back = gcm_decrypt(&key, &iv, &aad, &ct, 16).unwrap();
        assert_eq!(back.expose_secret(), pt.as_slice());
    }

    #[test]
    fn gcm_rejects_tampering_and_bad_parameters() {
        let key = AesKey::generate(256).unwrap();
        let iv = [1u8; 12];
        let ct = gcm_encrypt(&key, &iv, b"aad", b"secret", 16).unwrap();
        let fail = CryptoError::VerificationFailed;
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert_eq!(gcm_decrypt(&key, &iv, b"aad", &bad, 16).unwrap_err(), fail);
        }
        assert_eq!(gcm_decrypt(&key, &iv, b"aaD", &ct, 16).unwrap_err(), fail);
        assert_eq!(
            gcm_decrypt(&key, &[2; 12], b"aad", &ct, 16).unwrap_err(),
            fail
        );
        let other = AesKey::generate(256).unwrap();
        assert_eq!(gcm_decrypt(&other, &iv, b"aad", &ct, 16).unwrap_err(), fail);
        for n in 0..ct.len() {
            assert!(gcm_decrypt(&key, &iv, b"aad", &ct[..n], 16).is_err());
        }
        for bad_iv in [&[0u8; 8][..], &[0; 16], &[]] {
            assert!(matches!(
                gcm_encrypt(&key, bad_iv, b"", b"", 16),
                Err(CryptoError::WrongLength {
                    what: "AES-GCM IV",
                    ..
                })
            ));
            assert!(matches!(
                gcm_decrypt(&key, bad_iv, b"", &ct, 16),
                Err(CryptoError::WrongLength {
                    what: "AES-GCM IV",
                    ..
                })
            ));
        }
        for tag_len in [0, 4, 8, 12, 15, 17] {
            assert!(matches!(
                gcm_encrypt(&key, &iv, b"", b"", tag_len),
                Err(CryptoError::WrongLength {
                    what: "AES-GCM tag",
                    ..
                })
            ));
            assert!(gcm_decrypt(&key, &iv, b"aad", &ct, tag_len).is_err());
        }
        let empty = gcm_encrypt(&key, &iv, b"", b"", 16).unwrap();
        assert_eq!(empty.len(), 16);
        assert!(gcm_decrypt(&key, &iv, b"", &empty, 16).unwrap().is_empty());
    }

    fn stream(mode: AesMode, encrypt: bool, key: &AesKey, iv: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut s = AesStream::new(mode, encrypt, key, iv).unwrap();
        let mut out = Vec::new();
        for p in parts {
            out.extend(s.update(p).unwrap());
        }
        out.extend(s.finish().unwrap());
        out
    }

    #[test]
    fn streams_match_one_shot_for_every_split() {
        let iv = [9u8; 16];
        for bits in [128, 192, 256] {
            let key = AesKey::generate(bits).unwrap();
            let data: Vec<u8> = (0..64u8).collect();
            for len in [0usize, 1, 15, 16, 17, 31, 32, 48, 63, 64] {
                let data = &data[..len];
                for split in 0..=len {
                    let (a, b) = data.split_at(split);
                    let parts: [&[u8]; 4] = [a, &[], b, &[]];
                    // CTR and CBC-PAD take any length.
                    let ct = ctr_crypt(&key, &iv, data).unwrap();
                    assert_eq!(stream(AesMode::Ctr, true, &key, &iv, &parts), ct);
                    let (c1, c2) = ct.split_at(split);
                    assert_eq!(stream(AesMode::Ctr, false, &key, &iv, &[c1, c2]), data);

                    let ct = cbc_encrypt(&key, &iv, true, data).unwrap();
                    assert_eq!(stream(AesMode::CbcPad, true, &key, &iv, &parts), ct);
                    let (c1, c2) = ct.split_at(split.min(ct.len()));
                    assert_eq!(stream(AesMode::CbcPad, false, &key, &iv, &[c1, c2]), data);

                    if len % 16 == 0 {
                        let ct = cbc_encrypt(&key, &iv, false, data).unwrap();
                        assert_eq!(stream(AesMode::Cbc, true, &key, &iv, &parts), ct);
                        let (c1, c2) = ct.split_at(split);
                        assert_eq!(stream(AesMode::Cbc, false, &key, &iv, &[c1, c2]), data);
                    }
                }
            }
        }
    }

    #[test]
    fn streams_reject_partial_blocks_and_bad_padding() {
        let key = AesKey::generate(128).unwrap();
        let iv = [0u8; 16];
        for encrypt in [true, false] {
            let mut s = AesStream::new(AesMode::Cbc, encrypt, &key, &iv).unwrap();
            assert!(s.update(&[0; 20]).unwrap().len() == 16);
            assert!(matches!(
                s.finish(),
                Err(CryptoError::WrongLength { actual: 20, .. })
            ));
        }
        let mut s = AesStream::new(AesMode::CbcPad, false, &key, &iv).unwrap();
        let _ = s.update(&[0; 17]).unwrap();
        assert!(s.finish().is_err());
        let s = AesStream::new(AesMode::CbcPad, false, &key, &iv).unwrap();
        assert!(s.finish().is_err());

        let mut ct = cbc_encrypt(&key, &iv, true, b"0123456789").unwrap();
        ct[15] ^= 0x55;
        let mut s = AesStream::new(AesMode::CbcPad, false, &key, &iv).unwrap();
        let _ = s.update(&ct).unwrap();
        assert_eq!(s.finish().unwrap_err(), CryptoError::VerificationFailed);
        let s = AesStream::new(AesMode::Cbc, true, &key, &iv).unwrap();
        assert!(format!("{s:?}").contains("Cbc"));
        assert_eq!(s.mode(), AesMode::Cbc);
    }

    // RFC 3394 §4.1 and §4.6.
    #[test]
    fn key_wrap_rfc3394() {
        let kek = key("000102030405060708090A0B0C0D0E0F");
        let data = h("00112233445566778899AABBCCDDEEFF");
        let wrapped = key_wrap(&kek, &data).unwrap();
        assert_eq!(
            wrapped,
            h("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
        );
        assert_eq!(
            key_unwrap(&kek, &wrapped).unwrap().expose_secret(),
            data.as_slice()
        );

        let kek = key("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let data = h("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
        let wrapped = key_wrap(&kek, &data).unwrap();
        assert_eq!(
            wrapped,
            h("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
        );
        assert_eq!(
            key_unwrap(&kek, &wrapped).unwrap().expose_secret(),
            data.as_slice()
        );
    }

    // RFC 5649 §6.
    #[test]
    fn key_wrap_pad_rfc5649() {
        let kek = key("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
        // The RFC's KEK is AES-192, which aws-lc-rs cannot use for key wrap.
        assert!(matches!(
            key_wrap_pad(&kek, &h("466f7250617369")),
            Err(CryptoError::Unsupported(_))
        ));
        assert!(matches!(
            key_unwrap_pad(&kek, &[0; 16]),
            Err(CryptoError::Unsupported(_))
        ));
        assert!(matches!(
            key_wrap(&kek, &[0; 16]),
            Err(CryptoError::Unsupported(_))
        ));
        let kek = AesKey::generate(256).unwrap();
        for len in 1..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let wrapped = key_wrap_pad(&kek, &data).unwrap();
            assert_eq!(wrapped.len(), data.len().next_multiple_of(8) + 8);
            let back = key_unwrap_pad(&kek, &wrapped).unwrap();
            assert_eq!(back.expose_secret(), data.as_slice());
            for i in [0, wrapped.len() - 1] {
                let mut bad = wrapped.clone();
                bad[i] ^= 1;
                assert_eq!(
                    key_unwrap_pad(&kek, &bad).unwrap_err(),
                    CryptoError::VerificationFailed
                );
            }
        }
        assert!(key_wrap_pad(&kek, &[]).is_err());
    }

    #[test]
    fn key_wrap_rejects_bad_lengths_wrong_keys_and_edits() {
        let kek = AesKey::generate(128).unwrap();
        for len in [0, 8, 15, 17, 23] {
            assert!(matches!(
                key_wrap(&kek, &vec![0; len]),
                Err(CryptoError::WrongLength { .. })
            ));
        }
        let wrapped = key_wrap(&kek, &[0x42; 32]).unwrap();
        for n in 0..wrapped.len() {
            assert!(key_unwrap(&kek, &wrapped[..n]).is_err());
            assert!(key_unwrap_pad(&kek, &wrapped[..n]).is_err());
        }
        let other = AesKey::generate(128).unwrap();
        assert_eq!(
            key_unwrap(&other, &wrapped).unwrap_err(),
            CryptoError::VerificationFailed
        );
        let mut bad = wrapped.clone();
        bad[20] ^= 4;
        assert_eq!(
            key_unwrap(&kek, &bad).unwrap_err(),
            CryptoError::VerificationFailed
        );
        // A KW blob is not a KWP blob and vice versa.
        assert!(key_unwrap_pad(&kek, &wrapped).is_err());
        let padded = key_wrap_pad(&kek, &[0x42; 32]).unwrap();
        assert!(key_unwrap(&kek, &padded).is_err());
    }
}
