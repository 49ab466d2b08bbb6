//! Key reports built as docs/attestation.md says (the producer comes later), their
//! ECC partition certificate issued by a genuine RT Alias, checked by the verifier
//! and, independently, by RustCrypto over coset's Sig_structure; then the EAR.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Case, NOW, Signer};
use coset::{CborSerializable as _, CoseSign1, TaggedCborSerializable as _};
use ihsm_crypto::ec::EccP384PublicKey;
use ihsm_rot::fuses::Lifecycle;
use ihsm_verify::appraise::{self, Appraisal, Check, KeyReportEvidence, Refusal};
use ihsm_verify::chain::{self, PartitionIdentity};
use ihsm_verify::ear::{self, EarRefusal, EarSigner};
use ihsm_verify::envelope::EnvelopeRefusal;
use ihsm_verify::keyreport::{
    self, AttestedKey, Field, KeyPolicy, KeyReport, KeyReportExpectation, KeyReportRefusal, flags,
};

const NAME: &str = "payments";
const PID: u32 = 2;

struct Setup {
    case: Case,
    appraisal: Appraisal,
    partition: Signer,
    ecc_id: PartitionIdentity,
    mldsa_id: PartitionIdentity,
    key: EcdsaKeyPair,
    report_data: [u8; 128],
}

fn setup() -> Setup {
    let case = Case::new(Lifecycle::Production);
    let appraisal = appraise::appraise_device(&case.trust, &case.evidence, &case.policy);
    assert!(appraisal.affirms(), "{:?}", appraisal.verdicts);
    let partition = Signer::new();
    // A genuine partition identity certificate, issued by the RT Alias.
    let cert = case
        .rt
        .certify_partition_key(
            NAME,
            PID,
            &EccP384PublicKey::from_sec1(&partition.ecc_public()).unwrap(),
        )
        .unwrap();
    let (ecc_chain, _) = appraisal.chains().unwrap();
    let ecc_id = chain::verify_partition_cert(ecc_chain, &cert, NOW).unwrap();
    assert_eq!(ecc_id.common_name, format!("ihsm partition {NAME}"));
    // The ML-DSA-87 partition certificate comes with the producer (issue 14, part 1);
    // until then the identity is the key itself.
    let mldsa_id = PartitionIdentity {
        key: partition.mldsa_public(),
        common_name: ecc_id.common_name.clone(),
    };
    Setup {
        case,
        appraisal,
        partition,
        ecc_id,
        mldsa_id,
        key: EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
        report_data: ihsm_crypto::rand::array().unwrap(),
    }
}

impl Setup {
    fn report(&self) -> KeyReport {
        let point = self.key.public_key().as_ref();
        KeyReport {
            public_key: AttestedKey::Ec2 {
                crv: 2,
                x: point[1..49].to_vec(),
                y: point[49..].to_vec(),
            },
            key_size: 384,
            flags: flags::GENERATED | flags::SIGN | flags::VERIFY,
            app_id: [0xab; 16],
            report_data: self.report_data,
            launch_id: [0x5a; 16],
            counter: 1,
            tcb: self.appraisal.tcb.unwrap(),
            partition_name: NAME.into(),
            partition_id: PID,
            cka_id: b"sig-1".to_vec(),
            attributes_digest: keyreport::attributes_digest(&[(0, vec![0, 0, 0, 0, 0, 0, 0, 3])])
                .unwrap(),
            never_extractable: true,
            always_sensitive: true,
            local: true,
        }
    }

    fn sealed(&self, r: &KeyReport) -> Vec<u8> {
        self.partition.seal(&r.to_payload().unwrap())
    }

    fn expectation(&self) -> KeyReportExpectation {
        KeyReportExpectation {
            report_data: self.report_data,
            tcb: self.appraisal.tcb.unwrap(),
            partition_name: NAME.into(),
            partition_id: Some(PID),
            app_id: None,
        }
    }

    fn check(&self, bytes: &[u8]) -> Result<KeyReport, KeyReportRefusal> {
        keyreport::verify_key_report(
            bytes,
            &self.ecc_id.key,
            &self.mldsa_id.key,
            &self.expectation(),
            &KeyPolicy::sign_only_generated(),
        )
    }
}

