//! `ihsm verify ...`: appraise evidence with `ihsm-verify`, offline, trusting only
//! the files given (docs/attestation.md, "Verifying from the command line").

use std::path::{Path, PathBuf};

use clap::Subcommand;
use ihsm_verify::appraise::{self, DeviceEvidence, KeyReportEvidence, Policy, TrustInputs};
use ihsm_verify::chain::TrustAnchor;
use ihsm_verify::keyreport::KeyPolicy;

use crate::{Failure, output, rot_cmd};

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
        /// As JSON: an array of {check, verdict, reason}.
        #[arg(long)]
        json: bool,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))
}

/// The DER certificates of a PEM file (a DER file: itself).
fn certificates(path: &Path) -> Result<Vec<Vec<u8>>, Failure> {
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

fn one_certificate(path: &Path) -> Result<Vec<u8>, Failure> {
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
        json,
    } = command;
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| Failure("the clock is before 1970".into()))?;
    let policy = Policy {
        now: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        accept_development,
        key_policy: KeyPolicy::sign_only_generated(),
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
