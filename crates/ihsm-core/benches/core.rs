//! The core's own overhead on top of the raw primitive: each operation through a
//! partition (session, login, key lookup, usage checks, rate limiter) beside the same
//! operation on aws-lc-rs called directly, in the same run.
//!
//! Key reports likewise, beside their two signatures alone.
//!
//! `cargo bench -p ihsm-core --bench core` measures time with criterion. On a
//! shared machine two criterion runs can differ by 10%, more than the overheads
//! being measured, so `cargo bench -p ihsm-core --bench core -- --instructions`
//! also counts instructions: it re-runs this binary under `valgrind
//! --tool=callgrind` once per case, collecting only inside `measured_loop`, and
//! prints instructions per operation, which do not depend on the neighbours.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair};
use criterion::{Criterion, Throughput};
use cryptoki_sys as ck;
use ihsm_core::attr::Attribute;
use ihsm_core::mech::{GcmIv, Hash, Mechanism};
use ihsm_core::partition::Partition;
use ihsm_core::quota::Quotas;
use ihsm_core::session::UserType;
use ihsm_core::{Device, DeviceConfig, PartitionSpec};
use ihsm_rot::state::StateDir;
use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use zeroize::Zeroizing;

struct Setup {
    _dir: tempfile::TempDir,
    _device: Device,
    p: Arc<Partition>,
    s: u64,
    ec: u64,
    rsa: u64,
    aes: u64,
    rng: SystemRandom,
    raw_ec: EcdsaKeyPair,
    raw_rsa: RsaKeyPair,
    raw_aes: LessSafeKey,
    data: Vec<u8>,
    /// A P-384 signing key of the partition, for key reports.
    ec384: u64,
    raw_report_ecc: ihsm_crypto::ec::EccP384PrivateKey,
    raw_report_mldsa: ihsm_crypto::mldsa::MlDsa87PrivateKey,
    gcm: Mechanism,
    ecdsa: Mechanism,
    rsa_pkcs: Mechanism,
}

fn setup() -> Setup {
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
            policy: Default::default(),
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
            std::slice::from_ref(&tok),
        )
        .unwrap();
    let (_, rsa) = p
        .generate_key_pair(
            1,
            s,
            &Mechanism::RsaKeyPairGen,
            &[Attribute::ulong(ck::CKA_MODULUS_BITS, 2048), tok.clone()],
            std::slice::from_ref(&tok),
        )
        .unwrap();
    let aes = p
        .generate_key(
            1,
            s,
            &Mechanism::AesKeyGen,
            &[Attribute::ulong(ck::CKA_VALUE_LEN, 32), tok.clone()],
        )
        .unwrap();
    let p384 = Attribute::bytes(
        ck::CKA_EC_PARAMS,
        vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
    );
    let (_, ec384) = p
        .generate_key_pair(
            1,
            s,
            &Mechanism::EcKeyPairGen,
            &[p384, tok.clone()],
            &[tok, Attribute::bool(ck::CKA_SIGN, true)],
        )
        .unwrap();

    let rng = SystemRandom::new();
    let raw_ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let raw_rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let raw_aes = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());

    Setup {
        _dir: dir,
        _device: d,
        p,
        s,
        ec,
        rsa,
        aes,
        rng,
        raw_ec,
        raw_rsa,
        raw_aes,
        gcm: Mechanism::AesGcm {
            iv: GcmIv::Supplied(vec![1; 12]),
            aad: vec![],
            tag_bits: 128,
        },
        ecdsa: Mechanism::EcdsaHash(Hash::Sha256),
        rsa_pkcs: Mechanism::RsaPkcsHash(Hash::Sha256),
        data: (0..4096u32).map(|i| (i * 31 % 251) as u8).collect(),
        ec384,
        raw_report_ecc: ihsm_crypto::ec::EccP384PrivateKey::generate().unwrap(),
        raw_report_mldsa: ihsm_crypto::mldsa::MlDsa87PrivateKey::generate().unwrap(),
    }
}

const MSG: [u8; 64] = [0x5a; 64];

/// The cases, each one operation; criterion times them, callgrind counts them.
const CASES: [&str; 9] = [
    "ecdsa-raw",
    "ecdsa-core",
    "rsa-raw",
    "rsa-core",
    "gcm-raw",
    "gcm-core-one-call",
    "gcm-core-init-encrypt",
    "report-raw",
    "report-core",
];

/// A key report's payload is about this long (docs/attestation.md §2's example).
const REPORT_PAYLOAD: [u8; 895] = [0x42; 895];

