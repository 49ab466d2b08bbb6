//! The fixed header at the start of the store file: the SVN the store was sealed
//! at (readable without a key) and the sealed identity record.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `IHST` |
//! | 4 | 4 | format version (1), LE |
//! | 8 | 4 | sealed SVN, LE (unauthenticated; it only selects the ladder key) |
//! | 12 | 4 | reserved, zero |
//! | 16 | 48 | identity record: `SealKey::seal` of `store_id (16) \|\| SVN (4, BE)`, AD `ihsm/store/identity/v1` |
//! | 64 | 48 | SHA-384 of bytes 0..64 (integrity, not secrecy) |
//! | 112 | 3984 | zero |
//!
//! Total 4096 bytes; the redb database follows from offset 4096.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use ihsm_crypto::hash::sha384;
use ihsm_crypto::seal::{SEAL_OVERHEAD, SealKey};
use ihsm_crypto::{CryptoError, ExposeSecret};

use crate::StoreError;

/// Length of the header; the database starts here.
pub(crate) const HEADER_LEN: u64 = 4096;
const HEADER_BYTES: usize = 4096;
const MAGIC: [u8; 4] = *b"IHST";
const VERSION: u32 = 1;
const IDENTITY_PLAIN_LEN: usize = 16 + 4;
const IDENTITY_LEN: usize = IDENTITY_PLAIN_LEN + SEAL_OVERHEAD;
const BODY_LEN: usize = 16 + IDENTITY_LEN;
const DIGEST_END: usize = BODY_LEN + 48;

/// AD of the identity record.
pub(crate) const AD_IDENTITY: &[u8] = b"ihsm/store/identity/v1";

/// A random id for one store, bound into its identity and generation records so a
/// database body cannot be paired with another store's header.
pub(crate) type StoreId = [u8; 16];

/// The parsed, not yet authenticated header.
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) svn: u32,
    identity: [u8; IDENTITY_LEN],
}

impl Header {
    /// A header for a new store.
    pub(crate) fn seal(key: &SealKey, svn: u32, id: &StoreId) -> Result<Self, StoreError> {
        let mut plain = [0u8; IDENTITY_PLAIN_LEN];
        plain[..16].copy_from_slice(id);
        plain[16..].copy_from_slice(&svn.to_be_bytes());
        let blob = key.seal(AD_IDENTITY, &plain)?;
        let identity = blob
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Internal("identity record length"))?;
        Ok(Self { svn, identity })
    }

    /// Unseals the identity record: the store id, or [`StoreError::WrongIdentity`].
    pub(crate) fn unseal(&self, key: &SealKey, path: &Path) -> Result<StoreId, StoreError> {
        let plain = match key.open(AD_IDENTITY, &self.identity) {
            Ok(p) => p,
            Err(CryptoError::VerificationFailed) => return Err(StoreError::WrongIdentity),
            Err(e) => return Err(e.into()),
        };
        let plain = plain.expose_secret();
        if plain.len() != IDENTITY_PLAIN_LEN || plain[16..] != self.svn.to_be_bytes() {
            // Authentic record, but the clear SVN beside it was edited to match a key.
            return Err(StoreError::HeaderDamaged {
                path: path.to_owned(),
            });
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&plain[..16]);
        Ok(id)
    }

    pub(crate) fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.svn.to_le_bytes());
        b[16..BODY_LEN].copy_from_slice(&self.identity);
        let digest = sha384(&b[..BODY_LEN]);
        b[BODY_LEN..DIGEST_END].copy_from_slice(&digest);
        b
    }

    /// Parses the header, checking magic, version, digest and reserved bytes in
    /// that order.
    pub(crate) fn decode(b: &[u8; HEADER_BYTES], path: &Path) -> Result<Self, StoreError> {
        if b[0..4] != MAGIC {
            return Err(StoreError::HeaderBadMagic {
                path: path.to_owned(),
            });
        }
        let version = le32(&b[4..8]);
        if version != VERSION {
            return Err(StoreError::HeaderUnsupportedVersion {
                path: path.to_owned(),
                version,
            });
        }
        let damaged = || StoreError::HeaderDamaged {
            path: path.to_owned(),
        };
        if !ihsm_crypto::ct_eq(&sha384(&b[..BODY_LEN]), &b[BODY_LEN..DIGEST_END]) {
            return Err(damaged());
        }
        if b[12..16] != [0; 4] || b[DIGEST_END..].iter().any(|&x| x != 0) {
            return Err(damaged());
        }
        let mut identity = [0u8; IDENTITY_LEN];
        identity.copy_from_slice(&b[16..BODY_LEN]);
        Ok(Self {
            svn: le32(&b[8..12]),
            identity,
        })
    }

    /// Reads the header of the store at `path`; `None` when there is no file.
    pub(crate) fn read(path: &Path) -> Result<Option<Self>, StoreError> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("cannot open store", path)(e)),
        };
        let len = f
            .metadata()
            .map_err(StoreError::io("cannot stat store", path))?
            .len();
        if len < HEADER_LEN {
            return Err(StoreError::HeaderTruncated {
                path: path.to_owned(),
                actual: len,
                expected: HEADER_LEN,
            });
        }
        let mut b = [0u8; HEADER_BYTES];
        f.read_exact(&mut b)
            .map_err(StoreError::io("cannot read store header", path))?;
        Self::decode(&b, path).map(Some)
    }
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> (SealKey, Header) {
        let k = SealKey::random().unwrap();
        let h = Header::seal(&k, 5, &[9; 16]).unwrap();
        (k, h)
    }

    #[test]
    fn roundtrip_and_identity() {
        let (k, h) = header();
        let p = Path::new("s");
        let g = Header::decode(&h.encode(), p).unwrap();
        assert_eq!(g.svn, 5);
        assert_eq!(g.unseal(&k, p).unwrap(), [9; 16]);
        let other = SealKey::random().unwrap();
        assert!(matches!(
            g.unseal(&other, p),
            Err(StoreError::WrongIdentity)
        ));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (k, h) = header();
        let p = Path::new("s");
        let b = h.encode();
        for i in 0..HEADER_BYTES {
            let mut e = b;
            e[i] ^= 0x01;
            let r = Header::decode(&e, p).and_then(|h| h.unseal(&k, p));
            match (i, r) {
                (0..4, Err(StoreError::HeaderBadMagic { .. }))
                | (4..8, Err(StoreError::HeaderUnsupportedVersion { .. }))
                | (8.., Err(StoreError::HeaderDamaged { .. })) => {}
                (i, r) => panic!("flip at {i}: {r:?}"),
            }
        }
    }

    #[test]
    fn an_edited_svn_with_a_fixed_digest_is_refused() {
        let (k, h) = header();
        let p = Path::new("s");
        let edited = Header {
            svn: 6,
            identity: h.identity,
        };
        let g = Header::decode(&edited.encode(), p).unwrap();
        assert!(matches!(
            g.unseal(&k, p),
            Err(StoreError::HeaderDamaged { .. })
        ));
    }
}