#[test]
fn a_key_report_verifies_and_an_independent_implementation_agrees() {
    let s = setup();
    let r = s.report();
    let bytes = s.sealed(&r);
    assert_eq!(s.check(&bytes).unwrap(), r);

    // RustCrypto p384 over coset's Sig_structure, and ml-dsa, from the bytes alone.
    let (first, rest) = split_first_item(&bytes);
    let m1 = CoseSign1::from_tagged_slice(first).unwrap();
    let m2 = CoseSign1::from_tagged_slice(rest).unwrap();
    {
        use p384::ecdsa::signature::Verifier as _;
        let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&s.ecc_id.key).unwrap();
        let sig = p384::ecdsa::Signature::from_slice(&m1.signature).unwrap();
        vk.verify(&m1.tbs_data(b""), &sig).unwrap();
    }
    {
        use ml_dsa::signature::Verifier as _;
        let vk = ml_dsa::VerifyingKey::<ml_dsa::MlDsa87>::decode(
            s.mldsa_id.key.as_slice().try_into().unwrap(),
        );
        let sig = ml_dsa::Signature::<ml_dsa::MlDsa87>::decode(
            m2.signature.as_slice().try_into().unwrap(),
        )
        .unwrap();
        vk.verify(&m2.tbs_data(b""), &sig).unwrap();
    }
    // AziHSM's protected header, byte for byte: {1: -35, 3: "application/cbor"}.
    assert_eq!(
        m1.protected.original_data.as_deref().unwrap(),
        &hex::decode("a201382203706170706c69636174696f6e2f63626f72").unwrap()[..]
    );
    assert_eq!(m1.payload, m2.payload);
    assert!(m1.unprotected.is_empty());
    let _ = m1.to_vec().unwrap();
}

fn split_first_item(bytes: &[u8]) -> (&[u8], &[u8]) {
    let mut rest = bytes;
    let _: ciborium::Value = ciborium::de::from_reader(&mut rest).unwrap();
    bytes.split_at(bytes.len() - rest.len())
}

#[test]
fn flags_that_break_the_policy_are_refused() {
    let s = setup();
    let mut r = s.report();
    r.flags |= flags::IMPORTED | flags::DECRYPT;
    r.flags &= !flags::GENERATED;
    assert_eq!(
        s.check(&s.sealed(&r)).unwrap_err(),
        KeyReportRefusal::Flags {
            flags: r.flags,
            missing: flags::GENERATED,
            forbidden: flags::IMPORTED | flags::DECRYPT,
        }
    );
    let mut r = s.report();
    r.never_extractable = false;
    assert_eq!(
        s.check(&s.sealed(&r)).unwrap_err(),
        KeyReportRefusal::NeverExtractable
    );
    let mut r = s.report();
    r.local = false;
    assert_eq!(
        s.check(&s.sealed(&r)).unwrap_err(),
        KeyReportRefusal::NotLocal
    );
    let mut r = s.report();
    r.public_key = AttestedKey::None;
    assert_eq!(
        s.check(&s.sealed(&r)).unwrap_err(),
        KeyReportRefusal::KeyKind
    );
}

#[test]
fn a_key_report_with_a_bad_signature_is_refused() {
    let s = setup();
    let bytes = s.sealed(&s.report());
    let (first, _) = split_first_item(&bytes);
    // The last byte of the first message is its signature's last byte.
    let mut bad = bytes.clone();
    bad[first.len() - 1] ^= 1;
    assert_eq!(
        s.check(&bad).unwrap_err(),
        KeyReportRefusal::Envelope(EnvelopeRefusal::EcdsaSignature)
    );
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert_eq!(
        s.check(&bad).unwrap_err(),
        KeyReportRefusal::Envelope(EnvelopeRefusal::MlDsaSignature)
    );
    // Signed by another partition's keys.
    let other = Signer::new();
    assert_eq!(
        s.check(&other.seal(&s.report().to_payload().unwrap()))
            .unwrap_err(),
        KeyReportRefusal::Envelope(EnvelopeRefusal::EcdsaSignature)
    );
    // Only the ES384 message: not a report.
    assert_eq!(
        s.check(first).unwrap_err(),
        KeyReportRefusal::Envelope(EnvelopeRefusal::Malformed)
    );
}

