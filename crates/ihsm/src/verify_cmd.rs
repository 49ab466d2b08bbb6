//! `ihsm verify ...`: appraise evidence with `ihsm-verify`, offline, trusting only
//! the files given (docs/attestation.md, "Verifying from the command line").

use std::path::{Path, PathBuf};

use clap::Subcommand;
use ihsm_verify::appraise::{self, DeviceEvidence, KeyReportEvidence, Policy, TrustInputs};
use ihsm_verify::chain::TrustAnchor;
use ihsm_verify::ear::EarSigner;
use ihsm_verify::keyreport::KeyPolicy;

use crate::{Failure, output, rot_cmd};

/// The key policies `--key-policy` names.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum KeyPolicyArg {
    SignOnly,
    UnwrapTarget,
}

// Parsed once per process: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum VerifyCommand {
    /// Appraise a device's evidence (as `ihsm rot evidence` writes it): one line per
    /// check; exit 0 only when every check affirms, 1 when one refuses, 2 on
    /// unusable input.
    Evidence {
        /// The trust anchors: a PEM file holding the ECC P-384 root (or pinned
        /// IDevID) certificate, then the ML-DSA-87 one.
        #[arg(long, value_name = "FILE")]
        anchor: PathBuf,
        /// The signed reference values (the vendor's envelope).
        #[arg(long, value_name = "FILE")]
        refvals: PathBuf,
        /// The vendor's ECC P-384 public key that signs the reference values
        /// (raw SEC1 uncompressed point, 97 bytes).
        #[arg(long, value_name = "FILE")]
        vendor_ecc: PathBuf,
        /// The vendor's ML-DSA-87 public key (raw, 2592 bytes).
        #[arg(long, value_name = "FILE")]
        vendor_mldsa: PathBuf,
        /// The chains' directory: idevid, ldevid, fmc-alias, rt-alias, each
        /// `-ecc384.pem` and `-mldsa87.pem`.
        #[arg(long, value_name = "DIR")]
        certs: PathBuf,
        /// The ECC P-384 quote; the ML-DSA-87 one is the file beside it whose name
        /// has `mldsa87` for `ecc384` (`quote-ecc384.bin` -> `quote-mldsa87.bin`).
        #[arg(long, value_name = "FILE")]
        quote: PathBuf,
        /// The PCR log (GET_PCR_LOG data).
        #[arg(long, value_name = "FILE")]
        log: PathBuf,
        /// The nonce the verifier chose, 32 bytes of hex.
        #[arg(long)]
        nonce: String,
        /// Accept a development (manufacturing-lifecycle) device.
        #[arg(long)]
        accept_development: bool,
        /// A key report (`ihsm key attest`) to check as well: signed by the
        /// partition identity keys of `--partition-certs`, its report_data the
        /// nonce (zero-padded to 128 bytes), its TCB the verified RT Alias's, and
        /// its key sign-only, generated in the HSM, never extractable.
        #[arg(long, value_name = "FILE", requires = "partition_certs")]
        key_report: Option<PathBuf>,
        /// The partition certificates' directory: `partition-ecc384.pem` and
        /// `partition-mldsa87.pem` (`ihsm partition cert NAME --alg ...`).
        #[arg(long, value_name = "DIR", requires = "key_report")]
        partition_certs: Option<PathBuf>,
        /// What the key report's key must be: `sign-only` (generated, signs,
        /// nothing else, never extractable) or `unwrap-target` (generated, unwraps,
        /// cannot sign, decrypt or derive, never extractable: a destination for
        /// `ihsm key release`).
        #[arg(long, value_enum, default_value = "sign-only", requires = "key_report")]
        key_policy: KeyPolicyArg,
        /// Write the attestation result here: an EAR (a JWT, ES384) signed with
        /// `--ear-key`, whatever the verdict (its status says it).
        #[arg(long, value_name = "FILE", requires = "ear_key")]
        ear_out: Option<PathBuf>,
        /// The verifier's ECC P-384 private key, PKCS#8 (PEM or DER), e.g. from
        /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384`.
        #[arg(long, value_name = "FILE", requires = "ear_out")]
        ear_key: Option<PathBuf>,
        /// How long the EAR is valid, in seconds (its `exp`; at most 600).
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        ear_lifetime: u32,
        /// As JSON: an array of {check, verdict, reason}.
        #[arg(long)]
        json: bool,
    },
    /// Check an audit export (`ihsm audit export`) from the file alone: every line
    /// is its entry's, the entries chain without gaps, each checkpoint verifies
    /// with the partition's identity key; names the first line edited, dropped or
    /// reordered. Exit 0 when it verifies, 1 when it does not, 2 on unusable input.
    Audit {
        /// The export (JSON lines).
        export: PathBuf,
        /// The partition's ECC P-384 identity certificate (`ihsm partition cert`).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check an attestation result (`verify evidence --ear-out`): its signature by
    /// the verifier's key, its profile and validity now; print its status and
    /// claims. Exit 0 only when it verifies and affirms, 1 when it does not, 2 on
    /// unusable input.
    Ear {
        /// The EAR (the JWT, as `--ear-out` wrote it).
        ear: PathBuf,
        /// The verifier's public key: PEM `PUBLIC KEY` (`openssl pkey -pubout`), its
        /// private key (PKCS#8), or the raw 97-byte SEC1 point.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Print the claims as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Longest EAR lifetime `--ear-lifetime` accepts: what a release accepts
/// (`ihsm_verify::release::MAX_EAR_LIFETIME_SECS`, docs/attestation.md §5).
const MAX_EAR_LIFETIME: i64 = ihsm_verify::release::MAX_EAR_LIFETIME_SECS;

/// PKCS#8 DER of a PEM `PRIVATE KEY` file, or of a DER file.
fn pkcs8(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    let bytes = zeroize::Zeroizing::new(read(path)?);
    if !bytes.starts_with(b"-----") {
        return Ok(bytes);
    }
    let p = pem::parse(bytes.as_slice())
        .map_err(|e| Failure(format!("{} is not PEM: {e}", path.display())))?;
    if p.tag() != "PRIVATE KEY" {
        return Err(Failure(format!(
            "{} holds a {}, not a PKCS#8 PRIVATE KEY",
            path.display(),
            p.tag()
        )));
    }
    Ok(zeroize::Zeroizing::new(p.into_contents()))
}

fn ear_signer(path: &Path) -> Result<EarSigner, Failure> {
    EarSigner::from_pkcs8(&pkcs8(path)?).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

/// The verifier's public key (SEC1 point) from a PEM public key, a PKCS#8
/// private key, or a raw point.
fn ear_public_key(path: &Path) -> Result<Vec<u8>, Failure> {
    let bytes = read(path)?;
    let bad = || {
        Failure(format!(
            "{} is not an ECC P-384 public key (PEM PUBLIC KEY, PKCS#8 PRIVATE KEY or a 97-byte point)",
            path.display()
        ))
    };
    if bytes.len() == 97 && bytes.first() == Some(&4) {
        return Ok(bytes);
    }
    if !bytes.starts_with(b"-----") {
        return Err(bad());
    }
    let p = pem::parse(&bytes).map_err(|_| bad())?;
    match p.tag() {
        // SubjectPublicKeyInfo of a P-384 key: 23 bytes of algorithm and
        // BIT STRING head, then the 97-byte point.
        "PUBLIC KEY" => {
            let der = p.into_contents();
            match der.len().checked_sub(97).and_then(|i| der.get(i..)) {
                Some(point) if der.len() == 120 && point.first() == Some(&4) => Ok(point.to_vec()),
                _ => Err(bad()),
            }
        }
        "PRIVATE KEY" => Ok(ear_signer(path)?.public_key()),
        _ => Err(bad()),
    }
}

fn now() -> Result<i64, Failure> {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| Failure("the clock is before 1970".into()))?;
    Ok(i64::try_from(t.as_secs()).unwrap_or(i64::MAX))
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))
}

/// The DER certificates of a PEM file (a DER file: itself).
pub(crate) fn certificates(path: &Path) -> Result<Vec<Vec<u8>>, Failure> {
    let bytes = read(path)?;
    if !bytes.starts_with(b"-----") {
        return Ok(vec![bytes]);
    }
    let blocks = pem::parse_many(&bytes)
        .map_err(|e| Failure(format!("{} is not PEM: {e}", path.display())))?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect())
}

pub(crate) fn one_certificate(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut v = certificates(path)?;
    if v.len() != 1 {
        return Err(Failure(format!(
            "{} holds {} certificates, not one",
            path.display(),
            v.len()
        )));
    }
    Ok(v.remove(0))
}

fn chain(dir: &Path, alg: &str) -> Result<[Vec<u8>; 4], Failure> {
    let mut certs = Vec::with_capacity(4);
    for layer in ["idevid", "ldevid", "fmc-alias", "rt-alias"] {
        certs.push(one_certificate(&dir.join(format!("{layer}-{alg}.pem")))?);
    }
    certs
        .try_into()
        .map_err(|_| Failure("a chain has four certificates".into()))
}

fn mldsa_quote_beside(ecc: &Path) -> Result<PathBuf, Failure> {
    let name = ecc
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.contains("ecc384"))
        .ok_or_else(|| {
            Failure(format!(
                "--quote {}: the ECC quote's file name must contain `ecc384` (the ML-DSA-87 quote is found beside it)",
                ecc.display()
            ))
        })?;
    Ok(ecc.with_file_name(name.replacen("ecc384", "mldsa87", 1)))
}

/// Runs the command: `Ok(true)` when every check affirms, `Ok(false)` when one
/// refuses, `Err` on unusable input.
pub(crate) fn run(command: VerifyCommand) -> Result<bool, Failure> {
    if let VerifyCommand::Ear { ear, key, json } = command {
        return check_ear(&ear, &key, json);
    }
    if let VerifyCommand::Audit { export, cert, json } = command {
        return check_audit(&export, &cert, json);
    }
    let VerifyCommand::Evidence {
        anchor,
        refvals,
        vendor_ecc,
        vendor_mldsa,
        certs,
        quote,
        log,
        nonce,
        accept_development,
        key_report,
        partition_certs,
        key_policy,
        ear_out,
        ear_key,
        ear_lifetime,
        json,
    } = command
    else {
        return Err(Failure(
            "unreachable: the EAR command returned above".into(),
        ));
    };
    if ear_lifetime == 0 || i64::from(ear_lifetime) > MAX_EAR_LIFETIME {
        return Err(Failure(format!(
            "--ear-lifetime {ear_lifetime}: from 1 to {MAX_EAR_LIFETIME} seconds (a release accepts no longer)"
        )));
    }
    // Loaded before the appraisal, so a bad key fails before any verdict.
    let signer = ear_key.as_deref().map(ear_signer).transpose()?;
    let nonce = rot_cmd::parse_nonce(&nonce)?;
    let anchors = certificates(&anchor)?;
    let [anchor_ecc, anchor_mldsa] = <[Vec<u8>; 2]>::try_from(anchors).map_err(|v| {
        Failure(format!(
            "--anchor {} holds {} certificates: it must hold two, the ECC P-384 anchor then the ML-DSA-87 one",
            anchor.display(),
            v.len()
        ))
    })?;
    let bad_anchor = |e: ihsm_verify::chain::ChainRefusal| Failure(format!("--anchor: {e}"));
    let trust = TrustInputs {
        anchor_ecc: TrustAnchor::from_der(&anchor_ecc).map_err(bad_anchor)?,
        anchor_mldsa: TrustAnchor::from_der(&anchor_mldsa).map_err(bad_anchor)?,
        vendor_ecc: read(&vendor_ecc)?,
        vendor_mldsa: read(&vendor_mldsa)?,
        nonce,
    };
    let evidence = DeviceEvidence {
        ecc_chain: chain(&certs, "ecc384")?,
        mldsa_chain: chain(&certs, "mldsa87")?,
        quote_mldsa: read(&mldsa_quote_beside(&quote)?)?,
        quote_ecc: read(&quote)?,
        pcr_log: read(&log)?,
        refvals: read(&refvals)?,
    };
    let now = now()?;
    let policy = Policy {
        now,
        accept_development,
        key_policy: match key_policy {
            KeyPolicyArg::SignOnly => KeyPolicy::sign_only_generated(),
            KeyPolicyArg::UnwrapTarget => KeyPolicy::unwrap_target(),
        },
    };
    let mut appraisal = appraise::appraise_device(&trust, &evidence, &policy);
    if let (Some(report), Some(dir)) = (key_report, partition_certs) {
        let mut report_data = [0u8; 128];
        report_data.iter_mut().zip(nonce).for_each(|(d, s)| *d = s);
        let ev = KeyReportEvidence {
            report: read(&report)?,
            ecc_partition_cert: one_certificate(&dir.join("partition-ecc384.pem"))?,
            mldsa_partition_cert: one_certificate(&dir.join("partition-mldsa87.pem"))?,
            report_data,
            partition_id: None,
            app_id: None,
        };
        appraise::appraise_key_report(&mut appraisal, &ev, &policy);
    }
    if let (Some(out), Some(signer)) = (&ear_out, &signer) {
        let claims = ihsm_verify::ear::claims(
            &appraisal,
            now,
            Some(now + i64::from(ear_lifetime)),
            "ihsm-verify/cli",
        );
        let token = ihsm_verify::ear::sign(signer, &claims)
            .map_err(|e| Failure(format!("cannot sign the EAR: {e}")))?;
        std::fs::write(out, token.as_bytes())
            .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
        // On stderr: stdout is the verdicts (and JSON with --json).
        eprintln!("{}: EAR, valid {ear_lifetime} s", out.display());
    }
    let rows: Vec<(&str, &str, String)> = appraisal
        .verdicts
        .iter()
        .map(|(check, v)| match v {
            Ok(()) => (check.name(), "affirmed", String::new()),
            Err(e) => (check.name(), "refused", e.to_string()),
        })
        .collect();
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(c, v, r)| serde_json::json!({"check": c, "verdict": v, "reason": r}))
            .collect();
        output::print_json(&serde_json::Value::Array(v))?;
    } else {
        for (c, v, r) in &rows {
            if r.is_empty() {
                println!("{c:<24} {v}");
            } else {
                println!("{c:<24} {v}: {r}");
            }
        }
    }
    Ok(appraisal.affirms())
}

/// `ihsm verify ear`.
fn check_ear(ear: &Path, key: &Path, json: bool) -> Result<bool, Failure> {
    let key = ear_public_key(key)?;
    let token = String::from_utf8(read(ear)?)
        .map_err(|_| Failure(format!("{} is not a JWT (not text)", ear.display())))?;
    let claims = match ihsm_verify::ear::verify_ear(token.trim(), &key, now()?) {
        Ok(c) => c,
        Err(e) => {
            if json {
                output::print_json(
                    &serde_json::json!({"verified": false, "reason": e.to_string()}),
                )?;
            } else {
                println!("refused: {e}");
            }
            return Ok(false);
        }
    };
    let sub = &claims["submods"][ihsm_verify::ear::SUBMOD];
    let status = sub["ear_status"].as_str().unwrap_or("none");
    let affirming = status == "affirming";
    if json {
        output::print_json(&serde_json::json!({"verified": true, "claims": claims}))?;
        return Ok(affirming);
    }
    println!("signature                verified");
    println!("status                   {status}");
    let field = |name: &str, v: &serde_json::Value| {
        if !v.is_null() {
            println!("{name:<24} {}", v.to_string().trim_matches('"'));
        }
    };
    field("issued", &claims["iat"]);
    field("expires", &claims["exp"]);
    field("ueid", &sub["ihsm_ueid"]);
    field("lifecycle", &sub["ihsm_lifecycle"]);
    field("partition", &sub["ihsm_partition"]);
    field("attested key", &sub["ihsm_attested_key"]);
    if let Some(checks) = sub["ihsm_checks"].as_object() {
        for (name, c) in checks {
            match c["reason"].as_str() {
                Some(r) => println!("{name:<24} {}: {r}", c["status"].as_str().unwrap_or("")),
                None => println!("{name:<24} {}", c["status"].as_str().unwrap_or("")),
            }
        }
    }
    Ok(affirming)
}

/// `ihsm verify audit`.
fn check_audit(export: &Path, cert: &Path, json: bool) -> Result<bool, Failure> {
    let key = ihsm_verify::audit::PartitionKey::from_certificate(&one_certificate(cert)?)
        .map_err(|e| Failure(format!("--cert {}: {e}", cert.display())))?;
    let text = read(export)?;
    match ihsm_verify::audit::verify_export(&text, &key) {
        Ok(r) => {
            if json {
                output::print_json(&serde_json::json!({
                    "verified": true, "partition": key.name, "pid": key.pid,
                    "entries": r.entries, "first": r.first, "last": r.last,
                    "checkpoints": r.checkpoints, "verified_through": r.verified_through,
                    "unsigned_tail": r.unsigned_tail,
                }))?;
            } else {
                println!(
                    "verified: partition {} (id {}), entries {}..={}, {} checkpoints, signed through entry {}",
                    key.name, key.pid, r.first, r.last, r.checkpoints, r.verified_through
                );
                if r.unsigned_tail > 0 {
                    println!(
                        "{} entries after the last checkpoint are chained but not yet signed",
                        r.unsigned_tail
                    );
                }
            }
            Ok(true)
        }
        Err(e) => {
            if json {
                output::print_json(
                    &serde_json::json!({"verified": false, "reason": e.to_string()}),
                )?;
            } else {
                println!("refused: {e}");
            }
            Ok(false)
        }
    }
}
