//! The verifier against genuine evidence from a development device: it affirms,
//! and each kind of bad evidence is refused with its own reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Case, Device, fix_checksum};
use ihsm_rot::fuses::Lifecycle;
use ihsm_verify::appraise::{self, Appraisal, Check, MeasurementRefusal, Refusal};
use ihsm_verify::chain::{ChainRefusal, TrustAnchor};
use ihsm_verify::envelope::EnvelopeRefusal;
use ihsm_verify::quote::{PcrLogRefusal, QuoteRefusal};
use ihsm_verify::refvals::RefValuesRefusal;

fn run(c: &Case) -> Appraisal {
    appraise::appraise_device(&c.trust, &c.evidence, &c.policy)
}

fn refused(a: &Appraisal, check: Check) -> Refusal {
    match a.verdict(check) {
        Some(Err(r)) => r.clone(),
        other => panic!("{check}: {other:?}; all: {:?}", a.verdicts),
    }
}

/// Every check except `check` affirms (the refusal is specific).
fn only_refused(a: &Appraisal, check: Check) -> Refusal {
    for (c, v) in &a.verdicts {
        if *c != check {
            assert!(v.is_ok(), "{c} also refused: {v:?}");
        }
    }
    refused(a, check)
}

#[test]
fn a_genuine_production_device_affirms() {
    let c = Case::new(Lifecycle::Production);
    let a = run(&c);
    assert!(a.affirms(), "{:?}", a.verdicts);
    assert_eq!(a.verdicts.len(), 12);
    assert_eq!(a.ueid.unwrap(), c.rt.ueid());
    assert_eq!(a.svn, Some(common::SVN));
    assert_eq!(a.fmc_fwid, Some(common::IMAGE));
    assert_eq!(a.lifecycle, Some(3));
}

#[test]
fn a_quote_with_one_flipped_byte_is_refused() {
    // A flipped byte alone: the checksum.
    let mut c = Case::new(Lifecycle::Production);
    c.evidence.quote_ecc[1760] ^= 1;
    assert_eq!(
        only_refused(&run(&c), Check::EccQuote),
        Refusal::Quote(QuoteRefusal::Checksum)
    );
    // The checksum mended: the signature.
    fix_checksum(&mut c.evidence.quote_ecc);
    assert_eq!(
        only_refused(&run(&c), Check::EccQuote),
        Refusal::Quote(QuoteRefusal::Signature)
    );
    // A PCR byte, mended: the digest no longer matches.
    let mut c = Case::new(Lifecycle::Production);
    c.evidence.quote_mldsa[8 + 48 * 5] ^= 0x80;
    fix_checksum(&mut c.evidence.quote_mldsa);
    assert_eq!(
        only_refused(&run(&c), Check::MlDsaQuote),
        Refusal::Quote(QuoteRefusal::Digest)
    );
    // The ML-DSA signature itself.
    let mut c = Case::new(Lifecycle::Production);
    c.evidence.quote_mldsa[2000] ^= 4;
    fix_checksum(&mut c.evidence.quote_mldsa);
    assert_eq!(
        only_refused(&run(&c), Check::MlDsaQuote),
        Refusal::Quote(QuoteRefusal::Signature)
    );
}

#[test]
fn another_nonce_is_refused() {
    let mut c = Case::new(Lifecycle::Production);
    c.trust.nonce[0] ^= 1;
    let a = run(&c);
    assert_eq!(
        refused(&a, Check::EccQuote),
        Refusal::Quote(QuoteRefusal::Nonce)
    );
    assert_eq!(
        refused(&a, Check::MlDsaQuote),
        Refusal::Quote(QuoteRefusal::Nonce)
    );
    assert!(!a.affirms());
}

#[test]
fn a_pcr_log_that_does_not_replay_is_refused() {
    let mut c = Case::new(Lifecycle::Production);
    // Entry 3 is the FMC TCI: another image digest in the log.
    c.evidence.pcr_log[3 * 56 + 8] ^= 1;
    let a = run(&c);
    assert_eq!(
        refused(&a, Check::PcrLog),
        Refusal::PcrLog(PcrLogRefusal::Replay(0))
    );
    // A log cut short is refused too (PCR2/3 lose their entries).
    let mut c = Case::new(Lifecycle::Production);
    c.evidence.pcr_log.truncate(4 * 56);
    assert_eq!(
        refused(&run(&c), Check::PcrLog),
        Refusal::PcrLog(PcrLogRefusal::Replay(2))
    );
}