#[test]
fn a_report_for_another_partition_nonce_or_tcb_is_refused() {
    let s = setup();
    let mut r = s.report();
    r.partition_name = "other".into();
    assert_eq!(
        s.check(&s.sealed(&r)).unwrap_err(),
        KeyReportRefusal::Partition
    );
    let mut r = s.report();
    r.partition_id = PID + 1;
    assert_eq!(
        s.check(&s.sealed(&r)).unwrap_err(),
        KeyReportRefusal::Partition
    );
    let mut r = s.report();
    r.report_data[127] ^= 1;
    assert_eq!(
        s.check(&s.sealed(&r)).unwrap_err(),
        KeyReportRefusal::ReportData
    );
    let mut r = s.report();
    r.tcb[1][0] ^= 1;
    assert_eq!(s.check(&s.sealed(&r)).unwrap_err(), KeyReportRefusal::Tcb);
    // A payload that is not the canonical encoding of itself.
    let mut p = s.report().to_payload().unwrap();
    p.push(0);
    assert_eq!(
        s.check(&s.partition.seal(&p)).unwrap_err(),
        KeyReportRefusal::Malformed(Field::Structure)
    );
}

#[test]
fn the_ear_carries_the_verdicts_and_the_attested_key() {
    let s = setup();
    let mut a = s.appraisal.clone();
    let ev = KeyReportEvidence {
        report: s.sealed(&s.report()),
        ecc_partition_cert: Vec::new(),
        mldsa_partition_cert: Vec::new(),
        report_data: s.report_data,
        partition_id: Some(PID),
        app_id: None,
    };
    appraise::add_key_report(&mut a, &ev, &s.ecc_id, &s.mldsa_id, &s.case.policy);
    assert!(a.affirms(), "{:?}", a.verdicts);
    assert_eq!(a.partition, Some((NAME.to_string(), PID)));

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let signer = EarSigner::from_pkcs8(pkcs8.as_ref()).unwrap();
    let token = ear::sign(
        &signer,
        &ear::claims(&a, NOW, Some(NOW + 300), "ihsm/production"),
    )
    .unwrap();
    let claims = ear::verify_ear(&token, &signer.public_key(), NOW + 1).unwrap();
    let sub = &claims["submods"]["ihsm"];
    assert_eq!(sub["ear_status"], "affirming");
    assert_eq!(sub["ear_trustworthiness_vector"]["executables"], 2);
    assert_eq!(sub["ihsm_checks"]["key-report"]["status"], "affirming");
    assert_eq!(sub["ihsm_checks"].as_object().unwrap().len(), 13);
    assert_eq!(sub["ihsm_ueid"], B64.encode(s.case.rt.ueid()));
    assert_eq!(sub["ihsm_partition"]["name"], NAME);
    let point = s.key.public_key().as_ref();
    assert_eq!(sub["ihsm_attested_key"]["x"], B64.encode(&point[1..49]));
    assert_eq!(sub["ihsm_attested_key"]["y"], B64.encode(&point[49..]));
    assert_eq!(claims["eat_nonce"], B64.encode(s.case.trust.nonce));

    // Tampered, expired, premature, another verifier's key.
    let mut bad = token.clone().into_bytes();
    let i = bad.len() / 2;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    assert!(matches!(
        ear::verify_ear(&bad, &signer.public_key(), NOW + 1),
        Err(EarRefusal::Signature | EarRefusal::Malformed)
    ));
    assert_eq!(
        ear::verify_ear(&token, &signer.public_key(), NOW + 300),
        Err(EarRefusal::Expired)
    );
    assert_eq!(
        ear::verify_ear(&token, &signer.public_key(), NOW - 1),
        Err(EarRefusal::Expired)
    );
    assert_eq!(
        ear::verify_ear(&token, &Signer::new().ecc_public(), NOW + 1),
        Err(EarRefusal::Signature)
    );

    // A refused key report: the EAR says so, and which check.
    let mut a = s.appraisal.clone();
    let mut r = s.report();
    r.flags |= flags::WRAP;
    let ev = KeyReportEvidence {
        report: s.sealed(&r),
        ..ev
    };
    appraise::add_key_report(&mut a, &ev, &s.ecc_id, &s.mldsa_id, &s.case.policy);
    assert!(matches!(
        a.verdict(Check::KeyReport),
        Some(Err(Refusal::KeyReport(KeyReportRefusal::Flags { .. })))
    ));
    let c = ear::claims(&a, NOW, None, "ihsm/production");
    assert_eq!(c["submods"]["ihsm"]["ear_status"], "contraindicated");
    assert_eq!(
        c["submods"]["ihsm"]["ihsm_checks"]["key-report"]["status"],
        "contraindicated"
    );
    assert!(c["submods"]["ihsm"].get("ihsm_attested_key").is_none());
}

