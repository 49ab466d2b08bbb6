//! The audit log: per partition (and one for the device, partition 0), a
//! hash-chained sequence of security events with periodic checkpoints signed by the
//! partition's identity key, and a verifier that finds any edited, dropped or
//! reordered entry.
//!
//! Entry `n` carries `prev = SHA-384(encoding of entry n-1)` (zeros for entry 1).
//! A checkpoint is an entry whose event carries an ECDSA P-384 signature, by the
//! partition identity key, over `"ihsm-audit-checkpoint-v1" || pid || seq || prev`:
//! it vouches for everything before it. The core writes one when a partition is
//! opened, every [`CHECKPOINT_EVERY`] entries and on request. Entries never hold
//! secrets: handles, classes and key types, not labels or values.

use ihsm_crypto::ec::{EccP384PrivateKey, EccP384PublicKey, EccP384Signature};
use ihsm_crypto::hash::sha384;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// A checkpoint is written after this many entries.
pub const CHECKPOINT_EVERY: u64 = 256;

/// Who a PIN event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Who {
    /// The Security Officer.
    SecurityOfficer,
    /// The normal user.
    User,
}

/// How an object came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// C_CreateObject.
    Created,
    /// Generated inside the HSM.
    Generated,
    /// Unwrapped.
    Unwrapped,
    /// Derived.
    Derived,
    /// Decapsulated (ML-KEM).
    Decapsulated,
    /// Copied.
    Copied,
    /// Imported from a masked blob.
    Unmasked,
}

/// A security event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// The partition was created.
    PartitionCreated {
        /// Partition id.
        pid: u32,
    },
    /// The partition was deleted (device log).
    PartitionDeleted {
        /// Partition id.
        pid: u32,
    },
    /// C_InitToken: objects cleared, SO PIN set.
    TokenInitialized,
    /// A PIN was set or reset.
    PinSet(Who),
    /// A successful login.
    Login(Who),
    /// A failed login.
    LoginFailed {
        /// Who tried.
        who: Who,
        /// Attempts left.
        remaining: u32,
    },
    /// A PIN locked.
    PinLocked(Who),
    /// A token object was created.
    ObjectCreated {
        /// Its handle.
        handle: u64,
        /// `CKO_*`.
        class: u64,
        /// `CKK_*`, for keys.
        key_type: Option<u64>,
        /// How.
        origin: Origin,
    },
    /// A token object was destroyed.
    ObjectDestroyed {
        /// Its handle.
        handle: u64,
    },
    /// A token object's attributes changed.
    AttributesChanged {
        /// Its handle.
        handle: u64,
    },
    /// A key left the HSM wrapped.
    KeyWrapped {
        /// The wrapped key.
        handle: u64,
        /// The wrapping key.
        wrapping_key: u64,
    },
    /// A key left the HSM as a masked blob.
    KeyMasked {
        /// The key.
        handle: u64,
    },
    /// A tamper sensor fired.
    Tamper {
        /// Which sensor and why.
        source: String,
    },
    /// A self-test ran.
    SelfTest {
        /// Whether it passed.
        passed: bool,
        /// What ran, or what failed.
        detail: String,
    },
    /// A signed checkpoint over everything before it.
    Checkpoint {
        /// ECDSA P-384 signature, `r || s`.
        signature: Vec<u8>,
    },
    /// The partition admits a principal besides its owner (`ihsm partition
    /// allow`).
    PrincipalAllowed(ihsm_proto::types::Principal),
    /// The partition no longer admits a principal (`ihsm partition revoke`).
    PrincipalRevoked(ihsm_proto::types::Principal),
    /// A key report was made; its counter is this entry's sequence number.
    KeyReported {
        /// The key.
        handle: u64,
        /// SHA-384 of the report's 128 bytes of report_data.
        #[serde(with = "bytes48")]
        report_data: [u8; 48],
    },
    /// The root of trust signed a quote for a verifier (device log).
    QuoteServed {
        /// The mailbox command (`QUOTE_PCRS_ECC384` or `QUOTE_PCRS_MLDSA87`).
        command: u32,
        /// The verifier's nonce.
        nonce: Vec<u8>,
    },
    /// A secure key release, granted or refused.
    KeyReleased {
        /// The key.
        handle: u64,
        /// The verifier whose EAR was presented (its JWK thumbprint; empty when
        /// no trusted verifier signed it).
        authority: String,
        /// Whether the key left, wrapped.
        granted: bool,
    },
    /// The Security Officer replaced a key's release policy (a user may only
    /// tighten one).
    ReleasePolicyReplaced {
        /// The key.
        handle: u64,
        /// SHA-384 of the new policy's bytes.
        #[serde(with = "bytes48")]
        policy_sha384: [u8; 48],
    },
    /// The partition stopped serving to move to another host (`ihsm partition
    /// move`); the last entry the source writes in the log that travels.
    MoveStarted {
        /// The destination host.
        to: String,
        /// The placement's epoch (the etcd revision the move replaces).
        epoch: u64,
    },
    /// The move did not happen; the partition serves here again.
    MoveAborted {
        /// The destination host.
        to: String,
    },
    /// The partition arrived from another host: the first entry the destination
    /// writes after the log it received.
    MovedIn {
        /// The source host.
        from: String,
        /// The placement's epoch.
        epoch: u64,
    },
    /// A partition left this device for another host (device log).
    PartitionMovedOut {
        /// The partition.
        pid: u32,
        /// The destination host.
        to: String,
        /// The placement's epoch.
        epoch: u64,
    },
    /// A partition arrived on this device from another host (device log).
    PartitionMovedIn {
        /// The partition.
        pid: u32,
        /// The source host.
        from: String,
        /// The placement's epoch.
        epoch: u64,
    },
    /// This device took a fleet masking domain epoch (device log).
    FleetDomain {
        /// The epoch.
        epoch: u32,
        /// The host that drew it.
        issuer: String,
    },
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// Unix seconds.
    pub time: u64,
    /// SHA-384 of the previous entry's encoding (zeros for the first).
    #[serde(with = "bytes48")]
    pub prev: [u8; 48],
    /// What happened.
    pub event: AuditEvent,
}

