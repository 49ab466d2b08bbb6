//! The verifier's speed: a whole device appraisal (two DICE chains, two quotes,
//! the PCR log, the signed reference values) and a key report, beside the raw
//! signature verifications they contain, measured in the same run.
//!
//! `cargo bench -p ihsm-verify --bench evidence`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, KeyPair as _, UnparsedPublicKey};
use common::{Case, Signer};
use criterion::Criterion;
use ihsm_rot::fuses::Lifecycle;
use ihsm_verify::appraise;
use ihsm_verify::keyreport::{
    self, AttestedKey, KeyPolicy, KeyReport, KeyReportExpectation, flags,
};
use std::hint::black_box;

fn main() {
    let case = Case::new(Lifecycle::Production);
    let a = appraise::appraise_device(&case.trust, &case.evidence, &case.policy);
    assert!(a.affirms(), "{:?}", a.verdicts);
    let tcb = a.tcb.unwrap();

    // A key report sealed by a partition identity.
    let partition = Signer::new();
    let key = Signer::new();
    let point = key.ecc.public_key().as_ref().to_vec();
    let report = KeyReport {
        public_key: AttestedKey::Ec2 {
            crv: 2,
            x: point[1..49].to_vec(),
            y: point[49..].to_vec(),
        },
        key_size: 384,
        flags: flags::GENERATED | flags::SIGN | flags::VERIFY,
        app_id: [0xab; 16],
        report_data: [7; 128],
        launch_id: [0x5a; 16],
        counter: 1,
        tcb,
        partition_name: "bench".into(),
        partition_id: 2,
        cka_id: b"sig-1".to_vec(),
        attributes_digest: [1; 48],
        never_extractable: true,
        always_sensitive: true,
        local: true,
    };
    let sealed = partition.seal(&report.to_payload().unwrap());
    let expect = KeyReportExpectation {
        report_data: [7; 128],
        tcb,
        partition_name: "bench".into(),
        partition_id: Some(2),
        app_id: None,
    };
    let (ecc_id, mldsa_id) = (partition.ecc_public(), partition.mldsa_public());
    let policy = KeyPolicy::sign_only_generated();
    keyreport::verify_key_report(&sealed, &ecc_id, &mldsa_id, &expect, &policy).unwrap();

    // The reference: one ECDSA P-384 and one ML-DSA-87 verification of the same
    // kind the appraisal makes (an appraisal and a report make 7 of each).
    let msg = [0x42u8; 900];
    let ecc_sig = partition
        .ecc
        .sign(&aws_lc_rs::rand::SystemRandom::new(), &msg)
        .unwrap();
    let ml_sig = partition.mldsa.sign(&msg).unwrap();
    let ml_pub = partition.mldsa_public();

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("verifier");
    g.bench_function("raw: 7 ECDSA P-384 + 7 ML-DSA-87 verifications", |b| {
        b.iter(|| {
            for _ in 0..7 {
                UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &ecc_id)
                    .verify(&msg, ecc_sig.as_ref())
                    .unwrap();
                let vk = ml_dsa::VerifyingKey::<ml_dsa::MlDsa87>::decode(
                    ml_pub.as_slice().try_into().unwrap(),
                );
                let sig = ml_dsa::Signature::<ml_dsa::MlDsa87>::decode(
                    ml_sig.as_slice().try_into().unwrap(),
                )
                .unwrap();
                use ml_dsa::signature::Verifier as _;
                vk.verify(&msg, &sig).unwrap();
            }
        });
    });
    g.bench_function(
        "appraise a device (2 chains, 2 quotes, log, refvals)",
        |b| {
            b.iter(|| {
                black_box(appraise::appraise_device(
                    &case.trust,
                    &case.evidence,
                    &case.policy,
                ))
            });
        },
    );
    g.bench_function("a key report (2 signatures, payload, policy)", |b| {
        b.iter(|| {
            black_box(
                keyreport::verify_key_report(&sealed, &ecc_id, &mldsa_id, &expect, &policy)
                    .unwrap(),
            )
        });
    });
    g.finish();
    c.final_summary();
}
