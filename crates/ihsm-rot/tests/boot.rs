//! Boot end to end: what boots, what refuses (each with its own error), and what
//! stays the same across boots and upgrades.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{CONFIG, Device, IMAGE};
use ihsm_crypto::ExposeSecret;
use ihsm_rot::certs::Layer;
use ihsm_rot::manifest::{self, MANIFEST_LEN};
use ihsm_rot::{Alg, RotError};
use x509_parser::prelude::*;

fn spki(der: &[u8]) -> Vec<u8> {
    let (_, c) = X509Certificate::from_der(der).unwrap();
    c.public_key().raw.to_vec()
}

#[test]
fn boots_and_reports_every_stage() {
    let d = Device::new();
    let rt = d.boot();
    let r = rt.report();
    let stages: Vec<_> = r.stages.iter().map(|s| s.stage).collect();
    assert_eq!(stages, ["ROM", "ROM", "ROM", "FMC", "RT"]);
    assert_eq!(r.self_tests.len(), ihsm_crypto::kat::KatError::ALL.len());
    assert_eq!(r.identities.len(), 8);
    assert_eq!(r.boot_pcrs.len(), 4);
    assert_eq!(rt.svn(), 3);
    assert!(rt.holds_secrets());
    assert_eq!(r.device.ueid, d.ueid.to_string());
}

#[test]
fn same_fuses_and_firmware_give_the_same_keys() {
    let d = Device::new();
    // The RT Alias measures the manifest file itself (as Caliptra does), so both
    // boots use the same signed manifest.
    let m = d.manifest(&d.body(3, &IMAGE));
    let (a, b) = (
        d.boot_with(&m, &IMAGE).unwrap(),
        d.boot_with(&m, &IMAGE).unwrap(),
    );
    for layer in Layer::ALL {
        for alg in [Alg::Ecc384, Alg::MlDsa87] {
            assert_eq!(
                spki(a.cert(layer, alg)),
                spki(b.cert(layer, alg)),
                "{layer:?} {alg}"
            );
        }
    }
    assert_eq!(a.pcrs().all(), b.pcrs().all());
}

#[test]
fn a_changed_runtime_binary_changes_the_alias_keys_only() {
    let d = Device::new();
    let a = d.boot();
    let other = [0x33; 48];
    let m = d.manifest(&d.body(3, &other));
    let b = d.boot_with(&m, &other).unwrap();
    for alg in [Alg::Ecc384, Alg::MlDsa87] {
        assert_eq!(
            spki(a.cert(Layer::IdevId, alg)),
            spki(b.cert(Layer::IdevId, alg))
        );
        assert_eq!(
            spki(a.cert(Layer::LdevId, alg)),
            spki(b.cert(Layer::LdevId, alg))
        );
        assert_ne!(
            spki(a.cert(Layer::FmcAlias, alg)),
            spki(b.cert(Layer::FmcAlias, alg))
        );
        assert_ne!(
            spki(a.cert(Layer::RtAlias, alg)),
            spki(b.cert(Layer::RtAlias, alg))
        );
    }
}

#[test]
fn a_different_device_has_different_keys() {
    let (d1, d2) = (Device::new(), Device::new());
    let (a, b) = (d1.boot(), d2.boot());
    assert_ne!(
        spki(a.cert(Layer::IdevId, Alg::Ecc384)),
        spki(b.cert(Layer::IdevId, Alg::Ecc384))
    );
}

fn refuse(d: &Device, manifest: &[u8], image: &[u8; 48]) -> RotError {
    d.boot_with(manifest, image)
        .expect_err("boot should have been refused")
}

