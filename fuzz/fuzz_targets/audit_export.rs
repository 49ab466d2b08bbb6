//! Audit entries and exports on the verifier side (`ihsm_verify::audit`): what an
//! auditor feeds `ihsm verify audit` comes from a file anyone could have edited.
//!
//! Nothing may panic; an entry that decodes renders as an export line whose
//! entry decodes to the same entry.
#![no_main]

use ihsm_verify::audit::{Entry, PartitionKey, export_line, verify_export};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::decode(data) {
        let line = export_line(1, data).expect("a decoded entry renders");
        assert_eq!(line["seq"], serde_json::json!(e.seq));
        let _ = e.event.to_json();
    }
    let key = PartitionKey {
        pid: 1,
        name: "p".into(),
        point: [&[4u8][..], &[0x11; 96]].concat(),
    };
    let _ = verify_export(data, &key);
});
