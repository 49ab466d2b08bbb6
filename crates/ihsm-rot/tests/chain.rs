//! The certificate chains, checked by tools we did not write: the ECC P-384 chain
//! by the `openssl` command line, the ML-DSA-87 chain by RustCrypto's `ml-dsa`, the
//! TCG DICE extensions and profile fields by `x509-parser`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{CONFIG, Device, IMAGE};
use ihsm_rot::Alg;
use ihsm_rot::certs::{self, Layer, cert_pem, csr_pem};
use ihsm_rot::runtime::Runtime;
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::*;

fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is required (apt-get install openssl)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn write_chain(rt: &Runtime, alg: Alg, dir: &Path) {
    for layer in Layer::ALL {
        let name = format!("{}-{}.pem", layer.file_stem(), alg.file_suffix());
        std::fs::write(dir.join(name), cert_pem(rt.cert(layer, alg))).unwrap();
    }
}

#[test]
fn ecc_chain_verifies_with_openssl() {
    let d = Device::new();
    let rt = d.boot();
    let dir = tempfile::tempdir().unwrap();
    write_chain(&rt, Alg::Ecc384, dir.path());
    let untrusted = format!(
        "{}{}",
        cert_pem(rt.cert(Layer::LdevId, Alg::Ecc384)),
        cert_pem(rt.cert(Layer::FmcAlias, Alg::Ecc384))
    );
    std::fs::write(dir.path().join("intermediates.pem"), untrusted).unwrap();
    for strict in [false, true] {
        let mut args = vec![
            "verify",
            "-no-CAfile",
            "-no-CApath",
            "-CAfile",
            "idevid-ecc384.pem",
            "-untrusted",
            "intermediates.pem",
        ];
        if strict {
            args.push("-x509_strict");
        }
        args.push("rt-alias-ecc384.pem");
        let (ok, out) = openssl(&args, dir.path());
        assert!(
            ok && out.contains("rt-alias-ecc384.pem: OK"),
            "strict={strict}: {out}"
        );
    }
    // Swapping in another device's LDevID breaks the chain.
    let other = Device::new().boot();
    std::fs::write(
        dir.path().join("intermediates.pem"),
        cert_pem(other.cert(Layer::LdevId, Alg::Ecc384))
            + &cert_pem(rt.cert(Layer::FmcAlias, Alg::Ecc384)),
    )
    .unwrap();
    let (ok, _) = openssl(
        &[
            "verify",
            "-no-CAfile",
            "-no-CApath",
            "-CAfile",
            "idevid-ecc384.pem",
            "-untrusted",
            "intermediates.pem",
            "rt-alias-ecc384.pem",
        ],
        dir.path(),
    );
    assert!(!ok, "a foreign LDevID must not verify");
}

#[test]
fn openssl_shows_the_tcg_extensions() {
    let rt = Device::new().boot();
    let dir = tempfile::tempdir().unwrap();
    write_chain(&rt, Alg::Ecc384, dir.path());
    let (ok, fmc) = openssl(
        &["x509", "-in", "fmc-alias-ecc384.pem", "-noout", "-text"],
        dir.path(),
    );
    assert!(ok, "{fmc}");
    assert!(fmc.contains("2.23.133.5.4.4"), "UEID missing: {fmc}");
    assert!(
        fmc.contains("2.23.133.5.4.5"),
        "MultiTcbInfo missing: {fmc}"
    );
    assert!(fmc.contains("CA:TRUE, pathlen:5"), "{fmc}");
    assert!(fmc.contains("Certificate Sign"), "{fmc}");
    let (_, rt_text) = openssl(
        &["x509", "-in", "rt-alias-ecc384.pem", "-noout", "-text"],
        dir.path(),
    );
    assert!(
        rt_text.contains("2.23.133.5.4.1"),
        "TcbInfo missing: {rt_text}"
    );
    assert!(
        rt_text.contains("Digital Signature, Certificate Sign"),
        "{rt_text}"
    );
    assert!(
        rt_text.contains("Subject: CN = ihsm Ecc384 Rt Alias, serialNumber = "),
        "{rt_text}"
    );
    assert!(
        rt_text.contains("Issuer: CN = ihsm Ecc384 FMC Alias"),
        "{rt_text}"
    );
    assert!(rt_text.contains("NIST CURVE: P-384"), "{rt_text}");
}

