//! `ihsm rot ...`: the root of trust, through the running daemon's mailbox
//! (Caliptra's commands on the admin socket). The root of trust runs in `ihsmd`
//! and nowhere else: a device or a new build is checked without serving with
//! `ihsmd --check [--image FILE]`, and the SVN fuse burnt with
//! `ihsmd --burn-svn N` on a stopped device.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use ihsm_client::Client;
use ihsm_rot::Alg;
use ihsm_rot::certs::{Layer, cert_pem, csr_pem};
use ihsm_rot::mailbox::{self, cmd};
use ihsm_rot::pcr::PcrLogEntry;
use ihsm_rot::quote::Quote;
use ihsm_rot::state::StateDir;

use crate::{CliResult, Failure, admin, output};

#[derive(Debug, Subcommand)]
pub(crate) enum RotCommand {
    /// The boot report: each stage's result and measurements.
    Boot {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write both certificate chains (PEM): idevid, ldevid, fmc-alias, rt-alias, each
    /// in ecc384 and mldsa87.
    Certs {
        /// Directory to write into (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write the IDevID certificate signing request (PEM) for a manufacturer CA.
    Csr {
        /// Which key.
        #[arg(long, value_enum)]
        alg: AlgArg,
        /// File to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Quote all PCRs with a nonce; writes the raw QUOTE_PCRS mailbox response.
    Quote {
        /// 32-byte nonce, hex (64 digits).
        #[arg(long)]
        nonce: String,
        /// Which FMC Alias key signs.
        #[arg(long, value_enum)]
        alg: AlgArg,
        /// File to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Collect everything a verifier needs in one call: both DICE chains (PEM, as
    /// `rot certs` names them), the quote in both algorithms for the nonce
    /// (`quote-ecc384.bin`, `quote-mldsa87.bin`) and the PCR log (`pcr-log.bin`,
    /// the GET_PCR_LOG data). `ihsm verify evidence` reads this directory.
    Evidence {
        /// The verifier's 32-byte nonce, hex (64 digits).
        #[arg(long)]
        nonce: String,
        /// Directory to write into (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the 32 PCRs (online: read from a fresh quote).
    Pcrs {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the PCR log.
    Log {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum AlgArg {
    /// ECC P-384.
    Ecc384,
    /// ML-DSA-87.
    Mldsa87,
}

impl From<AlgArg> for Alg {
    fn from(a: AlgArg) -> Self {
        match a {
            AlgArg::Ecc384 => Alg::Ecc384,
            AlgArg::Mldsa87 => Alg::MlDsa87,
        }
    }
}

/// A mailbox command's raw response.
fn mailbox(c: &mut Client, command: u32, args: &[u8]) -> Result<Vec<u8>, Failure> {
    Ok(c.mailbox(command, mailbox::request(command, args))?)
}

/// A variable-size mailbox response's data.
fn var(c: &mut Client, command: u32) -> Result<Vec<u8>, Failure> {
    let resp = mailbox(c, command, &[])?;
    mailbox::var_data(&resp)
        .map(<[u8]>::to_vec)
        .map_err(|e| Failure(format!("malformed mailbox response: {}", e.name())))
}

fn write(path: &Path, data: &[u8]) -> CliResult {
    std::fs::write(path, data).map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

fn quote(c: &mut Client, alg: Alg, nonce: &[u8; 32]) -> Result<Vec<u8>, Failure> {
    let command = match alg {
        Alg::Ecc384 => cmd::QUOTE_PCRS_ECC384,
        Alg::MlDsa87 => cmd::QUOTE_PCRS_MLDSA87,
    };
    mailbox(c, command, nonce)
}

/// A quote nonce: 32 bytes of hex (docs/quote.md).
pub(crate) fn parse_nonce(hex_nonce: &str) -> Result<[u8; 32], Failure> {
    hex::decode(hex_nonce.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Failure("--nonce must be 32 bytes of hex (64 hex digits)".into()))
}

/// Both chains as PEM files in `out`, each path printed.
fn write_certs(rot: &mut Client, out: &Path) -> CliResult {
    std::fs::create_dir_all(out)
        .map_err(|e| Failure(format!("cannot create {}: {e}", out.display())))?;
    for alg in [Alg::Ecc384, Alg::MlDsa87] {
        for layer in Layer::ALL {
            let der = var(rot, mailbox::cert_command(layer, alg))?;
            let path = out.join(format!("{}-{}.pem", layer.file_stem(), alg.file_suffix()));
            write(&path, cert_pem(&der).as_bytes())?;
            println!("{}", path.display());
        }
    }
    Ok(())
}

pub(crate) fn run(state: &StateDir, command: RotCommand) -> CliResult {
    match command {
        RotCommand::Boot { json } => {
            let st = admin(state)?.status()?;
            let report: serde_json::Value = serde_json::from_str(&st.boot_report)
                .map_err(|e| Failure(format!("malformed boot report: {e}")))?;
            if report.get("stages").is_none() {
                return Err(Failure(format!(
                    "the daemon holds no boot report: device {:?}",
                    st.state
                )));
            }
            let development = st.development;
            if json {
                output::print_json(&report)
            } else {
                output::print_report(&report, state, development);
                Ok(())
            }
        }
        RotCommand::Certs { out } => {
            let mut rot = admin(state)?;
            write_certs(&mut rot, &out)
        }
        RotCommand::Evidence { nonce, out } => {
            let nonce = parse_nonce(&nonce)?;
            let mut rot = admin(state)?;
            write_certs(&mut rot, &out)?;
            for alg in [Alg::Ecc384, Alg::MlDsa87] {
                let resp = quote(&mut rot, alg, &nonce)?;
                let path = out.join(format!("quote-{}.bin", alg.file_suffix()));
                write(&path, &resp)?;
                println!("{} ({} bytes)", path.display(), resp.len());
            }
            let log = var(&mut rot, cmd::GET_PCR_LOG)?;
            let path = out.join("pcr-log.bin");
            write(&path, &log)?;
            println!("{} ({} bytes)", path.display(), log.len());
            Ok(())
        }
        RotCommand::Csr { alg, out } => {
            let mut rot = admin(state)?;
            let command = match Alg::from(alg) {
                Alg::Ecc384 => cmd::GET_IDEV_ECC384_CSR,
                Alg::MlDsa87 => cmd::GET_IDEV_MLDSA87_CSR,
            };
            write(&out, csr_pem(&var(&mut rot, command)?).as_bytes())?;
            println!("{}", out.display());
            Ok(())
        }
        RotCommand::Quote { nonce, alg, out } => {
            let nonce = parse_nonce(&nonce)?;
            let mut rot = admin(state)?;
            let resp = quote(&mut rot, alg.into(), &nonce)?;
            write(&out, &resp)?;
            println!("{} ({} bytes)", out.display(), resp.len());
            Ok(())
        }
        RotCommand::Pcrs { json } => {
            let mut rot = admin(state)?;
            let nonce: [u8; 32] =
                ihsm_crypto::rand::array().map_err(|e| Failure(format!("random nonce: {e}")))?;
            let resp = quote(&mut rot, Alg::Ecc384, &nonce)?;
            let q = Quote::parse(&resp, Alg::Ecc384)
                .map_err(|e| Failure(format!("malformed quote: {}", e.name())))?;
            if q.nonce != nonce {
                return Err(Failure("the quote does not answer our nonce".into()));
            }
            output::print_pcrs(&q.pcrs, &q.reset_counters, json)
        }
        RotCommand::Log { json } => {
            let mut rot = admin(state)?;
            let data = var(&mut rot, cmd::GET_PCR_LOG)?;
            let log = PcrLogEntry::decode_all(&data).map_err(Failure)?;
            output::print_log(&log, json)
        }
    }
}
