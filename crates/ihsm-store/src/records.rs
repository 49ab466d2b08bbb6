//! Tables, keys, associated data and the small sealed records of the store.

use ihsm_crypto::seal::SealKey;
use ihsm_crypto::{CryptoError, ExposeSecret, SecretVec};
use redb::{MultimapTableDefinition, TableDefinition};

use crate::StoreError;
use crate::header::StoreId;

/// `"generation"` -> sealed generation record; `"seal_epoch"` -> the sealing key's
/// epoch (4, BE, in the clear: it only selects the key).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// pid -> sealed partition record.
pub(crate) const PARTITIONS: TableDefinition<u32, &[u8]> = TableDefinition::new("partitions");
/// (pid, oid) -> attr_digest (32) || sealed object record.
pub(crate) const OBJECTS: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("objects");
/// pid (BE) || tag || value_mac -> { oid }.
pub(crate) const INDEX: MultimapTableDefinition<&[u8; INDEX_KEY_LEN], u64> =
    MultimapTableDefinition::new("index");
/// (pid, seq) -> sealed audit entry.
pub(crate) const AUDIT: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("audit");
/// pid -> sealed partition state (next object id, object count).
pub(crate) const PART_STATE: TableDefinition<u32, &[u8]> = TableDefinition::new("partition_state");

/// Key of the generation record in [`META`].
pub(crate) const META_GENERATION: &str = "generation";
/// Key of the sealing key's epoch in [`META`] (absent: epoch 0).
pub(crate) const META_EPOCH: &str = "seal_epoch";

/// Length of an index key.
pub(crate) const INDEX_KEY_LEN: usize = 4 + 1 + 16;
/// Length of the attribute digest stored beside each object.
pub(crate) const DIGEST_LEN: usize = 32;

pub(crate) const AD_PARTITION: &[u8] = b"ihsm/partition/v1";
pub(crate) const AD_OBJECT: &[u8] = b"ihsm/object/v1";
pub(crate) const AD_GENERATION: &[u8] = b"ihsm/store/generation/v1";
pub(crate) const AD_PART_STATE: &[u8] = b"ihsm/store/partition-state/v1";
pub(crate) const AD_AUDIT: &[u8] = b"ihsm/audit/v1";

/// `b"ihsm/partition/v1" || pid (BE)`.
pub(crate) fn partition_ad(pid: u32) -> Vec<u8> {
    [AD_PARTITION, &pid.to_be_bytes()].concat()
}

/// `b"ihsm/object/v1" || pid (BE) || oid (BE) || attr_digest`.
pub(crate) fn object_ad(pid: u32, oid: u64, attr_digest: &[u8]) -> Vec<u8> {
    [
        AD_OBJECT,
        &pid.to_be_bytes(),
        &oid.to_be_bytes(),
        attr_digest,
    ]
    .concat()
}

/// `b"ihsm/store/partition-state/v1" || pid (BE)`.
pub(crate) fn part_state_ad(pid: u32) -> Vec<u8> {
    [AD_PART_STATE, &pid.to_be_bytes()].concat()
}

/// `b"ihsm/audit/v1" || pid (BE) || seq (BE)`.
pub(crate) fn audit_ad(pid: u32, seq: u64) -> Vec<u8> {
    [AD_AUDIT, &pid.to_be_bytes(), &seq.to_be_bytes()].concat()
}

/// `pid (BE) || tag || value_mac`: big-endian so one partition's keys are contiguous.
pub(crate) fn index_key(pid: u32, tag: u8, value_mac: &[u8; 16]) -> [u8; INDEX_KEY_LEN] {
    let mut k = [0u8; INDEX_KEY_LEN];
    k[..4].copy_from_slice(&pid.to_be_bytes());
    k[4] = tag;
    k[5..].copy_from_slice(value_mac);
    k
}

/// The first and last index keys of partition `pid`.
pub(crate) fn index_bounds(pid: u32) -> ([u8; INDEX_KEY_LEN], [u8; INDEX_KEY_LEN]) {
    (
        index_key(pid, 0, &[0; 16]),
        index_key(pid, 0xff, &[0xff; 16]),
    )
}

/// Opens a sealed record, turning an authentication failure into
/// [`StoreError::Corrupt`] naming the record.
pub(crate) fn open_record(
    key: &SealKey,
    ad: &[u8],
    blob: &[u8],
    what: &'static str,
    pid: Option<u32>,
    oid: Option<u64>,
) -> Result<SecretVec, StoreError> {
    key.open(ad, blob).map_err(|e| match e {
        CryptoError::VerificationFailed => StoreError::corrupt(what, pid, oid),
        other => other.into(),
    })
}

