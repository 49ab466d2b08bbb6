//! The partition's audit log: events written in the same durable transaction as
//! the change they record, signed checkpoints, and the log's verification.

use ihsm_store::{Store, StoreError};

use super::{Partition, lock};
use crate::audit::{self, AuditEvent, AuditReport, Head};
use crate::error::{CoreError, Result};

impl Partition {
    /// Runs `f`'s store changes and writes the audit events it returns, in one
    /// durable transaction, adding a signed checkpoint when one is due.
    pub(super) fn audited<T>(
        &self,
        f: impl FnOnce(&mut ihsm_store::WriteTx<'_>) -> Result<(T, Vec<AuditEvent>), StoreError>,
    ) -> Result<T> {
        let mut head = lock(&self.audit)?;
        let mut next = head.clone();
        let pid = self.id;
        let identity = self
            .secrets
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let out = self.store()?.write(|tx| {
            let (out, events) = f(tx)?;
            let enc =
                |_| StoreError::Crypto(ihsm_crypto::CryptoError::Internal("audit entry encoding"));
            for ev in events {
                let (seq, bytes) = next.append(ev).map_err(enc)?;
                tx.audit_append(pid, seq, &bytes)?;
            }
            if next.checkpoint_due()
                && let Some(s) = identity.as_ref()
            {
                let cp = next.checkpoint(pid, &s.identity).map_err(enc)?;
                let (seq, bytes) = next.append(cp).map_err(enc)?;
                tx.audit_append(pid, seq, &bytes)?;
            }
            Ok(out)
        });
        drop(identity);
        let out = self.watch(out.map_err(CoreError::from))?;
        *head = next;
        Ok(out)
    }

    /// Writes `event` durably, with a checkpoint when one is due, and returns its
    /// sequence number.
    pub(super) fn audit_event(&self, event: AuditEvent) -> Result<u64> {
        let mut head = lock(&self.audit)?;
        let mut next = head.clone();
        let pid = self.id;
        let (seq, bytes) = next.append(event)?;
        let checkpoint = if next.checkpoint_due() {
            let cp = self.with_secrets(|s| next.checkpoint(pid, &s.identity))?;
            Some(next.append(cp)?)
        } else {
            None
        };
        let r = self.store()?.write(|tx| {
            tx.audit_append(pid, seq, &bytes)?;
            match &checkpoint {
                Some((cseq, cbytes)) => tx.audit_append(pid, *cseq, cbytes),
                None => Ok(()),
            }
        });
        self.watch(r.map_err(CoreError::from))?;
        *head = next;
        Ok(seq)
    }

    /// Appends a signed checkpoint now (at load, and on request).
    ///
    /// # Errors
    /// Store or device state errors.
    pub fn audit_checkpoint(&self) -> Result<()> {
        self.check()?;
        let mut head = lock(&self.audit)?;
        let mut next = head.clone();
        let cp = self.with_secrets(|s| next.checkpoint(self.id, &s.identity))?;
        let (seq, bytes) = next.append(cp)?;
        let pid = self.id;
        let r = self.store()?.write(|tx| tx.audit_append(pid, seq, &bytes));
        self.watch(r.map_err(CoreError::from))?;
        *head = next;
        Ok(())
    }

    /// The stored audit log (encoded entries, in order).
    ///
    /// # Errors
    /// Store errors.
    pub fn audit_entries(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut from = 1;
        loop {
            let batch = self.store()?.audit(self.id, from, 4096)?;
            let Some((last, _)) = batch.last() else { break };
            from = last.saturating_add(1);
            out.extend(batch.into_iter().map(|(_, e)| e));
        }
        Ok(out)
    }

    /// Verifies the whole audit log against the identity key and the HSM's head.
    ///
    /// # Errors
    /// [`CoreError::Internal`] naming the first broken entry.
    pub fn audit_verify(&self) -> Result<AuditReport> {
        let entries = self.audit_entries()?;
        let head = lock(&self.audit)?.clone();
        audit::verify(
            self.id,
            &entries,
            &self.identity_public,
            1,
            [0; 48],
            Some((head.next_seq.saturating_sub(1), head.prev)),
        )
        .map_err(|e| CoreError::AuditBroken(e.to_string()))
    }
}

/// The head of the device audit log.
pub(crate) fn device_head(store: &Store) -> Result<Head> {
    last_audit_head(store, 0)
}

/// The head of a stored audit log: the last entry, found by exponential and binary
/// search over sequence numbers (entries are dense from 1).
pub(super) fn last_audit_head(store: &Store, pid: u32) -> Result<Head> {
    let exists = |seq: u64| -> Result<bool> {
        Ok(store
            .audit(pid, seq, 1)?
            .first()
            .is_some_and(|(s, _)| *s == seq))
    };
    if !exists(1)? {
        return Ok(Head::default());
    }
    let mut lo = 1u64;
    let mut hi = 2u64;
    while exists(hi)? {
        lo = hi;
        hi = hi.saturating_mul(2);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if exists(mid)? { lo = mid } else { hi = mid }
    }
    let last = store.audit(pid, lo, 1)?;
    Head::after(last.first().map(|(_, e)| e.as_slice()))
}
