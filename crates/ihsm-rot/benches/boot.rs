//! Cold boot and quotes, each beside the raw aws-lc-rs operation it is built on,
//! measured in the same run so the figures can be read as ratios.
//!
//! `cargo bench -p ihsm-rot --bench boot`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use ihsm_crypto::Secret;
use ihsm_crypto::ec::EccP384PrivateKey;
use ihsm_crypto::mldsa::MlDsa87PrivateKey;
use ihsm_rot::Alg;
use ihsm_rot::boot::{self, Measurements};
use ihsm_rot::fuses::{FuseSpec, Fuses, Lifecycle, Ueid};
use ihsm_rot::keyset::KeySet;
use ihsm_rot::manifest;
use ihsm_rot::state::default_body;

const IMAGE: [u8; 48] = [0x11; 48];
const CONFIG: [u8; 48] = [0x22; 48];

fn device() -> (Fuses, Vec<u8>) {
    let dir = std::path::Path::new("/nonexistent");
    let vendor = KeySet::generate(dir, 2).unwrap();
    let owner = KeySet::generate(dir, 1).unwrap();
    let spec = FuseSpec {
        lifecycle: Lifecycle::Production,
        vendor_key_hash: vendor.vendor_key_hash().unwrap(),
        owner_key_hash: owner.owner_key_hash().unwrap(),
        svn: 1,
    };
    let fuses = Fuses::from_parts(
        &spec,
        Secret::random().unwrap(),
        Secret::random().unwrap(),
        Ueid::random().unwrap(),
    )
    .unwrap();
    let m = manifest::sign(
        &default_body(1, &IMAGE, &CONFIG),
        &vendor.vendor_signer(0, 0).unwrap(),
        Some(&owner.owner_signer().unwrap()),
    )
    .unwrap();
    (fuses, m)
}

fn benches(c: &mut Criterion) {
    let (fuses, m) = device();
    let measured = Measurements {
        image: IMAGE,
        config: CONFIG,
    };

    let mut g = c.benchmark_group("boot");
    g.sample_size(30);
    g.bench_function("cold boot: fuses to RT ready", |b| {
        b.iter(|| boot::boot(&fuses, true, &m, &measured).unwrap())
    });
    g.bench_function("reference: power-on self-tests alone", |b| {
        b.iter(|| ihsm_crypto::kat::run_all().unwrap())
    });
    g.finish();

    let mut rt = boot::boot(&fuses, true, &m, &measured).unwrap();
    let nonce = [7u8; 32];
    let ecc = EccP384PrivateKey::generate().unwrap();
    let mldsa = MlDsa87PrivateKey::generate().unwrap();
    let digest = [5u8; 48];
    let msg = [5u8; 64];

    let mut g = c.benchmark_group("quote");
    g.bench_function("QUOTE_PCRS_ECC384 (mailbox, all PCRs)", |b| {
        b.iter(|| rt.quote_pcrs(Alg::Ecc384, &nonce).unwrap())
    });
    g.bench_function("reference: raw ECDSA P-384 sign of a digest", |b| {
        b.iter(|| ecc.sign_prehashed(&digest).unwrap())
    });
    g.bench_function("QUOTE_PCRS_MLDSA87 (mailbox, all PCRs)", |b| {
        b.iter(|| rt.quote_pcrs(Alg::MlDsa87, &nonce).unwrap())
    });
    g.bench_function("reference: raw ML-DSA-87 sign of 64 bytes", |b| {
        b.iter(|| mldsa.sign(&msg).unwrap())
    });
    g.finish();
}

criterion_group!(boot_benches, benches);
criterion_main!(boot_benches);