#[test]
fn idevid_csr_verifies_with_openssl() {
    let rt = Device::new().boot();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("csr.pem"),
        csr_pem(&rt.chains().ecc.idevid_csr),
    )
    .unwrap();
    let (ok, out) = openssl(
        &["req", "-in", "csr.pem", "-verify", "-noout", "-text"],
        dir.path(),
    );
    assert!(ok, "{out}");
    assert!(out.to_lowercase().contains("verify ok"), "{out}");
    assert!(out.contains("CN = ihsm Ecc384 IDevID"), "{out}");
    assert!(out.contains("Requested Extensions"), "{out}");
    assert!(out.contains("2.23.133.5.4.4"), "{out}");
}

fn mldsa_verify(issuer_spki_bits: &[u8], tbs: &[u8], sig: &[u8]) -> bool {
    use ml_dsa::signature::Verifier;
    let vk = ml_dsa::VerifyingKey::<ml_dsa::MlDsa87>::decode(issuer_spki_bits.try_into().unwrap());
    let Some(sig) = ml_dsa::Signature::<ml_dsa::MlDsa87>::decode(sig.try_into().unwrap()) else {
        return false;
    };
    vk.verify(tbs, &sig).is_ok()
}

#[test]
fn mldsa_chain_verifies_with_rustcrypto_ml_dsa() {
    let rt = Device::new().boot();
    let ders: Vec<&[u8]> = Layer::ALL
        .iter()
        .map(|l| rt.cert(*l, Alg::MlDsa87))
        .collect();
    let certs: Vec<X509Certificate<'_>> = ders
        .iter()
        .map(|d| X509Certificate::from_der(d).unwrap().1)
        .collect();
    let ml_dsa_87 = Oid::from(&[2, 16, 840, 1, 101, 3, 4, 3, 19]).unwrap();
    for (i, c) in certs.iter().enumerate() {
        assert_eq!(c.signature_algorithm.algorithm, ml_dsa_87);
        assert!(
            c.signature_algorithm.parameters.is_none(),
            "parameters must be absent"
        );
        assert_eq!(c.public_key().algorithm.algorithm, ml_dsa_87);
        assert_eq!(c.public_key().subject_public_key.data.len(), 2592);
        assert_eq!(c.signature_value.data.len(), 4627);
        let issuer = &certs[i.saturating_sub(1)];
        assert_eq!(c.issuer(), issuer.subject());
        assert!(
            mldsa_verify(
                &issuer.public_key().subject_public_key.data,
                c.tbs_certificate.as_ref(),
                &c.signature_value.data
            ),
            "certificate {i} does not verify under its issuer"
        );
    }
    // A flipped TBS byte does not verify.
    let c = &certs[3];
    let mut tbs = c.tbs_certificate.as_ref().to_vec();
    tbs[40] ^= 1;
    assert!(!mldsa_verify(
        &certs[2].public_key().subject_public_key.data,
        &tbs,
        &c.signature_value.data
    ));
    // The IDevID CSR, too.
    let csr_der = &rt.chains().mldsa.idevid_csr;
    let (_, csr) = X509CertificationRequest::from_der(csr_der).unwrap();
    assert!(mldsa_verify(
        &csr.certification_request_info
            .subject_pki
            .subject_public_key
            .data,
        csr.certification_request_info.raw,
        &csr.signature_value.data,
    ));
}

fn ext<'a>(c: &'a X509Certificate<'_>, oid: &[u64]) -> Option<&'a X509Extension<'a>> {
    let oid = Oid::from(oid).unwrap();
    c.extensions().iter().find(|e| e.oid == oid)
}

