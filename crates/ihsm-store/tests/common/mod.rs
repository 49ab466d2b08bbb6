//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use ihsm_crypto::seal::SealKey;
use ihsm_crypto::{ExposeSecret, Secret};
use ihsm_store::{OpenReport, Store, StoreError};

/// A store directory: the store file and its counter.
pub struct Dir {
    pub tmp: tempfile::TempDir,
    pub store: PathBuf,
    pub counter: PathBuf,
}

impl Dir {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store.redb");
        let counter = tmp.path().join("counter");
        Self {
            tmp,
            store,
            counter,
        }
    }

    pub fn at(path: &Path) -> (PathBuf, PathBuf) {
        (path.join("store.redb"), path.join("counter"))
    }

    /// Opens with the device key for seed `seed` at SVN 1.
    pub fn open_with(&self, seed: u8) -> Result<(Store, OpenReport), StoreError> {
        Store::open(&self.store, &self.counter, key(seed), 1)
    }

    pub fn open(&self) -> (Store, OpenReport) {
        self.open_with(DEVICE).unwrap()
    }
}

/// The seed of the "right" device key in these tests.
pub const DEVICE: u8 = 0xd0;

/// A deterministic sealing key.
pub fn key(seed: u8) -> SealKey {
    SealKey::new(Secret::from_slice(&[seed; 32]).unwrap())
}

/// A deterministic attribute digest.
pub fn digest(oid: u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&oid.to_be_bytes());
    d[8..].fill(0xd1);
    d
}

/// A deterministic index MAC.
pub fn mac(n: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&n.to_le_bytes());
    m[8..].copy_from_slice(&(!n).to_le_bytes());
    m
}

/// Reads object `oid` and returns its digest and record bytes.
pub fn read_object(s: &Store, pid: u32, oid: u64, k: &SealKey) -> Option<([u8; 32], Vec<u8>)> {
    s.object(pid, oid, k)
        .unwrap()
        .map(|(d, r)| (d, r.expose_secret().to_vec()))
}
