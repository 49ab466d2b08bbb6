//! The verifier's parsers (`ihsm-verify`), which read what a device or a relying
//! party sends: key reports and reference values (the two-COSE_Sign1 envelope and
//! the CBOR payloads), PCR quotes and logs, certificates and their TCG extensions,
//! SPKI keys and EAR tokens.
//!
//! Input: `which u8 | rest`; `which` picks the parser. Nothing may panic; a payload
//! that decodes encodes to the same bytes (the decoders accept canonical bytes only).
#![no_main]

use ihsm_verify::chain::{self, Alg, TrustAnchor};
use ihsm_verify::keyreport::{self, KeyPolicy, KeyReport, KeyReportExpectation};
use ihsm_verify::refvals::{self, RefValues};
use ihsm_verify::{ear, envelope, quote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 10 {
        0 => {
            if let Ok(r) = KeyReport::from_payload(rest) {
                assert_eq!(r.to_payload().ok().as_deref(), Some(rest));
            }
        }
        1 => {
            if let Ok(r) = RefValues::from_payload(rest) {
                assert_eq!(r.to_payload(), rest);
            }
        }
        2 => {
            let _ = envelope::split(rest);
            let expect = KeyReportExpectation {
                report_data: [0; 128],
                tcb: [[0; 48]; 2],
                partition_name: String::new(),
                partition_id: None,
                app_id: None,
            };
            let _ = keyreport::verify_key_report(
                rest,
                &[4; 97],
                &[0; 2592],
                &expect,
                &KeyPolicy::sign_only_generated(),
            );
            let _ = RefValues::open(rest, &[4; 97], &[0; 2592]);
        }
        3 => {
            if let Ok(log) = quote::parse_pcr_log(rest) {
                let _ = quote::boot_measurements(&log);
                let _ = quote::check_replay(&log, &quote::replay(&log));
            }
        }
        4 => {
            let _ = quote::verify_quote(Alg::Ecc384, rest, &[0; 32], &[4; 97]);
            let _ = quote::verify_quote(Alg::MlDsa87, rest, &[0; 32], &[0; 2592]);
        }
        5 => {
            let _ = chain::parse_ueid(rest);
            let _ = chain::parse_tcb_info(rest);
            let _ = chain::parse_multi_tcb_info(rest);
        }
        6 => {
            if let Ok(a) = TrustAnchor::from_der(rest) {
                let certs = [rest.to_vec(), rest.to_vec(), rest.to_vec(), rest.to_vec()];
                let _ = chain::verify_chain(Alg::Ecc384, &certs, &a, 1_796_083_200);
                let _ = chain::verify_chain(Alg::MlDsa87, &certs, &a, 1_796_083_200);
            }
        }
        7 => {
            let _ = refvals::spki_public_key(rest);
        }
        8 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                let _ = ear::verify_ear(s, &[4; 97], 0);
            }
        }
        _ => {
            let _ = keyreport::attributes_digest(
                &rest
                    .chunks(9)
                    .map(|c| (u64::from(c.first().copied().unwrap_or(0)), c.to_vec()))
                    .collect::<Vec<_>>(),
            );
        }
    }
});
