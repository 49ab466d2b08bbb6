//! QUOTE_PCRS responses, parsed and checked, for verifiers: the layout of
//! Caliptra 2.1's quote, which [`crate::runtime::Runtime`] makes.

use ihsm_crypto::ec::{EccP384PublicKey, EccP384Signature};
use ihsm_crypto::hash::sha512_parts;
use ihsm_crypto::mldsa::{self, MlDsa87PublicKey, MlDsa87Signature};

use crate::codec::Reader;
use crate::error::{Alg, Result, RotError};
use crate::mailbox::{self, MailboxError};
use crate::pcr::PCR_COUNT;

/// Quote response sizes (Caliptra 2.1 layouts).
pub const QUOTE_ECC384_LEN: usize = 1848;
/// See [`QUOTE_ECC384_LEN`].
pub const QUOTE_MLDSA87_LEN: usize = 6396;

/// A parsed quote response, for verifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// PCR0..PCR31.
    pub pcrs: Vec<[u8; 48]>,
    /// The nonce it answers.
    pub nonce: [u8; 32],
    /// Reset counters.
    pub reset_counters: Vec<u32>,
    /// The signed digest (48 bytes for ECC, 64 for ML-DSA).
    pub digest: Vec<u8>,
    /// The signature (r || s for ECC, 4627 bytes for ML-DSA).
    pub signature: Vec<u8>,
}

impl Quote {
    /// Parses a QUOTE_PCRS response and checks its checksum, length and that the
    /// digest is SHA-512 over the PCRs and nonce as the layout says.
    ///
    /// # Errors
    /// [`MailboxError::INVALID_PARAMS`] when malformed, or the checksum error.
    pub fn parse(resp: &[u8], alg: Alg) -> core::result::Result<Self, MailboxError> {
        let expected = match alg {
            Alg::Ecc384 => QUOTE_ECC384_LEN,
            Alg::MlDsa87 => QUOTE_MLDSA87_LEN,
        };
        if resp.len() != expected {
            return Err(MailboxError::INVALID_PARAMS);
        }
        let (_, body) = mailbox::open_response(resp)?;
        let bad = |_| MailboxError::INVALID_PARAMS;
        let mut r = Reader::new(body);
        let mut pcrs = Vec::with_capacity(PCR_COUNT);
        for _ in 0..PCR_COUNT {
            pcrs.push(r.array::<48>().map_err(bad)?);
        }
        let nonce = r.array::<32>().map_err(bad)?;
        let mut reset_counters = Vec::with_capacity(PCR_COUNT);
        for _ in 0..PCR_COUNT {
            reset_counters.push(r.u32().map_err(bad)?);
        }
        let (digest, signature) = match alg {
            Alg::Ecc384 => (
                r.take(48).map_err(bad)?.to_vec(),
                r.take(96).map_err(bad)?.to_vec(),
            ),
            Alg::MlDsa87 => {
                let d = r.take(64).map_err(bad)?.to_vec();
                let s = r.take(mldsa::SIGNATURE_LEN).map_err(bad)?.to_vec();
                if r.u8().map_err(bad)? != 0 {
                    return Err(MailboxError::INVALID_PARAMS);
                }
                (d, s)
            }
        };
        let mut parts: Vec<&[u8]> = pcrs.iter().map(|p| p.as_slice()).collect();
        parts.push(&nonce);
        let mut h = sha512_parts(&parts);
        let expected_digest = match alg {
            Alg::Ecc384 => h.get(..48).unwrap_or_default().to_vec(),
            Alg::MlDsa87 => {
                h.reverse();
                h.to_vec()
            }
        };
        if expected_digest != digest {
            return Err(MailboxError::INVALID_PARAMS);
        }
        Ok(Self {
            pcrs,
            nonce,
            reset_counters,
            digest,
            signature,
        })
    }

    /// Verifies the signature with the FMC Alias ECC P-384 public key.
    ///
    /// # Errors
    /// [`RotError::Crypto`] when it does not verify.
    pub fn verify_ecc(&self, fmc_alias: &EccP384PublicKey) -> Result<()> {
        let digest: [u8; 48] = self
            .digest
            .as_slice()
            .try_into()
            .map_err(|_| RotError::Crypto(ihsm_crypto::CryptoError::VerificationFailed))?;
        let sig = EccP384Signature::from_fixed(&self.signature)?;
        Ok(fmc_alias.verify_prehashed(&digest, &sig)?)
    }

    /// Verifies the signature with the FMC Alias ML-DSA-87 public key.
    ///
    /// # Errors
    /// [`RotError::Crypto`] when it does not verify.
    pub fn verify_mldsa(&self, fmc_alias: &MlDsa87PublicKey) -> Result<()> {
        let sig = MlDsa87Signature::from_bytes(&self.signature)?;
        Ok(fmc_alias.verify(&self.digest, &sig)?)
    }
}
