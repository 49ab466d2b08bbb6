//! docs/attestation.md's byte-level examples are what this crate's encoders
//! produce, and decode back to the documented values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ihsm_verify::keyreport::{self, AttestedKey, KeyReport, flags};
use ihsm_verify::refvals::RefValues;

const DOC: &str = include_str!("../../../docs/attestation.md");

/// The P-384 base point G (SEC 2), a valid public key anyone can recompute.
const GX: &str = "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7";
const GY: &str = "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f";

fn example_report() -> KeyReport {
    // CKA_CLASS = CKO_PRIVATE_KEY, CKA_KEY_TYPE = CKK_EC, CKA_SIGN = true.
    let attrs = [
        (0x000, 3u64.to_be_bytes().to_vec()),
        (0x100, 3u64.to_be_bytes().to_vec()),
        (0x108, vec![1]),
    ];
    let mut report_data = [0u8; 128];
    for (i, b) in report_data.iter_mut().enumerate() {
        *b = u8::try_from(i).unwrap();
    }
    KeyReport {
        public_key: AttestedKey::Ec2 {
            crv: 2,
            x: hex::decode(GX).unwrap(),
            y: hex::decode(GY).unwrap(),
        },
        key_size: 384,
        flags: flags::GENERATED | flags::SIGN | flags::VERIFY,
        app_id: hex::decode("00112233445566778899aabbccddeeff")
            .unwrap()
            .try_into()
            .unwrap(),
        report_data,
        launch_id: [0x5a; 16],
        counter: 7,
        tcb: [[0x22; 48], [0x33; 48]],
        partition_name: "payments".into(),
        partition_id: 2,
        cka_id: b"sig-1".to_vec(),
        attributes_digest: keyreport::attributes_digest(&attrs).unwrap(),
        never_extractable: true,
        always_sensitive: true,
        local: true,
    }
}

fn example_refvals() -> RefValues {
    RefValues {
        fmc_fwid: [0x11; 48],
        rt_fwids: [[0x22; 48], [0x33; 48]],
        pcrs: vec![(0, [0xa0; 48]), (2, [0xa2; 48])],
        svn_min: 3,
        vendor_key_hash: [0x44; 48],
        owner_key_hash: [0x55; 48],
        lifecycle: 3,
    }
}

/// The hex in the fenced block that follows `marker` in the doc.
fn block(marker: &str) -> Vec<u8> {
    let start = DOC
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the doc"));
    let rest = &DOC[start..];
    let open = rest.find("```").unwrap() + 3;
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap()..];
    let end = body.find("```").unwrap();
    let hex: String = body[..end]
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .flat_map(|l| l.split_whitespace())
        .collect();
    hex::decode(hex).unwrap()
}

fn pretty(b: &[u8]) -> String {
    b.chunks(32).map(hex::encode).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_documented_key_report_payload_is_the_encoders() {
    let r = example_report();
    let bytes = r.to_payload().unwrap();
    let doc = block("<!-- example: key report payload -->");
    assert_eq!(doc, bytes, "the encoder now writes:\n{}", pretty(&bytes));
    assert_eq!(KeyReport::from_payload(&doc).unwrap(), r);
}

#[test]
fn the_documented_attributes_digest_is_the_encoders() {
    let r = example_report();
    let doc = block("<!-- example: attribute set -->");
    let attrs = [
        (0x000, 3u64.to_be_bytes().to_vec()),
        (0x100, 3u64.to_be_bytes().to_vec()),
        (0x108, vec![1]),
    ];
    // The documented canonical encoding, and its digest in the report.
    let mut enc = Vec::new();
    ciborium::ser::into_writer(
        &ciborium::Value::Map(
            attrs
                .iter()
                .map(|(t, v)| {
                    (
                        ciborium::Value::Integer((*t).into()),
                        ciborium::Value::Bytes(v.clone()),
                    )
                })
                .collect(),
        ),
        &mut enc,
    )
    .unwrap();
    assert_eq!(doc, enc, "the encoder now writes:\n{}", pretty(&enc));
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, &doc);
    assert_eq!(d.as_ref(), r.attributes_digest);
}

#[test]
fn the_documented_reference_values_payload_is_the_encoders() {
    let r = example_refvals();
    let bytes = r.to_payload();
    let doc = block("<!-- example: reference values payload -->");
    assert_eq!(doc, bytes, "the encoder now writes:\n{}", pretty(&bytes));
    assert_eq!(RefValues::from_payload(&doc).unwrap(), r);
}

#[test]
fn the_documented_envelope_prefix_is_the_encoders() {
    // The ES384 message starts: tag 18, array of 4, the 22-byte protected header.
    let doc = block("<!-- example: envelope prefix -->");
    let env = ihsm_verify::envelope::seal::<ihsm_verify::envelope::EnvelopeRefusal>(
        b"",
        |_| Ok(vec![0; 96]),
        |_| Ok(vec![0; 4627]),
    )
    .unwrap();
    assert_eq!(&env[..doc.len()], doc.as_slice(), "{}", pretty(&env[..40]));
}
