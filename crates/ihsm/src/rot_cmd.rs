//! `ihsm rot ...`: boot the root of trust offline and read out what it proves.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use ihsm_rot::Alg;
use ihsm_rot::certs::{Layer, cert_pem, csr_pem};
use ihsm_rot::fuses::Fuses;
use ihsm_rot::runtime::Runtime;
use ihsm_rot::state::StateDir;

use crate::{CliResult, Failure, output};

#[derive(Debug, Subcommand)]
pub(crate) enum RotCommand {
    /// Boot ROM -> FMC -> RT and print each stage's result and measurements.
    Boot {
        /// Print the report as JSON.
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
    /// Print the 32 PCRs.
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
    /// Burn the minimum firmware SVN fuse up to N (anti-rollback; never down).
    BurnSvn {
        /// The new minimum SVN (0..=128).
        svn: u32,
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

pub(crate) fn boot(state: &StateDir) -> Result<Runtime, Failure> {
    let image = ihsm_rot::state::measure_running_image()?;
    state.boot(&image).map_err(|e| Failure::boot(e, state))
}

fn write(path: &Path, data: &[u8]) -> CliResult {
    std::fs::write(path, data).map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

pub(crate) fn run(state: &StateDir, cmd: RotCommand) -> CliResult {
    match cmd {
        RotCommand::Boot { json } => {
            let rt = boot(state)?;
            if json {
                output::print_json(rt.report())
            } else {
                output::print_report(rt.report(), state);
                Ok(())
            }
        }
        RotCommand::Certs { out } => {
            let rt = boot(state)?;
            std::fs::create_dir_all(&out)
                .map_err(|e| Failure(format!("cannot create {}: {e}", out.display())))?;
            for alg in [Alg::Ecc384, Alg::MlDsa87] {
                for layer in Layer::ALL {
                    let path = out.join(format!("{}-{}.pem", layer.file_stem(), alg.file_suffix()));
                    write(&path, cert_pem(rt.cert(layer, alg)).as_bytes())?;
                    println!("{}", path.display());
                }
            }
            Ok(())
        }
        RotCommand::Csr { alg, out } => {
            let rt = boot(state)?;
            write(
                &out,
                csr_pem(&rt.chains().get(alg.into()).idevid_csr).as_bytes(),
            )?;
            println!("{}", out.display());
            Ok(())
        }
        RotCommand::Quote { nonce, alg, out } => {
            let nonce: [u8; 32] = hex::decode(nonce.trim())
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| Failure("--nonce must be 32 bytes of hex (64 hex digits)".into()))?;
            let mut rt = boot(state)?;
            let resp = rt
                .quote_pcrs(alg.into(), &nonce)
                .map_err(|e| Failure(format!("quote failed: {e}")))?;
            write(&out, &resp)?;
            println!("{} ({} bytes)", out.display(), resp.len());
            Ok(())
        }
        RotCommand::Pcrs { json } => {
            let rt = boot(state)?;
            output::print_pcrs(&rt, json)
        }
        RotCommand::Log { json } => {
            let rt = boot(state)?;
            output::print_log(&rt, json)
        }
        RotCommand::BurnSvn { svn } => {
            let path = state.fuses();
            let mut fuses = Fuses::load(&path)?;
            let before = fuses.svn.svn();
            fuses.burn_svn(svn)?;
            fuses.store(&path, true)?;
            println!("firmware SVN fuse: {before} -> {svn}");
            Ok(())
        }
    }
}