#[test]
fn profile_fields_and_tcg_extensions() {
    let d = Device::new();
    let m = d.manifest(&d.body(3, &IMAGE));
    let rt = d.boot_with(&m, &IMAGE).unwrap();
    let manifest_digest = rt.manifest().digest;
    for alg in [Alg::Ecc384, Alg::MlDsa87] {
        let certs: Vec<X509Certificate<'_>> = Layer::ALL
            .iter()
            .map(|l| X509Certificate::from_der(rt.cert(*l, alg)).unwrap().1)
            .collect();
        for (i, (layer, c)) in Layer::ALL.iter().zip(&certs).enumerate() {
            let raw = c.public_key().subject_public_key.data.as_ref();
            // Serial, SKI and subject serialNumber from SHA-256 of the raw key.
            assert_eq!(c.raw_serial(), &certs::cert_serial(raw)[..], "{layer:?}");
            let ski = ext(c, &[2, 5, 29, 14]).unwrap();
            assert!(!ski.critical);
            match ski.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => {
                    assert_eq!(k.0, &certs::key_id(raw)[..])
                }
                other => panic!("{other:?}"),
            }
            let sn = c
                .subject()
                .iter_by_oid(&Oid::from(&[2, 5, 4, 5]).unwrap())
                .next()
                .unwrap();
            assert_eq!(sn.as_str().unwrap(), certs::subject_serial(raw));
            // Critical basicConstraints with Caliptra's path lengths; critical keyUsage.
            let bc = c.basic_constraints().unwrap().unwrap();
            assert!(bc.critical && bc.value.ca);
            assert_eq!(
                bc.value.path_len_constraint,
                Some(7 - u32::try_from(i).unwrap())
            );
            let ku = c.key_usage().unwrap().unwrap();
            assert!(ku.critical && ku.value.key_cert_sign());
            assert_eq!(ku.value.digital_signature(), *layer == Layer::RtAlias);
            // AKI = issuer's SKI (not on the self-signed IDevID).
            if i > 0 {
                let issuer_raw = certs[i - 1].public_key().subject_public_key.data.as_ref();
                match ext(c, &[2, 5, 29, 35]).unwrap().parsed_extension() {
                    ParsedExtension::AuthorityKeyIdentifier(a) => {
                        assert_eq!(
                            a.key_identifier.as_ref().unwrap().0,
                            &certs::key_id(issuer_raw)[..]
                        );
                    }
                    other => panic!("{other:?}"),
                }
            }
            // UEID on every certificate: SEQUENCE { OCTET STRING ueid }.
            let ueid = ext(c, &[2, 23, 133, 5, 4, 4]).unwrap();
            assert!(!ueid.critical);
            assert_eq!(&ueid.value[4..], &d.ueid.0);
            // TCG DICE key purposes.
            let eku = c.extended_key_usage().unwrap().unwrap();
            let purposes: Vec<String> = eku.value.other.iter().map(|o| o.to_id_string()).collect();
            let expected: &[&str] = match layer {
                Layer::IdevId => &["2.23.133.5.4.100.6", "2.23.133.5.4.100.12"],
                Layer::LdevId => &["2.23.133.5.4.100.7", "2.23.133.5.4.100.12"],
                Layer::FmcAlias => &["2.23.133.5.4.100.12", "2.23.133.5.4.100.9"],
                Layer::RtAlias => &["2.23.133.5.4.100.12"],
            };
            assert_eq!(purposes, expected);
        }
        // MultiTcbInfo on the FMC Alias: owner, vendor, FMC (SVN 3, FWID = image).
        let multi = ext(&certs[2], &[2, 23, 133, 5, 4, 5]).unwrap();
        let infos =
            <Vec<ihsm_rot::tcg::DiceTcbInfo> as der::Decode>::from_der(multi.value).unwrap();
        let types: Vec<&[u8]> = infos
            .iter()
            .map(|t| t.tcb_type.as_ref().unwrap().as_bytes())
            .collect();
        assert_eq!(
            types,
            [
                &b"IHSM_FUSE_OWNER_INFO"[..],
                b"IHSM_FUSE_VENDOR_INFO",
                b"IHSM_FMC_FIRMWARE_INFO"
            ]
        );
        assert_eq!(infos[2].svn, Some(3));
        assert_eq!(
            infos[2].fwids.as_ref().unwrap()[0].digest.as_bytes(),
            &IMAGE
        );
        assert!(ext(&certs[3], &[2, 23, 133, 5, 4, 5]).is_none());
        // TcbInfo on the RT Alias: FWIDs = configuration and manifest.
        let tcb = ext(&certs[3], &[2, 23, 133, 5, 4, 1]).unwrap();
        let info = <ihsm_rot::tcg::DiceTcbInfo as der::Decode>::from_der(tcb.value).unwrap();
        let fwids = info.fwids.unwrap();
        assert_eq!(fwids[0].digest.as_bytes(), &CONFIG);
        assert_eq!(fwids[1].digest.as_bytes(), &manifest_digest);
        assert_eq!(fwids[0].hash_alg, ihsm_rot::tcg::OID_SHA384);
    }
}
