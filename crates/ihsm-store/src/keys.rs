//! The epochs of the sealing key and the budget of seals each one may make.
//!
//! AES-GCM with random 96-bit nonces is safe for 2^32 seals per key (NIST SP
//! 800-38D section 8.3). The store counts every seal it makes under the sealing key,
//! durably (in the generation record, sealed in the same commit as the seals it
//! counts), and before the count of the current epoch reaches half its budget it
//! moves to the next epoch: a key derived from the root of trust's key with the
//! epoch number, under which every record of the sealing key is sealed again in one
//! atomic write. Half, so that neither the write in flight nor the re-seal itself can
//! cross the budget.

use std::sync::{Arc, Mutex, PoisonError};

use ihsm_crypto::hash::HashAlg;
use ihsm_crypto::seal::SealKey;
use ihsm_crypto::{ExposeSecret, Secret, kdf};

use crate::StoreError;
use crate::header::StoreId;

/// Seals one key may make: 2^32 (NIST SP 800-38D section 8.3, random nonces).
pub const SEAL_BUDGET: u64 = 1 << 32;

/// How a store is run; [`StoreOptions::default`] is what a device uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Seals the sealing key of one epoch may make. The store moves to the next
    /// epoch once half of it is used. Tests lower it to watch epochs change.
    pub seal_budget: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            seal_budget: SEAL_BUDGET,
        }
    }
}

impl StoreOptions {
    /// The count of seals at which the store re-keys before its next write.
    pub(crate) fn rekey_at(&self) -> u64 {
        self.seal_budget / 2
    }
}

/// Info of the epoch derivation: `b"ihsm/store/sealing-epoch/v1" || epoch (4, BE)`.
const EPOCH_INFO: &[u8] = b"ihsm/store/sealing-epoch/v1";

/// The sealing keys of every epoch, derived on demand from the key the root of
/// trust gave (the stable-identity ladder's key for the store, at the store's SVN).
///
/// Epoch 0 is that key itself (every store began there, and the header's identity
/// record stays sealed under it); epoch `e >= 1` is
/// `HKDF-SHA-384(salt = store_id, ikm = key, info = "ihsm/store/sealing-epoch/v1" || e (BE))`,
/// 32 bytes. The last two keys used are kept, so that a reader whose snapshot
/// predates a re-key still opens what it reads.
pub(crate) struct SealingKeys {
    root: Arc<SealKey>,
    store_id: StoreId,
    recent: Mutex<Vec<(u32, Arc<SealKey>)>>,
}

impl SealingKeys {
    pub(crate) fn new(root: SealKey, store_id: StoreId) -> Self {
        Self {
            root: Arc::new(root),
            store_id,
            recent: Mutex::new(Vec::with_capacity(2)),
        }
    }

    /// The sealing key of `epoch`.
    pub(crate) fn epoch(&self, epoch: u32) -> Result<Arc<SealKey>, StoreError> {
        if epoch == 0 {
            return Ok(Arc::clone(&self.root));
        }
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, k)) = recent.iter().find(|(e, _)| *e == epoch) {
            return Ok(Arc::clone(k));
        }
        let info = [EPOCH_INFO, &epoch.to_be_bytes()].concat();
        let okm = kdf::hkdf(
            HashAlg::Sha384,
            &self.store_id,
            self.root.expose().expose_secret(),
            &info,
            32,
        )?;
        let key = Arc::new(SealKey::new(Secret::from_slice(okm.expose_secret())?));
        if recent.len() >= 2 {
            recent.remove(0);
        }
        recent.push((epoch, Arc::clone(&key)));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seed: u8, id: u8) -> SealingKeys {
        SealingKeys::new(
            SealKey::new(Secret::from_slice(&[seed; 32]).unwrap()),
            [id; 16],
        )
    }

    #[test]
    fn each_epoch_has_its_own_key_and_the_same_one_each_time() {
        let k = keys(1, 2);
        let blob = k.epoch(0).unwrap().seal(b"ad", b"x").unwrap();
        assert!(k.epoch(1).unwrap().open(b"ad", &blob).is_err());
        let e1 = k.epoch(1).unwrap().seal(b"ad", b"y").unwrap();
        for e in [2, 3, 1] {
            let opened = k.epoch(e).unwrap().open(b"ad", &e1);
            assert_eq!(opened.is_ok(), e == 1, "epoch {e}");
        }
        // Derived again from nothing but the root key and the store id.
        let fresh = keys(1, 2);
        assert!(fresh.epoch(1).unwrap().open(b"ad", &e1).is_ok());
        // Another store's id or another root gives other keys.
        assert!(keys(1, 3).epoch(1).unwrap().open(b"ad", &e1).is_err());
        assert!(keys(4, 2).epoch(1).unwrap().open(b"ad", &e1).is_err());
    }

    #[test]
    fn the_budget_re_keys_at_half() {
        assert_eq!(StoreOptions::default().seal_budget, 1 << 32);
        assert_eq!(StoreOptions::default().rekey_at(), 1 << 31);
        assert_eq!(StoreOptions { seal_budget: 40 }.rekey_at(), 20);
    }
}
