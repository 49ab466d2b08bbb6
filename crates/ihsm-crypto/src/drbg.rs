//! HMAC_DRBG with SHA-384 (NIST SP 800-90A rev. 1, §10.1.2), no reseeding and no
//! prediction resistance: exactly the generator Caliptra's ECC engine uses to turn a
//! CDI-derived seed into a P-384 private key, so the same seed gives the same key.

use secrecy::ExposeSecretMut;

use crate::hmac::{hmac384, hmac384_parts};
use crate::{CryptoError, ExposeSecret, Secret};

/// The order n of the P-384 group, big-endian.
const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// An HMAC_DRBG(SHA-384) instance. Its state (K, V) lives in locked memory.
#[derive(Debug)]
pub struct HmacDrbg384 {
    k: Secret<48>,
    v: Secret<48>,
}

impl HmacDrbg384 {
    /// Instantiates with `entropy || nonce` as seed material (no personalization).
    ///
    /// # Errors
    /// [`CryptoError`] from HMAC or secret memory.
    pub fn new(entropy: &[u8], nonce: &[u8]) -> Result<Self, CryptoError> {
        let k = Secret::zeroed()?;
        let mut v = Secret::<48>::zeroed()?;
        v.expose_secret_mut().fill(0x01);
        let mut drbg = Self { k, v };
        let seed = crate::scratch::concat(&[entropy, nonce]);
        drbg.update(&seed)?;
        Ok(drbg)
    }

    fn update(&mut self, data: &[u8]) -> Result<(), CryptoError> {
        self.k = hmac384_parts(
            self.k.expose_secret(),
            &[self.v.expose_secret(), &[0x00], data],
        )?;
        self.v = hmac384(self.k.expose_secret(), self.v.expose_secret())?;
        if !data.is_empty() {
            self.k = hmac384_parts(
                self.k.expose_secret(),
                &[self.v.expose_secret(), &[0x01], data],
            )?;
            self.v = hmac384(self.k.expose_secret(), self.v.expose_secret())?;
        }
        Ok(())
    }

    /// Fills `out` with the next output bytes, then updates the state.
    ///
    /// # Errors
    /// [`CryptoError`] from HMAC or secret memory.
    pub fn generate(&mut self, out: &mut [u8]) -> Result<(), CryptoError> {
        for chunk in out.chunks_mut(48) {
            self.v = hmac384(self.k.expose_secret(), self.v.expose_secret())?;
            let v = self.v.expose_secret();
            chunk.copy_from_slice(v.get(..chunk.len()).unwrap_or_default());
        }
        self.update(&[])
    }
}

/// True when `0 < k < n` for the P-384 order `n` (both big-endian, 48 bytes).
/// Runs in time independent of the value of `k`.
fn is_valid_p384_scalar(k: &[u8; 48]) -> bool {
    // Constant-time big-endian comparison k < n: walk from the least significant
    // byte computing the borrow of k - n.
    let mut borrow: u16 = 0;
    let mut nonzero: u8 = 0;
    for (a, b) in k.iter().rev().zip(P384_ORDER.iter().rev()) {
        let diff = u16::from(*a)
            .wrapping_sub(u16::from(*b))
            .wrapping_sub(borrow);
        borrow = (diff >> 8) & 1;
        nonzero |= *a;
    }
    borrow == 1 && nonzero != 0
}

/// Draws a P-384 private scalar from HMAC_DRBG(SHA-384) seeded with `seed || nonce`,
/// drawing again while the candidate is not in `[1, n-1]` (as Caliptra's hardware and
/// its reference model `hmac384_drbg_keygen` do).
///
/// # Errors
/// [`CryptoError`] from HMAC or secret memory.
pub fn p384_scalar_from_seed(seed: &[u8], nonce: &[u8]) -> Result<Secret<48>, CryptoError> {
    let mut drbg = HmacDrbg384::new(seed, nonce)?;
    let mut key = Secret::<48>::zeroed()?;
    // The chance of a retry is about 2^-190; bound the loop anyway.
    for _ in 0..64 {
        drbg.generate(key.expose_secret_mut())?;
        if is_valid_p384_scalar(key.expose_secret()) {
            return Ok(key);
        }
    }
    Err(CryptoError::Internal("HMAC_DRBG key generation"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    // NIST CAVP HMAC_DRBG SHA-384, no prediction resistance, no reseed, as quoted in
    // caliptra-sw test/src/crypto.rs `test_hmac384_drbg`: the first generate is
    // discarded, the second is compared.
    #[test]
    fn cavp_hmac_drbg_sha384() {
        let mut drbg = HmacDrbg384::new(
            &h("a1dc2dfeda4f3a1124e0e75ebfbe5f98cac11018221dda3fdcf8f9125d68447a"),
            &h("bae5ea2716654051526 8a493a96b5187"),
        )
        .unwrap();
        let mut out = vec![0u8; 192];
        drbg.generate(&mut out).unwrap();
        drbg.generate(&mut out).unwrap();
        assert_eq!(
            out,
            h(
                "228293e59b1e4545a4ff9f232616fc5108a1128debd0f7c20ace837ca105cbf2\
               4c0dac1f9847dafd0d0500721ffad3c684a992d110a549a264d14a8911c50be8\
               cd6a7e8fac783ad95b24f64fd8cc4c8b649eac2b15b363e30df79541a6b8a1ca\
               ac238949b46643694c85e1d5fcbcd9aaae6260acee660b8a79bea48e079ceb6a\
               5eaf4993a82c3f1b758d7c53e3094eeac63dc255be6dcdcc2b51e5ca45d2b206\
               84a5a8fa5806b96f8461ebf51bc515a7dd8c5475c0e70f2fd0faf7869a99ab6c"
            )
        );
    }

    // caliptra-sw test/src/crypto.rs `test_hmac384_drbg_keygen`.
    #[test]
    fn caliptra_drbg_keygen_vector() {
        let key = p384_scalar_from_seed(
            &h(
                "ae5e52d14b0def76dae57c2b076c2bf30520ad5b85ef9bceb33098465fe7eeb1\
                a6f45fcb193089cfd7968dad91c830bc",
            ),
            &h(
                "13f7ee4352fdf9f922dc9ea789463628112 0c91251751be899a8ef7c90bbcadf\
                19145785 56f6e11cafced338b904844f",
            ),
        )
        .unwrap();
        assert_eq!(
            key.expose_secret().as_slice(),
            h(
                "c7fa34e9a72fb57f611694c3c87fe3f42ce41cac446b636328a7f95505d8f742\
               7033cf37a1694c7c45fd7248e07c35ad"
            )
        );
    }

    #[test]
    fn scalar_range_check() {
        assert!(!is_valid_p384_scalar(&[0; 48]));
        assert!(is_valid_p384_scalar(&[1; 48]));
        let mut n_minus_1 = P384_ORDER;
        n_minus_1[47] -= 1;
        assert!(is_valid_p384_scalar(&n_minus_1));
        assert!(!is_valid_p384_scalar(&P384_ORDER));
        assert!(!is_valid_p384_scalar(&[0xff; 48]));
    }
}
