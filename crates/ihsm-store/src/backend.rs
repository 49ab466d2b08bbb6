//! The redb storage backend: the store file minus its fixed header.
//!
//! redb sees a file that starts at [`HEADER_LEN`]; the header in front of it is
//! written once at creation and never touched by redb. The file is locked
//! exclusively (`flock`) for as long as the database is open, as redb's own file
//! backend does.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::StoreError;
use crate::header::HEADER_LEN;

/// The store file seen through an offset of [`HEADER_LEN`].
#[derive(Debug)]
pub(crate) struct OffsetBackend {
    file: File,
}

impl OffsetBackend {
    /// Opens `path` for reading and writing and locks it exclusively.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .map_err(StoreError::io("cannot open store", path))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::AlreadyOpen {
                path: path.to_owned(),
            }),
            Err(TryLockError::Error(e)) => Err(StoreError::io("cannot lock store", path)(e)),
        }
    }
}

fn shifted(offset: u64) -> io::Result<u64> {
    offset
        .checked_add(HEADER_LEN)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflow"))
}

impl redb::StorageBackend for OffsetBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len().saturating_sub(HEADER_LEN))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(out, shifted(offset)?)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(shifted(len)?)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, shifted(offset)?)
    }

    fn close(&self) -> io::Result<()> {
        self.file.unlock()
    }
}