#[test]
fn firmware_other_than_the_reference_is_refused() {
    // The RT FWIDs differ from the reference values (a modified runtime).
    let mut c = Case::new(Lifecycle::Production);
    let mut r = c.refvals.clone();
    r.rt_fwids[0][0] ^= 1;
    c.set_refvals(r);
    assert_eq!(
        only_refused(&run(&c), Check::RtFirmware),
        Refusal::Measurement(MeasurementRefusal::RtFwid)
    );
    // A device that booted another image (with a manifest signed for it): the FMC
    // FWID and PCR0/1 are not the reference's.
    let d = Device::new(Lifecycle::Production);
    let (rt, m) = d.boot_image(&[0x33; 48]);
    let mut c = Case::from_runtime(d, rt, m);
    let mut r = c.refvals.clone();
    r.fmc_fwid = common::IMAGE;
    c.set_refvals(r);
    let a = run(&c);
    assert_eq!(
        refused(&a, Check::FmcFirmware),
        Refusal::Measurement(MeasurementRefusal::FmcFwid)
    );
    assert_eq!(
        refused(&a, Check::Pcrs),
        Refusal::Measurement(MeasurementRefusal::Pcr(0))
    );
}

#[test]
fn an_svn_below_the_minimum_is_refused() {
    let mut c = Case::new(Lifecycle::Production);
    let mut r = c.refvals.clone();
    r.svn_min = common::SVN + 1;
    c.set_refvals(r);
    assert_eq!(
        only_refused(&run(&c), Check::Svn),
        Refusal::Measurement(MeasurementRefusal::SvnBelowMinimum { svn: 3, min: 4 })
    );
}

#[test]
fn a_chain_to_another_anchor_is_refused() {
    let mut c = Case::new(Lifecycle::Production);
    let other = Case::new(Lifecycle::Production);
    c.trust.anchor_ecc = TrustAnchor::from_der(&other.evidence.ecc_chain[0]).unwrap();
    let a = run(&c);
    assert_eq!(
        refused(&a, Check::EccChain),
        Refusal::Chain(ChainRefusal::NotAnchored)
    );
    assert_eq!(
        refused(&a, Check::EccQuote),
        Refusal::Prerequisite(Check::EccChain)
    );
    // Another device's LDevID in the chain breaks it at the LDevID.
    let mut c = Case::new(Lifecycle::Production);
    c.evidence.mldsa_chain[1] = other.evidence.mldsa_chain[1].clone();
    assert_eq!(
        refused(&run(&c), Check::MlDsaChain),
        Refusal::Chain(ChainRefusal::IssuerMismatch(
            ihsm_verify::chain::Layer::LdevId
        ))
    );
}

#[test]
fn a_development_device_under_a_production_policy_is_refused() {
    let mut c = Case::new(Lifecycle::Manufacturing);
    assert_eq!(
        only_refused(&run(&c), Check::Lifecycle),
        Refusal::Measurement(MeasurementRefusal::Development)
    );
    c.policy.accept_development = true;
    assert!(run(&c).affirms());
    // Reference values for production devices refuse it even so.
    let mut r = c.refvals.clone();
    r.lifecycle = 3;
    c.set_refvals(r);
    assert_eq!(
        only_refused(&run(&c), Check::Lifecycle),
        Refusal::Measurement(MeasurementRefusal::LifecycleMismatch { got: 1, want: 3 })
    );
}

#[test]
fn reference_values_signed_by_another_key_are_refused() {
    let mut c = Case::new(Lifecycle::Production);
    c.evidence.refvals = common::Signer::new().seal(&c.refvals.to_payload());
    let a = run(&c);
    assert_eq!(
        refused(&a, Check::ReferenceValues),
        Refusal::RefValues(RefValuesRefusal::Envelope(EnvelopeRefusal::EcdsaSignature))
    );
    assert_eq!(
        refused(&a, Check::Svn),
        Refusal::Prerequisite(Check::ReferenceValues)
    );
    // Vendor keys for the owner hash: another owner is refused.
    let mut c = Case::new(Lifecycle::Production);
    let mut r = c.refvals.clone();
    r.owner_key_hash[0] ^= 1;
    c.set_refvals(r);
    assert_eq!(
        only_refused(&run(&c), Check::VendorKeys),
        Refusal::Measurement(MeasurementRefusal::OwnerKeyHash)
    );
}

#[test]
fn an_expired_certificate_time_is_refused() {
    let mut c = Case::new(Lifecycle::Production);
    c.policy.now = 1_600_000_000; // 2020, before the chain's notBefore
    assert_eq!(
        refused(&run(&c), Check::EccChain),
        Refusal::Chain(ChainRefusal::NotValidAt(ihsm_verify::chain::Layer::IdevId))
    );
}
