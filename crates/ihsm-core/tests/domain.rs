//! The fleet masking domain between real devices: an epoch drawn on one, sealed
//! to another, blobs that open on both and on no third device, eviction, the
//! policy on older epochs, a restart, and every seal and blob that must be
//! refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cryptoki_sys as ck;
use ihsm_core::CoreError;
use ihsm_core::mech::{Hash, Mechanism};

const INFO: &[u8] = b"ihsm fleet domain v1 test";

fn ec_pair(t: &Tenant) -> (u64, u64) {
    t.p.generate_key_pair(
        t.app,
        t.s,
        &Mechanism::EcKeyPairGen,
        &[by(ck::CKA_EC_PARAMS, P256), b(ck::CKA_TOKEN, true)],
        &[b(ck::CKA_TOKEN, true)],
    )
    .unwrap()
}

/// The public point, for checking a key that came back.
fn point(t: &Tenant, pk: u64) -> Vec<u8> {
    t.bytes(pk, ck::CKA_EC_POINT)
}

/// Hands `from`'s current epoch to `to` and installs it there.
fn hand(from: &ihsm_core::Device, to: &ihsm_core::Device, keep_older: bool) {
    let sealed = from
        .seal_fleet_domain(None, &to.transfer_public_key().unwrap(), INFO)
        .unwrap();
    let offer = to
        .open_fleet_domain(&from.transfer_public_key().unwrap(), &sealed, INFO)
        .unwrap();
    to.install_fleet_domain(offer, keep_older).unwrap();
}

fn unmasked(t: &Tenant, blob: &[u8]) -> Result<u64, CoreError> {
    t.p.import_masked(t.app, t.s, blob, 0)
}

#[test]
fn a_fleet_blob_opens_in_the_same_partition_on_every_host_that_holds_its_epoch() {
    let (_a_dir, a) = device();
    let (_b_dir, b_) = device();
    let (_c_dir, c) = device();
    let (_d_dir, outside) = device();
    assert!(a.fleet_domain().unwrap().is_none());
    let first = a.new_fleet_domain("host-a").unwrap();
    assert_eq!(first.epoch(), 1);
    a.install_fleet_domain(first, true).unwrap();
    assert!(
        a.new_fleet_domain("host-a").is_err(),
        "one domain per device"
    );
    hand(&a, &b_, true);
    hand(&a, &c, true);
    let info = b_.fleet_domain().unwrap().unwrap();
    assert_eq!((info.epoch, info.issuer.as_str()), (1, "host-a"));

    let ta = Tenant::new(&a, "tenant");
    let tb = Tenant::new(&b_, "tenant");
    let tc = Tenant::new(&c, "tenant");
    let td = Tenant::new(&outside, "tenant");
    let other = Tenant::new(&b_, "other");
    let (pk, sk) = ec_pair(&ta);
    let blob = ta.p.export_masked(ta.app, ta.s, sk, 0).unwrap();
    let pub_blob = ta.p.export_masked(ta.app, ta.s, pk, 0).unwrap();
    let want = point(&ta, pk);

    // On B: the same key (it signs what A's public key verifies).
    let sk_b = unmasked(&tb, &blob).unwrap();
    let pk_b = unmasked(&tb, &pub_blob).unwrap();
    assert_eq!(point(&tb, pk_b), want);
    let m = b"signed on host b";
    let sig =
        tb.p.sign_once(tb.app, tb.s, &Mechanism::EcdsaHash(Hash::Sha256), sk_b, m)
            .unwrap();
    ta.p.sign_init(ta.app, ta.s, &Mechanism::EcdsaHash(Hash::Sha256), pk, true)
        .unwrap();
    ta.p.verify(ta.app, ta.s, m, &sig).unwrap();
    assert!(unmasked(&tc, &blob).is_ok());

    // Not outside the fleet, not in another partition of it.
    assert!(matches!(
        unmasked(&td, &blob),
        Err(CoreError::MaskedKeyInvalid(w)) if w.contains("does not hold")
    ));
    assert!(matches!(
        unmasked(&other, &blob),
        Err(CoreError::MaskedKeyInvalid("masked by another partition"))
    ));

    // Garbage, truncation and every flipped byte are refused, never a panic.
    for n in 0..blob.len() {
        assert!(unmasked(&tb, &blob[..n]).is_err(), "truncated to {n}");
    }
    for i in 0..blob.len() {
        let mut bad = blob.clone();
        bad[i] ^= 0x01;
        assert!(unmasked(&tb, &bad).is_err(), "byte {i} flipped");
    }
    assert!(unmasked(&tb, b"IHMK\x02").is_err());
    assert!(unmasked(&tb, &[0xff; 300]).is_err());
}