#[test]
fn a_tampered_manifest_refuses_to_boot() {
    let d = Device::new();
    let good = d.manifest(&d.body(3, &IMAGE));
    // The signed header sits right before the 160-byte table of contents.
    let header_svn = MANIFEST_LEN - 160 - 108 + 20;
    let mut m = good.clone();
    m[header_svn] ^= 0x04; // the SVN, a signed field
    match refuse(&d, &m, &IMAGE) {
        RotError::VendorSignature {
            alg: Alg::Ecc384,
            index: 0,
        } => {}
        e => panic!("{e}"),
    }
    // A component digest in the table of contents.
    let mut m = good.clone();
    m[MANIFEST_LEN - 160 + 8] ^= 0x01;
    assert!(matches!(
        refuse(&d, &m, &IMAGE),
        RotError::TocDigestMismatch
    ));
    // The ML-DSA vendor signature (right after the ECC one).
    let mut m = good.clone();
    m[3196 + 100] ^= 0x01;
    match refuse(&d, &m, &IMAGE) {
        RotError::VendorSignature {
            alg: Alg::MlDsa87,
            index: 0,
        } => {}
        e => panic!("{e}"),
    }
    // The error says what and why.
    let mut m = good;
    m[header_svn] ^= 0x04;
    assert_eq!(
        refuse(&d, &m, &IMAGE).to_string(),
        "manifest ECC P-384 signature does not verify with vendor key 0"
    );
}

#[test]
fn a_wrong_vendor_key_refuses_to_boot() {
    let d = Device::new();
    let other = Device::new();
    // Signed by a vendor this device never fused.
    let m = other.manifest(&other.body(3, &IMAGE));
    assert!(matches!(
        refuse(&d, &m, &IMAGE),
        RotError::VendorDescriptorMismatch
    ));
    // Signed with the device's vendor key 1 but claiming key 0 is not possible with
    // our signer; a manifest signed with key 1 boots, and names key 1.
    let m = manifest::sign(
        &d.body(3, &IMAGE),
        &d.vendor.vendor_signer(1, 1).unwrap(),
        Some(&d.owner.owner_signer().unwrap()),
    )
    .unwrap();
    let rt = d.boot_with(&m, &IMAGE).unwrap();
    assert_eq!(rt.manifest().header.vendor_ecc_key_index, 1);
}

#[test]
fn an_svn_rollback_refuses_to_boot() {
    let d = Device::new(); // fused SVN 3
    let m = d.manifest(&d.body(2, &IMAGE));
    match refuse(&d, &m, &IMAGE) {
        RotError::SvnRollback {
            manifest: 2,
            fused: 3,
        } => {}
        e => panic!("{e}"),
    }
}

#[test]
fn a_modified_runtime_hash_refuses_to_boot() {
    let d = Device::new();
    let m = d.manifest(&d.body(3, &IMAGE));
    assert!(matches!(
        refuse(&d, &m, &[0x12; 48]),
        RotError::ImageDigestMismatch { .. }
    ));
    let e = ihsm_rot::boot::boot(
        &d.fuses(),
        true,
        &m,
        &ihsm_rot::boot::Measurements {
            image: IMAGE,
            config: [0; 48],
        },
    )
    .unwrap_err();
    assert!(matches!(e, RotError::ConfigDigestMismatch { .. }), "{e}");
}

#[test]
fn owner_rules() {
    let d = Device::new(); // owner fused
    let no_owner = manifest::sign(
        &d.body(3, &IMAGE),
        &d.vendor.vendor_signer(0, 0).unwrap(),
        None,
    )
    .unwrap();
    assert!(matches!(
        refuse(&d, &no_owner, &IMAGE),
        RotError::OwnerSignatureMissing
    ));
    let stranger = Device::new();
    let m = manifest::sign(
        &d.body(3, &IMAGE),
        &d.vendor.vendor_signer(0, 0).unwrap(),
        Some(&stranger.owner.owner_signer().unwrap()),
    )
    .unwrap();
    assert!(matches!(refuse(&d, &m, &IMAGE), RotError::OwnerKeyMismatch));
    // Without a fused owner, the owner countersignature is optional.
    let mut unowned = Device::new();
    unowned.spec.owner_key_hash = [0; 48];
    let m = manifest::sign(
        &unowned.body(3, &IMAGE),
        &unowned.vendor.vendor_signer(0, 0).unwrap(),
        None,
    )
    .unwrap();
    unowned.boot_with(&m, &IMAGE).unwrap();
}

