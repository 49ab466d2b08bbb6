//! The fuse file decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = ihsm_rot::fuses::Fuses::decode(data) {
        // What decodes re-encodes to the same bytes.
        assert_eq!(f.encode().as_slice(), data);
    }
});