/// The generation record: how many writes the store has committed, and the epoch
/// of the sealing key with the number of seals made under it so far (this record's
/// own seal included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation {
    pub(crate) generation: u64,
    pub(crate) epoch: u32,
    /// `None` for a record written before seals were counted (a store of format
    /// 1's first layout): the count is unknown, and the store re-keys before its
    /// next write.
    pub(crate) seals: Option<u64>,
}

/// Length of the generation record's plaintext before seals were counted.
const GENERATION_V1_LEN: usize = 16 + 8;
/// `store_id (16) || generation (8) || epoch (4) || seals (8)`, numbers BE.
const GENERATION_LEN: usize = GENERATION_V1_LEN + 4 + 8;

/// Seals the generation record: `store_id (16) || generation (8, BE) || epoch (4,
/// BE) || seals (8, BE)`.
pub(crate) fn seal_generation(
    key: &SealKey,
    id: &StoreId,
    g: &Generation,
) -> Result<Vec<u8>, StoreError> {
    let mut plain = [0u8; GENERATION_LEN];
    plain[..16].copy_from_slice(id);
    plain[16..24].copy_from_slice(&g.generation.to_be_bytes());
    plain[24..28].copy_from_slice(&g.epoch.to_be_bytes());
    plain[28..].copy_from_slice(&g.seals.unwrap_or(u64::MAX).to_be_bytes());
    Ok(key.seal(AD_GENERATION, &plain)?)
}

/// Opens the generation record (sealed under the key of `epoch`) and checks that it
/// belongs to this store and to that epoch. A record of the first layout (no epoch,
/// no count) is accepted at epoch 0 with an unknown count.
pub(crate) fn open_generation(
    key: &SealKey,
    id: &StoreId,
    epoch: u32,
    blob: &[u8],
) -> Result<Generation, StoreError> {
    const WHAT: &str = "generation record";
    let plain = open_record(key, AD_GENERATION, blob, WHAT, None, None)?;
    let plain = plain.expose_secret();
    if plain.len() != GENERATION_LEN && !(plain.len() == GENERATION_V1_LEN && epoch == 0) {
        return Err(StoreError::corrupt(WHAT, None, None));
    }
    if !ihsm_crypto::ct_eq(&plain[..16], id) {
        return Err(StoreError::corrupt(
            "generation record (it belongs to another store)",
            None,
            None,
        ));
    }
    let generation = be64(&plain[16..24]);
    if plain.len() == GENERATION_V1_LEN {
        return Ok(Generation {
            generation,
            epoch: 0,
            seals: None,
        });
    }
    if be32(&plain[24..28]) != epoch {
        return Err(StoreError::corrupt(
            "generation record (its epoch is not the store's)",
            None,
            None,
        ));
    }
    let seals = be64(&plain[28..36]);
    Ok(Generation {
        generation,
        epoch,
        seals: (seals != u64::MAX).then_some(seals),
    })
}

/// The sealing key's epoch as [`META`] stores it.
pub(crate) fn decode_epoch(value: Option<&[u8]>) -> Result<u32, StoreError> {
    match value {
        None => Ok(0),
        Some(v) => <[u8; 4]>::try_from(v)
            .map(u32::from_be_bytes)
            .map_err(|_| StoreError::corrupt("sealing key epoch (wrong length)", None, None)),
    }
}

/// Per-partition bookkeeping: the next object id to hand out and the object count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartState {
    pub(crate) next_oid: u64,
    pub(crate) count: u64,
}

impl PartState {
    /// A partition that has never stored an object: ids start at 1.
    pub(crate) const FRESH: Self = Self {
        next_oid: 1,
        count: 0,
    };

    /// The plaintext of the state record: `next_oid (8, BE) || object_count (8, BE)`.
    pub(crate) fn plain(&self) -> [u8; 16] {
        let mut plain = [0u8; 16];
        plain[..8].copy_from_slice(&self.next_oid.to_be_bytes());
        plain[8..].copy_from_slice(&self.count.to_be_bytes());
        plain
    }