#[test]
fn garbage_manifests_are_refused_not_panicked_on() {
    let d = Device::new();
    let good = d.manifest(&d.body(3, &IMAGE));
    for n in [0, 1, 4, 100, MANIFEST_LEN - 1] {
        assert!(matches!(
            refuse(&d, &good[..n], &IMAGE),
            RotError::ManifestWrongLength { .. }
        ));
    }
    let mut m = good.clone();
    m[0] = b'X';
    assert!(matches!(refuse(&d, &m, &IMAGE), RotError::ManifestBadMagic));
    // Every single-byte corruption is refused by something.
    let mut refused = 0;
    for i in (0..MANIFEST_LEN).step_by(97) {
        let mut m = good.clone();
        m[i] ^= 0x5a;
        if d.boot_with(&m, &IMAGE).is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, (0..MANIFEST_LEN).step_by(97).count());
}

#[test]
fn sealing_key_survives_reboots_and_signed_upgrades_not_rollbacks() {
    let d = Device::new();
    let v3 = d.boot();
    let k3 = v3.sealing_key(3, b"store").unwrap();
    assert!(k3.ct_eq(&d.boot().sealing_key(3, b"store").unwrap()));
    // A signed upgrade to SVN 5 with a new image still reaches the SVN-3 key.
    let new_image = [0x44; 48];
    let v5 = d
        .boot_with(&d.manifest(&d.body(5, &new_image)), &new_image)
        .unwrap();
    assert!(k3.ct_eq(&v5.sealing_key(3, b"store").unwrap()));
    assert!(!k3.ct_eq(&v5.sealing_key(5, b"store").unwrap()));
    assert!(!k3.ct_eq(&v3.sealing_key(3, b"other purpose").unwrap()));
    // Old firmware cannot derive what newer firmware seals.
    match v3.sealing_key(5, b"store") {
        Err(RotError::LadderTargetSvnTooLarge {
            target: 5,
            current: 3,
        }) => {}
        other => panic!("{other:?}"),
    }
    // A debug-unlocked boot of the same device gets different keys.
    let m = d.manifest(&d.body(3, &IMAGE));
    let dbg = ihsm_rot::boot::boot(
        &d.fuses(),
        false,
        &m,
        &ihsm_rot::boot::Measurements {
            image: IMAGE,
            config: CONFIG,
        },
    )
    .unwrap();
    assert!(!k3.ct_eq(&dbg.sealing_key(3, b"store").unwrap()));
    let _ = k3.expose_secret();
}

#[test]
fn fatal_wipes_and_refuses_everything() {
    let d = Device::new();
    let mut rt = d.boot();
    rt.fatal("tamper: lid opened");
    assert!(!rt.holds_secrets());
    assert_eq!(rt.fatal_reason(), Some("tamper: lid opened"));
    match rt.sealing_key(3, b"store") {
        Err(RotError::Fatal(r)) => assert!(r.contains("lid opened")),
        other => panic!("{other:?}"),
    }
    // The RT Alias signs nothing more: no partition key is certified.
    let key = ihsm_crypto::ec::EccP384PrivateKey::generate().unwrap();
    match rt.certify_partition_key("p", 1, key.public_key()) {
        Err(RotError::Fatal(r)) => assert!(r.contains("lid opened")),
        other => panic!("{other:?}"),
    }
    let cmd = ihsm_rot::mailbox::cmd::GET_LDEV_ECC384_CERT;
    assert_eq!(
        rt.mailbox(cmd, &ihsm_rot::mailbox::request(cmd, &[])),
        Err(ihsm_rot::mailbox::MailboxError::FATAL)
    );
}
