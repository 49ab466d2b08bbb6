//! The release-policy parser and engine (`ihsm_verify::release`), which read a
//! policy a partition user sets on a key.
//!
//! Nothing may panic; a policy that parses re-parses from its canonical form to
//! itself, implies itself, and evaluates over a fixed claims set without panic.
#![no_main]

use ihsm_verify::release::ReleasePolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = ReleasePolicy::parse(data) else {
        return;
    };
    let c = p.canonical();
    let back = ReleasePolicy::parse(&c).ok();
    assert_eq!(back.as_ref(), Some(&p));
    assert!(p.implies(&p));
    let claims: serde_json::Value = serde_json::from_str(
        r#"{"iat": 1, "submods": {"ihsm": {"ear_status": "affirming", "ihsm_tcb": {"svn": 3}}}}"#,
    )
    .unwrap_or_default();
    for a in &p.any_of {
        let _ = p.evaluate(&a.authority, &claims);
    }
});
