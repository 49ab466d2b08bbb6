//! The monotonic counter file: the store's generation, kept beside the fuses so
//! that an older copy of the store is recognised.
//!
//! Fixed layout, 64 bytes, written atomically (temporary file, fsync, rename, fsync
//! of the directory), mode 0600:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `IHCT` |
//! | 4 | 4 | format version (1), LE |
//! | 8 | 8 | generation, LE |
//! | 16 | 48 | SHA-384 of bytes 0..16 (integrity, not secrecy) |

use std::fs;
use std::path::Path;

use ihsm_crypto::hash::sha384;

use crate::StoreError;

/// Size of the counter file.
pub const COUNTER_FILE_LEN: usize = 64;
const MAGIC: [u8; 4] = *b"IHCT";
const VERSION: u32 = 1;
const BODY_LEN: usize = 16;

/// Encodes a counter file holding `generation`.
#[must_use]
pub(crate) fn encode(generation: u64) -> [u8; COUNTER_FILE_LEN] {
    let mut b = [0u8; COUNTER_FILE_LEN];
    b[0..4].copy_from_slice(&MAGIC);
    b[4..8].copy_from_slice(&VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&generation.to_le_bytes());
    let digest = sha384(&b[..BODY_LEN]);
    b[BODY_LEN..].copy_from_slice(&digest);
    b
}

/// Parses a counter file, checking length, magic, version and digest in that order.
pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<u64, StoreError> {
    let b: &[u8; COUNTER_FILE_LEN] =
        bytes
            .try_into()
            .map_err(|_| StoreError::CounterWrongLength {
                path: path.to_owned(),
                actual: bytes.len() as u64,
                expected: COUNTER_FILE_LEN as u64,
            })?;
    if b[0..4] != MAGIC {
        return Err(StoreError::CounterBadMagic {
            path: path.to_owned(),
        });
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[4..8]);
    let version = u32::from_le_bytes(v);
    if version != VERSION {
        return Err(StoreError::CounterUnsupportedVersion {
            path: path.to_owned(),
            version,
        });
    }
    if !ihsm_crypto::ct_eq(&sha384(&b[..BODY_LEN]), &b[BODY_LEN..]) {
        return Err(StoreError::CounterDamaged {
            path: path.to_owned(),
        });
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&b[8..16]);
    Ok(u64::from_le_bytes(g))
}

/// Reads the counter at `path`; `None` when there is no file.
pub(crate) fn read(path: &Path) -> Result<Option<u64>, StoreError> {
    match fs::read(path) {
        Ok(b) => decode(&b, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("cannot read monotonic counter", path)(e)),
    }
}

/// Writes the counter at `path` atomically.
pub(crate) fn write(path: &Path, generation: u64) -> Result<(), StoreError> {
    write_atomic(path, &encode(generation), 0o600)
}

/// Writes `data` to `path` atomically ([`ihsm_crypto::file::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    ihsm_crypto::file::write_atomic(path, data, mode).map_err(StoreError::from)
}

pub(crate) use ihsm_crypto::file::parent;

/// Fsyncs a directory, so that renames and links in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    ihsm_crypto::file::sync_dir(dir).map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn roundtrip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("counter");
        assert_eq!(read(&p).unwrap(), None);
        write(&p, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(read(&p).unwrap(), Some(0x0102_0304_0506_0708));
        write(&p, 9).unwrap();
        assert_eq!(read(&p).unwrap(), Some(9));
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let bytes = fs::read(&p).unwrap();
        assert_eq!(&bytes[..4], b"IHCT");
        assert_eq!(&bytes[8..16], &9u64.to_le_bytes());
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn every_truncation_and_flip_is_refused_precisely() {
        let p = Path::new("c");
        let b = encode(77);
        for n in 0..COUNTER_FILE_LEN {
            assert!(matches!(
                decode(&b[..n], p),
                Err(StoreError::CounterWrongLength { actual, .. }) if actual == n as u64
            ));
        }
        let mut longer = b.to_vec();
        longer.push(0);
        assert!(matches!(
            decode(&longer, p),
            Err(StoreError::CounterWrongLength { .. })
        ));
        for i in 0..COUNTER_FILE_LEN {
            let mut e = b;
            e[i] ^= 0x80;
            match (i, decode(&e, p)) {
                (0..4, Err(StoreError::CounterBadMagic { .. }))
                | (4..8, Err(StoreError::CounterUnsupportedVersion { .. }))
                | (8.., Err(StoreError::CounterDamaged { .. })) => {}
                (i, r) => panic!("flip at {i}: {r:?}"),
            }
        }
    }
}