    pub(crate) fn open(key: &SealKey, pid: u32, blob: &[u8]) -> Result<Self, StoreError> {
        const WHAT: &str = "partition state record";
        let plain = open_record(key, &part_state_ad(pid), blob, WHAT, Some(pid), None)?;
        let plain = plain.expose_secret();
        if plain.len() != 16 {
            return Err(StoreError::corrupt(WHAT, Some(pid), None));
        }
        Ok(Self {
            next_oid: be64(&plain[..8]),
            count: be64(&plain[8..]),
        })
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

/// Splits a stored object value into its attribute digest and sealed blob.
pub(crate) fn split_object(value: &[u8], pid: u32, oid: u64) -> Result<(&[u8], &[u8]), StoreError> {
    if value.len() < DIGEST_LEN {
        return Err(StoreError::corrupt(
            "object record (truncated)",
            Some(pid),
            Some(oid),
        ));
    }
    Ok(value.split_at(DIGEST_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associated_data_layouts() {
        assert_eq!(
            partition_ad(0x0102_0304),
            b"ihsm/partition/v1\x01\x02\x03\x04"
        );
        let ad = object_ad(1, 2, &[0xaa; 32]);
        assert_eq!(&ad[..14], b"ihsm/object/v1");
        assert_eq!(&ad[14..18], &[0, 0, 0, 1]);
        assert_eq!(&ad[18..26], &[0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(&ad[26..], &[0xaa; 32]);
        assert_eq!(ad.len(), 14 + 4 + 8 + 32);
        assert_eq!(&audit_ad(1, 2)[..13], b"ihsm/audit/v1");
    }

    #[test]
    fn index_keys_of_a_partition_are_contiguous() {
        let (lo, hi) = index_bounds(7);
        for tag in [0u8, 1, 0x80, 0xff] {
            let k = index_key(7, tag, &[0x5a; 16]);
            assert!(lo <= k && k <= hi);
            assert!(index_key(6, 0xff, &[0xff; 16]) < lo);
            assert!(index_key(8, 0, &[0; 16]) > hi);
        }
    }

    #[test]
    fn generation_record_is_bound_to_its_store_and_epoch() {
        let k = SealKey::random().unwrap();
        let g = Generation {
            generation: 42,
            epoch: 3,
            seals: Some(7),
        };
        let blob = seal_generation(&k, &[1; 16], &g).unwrap();
        assert_eq!(open_generation(&k, &[1; 16], 3, &blob).unwrap(), g);
        for (id, epoch) in [([2; 16], 3), ([1; 16], 2), ([1; 16], 0)] {
            assert!(matches!(
                open_generation(&k, &id, epoch, &blob),
                Err(StoreError::Corrupt { .. })
            ));
        }
        let other = SealKey::random().unwrap();
        assert!(matches!(
            open_generation(&other, &[1; 16], 3, &blob),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_generation_record_of_the_first_layout_opens_at_epoch_0_with_no_count() {
        let k = SealKey::random().unwrap();
        let mut plain = [1u8; 24];
        plain[16..].copy_from_slice(&9u64.to_be_bytes());
        let blob = k.seal(AD_GENERATION, &plain).unwrap();
        assert_eq!(
            open_generation(&k, &[1; 16], 0, &blob).unwrap(),
            Generation {
                generation: 9,
                epoch: 0,
                seals: None
            }
        );
        assert!(open_generation(&k, &[1; 16], 1, &blob).is_err());
        for len in [0, 23, 25, 35, 37] {
            let blob = k.seal(AD_GENERATION, &vec![1u8; len]).unwrap();
            assert!(open_generation(&k, &[1; 16], 0, &blob).is_err(), "{len}");
        }
    }

    #[test]
    fn the_epoch_is_four_bytes_or_absent() {
        assert_eq!(decode_epoch(None).unwrap(), 0);
        assert_eq!(decode_epoch(Some(&[0, 0, 1, 2])).unwrap(), 258);
        for bad in [&[][..], &[1, 2, 3], &[0, 0, 0, 0, 1]] {
            assert!(matches!(
                decode_epoch(Some(bad)),
                Err(StoreError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn partition_state_is_bound_to_its_partition() {
        let k = SealKey::random().unwrap();
        let s = PartState {
            next_oid: 9,
            count: 4,
        };
        let blob = k.seal(&part_state_ad(3), &s.plain()).unwrap();
        assert_eq!(PartState::open(&k, 3, &blob).unwrap(), s);
        assert!(matches!(
            PartState::open(&k, 4, &blob),
            Err(StoreError::Corrupt { pid: Some(4), .. })
        ));
    }
}
