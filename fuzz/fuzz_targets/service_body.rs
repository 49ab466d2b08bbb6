//! The verifier service's request body (`ihsm_verify::service`): the evidence a
//! relying party's client posts, JSON with base64 fields, from anyone who can
//! reach the port.
//!
//! Nothing may panic, and a refusal always says what was wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = ihsm_verify::service::fuzz_parse_body(data) {
        assert!(!why.is_empty());
    }
});
