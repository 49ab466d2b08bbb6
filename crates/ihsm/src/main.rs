//! `ihsm`: the command-line tool of the ihsm host HSM.
//!
//! For now it works offline on a state directory (`--state DIR`, else
//! `$IHSM_STATE`, else `./ihsm-state`): it provisions the device, boots the root of
//! trust and reads out what it proves. Without a command it is the front door:
//! provision a development device on first run, boot it, print the boot report.
#![forbid(unsafe_code)]

mod manifest_cmd;
mod output;
mod rot_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ihsm_rot::RotError;
use ihsm_rot::state::StateDir;

/// A host-integrated hardware security module in software.
#[derive(Debug, Parser)]
#[command(name = "ihsm", version, about, long_about = None)]
struct Cli {
    /// State directory: fuses, manifest, security configuration, development keys.
    #[arg(
        long,
        global = true,
        env = "IHSM_STATE",
        default_value = "./ihsm-state"
    )]
    state: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision the device: write its fuses (once).
    Provision(ProvisionArgs),
    /// The root of trust: boot, certificates, CSRs, quotes, PCRs.
    #[command(subcommand)]
    Rot(rot_cmd::RotCommand),
    /// Firmware manifests: sign, show, make signing keys.
    #[command(subcommand)]
    Manifest(manifest_cmd::ManifestCommand),
}

#[derive(Debug, clap::Args)]
struct ProvisionArgs {
    /// A development device: make development vendor and owner keys in the state
    /// directory, fuse them, and sign a manifest for this build.
    #[arg(long, conflicts_with_all = ["vendor_keys", "owner_keys", "lifecycle", "svn"])]
    dev: bool,
    /// Destroy an existing device (its fuses, manifest and development keys) first.
    #[arg(long)]
    wipe: bool,
    /// Production: the vendor key set whose public keys to fuse.
    #[arg(long, value_name = "DIR", required_unless_present = "dev")]
    vendor_keys: Option<PathBuf>,
    /// Production: the owner key set whose public keys to fuse.
    #[arg(long, value_name = "DIR")]
    owner_keys: Option<PathBuf>,
    /// Production: the lifecycle state to fuse.
    #[arg(long, value_enum)]
    lifecycle: Option<LifecycleArg>,
    /// Production: the initial minimum firmware SVN.
    #[arg(long)]
    svn: Option<u32>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LifecycleArg {
    Manufacturing,
    Production,
}

/// A failure, printed as one line.
#[derive(Debug)]
struct Failure(String);

impl From<RotError> for Failure {
    fn from(e: RotError) -> Self {
        Self(e.to_string())
    }
}

impl Failure {
    fn boot(e: RotError, state: &StateDir) -> Self {
        let hint = match e {
            RotError::ImageDigestMismatch { .. } | RotError::ConfigDigestMismatch { .. }
                if state.is_dev() =>
            {
                " (development device: run `ihsm` without a command to re-sign the manifest for this build)"
            }
            _ => "",
        };
        Self(format!("boot refused: {e}{hint}"))
    }
}

type CliResult = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Nothing here should ever be dumped: the fuse secrets pass through this process.
    let _ = ihsm_crypto::memory::harden_process();
    let state = StateDir::new(&cli.state);
    let result = match cli.command {
        None => start(&state),
        Some(Command::Provision(args)) => provision(&state, &args),
        Some(Command::Rot(cmd)) => rot_cmd::run(&state, cmd),
        Some(Command::Manifest(cmd)) => manifest_cmd::run(&state, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("ihsm: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn provision(state: &StateDir, args: &ProvisionArgs) -> CliResult {
    if args.dev {
        let image = ihsm_rot::state::measure_running_image()?;
        state.provision_dev(args.wipe, &image)?;
        println!(
            "provisioned a development device in {}",
            state.root().display()
        );
        println!("  fuses      {}", state.fuses().display());
        println!(
            "  manifest   {} (signed for this build with development keys)",
            state.manifest().display()
        );
        println!("  config     {}", state.security_config().display());
        println!(
            "  dev keys   {} (DEVELOPMENT ONLY)",
            state.dev_keys().display()
        );
        return Ok(());
    }
    let vendor_dir = args
        .vendor_keys
        .as_ref()
        .ok_or_else(|| Failure("--vendor-keys DIR or --dev is required".into()))?;
    let vendor = ihsm_rot::keyset::KeySet::load(vendor_dir)?;
    let owner = args
        .owner_keys
        .as_deref()
        .map(ihsm_rot::keyset::KeySet::load)
        .transpose()?;
    let lifecycle = match args.lifecycle.unwrap_or(LifecycleArg::Production) {
        LifecycleArg::Manufacturing => ihsm_rot::fuses::Lifecycle::Manufacturing,
        LifecycleArg::Production => ihsm_rot::fuses::Lifecycle::Production,
    };
    state.provision(
        &vendor,
        owner.as_ref(),
        lifecycle,
        args.svn.unwrap_or(0),
        args.wipe,
    )?;
    println!(
        "provisioned a {lifecycle} device in {}",
        state.root().display()
    );
    println!(
        "  vendor key hash  {}",
        hex::encode(vendor.vendor_key_hash()?)
    );
    if let Some(o) = &owner {
        println!("  owner key hash   {}", hex::encode(o.owner_key_hash()?));
    }
    println!("next: sign a manifest for the firmware with `ihsm manifest sign`");
    Ok(())
}

/// The front door (`cargo run --release`): provision a development device on first
/// run, re-sign a development manifest when the build changed, boot, report.
fn start(state: &StateDir) -> CliResult {
    let image = ihsm_rot::state::measure_running_image()?;
    if !state.fuses().exists() {
        state.provision_dev(false, &image)?;
        println!(
            "first run: provisioned a development device in {}",
            state.root().display()
        );
    } else if state.is_dev() {
        let (_, digest) = state.load_config()?;
        let current = state.load_manifest().ok();
        let stale = current
            .as_ref()
            .is_none_or(|(_, m)| m.image().digest != image || m.config().digest != digest);
        if stale {
            let svn = current.as_ref().map_or(0, |(_, m)| m.header.svn);
            state.sign_dev_manifest(&image, svn)?;
            println!("development device: re-signed the manifest for this build (SVN {svn})");
        }
    }
    let rt = state.boot(&image).map_err(|e| Failure::boot(e, state))?;
    output::print_report(rt.report(), state);
    println!();
    println!(
        "The root of trust is up. Inspect it with `ihsm rot certs --out DIR`, `ihsm rot pcrs`,"
    );
    println!(
        "`ihsm rot quote --alg ecc384 --nonce HEX --out FILE`; `ihsm --help` lists everything."
    );
    Ok(())
}