impl AuditEntry {
    /// The stored encoding.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|_| CoreError::Internal("audit entry encoding"))
    }

    /// Parses a stored entry.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        postcard::from_bytes(bytes).map_err(|_| CoreError::Internal("audit entry decoding"))
    }
}

mod bytes48 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8; 48], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 48], D::Error> {
        let v: &[u8] = Deserialize::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::invalid_length(v.len(), &"48 bytes"))
    }
}

fn checkpoint_message(pid: u32, seq: u64, prev: &[u8; 48]) -> Vec<u8> {
    let mut m = Vec::with_capacity(24 + 4 + 8 + 48);
    m.extend_from_slice(b"ihsm-audit-checkpoint-v1");
    m.extend_from_slice(&pid.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev);
    m
}

/// The head of a chain: the next sequence number and the hash to chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) next_seq: u64,
    pub(crate) prev: [u8; 48],
    pub(crate) since_checkpoint: u64,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            next_seq: 1,
            prev: [0; 48],
            since_checkpoint: 0,
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Head {
    /// The head after `entries` (the tail of a stored log), or a fresh one.
    pub(crate) fn after(last: Option<&[u8]>) -> Result<Self> {
        match last {
            None => Ok(Self::default()),
            Some(bytes) => {
                let e = AuditEntry::decode(bytes)?;
                Ok(Self {
                    next_seq: e.seq.saturating_add(1),
                    prev: sha384(bytes),
                    since_checkpoint: 0,
                })
            }
        }
    }

    /// Builds the next entry for `event` and advances the head. Returns
    /// `(seq, encoded entry)` for the store.
    pub(crate) fn append(&mut self, event: AuditEvent) -> Result<(u64, Vec<u8>)> {
        let is_checkpoint = matches!(event, AuditEvent::Checkpoint { .. });
        let entry = AuditEntry {
            seq: self.next_seq,
            time: now(),
            prev: self.prev,
            event,
        };
        let bytes = entry.encode()?;
        self.prev = sha384(&bytes);
        self.next_seq = self.next_seq.saturating_add(1);
        self.since_checkpoint = if is_checkpoint {
            0
        } else {
            self.since_checkpoint.saturating_add(1)
        };
        Ok((entry.seq, bytes))
    }

    /// A checkpoint event vouching for everything so far.
    pub(crate) fn checkpoint(&self, pid: u32, key: &EccP384PrivateKey) -> Result<AuditEvent> {
        let sig = key.sign(&checkpoint_message(pid, self.next_seq, &self.prev))?;
        Ok(AuditEvent::Checkpoint {
            signature: sig.to_fixed().to_vec(),
        })
    }

    /// Whether a checkpoint is due.
    pub(crate) fn checkpoint_due(&self) -> bool {
        self.since_checkpoint >= CHECKPOINT_EVERY
    }
}