#[test]
fn eviction_leaves_the_evicted_host_without_new_blobs_and_older_epochs_follow_policy() {
    let (_a_dir, a) = device();
    let (_b_dir, b_) = device();
    let (_c_dir, c) = device();
    let (_k_dir, strict) = device();
    a.install_fleet_domain(a.new_fleet_domain("host-a").unwrap(), true)
        .unwrap();
    for d in [&b_, &c, &strict] {
        hand(&a, d, true);
    }
    let ta = Tenant::new(&a, "tenant");
    let tb = Tenant::new(&b_, "tenant");
    let tc = Tenant::new(&c, "tenant");
    let ts = Tenant::new(&strict, "tenant");
    let (_, sk) = ec_pair(&ta);
    let old = ta.p.export_masked(ta.app, ta.s, sk, 0).unwrap();

    assert!(a.rotate_fleet_domain("host-a", "host-a").is_err());
    let next = a.rotate_fleet_domain("host-a", "host-c").unwrap();
    assert_eq!(
        (next.epoch(), next.evicted()),
        (2, &["host-c".to_owned()][..])
    );
    // Sealed to every host but the evicted one, then installed where it was drawn.
    for (d, keep) in [(&b_, true), (&strict, false)] {
        let sealed = a
            .seal_fleet_domain(Some(&next), &d.transfer_public_key().unwrap(), INFO)
            .unwrap();
        let offer = d
            .open_fleet_domain(&a.transfer_public_key().unwrap(), &sealed, INFO)
            .unwrap();
        d.install_fleet_domain(offer, keep).unwrap();
    }
    a.install_fleet_domain(next, true).unwrap();
    assert_eq!(a.fleet_domain().unwrap().unwrap().held, vec![1, 2]);
    assert_eq!(strict.fleet_domain().unwrap().unwrap().held, vec![2]);

    let new = ta.p.export_masked(ta.app, ta.s, sk, 0).unwrap();
    assert!(unmasked(&tb, &new).is_ok());
    assert!(unmasked(&ts, &new).is_ok());
    assert!(matches!(
        unmasked(&tc, &new),
        Err(CoreError::MaskedKeyInvalid(w)) if w.contains("epoch this device does not hold")
    ));
    // An older epoch's blob: kept epochs open it (the tenant re-exports it under
    // the new one), a device whose policy forgets them refuses it.
    assert!(unmasked(&tb, &old).is_ok());
    assert!(unmasked(&ts, &old).is_err());
    let remasked =
        tb.p.export_masked(tb.app, tb.s, unmasked(&tb, &old).unwrap(), 0);
    assert!(unmasked(&ts, &remasked.unwrap()).is_ok());

    // No going back: an older or equal epoch, or one that readmits host-c.
    let sealed = c
        .seal_fleet_domain(None, &b_.transfer_public_key().unwrap(), INFO)
        .unwrap();
    let stale = b_
        .open_fleet_domain(&c.transfer_public_key().unwrap(), &sealed, INFO)
        .unwrap();
    assert!(b_.install_fleet_domain(stale, true).is_err());
    let readmit = c.rotate_fleet_domain("host-c", "host-x").unwrap();
    let sealed = c
        .seal_fleet_domain(Some(&readmit), &b_.transfer_public_key().unwrap(), INFO)
        .unwrap();
    let readmit = b_
        .open_fleet_domain(&c.transfer_public_key().unwrap(), &sealed, INFO)
        .unwrap();
    assert_eq!(readmit.epoch(), 2);
    assert!(b_.install_fleet_domain(readmit, true).is_err());
}

#[test]
fn a_seal_opens_only_with_its_sender_and_info_and_nothing_is_installed_otherwise() {
    let (_a_dir, a) = device();
    let (_b_dir, b_) = device();
    let (_c_dir, c) = device();
    assert!(
        a.seal_fleet_domain(None, &b_.transfer_public_key().unwrap(), INFO)
            .is_err(),
        "no domain to seal"
    );
    a.install_fleet_domain(a.new_fleet_domain("host-a").unwrap(), true)
        .unwrap();
    let to_b = b_.transfer_public_key().unwrap();
    let sealed = a.seal_fleet_domain(None, &to_b, INFO).unwrap();
    let a_key = a.transfer_public_key().unwrap();
    let c_key = c.transfer_public_key().unwrap();
    assert!(
        b_.open_fleet_domain(&c_key, &sealed, INFO).is_err(),
        "wrong sender"
    );
    assert!(
        b_.open_fleet_domain(&a_key, &sealed, b"other info")
            .is_err()
    );
    assert!(
        c.open_fleet_domain(&a_key, &sealed, INFO).is_err(),
        "wrong recipient"
    );
    for n in 0..sealed.ciphertext.len() {
        let mut cut = sealed.clone();
        cut.ciphertext.truncate(n);
        assert!(b_.open_fleet_domain(&a_key, &cut, INFO).is_err());
    }
    let mut flipped = sealed.clone();
    flipped.ciphertext[3] ^= 1;
    assert!(b_.open_fleet_domain(&a_key, &flipped, INFO).is_err());
    let mut enc = sealed.clone();
    enc.enc.truncate(10);
    assert!(b_.open_fleet_domain(&a_key, &enc, INFO).is_err());
    assert!(b_.fleet_domain().unwrap().is_none());
    // Its Debug names the epoch, never the key.
    let offer = b_.open_fleet_domain(&a_key, &sealed, INFO).unwrap();
    let shown = format!("{offer:?}");
    assert!(shown.contains("epoch: 1") && !shown.contains("key"));
}

#[test]
fn the_domain_survives_a_restart_and_is_named_in_the_device_log() {
    let a_dir = tempfile::tempdir().unwrap();
    provision(a_dir.path());
    let blob;
    {
        let a = start(a_dir.path()).unwrap();
        a.install_fleet_domain(a.new_fleet_domain("host-a").unwrap(), true)
            .unwrap();
        let t = Tenant::new(&a, "tenant");
        let (_, sk) = ec_pair(&t);
        blob = t.p.export_masked(t.app, t.s, sk, 0).unwrap();
        assert_eq!(blob[4], 2, "a fleet blob");
    }
    let a = start(a_dir.path()).unwrap();
    assert_eq!(a.fleet_domain().unwrap().unwrap().epoch, 1);
    let t = Tenant::login(a.partition_by_name("tenant").unwrap(), 1);
    assert!(unmasked(&t, &blob).is_ok());
    let named = a.device_audit().unwrap().iter().any(|e| {
        format!("{:?}", ihsm_verify::audit::Entry::decode(e).unwrap().event)
            .starts_with("FleetDomain { epoch: 1, issuer: \"host-a\" }")
    });
    assert!(named, "FleetDomain is in the device log");
}
