//! What one host reads of another through etcd (`ihsm_fleet`): a host record and
//! its body, and the fleet trust bundle an operator hands it. etcd is trusted for
//! nothing, so any bytes may arrive.
//!
//! Nothing may panic; what decodes encodes to bytes that decode to the same
//! thing (postcard accepts some non-canonical varints, so not to the same bytes).
#![no_main]

use ihsm_fleet::record::{HostBody, HostRecord};
use ihsm_fleet::trust::TrustBundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((record, body)) = HostRecord::decode(data) {
        let again = record.encode().expect("a decoded record encodes");
        assert_eq!(HostRecord::decode(&again), Ok((record.clone(), body)));
        let _ = HostRecord::nonce(&record.body);
    }
    if let Ok(body) = HostBody::decode(data) {
        let again = body.encode().expect("a decoded body encodes");
        assert_eq!(HostBody::decode(&again), Ok(body));
    }
    if let Ok(b) = TrustBundle::decode(data) {
        assert_eq!(TrustBundle::decode(b.encode().as_bytes()), Ok(b));
    }
});