#[test]
fn the_ecc_partition_certificate_must_be_the_rt_alias_s() {
    let s = setup();
    let other = Case::new(Lifecycle::Production);
    let cert = other
        .rt
        .certify_partition_key(
            NAME,
            PID,
            &EccP384PublicKey::from_sec1(&s.partition.ecc_public()).unwrap(),
        )
        .unwrap();
    let (ecc_chain, _) = s.appraisal.chains().unwrap();
    assert_eq!(
        chain::verify_partition_cert(ecc_chain, &cert, NOW).unwrap_err(),
        chain::ChainRefusal::IssuerMismatch(chain::Layer::Partition)
    );
}

#[test]
fn appraise_key_report_checks_both_partition_certificates_first() {
    let s = setup();
    let cert = s
        .case
        .rt
        .certify_partition_key(
            NAME,
            PID,
            &EccP384PublicKey::from_sec1(&s.partition.ecc_public()).unwrap(),
        )
        .unwrap();
    let ev = KeyReportEvidence {
        report: s.sealed(&s.report()),
        ecc_partition_cert: cert.clone(),
        // An ECC certificate where the ML-DSA-87 one belongs: refused by its chain.
        mldsa_partition_cert: cert,
        report_data: s.report_data,
        partition_id: Some(PID),
        app_id: None,
    };
    let mut a = s.appraisal.clone();
    appraise::appraise_key_report(&mut a, &ev, &s.case.policy);
    assert_eq!(
        a.verdict(Check::PartitionCertificates),
        Some(&Err(Refusal::Chain(chain::ChainRefusal::PublicKey(
            chain::Layer::Partition
        ))))
    );
    assert_eq!(
        a.verdict(Check::KeyReport),
        Some(&Err(Refusal::Prerequisite(Check::PartitionCertificates)))
    );
    assert!(a.attested_key.is_none());
}

#[test]
fn an_ed25519_report_verifies_and_its_ear_carries_an_okp_key() {
    let s = setup();
    let x = vec![0x42u8; 32];
    let mut r = s.report();
    r.public_key = AttestedKey::Okp {
        crv: 6,
        x: x.clone(),
    };
    r.key_size = 256;
    // Canonical round trip of the padded field.
    assert_eq!(
        KeyReport::from_payload(&r.to_payload().unwrap()).unwrap(),
        r
    );
    let mut a = s.appraisal.clone();
    let ev = KeyReportEvidence {
        report: s.sealed(&r),
        ecc_partition_cert: Vec::new(),
        mldsa_partition_cert: Vec::new(),
        report_data: s.report_data,
        partition_id: Some(PID),
        app_id: None,
    };
    appraise::add_key_report(&mut a, &ev, &s.ecc_id, &s.mldsa_id, &s.case.policy);
    assert!(a.affirms(), "{:?}", a.verdicts);
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let signer = EarSigner::from_pkcs8(pkcs8.as_ref()).unwrap();
    let token = ear::sign(
        &signer,
        &ear::claims(&a, NOW, Some(NOW + 300), "ihsm/production"),
    )
    .unwrap();
    let claims = ear::verify_ear(&token, &signer.public_key(), NOW + 1).unwrap();
    assert_eq!(
        claims["submods"]["ihsm"]["ihsm_attested_key"],
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(&x)})
    );
    // An OKP key of a curve other than Ed25519 is not a key this format carries:
    // the padded field with crv 4 (X25519) decodes, and the EAR names no key.
    let mut other = r.clone();
    other.public_key = AttestedKey::Okp { crv: 4, x };
    assert_eq!(
        KeyReport::from_payload(&other.to_payload().unwrap()).unwrap(),
        other
    );
}
