//! The sealed partition record (inside the store, sealed under the device key) and
//! its persistence.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Partition;
use crate::audit::AuditEvent;
use crate::error::{CoreError, Result};
use crate::pin::PinVerifier;
use crate::quota::Quotas;

/// The sealed partition record (inside the store, sealed under the device key).
#[derive(Serialize, Deserialize)]
pub(crate) struct PartitionRecord {
    pub(crate) version: u32,
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) owner_uid: u32,
    pub(crate) owner_gid: u32,
    pub(crate) so_pin: Option<PinVerifier>,
    pub(crate) user_pin: Option<PinVerifier>,
    pub(crate) pin_iterations: u32,
    pub(crate) quotas: Quotas,
    pub(crate) master_key: [u8; 32],
    pub(crate) identity_key: Vec<u8>,
    pub(crate) created: u64,
}

impl Drop for PartitionRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.master_key);
        zeroize::Zeroize::zeroize(&mut self.identity_key);
    }
}

impl PartitionRecord {
    pub(crate) fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(postcard::to_allocvec(self).map_err(
            |_| CoreError::Internal("partition record encoding"),
        )?))
    }
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        postcard::from_bytes(bytes)
            .map_err(|_| CoreError::Internal("partition record does not parse"))
    }
}

impl Partition {
    pub(super) fn persist_record(
        &self,
        rec: &PartitionRecord,
        events: Vec<AuditEvent>,
    ) -> Result<()> {
        let bytes = rec.encode()?;
        let pid = self.id;
        self.audited(|tx| {
            tx.put_partition(pid, &bytes)?;
            Ok(((), events))
        })
    }
}
