//! The mailbox: frame decoding and dispatch of every command to a booted runtime.
//! Input: `cmd u32 | flags u8 | payload`; with flag bit 0 the checksum is made
//! right, so the fuzzer reaches the command handlers and not only the checksum.
#![no_main]

use std::sync::{Mutex, OnceLock};

use ihsm_crypto::Secret;
use ihsm_rot::boot::{self, Measurements};
use ihsm_rot::fuses::{FuseSpec, Fuses, Lifecycle, Ueid};
use ihsm_rot::keyset::KeySet;
use ihsm_rot::mailbox;
use ihsm_rot::runtime::Runtime;
use ihsm_rot::state::default_body;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static Mutex<Runtime> {
    static RT: OnceLock<Mutex<Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        let dir = std::path::Path::new("/nonexistent");
        let vendor = KeySet::generate(dir, 1).unwrap();
        let spec = FuseSpec {
            lifecycle: Lifecycle::Production,
            vendor_key_hash: vendor.vendor_key_hash().unwrap(),
            owner_key_hash: [0; 48],
            svn: 0,
        };
        let fuses = Fuses::from_parts(&spec, Secret::random().unwrap(), Secret::random().unwrap(), Ueid([1; 17])).unwrap();
        let m = ihsm_rot::manifest::sign(&default_body(0, &[1; 48], &[2; 48]), &vendor.vendor_signer(0, 0).unwrap(), None)
            .unwrap();
        let rt = boot::boot(&fuses, true, &m, &Measurements { image: [1; 48], config: [2; 48] }).unwrap();
        Mutex::new(rt)
    })
}

fuzz_target!(|data: &[u8]| {
    // Frames, as a socket would deliver them.
    if let Ok((cmd, payload)) = mailbox::decode_request_frame(data) {
        let result = runtime().lock().unwrap().mailbox(cmd, payload);
        let frame = mailbox::encode_response_frame(&result);
        assert!(mailbox::decode_response_frame(&frame).is_ok());
    }
    let _ = mailbox::decode_response_frame(data);
    // Commands with a correct checksum.
    if data.len() >= 5 {
        let cmd = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let args = &data[5..];
        let payload = if data[4] & 1 == 1 { mailbox::request(cmd, args) } else { args.to_vec() };
        let mut rt = runtime().lock().unwrap();
        if let Ok(resp) = rt.mailbox(cmd, &payload) {
            // Every response carries a valid checksum.
            assert!(mailbox::open_response(&resp).is_ok());
        }
    }
});
