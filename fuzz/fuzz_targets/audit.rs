//! The audit log as it is read back: `ihsm_core::audit::verify` over a list of
//! stored entries (decoding, sequence, hash chain, checkpoint signatures, the HSM's
//! head), and the head a partition rebuilds from its last entry at start.
//!
//! Input: `pid u32 LE | identity key (97, SEC1) | flags u8 | [head: seq u64 LE |
//! hash (48)] if flags bit 0 | entries, each u16 LE length | bytes`. Nothing may
//! panic; a log that verifies counts its entries and checkpoints consistently, and
//! its last entry gives the head that follows it.
#![no_main]

use ihsm_core::audit::{self, AuditEntry};
use ihsm_core::fuzz;
use ihsm_crypto::ec::EccP384PublicKey;
use libfuzzer_sys::fuzz_target;

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (a, b) = data.split_at(n);
    *data = b;
    Some(a)
}

fuzz_target!(|data: &[u8]| {
    let mut d = data;
    let Some(pid) = take(&mut d, 4) else { return };
    let pid = u32::from_le_bytes(pid.try_into().unwrap());
    let Some(key) = take(&mut d, 97) else { return };
    let Ok(identity) = EccP384PublicKey::from_sec1(key) else {
        return;
    };
    let Some(&[flags]) = take(&mut d, 1) else {
        return;
    };
    let head = if flags & 1 == 1 {
        let Some(seq) = take(&mut d, 8) else { return };
        let Some(hash) = take(&mut d, 48) else { return };
        Some((
            u64::from_le_bytes(seq.try_into().unwrap()),
            <[u8; 48]>::try_from(hash).unwrap(),
        ))
    } else {
        None
    };
    let mut entries = Vec::new();
    while let Some(len) = take(&mut d, 2) {
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let n = len.min(d.len());
        entries.push(take(&mut d, n).unwrap().to_vec());
    }
    for e in &entries {
        let _ = fuzz::audit_head(e);
    }
    if let Ok(r) = audit::verify(pid, &entries, &identity, 1, [0; 48], head) {
        assert_eq!(r.entries as usize, entries.len());
        assert!(r.checkpoints <= r.entries);
        assert!(r.unsigned_tail <= r.entries);
        assert!(r.verified_through <= r.entries);
        if let Some(last) = entries.last() {
            let e: AuditEntry = postcard::from_bytes(last).unwrap();
            assert_eq!(e.seq, entries.len() as u64);
            assert_eq!(fuzz::audit_head(last).unwrap(), e.seq + 1);
        }
    }
});
