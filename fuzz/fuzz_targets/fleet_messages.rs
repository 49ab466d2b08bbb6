//! What one host reads of another through etcd and its peer link (`ihsm_fleet`):
//! a host record and its body, a placement and its body, a peer request or
//! reply, the plaintext of a partition bundle (`ihsm_core`, as a destination
//! checks it before writing anything), the masking domain's epoch records and
//! wraps and the plaintext of a sealed epoch, and the fleet trust bundle an
//! operator hands it. etcd and the link are trusted for nothing, so any bytes may arrive.
//!
//! Nothing may panic; what decodes encodes to bytes that decode to the same
//! thing (postcard accepts some non-canonical varints, so not to the same bytes).
#![no_main]

use ihsm_fleet::domain::{DomainWrap, EpochRecord};
use ihsm_fleet::peer::{PeerReply, PeerRequest};
use ihsm_fleet::placement::{PlacementBody, PlacementRecord};
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
    if let Ok((record, body)) = PlacementRecord::decode(data) {
        let again = record.encode().expect("a decoded placement encodes");
        assert_eq!(PlacementRecord::decode(&again), Ok((record, body)));
    }
    if let Ok(body) = PlacementBody::decode(data) {
        let again = body.encode().expect("a decoded placement body encodes");
        assert_eq!(PlacementBody::decode(&again), Ok(body));
    }
    let _ = postcard::from_bytes::<PeerRequest>(data);
    let _ = postcard::from_bytes::<PeerReply>(data);
    let _ = ihsm_core::fuzz::partition_bundle(data);
    let _ = ihsm_core::fuzz::domain_epoch(data);
    if let Ok(r) = EpochRecord::decode(data) {
        let again = r.encode().expect("a decoded epoch record encodes");
        assert_eq!(EpochRecord::decode(&again), Ok(r));
    }
    if let Ok(w) = DomainWrap::decode(data) {
        let again = w.encode().expect("a decoded wrap encodes");
        assert_eq!(DomainWrap::decode(&again), Ok(w.clone()));
        let _ = w.info();
    }
    if let Ok(b) = TrustBundle::decode(data) {
        assert_eq!(TrustBundle::decode(b.encode().as_bytes()), Ok(b));
    }
});
