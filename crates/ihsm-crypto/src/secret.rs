use core::fmt;

use secrecy::{ExposeSecret, ExposeSecretMut};

use crate::CryptoError;
use ihsm_secmem::LockedRegion;

/// `N` secret bytes in locked, non-dumpable memory, wiped on drop.
///
/// Not `Clone`; `Debug` prints only the length. The bytes are reached through
/// [`ExposeSecret::expose_secret`], the one deliberately named way out.
pub struct Secret<const N: usize> {
    region: LockedRegion,
}

impl<const N: usize> Secret<N> {
    /// A secret of all zero bytes, to be filled in place.
    ///
    /// # Errors
    /// [`CryptoError::SecretMemory`] when no memory can be mapped.
    pub fn zeroed() -> Result<Self, CryptoError> {
        Ok(Self {
            region: LockedRegion::new(N).map_err(CryptoError::SecretMemory)?,
        })
    }

    /// Builds a secret by letting `fill` write it in place, so the bytes never exist
    /// outside locked memory.
    ///
    /// # Errors
    /// Whatever `fill` returns, or [`CryptoError::SecretMemory`].
    pub fn try_from_fn<E: From<CryptoError>>(
        fill: impl FnOnce(&mut [u8; N]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let mut s = Self::zeroed()?;
        fill(s.expose_secret_mut())?;
        Ok(s)
    }

    /// Copies `bytes` into a new secret. The caller remains responsible for wiping
    /// its own copy.
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] when `bytes` is not exactly `N` long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != N {
            return Err(CryptoError::WrongLength {
                what: "secret",
                expected: N,
                actual: bytes.len(),
            });
        }
        let mut s = Self::zeroed()?;
        s.expose_secret_mut().copy_from_slice(bytes);
        Ok(s)
    }

    /// `N` bytes from the system's random number generator (aws-lc's DRBG).
    ///
    /// # Errors
    /// [`CryptoError::Rng`] or [`CryptoError::SecretMemory`].
    pub fn random() -> Result<Self, CryptoError> {
        Self::try_from_fn(|buf| crate::rand::fill(buf))
    }

    /// Constant-time comparison.
    #[must_use]
    pub fn ct_eq(&self, other: &Self) -> bool {
        crate::ct_eq(self.expose_secret(), other.expose_secret())
    }
}

impl<const N: usize> ExposeSecret<[u8; N]> for Secret<N> {
    fn expose_secret(&self) -> &[u8; N] {
        match <&[u8; N]>::try_from(self.region.as_slice()) {
            Ok(array) => array,
            // The region is created with exactly N bytes; this arm cannot be reached.
            Err(_) => unreachable_region(),
        }
    }
}

impl<const N: usize> ExposeSecretMut<[u8; N]> for Secret<N> {
    fn expose_secret_mut(&mut self) -> &mut [u8; N] {
        match <&mut [u8; N]>::try_from(self.region.as_mut_slice()) {
            Ok(array) => array,
            Err(_) => unreachable_region(),
        }
    }
}

#[cold]
#[allow(clippy::panic)]
fn unreachable_region() -> ! {
    panic!("secret region length differs from its type")
}

impl<const N: usize> fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret<{N}>([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_content() {
        let s = Secret::<4>::from_slice(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
        let shown = format!("{s:?}");
        assert_eq!(shown, "Secret<4>([REDACTED])");
        assert!(!shown.to_lowercase().contains("de"));
    }

    #[test]
    fn wrong_length_is_refused() {
        assert_eq!(
            Secret::<32>::from_slice(&[0; 31]).unwrap_err(),
            CryptoError::WrongLength {
                what: "secret",
                expected: 32,
                actual: 31
            }
        );
    }

    #[test]
    fn random_secrets_differ_and_compare_in_constant_time() {
        let a = Secret::<32>::random().unwrap();
        let b = Secret::<32>::random().unwrap();
        assert!(!a.ct_eq(&b));
        let c = Secret::<32>::from_slice(a.expose_secret()).unwrap();
        assert!(a.ct_eq(&c));
    }
}

/// Secret bytes of a length known only at run time (AES keys of 16, 24 or 32
/// bytes, derived secrets, private-key encodings), in locked memory, wiped on drop.
pub struct SecretVec {
    region: LockedRegion,
}

impl SecretVec {
    /// `len` zero bytes, to be filled in place.
    ///
    /// # Errors
    /// [`CryptoError::SecretMemory`].
    pub fn zeroed(len: usize) -> Result<Self, CryptoError> {
        Ok(Self {
            region: LockedRegion::new(len).map_err(CryptoError::SecretMemory)?,
        })
    }

    /// Copies `bytes` into a new secret; the caller wipes its own copy.
    ///
    /// # Errors
    /// [`CryptoError::SecretMemory`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut s = Self::zeroed(bytes.len())?;
        s.expose_secret_mut().copy_from_slice(bytes);
        Ok(s)
    }

    /// Builds a secret of `len` bytes by letting `fill` write it in place.
    ///
    /// # Errors
    /// Whatever `fill` returns, or [`CryptoError::SecretMemory`].
    pub fn try_from_fn<E: From<CryptoError>>(
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let mut s = Self::zeroed(len)?;
        fill(s.expose_secret_mut())?;
        Ok(s)
    }

    /// `len` random bytes.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] or [`CryptoError::SecretMemory`].
    pub fn random(len: usize) -> Result<Self, CryptoError> {
        Self::try_from_fn(len, crate::rand::fill)
    }

    /// The length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.region.as_slice().len()
    }

    /// True for a zero-length secret.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Constant-time comparison (lengths are not secret).
    #[must_use]
    pub fn ct_eq(&self, other: &Self) -> bool {
        crate::ct_eq(self.expose_secret(), other.expose_secret())
    }
}

impl ExposeSecret<[u8]> for SecretVec {
    fn expose_secret(&self) -> &[u8] {
        self.region.as_slice()
    }
}

impl ExposeSecretMut<[u8]> for SecretVec {
    fn expose_secret_mut(&mut self) -> &mut [u8] {
        self.region.as_mut_slice()
    }
}

impl fmt::Debug for SecretVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretVec<{}>([REDACTED])", self.len())
    }
}

#[cfg(test)]
mod vec_tests {
    use super::*;

    #[test]
    fn secret_vec_basics() {
        let a = SecretVec::from_slice(&[1, 2, 3]).unwrap();
        assert_eq!(a.expose_secret(), &[1, 2, 3]);
        assert_eq!(a.len(), 3);
        assert_eq!(format!("{a:?}"), "SecretVec<3>([REDACTED])");
        let b = SecretVec::random(24).unwrap();
        assert_eq!(b.len(), 24);
        assert!(!a.ct_eq(&b));
        assert!(SecretVec::zeroed(0).unwrap().is_empty());
    }
}