pub use ihsm_proto::types::AuditReport;

/// Why a log does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// An entry could not be parsed.
    #[error("audit entry at position {0} is malformed")]
    Malformed(usize),
    /// A sequence number is missing or out of order.
    #[error("audit entry {expected} is missing or out of order (found {found})")]
    Gap {
        /// Expected sequence number.
        expected: u64,
        /// Found.
        found: u64,
    },
    /// An entry does not chain to its predecessor: it or the predecessor was edited,
    /// or entries were reordered.
    #[error("audit entry {0} does not chain to the entry before it (edited or reordered)")]
    Broken(u64),
    /// A checkpoint signature does not verify.
    #[error("audit checkpoint {0} has an invalid signature")]
    BadCheckpoint(u64),
    /// The log ends before the head the HSM holds (entries dropped at the end).
    #[error("audit log ends at entry {found}, but the HSM's head is entry {expected}")]
    Truncated {
        /// The HSM's last sequence number.
        expected: u64,
        /// The log's last.
        found: u64,
    },
}

/// Verifies a log (entries in order, starting at `first_seq` whose predecessor hash
/// is `first_prev`, usually 1 and zeros) against the partition identity key.
/// `head` is the HSM's own last `(seq, hash)` when verifying inside the HSM, which
/// also catches entries dropped or edited at the end.
///
/// # Errors
/// The first [`AuditError`].
pub fn verify(
    pid: u32,
    entries: &[Vec<u8>],
    identity: &EccP384PublicKey,
    first_seq: u64,
    first_prev: [u8; 48],
    head: Option<(u64, [u8; 48])>,
) -> core::result::Result<AuditReport, AuditError> {
    let mut report = AuditReport {
        entries: 0,
        checkpoints: 0,
        verified_through: 0,
        unsigned_tail: 0,
    };
    let mut expected = first_seq;
    let mut prev = first_prev;
    for (i, bytes) in entries.iter().enumerate() {
        let e = AuditEntry::decode(bytes).map_err(|_| AuditError::Malformed(i))?;
        if e.seq != expected {
            return Err(AuditError::Gap {
                expected,
                found: e.seq,
            });
        }
        if e.prev != prev {
            return Err(AuditError::Broken(e.seq));
        }
        if let AuditEvent::Checkpoint { signature } = &e.event {
            let ok = EccP384Signature::from_fixed(signature)
                .ok()
                .map(|s| {
                    identity
                        .verify(&checkpoint_message(pid, e.seq, &e.prev), &s)
                        .is_ok()
                })
                .unwrap_or(false);
            if !ok {
                return Err(AuditError::BadCheckpoint(e.seq));
            }
            report.checkpoints += 1;
            report.verified_through = e.seq;
            report.unsigned_tail = 0;
        } else {
            report.unsigned_tail += 1;
        }
        report.entries += 1;
        prev = sha384(bytes);
        expected = expected.saturating_add(1);
    }
    if let Some((last_seq, last_hash)) = head {
        let found = expected.saturating_sub(1);
        if found < last_seq {
            return Err(AuditError::Truncated {
                expected: last_seq,
                found,
            });
        }
        if found == last_seq && prev != last_hash {
            return Err(AuditError::Broken(last_seq));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize, key: &EccP384PrivateKey) -> (Vec<Vec<u8>>, Head) {
        let mut head = Head::default();
        let mut out = Vec::new();
        for i in 0..n {
            let ev = if i % 5 == 4 {
                head.checkpoint(7, key).unwrap()
            } else {
                AuditEvent::ObjectDestroyed { handle: i as u64 }
            };
            out.push(head.append(ev).unwrap().1);
        }
        (out, head)
    }

    #[test]
    fn an_intact_log_verifies() {
        let key = EccP384PrivateKey::generate().unwrap();
        let (entries, head) = log(12, &key);
        let r = verify(
            7,
            &entries,
            key.public_key(),
            1,
            [0; 48],
            Some((12, head.prev)),
        )
        .unwrap();
        assert_eq!(r.entries, 12);
        assert_eq!(r.checkpoints, 2);
        assert_eq!(r.verified_through, 10);
        assert_eq!(r.unsigned_tail, 2);
    }

    #[test]
    fn edits_drops_reorders_and_forged_checkpoints_are_found() {
        let key = EccP384PrivateKey::generate().unwrap();
        let (entries, head) = log(12, &key);
        let pk = key.public_key();
        let h = Some((12, head.prev));
        // Edited entry: the next one no longer chains.
        let mut e = entries.clone();
        let mut entry = AuditEntry::decode(&e[2]).unwrap();
        entry.event = AuditEvent::ObjectDestroyed { handle: 999 };
        e[2] = entry.encode().unwrap();
        assert_eq!(verify(7, &e, pk, 1, [0; 48], h), Err(AuditError::Broken(4)));
        // Dropped entry.
        let mut e = entries.clone();
        e.remove(5);
        assert_eq!(
            verify(7, &e, pk, 1, [0; 48], h),
            Err(AuditError::Gap {
                expected: 6,
                found: 7
            })
        );
        // Reordered entries.
        let mut e = entries.clone();
        e.swap(6, 7);
        assert!(matches!(
            verify(7, &e, pk, 1, [0; 48], h),
            Err(AuditError::Gap { .. })
        ));
        // Dropped at the end: only the HSM's head can tell.
        let e = entries[..11].to_vec();
        assert!(verify(7, &e, pk, 1, [0; 48], None).is_ok());
        assert_eq!(
            verify(7, &e, pk, 1, [0; 48], h),
            Err(AuditError::Truncated {
                expected: 12,
                found: 11
            })
        );
        // Edited last entry: caught against the head.
        let mut e = entries.clone();
        let mut last = AuditEntry::decode(&e[11]).unwrap();
        last.time += 1;
        e[11] = last.encode().unwrap();
        assert_eq!(
            verify(7, &e, pk, 1, [0; 48], h),
            Err(AuditError::Broken(12))
        );
        // A checkpoint signed by someone else, or for another partition.
        let other = EccP384PrivateKey::generate().unwrap();
        assert_eq!(
            verify(7, &entries, other.public_key(), 1, [0; 48], h),
            Err(AuditError::BadCheckpoint(5))
        );
        assert_eq!(
            verify(8, &entries, pk, 1, [0; 48], h),
            Err(AuditError::BadCheckpoint(5))
        );
        // Garbage.
        assert_eq!(
            verify(7, &[vec![0xff; 3]], pk, 1, [0; 48], None),
            Err(AuditError::Malformed(0))
        );
    }
}
