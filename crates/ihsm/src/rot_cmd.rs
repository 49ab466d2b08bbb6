//! `ihsm rot ...`: the root of trust. By default through the running daemon's
//! mailbox (Caliptra's commands on the admin socket); with `--offline`, by booting
//! the root of trust in this process from the state directory, for checking a
//! device or a new build without starting it.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use ihsm_rot::Alg;
use ihsm_rot::certs::{Layer, cert_pem, csr_pem};
use ihsm_rot::fuses::Fuses;
use ihsm_rot::mailbox::{self, cmd};
use ihsm_rot::pcr::PcrLogEntry;
use ihsm_rot::quote::Quote;
use ihsm_rot::runtime::Runtime;
use ihsm_rot::state::StateDir;

use crate::{CliResult, Failure, admin, firmware_image, output};

#[derive(Debug, clap::Args)]
pub(crate) struct Offline {
    /// Boot the root of trust in this process instead of asking the daemon.
    #[arg(long)]
    offline: bool,
    /// With --offline: the firmware image to measure (default: the `ihsmd` beside
    /// this `ihsm`; also `$IHSM_IMAGE`).
    #[arg(long, value_name = "FILE", requires = "offline")]
    image: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RotCommand {
    /// The boot report: each stage's result and measurements.
    Boot {
        /// As JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        offline: Offline,
    },
    /// Write both certificate chains (PEM): idevid, ldevid, fmc-alias, rt-alias, each
    /// in ecc384 and mldsa87.
    Certs {
        /// Directory to write into (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        offline: Offline,
    },
    /// Write the IDevID certificate signing request (PEM) for a manufacturer CA.
    Csr {
        /// Which key.
        #[arg(long, value_enum)]
        alg: AlgArg,
        /// File to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        offline: Offline,
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
        #[command(flatten)]
        offline: Offline,
    },
    /// Print the 32 PCRs (online: read from a fresh quote).
    Pcrs {
        /// As JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        offline: Offline,
    },
    /// Print the PCR log.
    Log {
        /// As JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        offline: Offline,
    },
    /// Burn the minimum firmware SVN fuse up to N (anti-rollback; never down).
    /// Offline: stop the daemon first.
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

/// Where the root of trust's answers come from.
enum Rot {
    Daemon(Box<ihsm_client::Client>),
    Local(Box<Runtime>),
}

impl Rot {
    fn open(state: &StateDir, o: &Offline) -> Result<Self, Failure> {
        if o.offline {
            let image = firmware_image(o.image.as_deref())?;
            let rt = state.boot(&image).map_err(|e| Failure::boot(e, state))?;
            Ok(Self::Local(Box::new(rt)))
        } else {
            Ok(Self::Daemon(Box::new(admin(state)?)))
        }
    }

    /// A mailbox command's raw response.
    fn mailbox(&mut self, command: u32, args: &[u8]) -> Result<Vec<u8>, Failure> {
        let payload = mailbox::request(command, args);
        match self {
            Self::Daemon(c) => Ok(c.mailbox(command, payload)?),
            Self::Local(rt) => rt.mailbox(command, &payload).map_err(|e| {
                Failure(format!(
                    "mailbox command 0x{command:08x} failed: {} (0x{:08x})",
                    e.name(),
                    e.0
                ))
            }),
        }
    }

    /// A variable-size mailbox response's data.
    fn var(&mut self, command: u32) -> Result<Vec<u8>, Failure> {
        let resp = self.mailbox(command, &[])?;
        mailbox::var_data(&resp)
            .map(<[u8]>::to_vec)
            .map_err(|e| Failure(format!("malformed mailbox response: {}", e.name())))
    }
}

fn cert_command(layer: Layer, alg: Alg) -> u32 {
    match (layer, alg) {
        (Layer::IdevId, Alg::Ecc384) => cmd::GET_IDEV_ECC384_CERT,
        (Layer::IdevId, Alg::MlDsa87) => cmd::GET_IDEV_MLDSA87_CERT,
        (Layer::LdevId, Alg::Ecc384) => cmd::GET_LDEV_ECC384_CERT,
        (Layer::LdevId, Alg::MlDsa87) => cmd::GET_LDEV_MLDSA87_CERT,
        (Layer::FmcAlias, Alg::Ecc384) => cmd::GET_FMC_ALIAS_ECC384_CERT,
        (Layer::FmcAlias, Alg::MlDsa87) => cmd::GET_FMC_ALIAS_MLDSA87_CERT,
        (Layer::RtAlias, Alg::Ecc384) => cmd::GET_RT_ALIAS_ECC384_CERT,
        (Layer::RtAlias, Alg::MlDsa87) => cmd::GET_RT_ALIAS_MLDSA87_CERT,
    }
}

fn write(path: &Path, data: &[u8]) -> CliResult {
    std::fs::write(path, data).map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

fn quote(rot: &mut Rot, alg: Alg, nonce: &[u8; 32]) -> Result<Vec<u8>, Failure> {
    let command = match alg {
        Alg::Ecc384 => cmd::QUOTE_PCRS_ECC384,
        Alg::MlDsa87 => cmd::QUOTE_PCRS_MLDSA87,
    };
    rot.mailbox(command, nonce)
}

pub(crate) fn run(state: &StateDir, command: RotCommand) -> CliResult {
    match command {
        RotCommand::Boot { json, offline } => {
            let (report, development) = match Rot::open(state, &offline)? {
                Rot::Local(rt) => (
                    serde_json::to_value(rt.report())
                        .map_err(|e| Failure(format!("cannot encode JSON: {e}")))?,
                    state.is_dev(),
                ),
                Rot::Daemon(mut c) => {
                    let st = c.status()?;
                    let v: serde_json::Value = serde_json::from_str(&st.boot_report)
                        .map_err(|e| Failure(format!("malformed boot report: {e}")))?;
                    if v.get("stages").is_none() {
                        return Err(Failure(format!(
                            "the daemon holds no boot report: device {:?}",
                            st.state
                        )));
                    }
                    (v, st.development)
                }
            };
            if json {
                output::print_json(&report)
            } else {
                output::print_report(&report, state, development);
                Ok(())
            }
        }
        RotCommand::Certs { out, offline } => {
            let mut rot = Rot::open(state, &offline)?;
            std::fs::create_dir_all(&out)
                .map_err(|e| Failure(format!("cannot create {}: {e}", out.display())))?;
            for alg in [Alg::Ecc384, Alg::MlDsa87] {
                for layer in Layer::ALL {
                    let der = rot.var(cert_command(layer, alg))?;
                    let path = out.join(format!("{}-{}.pem", layer.file_stem(), alg.file_suffix()));
                    write(&path, cert_pem(&der).as_bytes())?;
                    println!("{}", path.display());
                }
            }
            Ok(())
        }
        RotCommand::Csr { alg, out, offline } => {
            let mut rot = Rot::open(state, &offline)?;
            let command = match Alg::from(alg) {
                Alg::Ecc384 => cmd::GET_IDEV_ECC384_CSR,
                Alg::MlDsa87 => cmd::GET_IDEV_MLDSA87_CSR,
            };
            write(&out, csr_pem(&rot.var(command)?).as_bytes())?;
            println!("{}", out.display());
            Ok(())
        }
        RotCommand::Quote {
            nonce,
            alg,
            out,
            offline,
        } => {
            let nonce: [u8; 32] = hex::decode(nonce.trim())
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| Failure("--nonce must be 32 bytes of hex (64 hex digits)".into()))?;
            let mut rot = Rot::open(state, &offline)?;
            let resp = quote(&mut rot, alg.into(), &nonce)?;
            write(&out, &resp)?;
            println!("{} ({} bytes)", out.display(), resp.len());
            Ok(())
        }
        RotCommand::Pcrs { json, offline } => {
            let mut rot = Rot::open(state, &offline)?;
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
        RotCommand::Log { json, offline } => {
            let mut rot = Rot::open(state, &offline)?;
            let data = rot.var(cmd::GET_PCR_LOG)?;
            let log = PcrLogEntry::decode_all(&data).map_err(Failure)?;
            output::print_log(&log, json)
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
