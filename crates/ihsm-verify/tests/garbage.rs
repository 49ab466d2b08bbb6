//! Every parser against random bytes and truncations of genuine inputs: an error,
//! never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Case, Signer};
use ihsm_rot::fuses::Lifecycle;
use ihsm_verify::chain::{self, Alg, TrustAnchor};
use ihsm_verify::keyreport::{self, KeyPolicy, KeyReport, KeyReportExpectation};
use ihsm_verify::quote;
use ihsm_verify::refvals::RefValues;
use ihsm_verify::{ear, envelope};
use proptest::prelude::*;

fn expectation() -> KeyReportExpectation {
    KeyReportExpectation {
        report_data: [0; 128],
        tcb: [[0; 48]; 2],
        partition_name: String::new(),
        partition_id: None,
        app_id: None,
    }
}

fn all_parsers(b: &[u8]) {
    let nonce = [0u8; 32];
    assert!(quote::verify_quote(Alg::Ecc384, b, &nonce, &[4; 97]).is_err());
    assert!(quote::verify_quote(Alg::MlDsa87, b, &nonce, &[0; 2592]).is_err());
    let _ = quote::parse_pcr_log(b).map(|l| quote::replay(&l));
    let _ = KeyReport::from_payload(b);
    let _ = RefValues::from_payload(b);
    let _ = envelope::split(b);
    assert!(RefValues::open(b, &[4; 97], &[0; 2592]).is_err());
    assert!(
        keyreport::verify_key_report(
            b,
            &[4; 97],
            &[0; 2592],
            &expectation(),
            &KeyPolicy::sign_only_generated()
        )
        .is_err()
    );
    let _ = TrustAnchor::from_der(b);
    let _ = chain::parse_ueid(b);
    let _ = chain::parse_tcb_info(b);
    let _ = chain::parse_multi_tcb_info(b);
    let _ = ihsm_verify::refvals::spki_public_key(b);
    if let Ok(s) = std::str::from_utf8(b) {
        assert!(ear::verify_ear(s, &[4; 97], 0).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn random_bytes_are_refused_without_a_panic(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
        all_parsers(&b);
    }

    #[test]
    fn random_cbor_shaped_bytes_are_refused_without_a_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..512),
        head in prop::sample::select(vec![0xa0u8, 0xb0, 0xbf, 0xd2, 0x84, 0x30, 0x82, 0x58]),
    ) {
        let mut b = vec![head];
        b.extend(tail);
        all_parsers(&b);
    }
}

#[test]
fn truncations_and_flips_of_genuine_inputs_are_refused_without_a_panic() {
    let c = Case::new(Lifecycle::Production);
    let s = Signer::new();
    let r = c.refvals.to_payload();
    let env = s.seal(&r);
    assert!(RefValues::open(&env, &s.ecc_public(), &s.mldsa_public()).is_ok());
    for n in 0..env.len() {
        assert!(RefValues::open(&env[..n], &s.ecc_public(), &s.mldsa_public()).is_err());
    }
    for n in 0..r.len() {
        assert!(RefValues::from_payload(&r[..n]).is_err());
    }
    for i in 0..r.len() {
        let mut b = r.clone();
        b[i] ^= 0xff;
        let _ = RefValues::from_payload(&b);
    }
    for n in (0..c.evidence.pcr_log.len()).filter(|n| n % 56 != 0) {
        assert!(quote::parse_pcr_log(&c.evidence.pcr_log[..n]).is_err());
    }
    for n in [0, 1, 100, 1847, 1849] {
        let q = &c.evidence.quote_ecc;
        let b = if n <= q.len() {
            q[..n].to_vec()
        } else {
            [q.as_slice(), &[0]].concat()
        };
        assert!(quote::verify_quote(Alg::Ecc384, &b, &c.trust.nonce, &[4; 97]).is_err());
    }
    let cert = &c.evidence.ecc_chain[2];
    for n in (0..cert.len()).step_by(7) {
        let mut chain = c.evidence.ecc_chain.clone();
        chain[2] = cert[..n].to_vec();
        assert!(
            chain::verify_chain(Alg::Ecc384, &chain, &c.trust.anchor_ecc, common::NOW).is_err()
        );
        all_parsers(&cert[..n]);
    }
}
