//! The firmware manifest parser, and verification of whatever parses against a
//! fixed set of fuses.
#![no_main]

use std::sync::OnceLock;

use ihsm_crypto::Secret;
use ihsm_rot::fuses::{FuseSpec, Fuses, Lifecycle, Ueid};
use ihsm_rot::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fn fuses() -> &'static Fuses {
    static F: OnceLock<Fuses> = OnceLock::new();
    F.get_or_init(|| {
        let spec = FuseSpec {
            lifecycle: Lifecycle::Production,
            vendor_key_hash: [1; 48],
            owner_key_hash: [0; 48],
            svn: 0,
        };
        Fuses::from_parts(
            &spec,
            Secret::from_slice(&[2; 64]).unwrap(),
            Secret::from_slice(&[3; 32]).unwrap(),
            Ueid([4; 17]),
        )
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let _ = m.verify(fuses());
        let _ = m.summary();
    }
});
