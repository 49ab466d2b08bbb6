//! The core's own overhead on top of the raw primitive: each operation through a
//! partition (session, login, key lookup, usage checks, rate limiter) beside the same
//! operation on aws-lc-rs called directly, in the same run.
//!
//! `cargo bench -p ihsm-core --bench core`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cryptoki_sys as ck;
use ihsm_core::attr::Attribute;
use ihsm_core::mech::{GcmIv, Hash, Mechanism};
use ihsm_core::quota::Quotas;
use ihsm_core::session::UserType;
use ihsm_core::{Device, DeviceConfig, PartitionSpec};
use ihsm_rot::state::StateDir;
use zeroize::Zeroizing;

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    state.provision_dev(false, &[1; 48]).unwrap();
    let mut cfg = DeviceConfig::new(dir.path());
    cfg.pin_iterations = 1000;
    let d = Device::start(cfg, state.boot(&[1; 48]).unwrap()).unwrap();
    let info = d
        .create_partition(PartitionSpec {
            name: "bench".into(),
            owner_uid: 0,
            owner_gid: 0,
            so_pin: Zeroizing::new(b"so-pin-1".to_vec()),
            user_pin: Some(Zeroizing::new(b"user-pin".to_vec())),
            quotas: Quotas::default(),
        })
        .unwrap();
    let p = d.partition(info.id).unwrap();
    let s = p.open_session(1, true).unwrap();
    p.login(1, s, UserType::User, b"user-pin").unwrap();
    let tok = Attribute::bool(ck::CKA_TOKEN, true);
    let p256 = Attribute::bytes(
        ck::CKA_EC_PARAMS,
        vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    );
    let (_, ec) = p
        .generate_key_pair(
            1,
            s,
            &Mechanism::EcKeyPairGen,
            &[p256, tok.clone()],
            &[tok.clone()],
        )
        .unwrap();
    let (_, rsa) = p
        .generate_key_pair(
            1,
            s,
            &Mechanism::RsaKeyPairGen,
            &[Attribute::ulong(ck::CKA_MODULUS_BITS, 2048), tok.clone()],
            &[tok.clone()],
        )
        .unwrap();
    let aes = p
        .generate_key(
            1,
            s,
            &Mechanism::AesKeyGen,
            &[Attribute::ulong(ck::CKA_VALUE_LEN, 32), tok],
        )
        .unwrap();

    let rng = SystemRandom::new();
    let raw_ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let raw_rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let raw_aes = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    let msg = [0x5au8; 64];
    let _ = raw_ec.public_key();

    let mut g = c.benchmark_group("ECDSA P-256 sign");
    g.bench_function("raw aws-lc-rs", |b| {
        b.iter(|| raw_ec.sign(&rng, &msg).unwrap())
    });
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    g.bench_function("ihsm core (partition, session, key lookup)", |b| {
        b.iter(|| p.sign_once(1, s, &mech, ec, &msg).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("RSA-2048 PKCS#1 v1.5 SHA-256 sign");
    let mut sig = vec![0u8; raw_rsa.public_modulus_len()];
    g.bench_function("raw aws-lc-rs", |b| {
        b.iter(|| {
            raw_rsa
                .sign(&signature::RSA_PKCS1_SHA256, &rng, &msg, &mut sig)
                .unwrap()
        })
    });
    let mech = Mechanism::RsaPkcsHash(Hash::Sha256);
    g.bench_function("ihsm core (partition, session, key lookup)", |b| {
        b.iter(|| p.sign_once(1, s, &mech, rsa, &msg).unwrap())
    });
    g.finish();

    let data = vec![0x42u8; 4096];
    let mut g = c.benchmark_group("AES-256-GCM encrypt 4 KiB");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("raw aws-lc-rs", |b| {
        b.iter(|| {
            let mut buf = data.clone();
            raw_aes
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key([1; 12]),
                    Aad::empty(),
                    &mut buf,
                )
                .unwrap();
            buf
        })
    });
    let mech = Mechanism::AesGcm {
        iv: GcmIv::Supplied(vec![1; 12]),
        aad: vec![],
        tag_bits: 128,
    };
    g.bench_function("ihsm core (one call)", |b| {
        b.iter(|| p.encrypt_once(1, s, &mech, aes, &data).unwrap())
    });
    g.bench_function("ihsm core (EncryptInit + Encrypt)", |b| {
        b.iter(|| {
            p.crypt_init(1, s, &mech, aes, true).unwrap();
            p.encrypt(1, s, &data).unwrap()
        })
    });
    g.finish();
}

criterion_group!(core_benches, benches);
criterion_main!(core_benches);
