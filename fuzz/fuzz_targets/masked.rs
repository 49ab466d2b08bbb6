//! Masked-key blobs (`ihsm_core::masked`), as C_UnwrapKey with the masked-key
//! mechanism opens them for partition 7 at firmware SVN 3 under a fixed masking key.
//!
//! Input: `mode u8 | bytes`. Mode bit 0 clear: `bytes` is a blob, opened as it is
//! (garbage, truncations, wrong lengths, flipped bits, another partition's, a newer
//! firmware's). Bit 0 set: `bytes` is an object record, sealed here into a blob
//! whose header and tag are right, so that the record decoder behind the
//! authentication is reached too. Nothing may panic; a blob that opens gives a
//! record that seals and opens again to the same record.
#![no_main]

use std::sync::OnceLock;

use ihsm_core::fuzz;
use ihsm_crypto::Secret;
use ihsm_crypto::seal::SealKey;
use libfuzzer_sys::fuzz_target;

const PID: u32 = 7;
const SVN: u32 = 3;

fn key() -> &'static SealKey {
    static K: OnceLock<SealKey> = OnceLock::new();
    K.get_or_init(|| SealKey::new(Secret::from_slice(&[0x4d; 32]).unwrap()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let blob = if mode & 1 == 1 {
        match fuzz::mask_record(PID, SVN - (u32::from(mode >> 1) % 2), bytes, key()) {
            Ok(b) => b,
            Err(_) => return,
        }
    } else {
        bytes.to_vec()
    };
    if let Ok(record) = fuzz::unmask(PID, SVN, &blob, key()) {
        // A blob that opens was made for this partition by firmware no newer.
        assert_eq!(&blob[..4], b"IHMK");
        assert_eq!(blob[5..9], PID.to_be_bytes());
        let again = fuzz::mask_record(PID, SVN, &record, key()).unwrap();
        assert_eq!(fuzz::unmask(PID, SVN, &again, key()).unwrap(), record);
        // And nowhere else.
        assert!(fuzz::unmask(PID + 1, SVN, &blob, key()).is_err());
    }
});