fn run(x: &Setup, case: &str) {
    let (p, s) = (&x.p, x.s);
    match case {
        "ecdsa-raw" => drop(black_box(x.raw_ec.sign(&x.rng, &MSG).unwrap())),
        "ecdsa-core" => drop(black_box(p.sign_once(1, s, &x.ecdsa, x.ec, &MSG).unwrap())),
        "rsa-raw" => {
            let mut sig = vec![0u8; x.raw_rsa.public_modulus_len()];
            x.raw_rsa
                .sign(&signature::RSA_PKCS1_SHA256, &x.rng, &MSG, &mut sig)
                .unwrap();
            black_box(sig);
        }
        "rsa-core" => drop(black_box(
            p.sign_once(1, s, &x.rsa_pkcs, x.rsa, &MSG).unwrap(),
        )),
        "gcm-raw" => {
            let mut buf = Vec::with_capacity(x.data.len() + 16);
            buf.extend_from_slice(&x.data);
            x.raw_aes
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key([1; 12]),
                    Aad::empty(),
                    &mut buf,
                )
                .unwrap();
            black_box(buf);
        }
        "gcm-core-one-call" => {
            drop(black_box(
                p.encrypt_once(1, s, &x.gcm, x.aes, &x.data).unwrap(),
            ));
        }
        "gcm-core-init-encrypt" => {
            p.crypt_init(1, s, &x.gcm, x.aes, true).unwrap();
            drop(black_box(p.encrypt(1, s, &x.data).unwrap()));
        }
        // The reference of a key report: its two signatures alone, ES384 and
        // ML-DSA-87 over a payload of a report's size, by the same aws-lc-rs
        // wrappers the partition signs with.
        "report-raw" => {
            black_box(x.raw_report_ecc.sign(&REPORT_PAYLOAD).unwrap());
            black_box(x.raw_report_mldsa.sign(&REPORT_PAYLOAD).unwrap());
        }
        // A whole report: key lookup, attribute digest, the durable audit entry
        // that gives its counter, the payload, both signatures.
        "report-core" => drop(black_box(p.key_report(1, s, x.ec384, &[7; 32]).unwrap())),
        other => panic!("unknown case {other}"),
    }
}

#[inline(never)]
fn measured_loop(x: &Setup, case: &str, n: u32) {
    for _ in 0..n {
        run(x, case);
    }
}

/// A criterion group: its name, its (function name, case) pairs, bytes per op.
type Group = (&'static str, &'static [(&'static str, &'static str)], u64);

fn benches(c: &mut Criterion) {
    let x = setup();
    let groups: [Group; 4] = [
        (
            "ECDSA P-256 sign",
            &[
                ("raw aws-lc-rs", "ecdsa-raw"),
                ("ihsm core (partition, session, key lookup)", "ecdsa-core"),
            ],
            0,
        ),
        (
            "RSA-2048 PKCS#1 v1.5 SHA-256 sign",
            &[
                ("raw aws-lc-rs", "rsa-raw"),
                ("ihsm core (partition, session, key lookup)", "rsa-core"),
            ],
            0,
        ),
        (
            "AES-256-GCM encrypt 4 KiB",
            &[
                ("raw aws-lc-rs", "gcm-raw"),
                ("ihsm core (one call)", "gcm-core-one-call"),
                ("ihsm core (EncryptInit + Encrypt)", "gcm-core-init-encrypt"),
            ],
            4096,
        ),
        (
            "key report (ES384 + ML-DSA-87)",
            &[
                ("the two signatures alone", "report-raw"),
                (
                    "ihsm core (report with its durable audit entry)",
                    "report-core",
                ),
            ],
            0,
        ),
    ];
    for (group, cases, bytes) in groups {
        let mut g = c.benchmark_group(group);
        if bytes > 0 {
            g.throughput(Throughput::Bytes(bytes));
        }
        for (name, case) in cases {
            g.bench_function(*name, |b| b.iter(|| run(&x, case)));
        }
        g.finish();
    }
}

/// Instructions per operation of each case, from callgrind.
fn instructions() {
    const N: u32 = 200;
    let exe = std::env::current_exe().unwrap();
    let mut per_op = Vec::new();
    for case in CASES {
        let out_file = std::env::temp_dir().join(format!("ihsm-callgrind-{case}.out"));
        let out = Command::new("valgrind")
            .args(["--tool=callgrind", "--toggle-collect=*measured_loop*"])
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg(&exe)
            .env("IHSM_COUNT_CASE", case)
            .env("IHSM_COUNT_N", N.to_string())
            .output()
            .expect("valgrind (apt-get install valgrind)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&out_file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let total: u64 = stderr
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .expect("callgrind summary")
            .trim()
            .parse()
            .unwrap();
        per_op.push((case, total / u64::from(N)));
    }
    let of = |c: &str| per_op.iter().find(|(k, _)| *k == c).unwrap().1;
    for (case, n) in &per_op {
        let reference = match case.split('-').next().unwrap() {
            "ecdsa" => of("ecdsa-raw"),
            "rsa" => of("rsa-raw"),
            "report" => of("report-raw"),
            _ => of("gcm-raw"),
        };
        println!(
            "{case:<24} {n:>10} instructions/op  {:.3}x raw",
            *n as f64 / reference as f64
        );
    }
}

fn main() {
    if let (Ok(case), Ok(n)) = (
        std::env::var("IHSM_COUNT_CASE"),
        std::env::var("IHSM_COUNT_N"),
    ) {
        let x = setup();
        run(&x, &case); // warm the caches outside the measured loop
        measured_loop(&x, &case, n.parse().unwrap());
        return;
    }
    if std::env::args().any(|a| a == "--instructions") {
        instructions();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
