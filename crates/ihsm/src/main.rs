//! `ihsm`: the command-line tool of the ihsm host HSM.
//!
//! It talks to the running daemon (`ihsmd`) through its admin socket, found from
//! `--state DIR` (else `$IHSM_STATE`, else `./ihsm-state`), and to a partition's
//! socket for key commands. Provisioning and manifests work on the state
//! directory without a daemon. The root of trust runs in `ihsmd` and nowhere
//! else: this tool uses `ihsm_rot` only for the formats of those files and of
//! the mailbox (see the crate's documentation), never to boot it, derive a
//! device key or sign with one.
#![forbid(unsafe_code)]

mod audit_cmd;
mod fleet_cmd;
mod key_cmd;
mod manifest_cmd;
mod output;
mod partition_cmd;
mod rot_cmd;
mod status_cmd;
mod verify_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ihsm_client::{Client, ClientError};
use ihsm_rot::RotError;
use ihsm_rot::state::StateDir;

/// A host-integrated hardware security module in software.
#[derive(Debug, Parser)]
#[command(name = "ihsm", version, about, long_about = None)]
struct Cli {
    /// State directory of the HSM: its admin socket, partition sockets, fuses,
    /// manifest and security configuration.
    #[arg(
        long,
        global = true,
        env = "IHSM_STATE",
        default_value = "./ihsm-state"
    )]
    state: PathBuf,

    /// The fuse file, when the HSM keeps it outside the state directory (as
    /// `ihsmd --fuses`).
    #[arg(long, global = true, env = "IHSM_FUSES", value_name = "FILE")]
    fuses: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The device: lifecycle, boot, PCRs, tamper state, partitions, uptime.
    Status {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Partitions (tenants): create, list, show, delete.
    #[command(subcommand)]
    Partition(partition_cmd::PartitionCommand),
    /// Keys in a partition (through its socket, logged in with its user PIN).
    #[command(subcommand)]
    Key(key_cmd::KeyCommand),
    /// The root of trust, through the running daemon: boot report, certificates,
    /// CSRs, quotes, PCRs. (A stopped device: `ihsmd --check`.)
    #[command(subcommand)]
    Rot(rot_cmd::RotCommand),
    /// Fire a tamper sensor: the HSM zeroizes every secret and latches TAMPERED.
    Tamper {
        /// Which sensor.
        #[arg(long, value_parser = ["lid", "thermal", "voltage"])]
        sensor: String,
    },
    /// Provision the device: write its fuses (once). Offline.
    Provision(ProvisionArgs),
    /// Firmware manifests: sign, show, make signing keys. Offline.
    #[command(subcommand)]
    Manifest(manifest_cmd::ManifestCommand),
    /// Appraise evidence with the verifier (`ihsm-verify`). Offline; exit 0 only
    /// when every check affirms, 1 when one refuses, 2 on unusable input.
    #[command(subcommand)]
    Verify(verify_cmd::VerifyCommand),
    /// The audit logs, through the admin socket: show, or export as JSON lines.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// The fleet: its hosts as this one sees them, and the trust bundle its hosts
    /// pin (docs/fleet.md).
    #[command(subcommand)]
    Fleet(fleet_cmd::FleetCommand),
}

#[derive(Debug, clap::Args)]
struct ProvisionArgs {
    /// A development device: make development vendor and owner keys in the state
    /// directory, fuse them, and sign a manifest for the firmware image.
    /// With `--vendor-keys DIR`: under another development device's keys (its
    /// `dev-keys` directory), so that the devices of a development fleet share
    /// one vendor.
    #[arg(long, conflicts_with_all = ["owner_keys", "lifecycle", "svn"])]
    dev: bool,
    /// Destroy an existing device (its fuses, manifest, store and development keys)
    /// first.
    #[arg(long)]
    wipe: bool,
    /// Production: the vendor key set whose public keys to fuse. With `--dev`:
    /// another development device's `dev-keys` directory, whose vendor and owner
    /// keys this one shares.
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
    /// The firmware image a development manifest is signed for (default: the
    /// `ihsmd` beside this `ihsm`; also `$IHSM_IMAGE`).
    #[arg(long, value_name = "FILE", env = "IHSM_IMAGE")]
    image: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LifecycleArg {
    Manufacturing,
    Production,
}

/// A failure, printed as one line.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl From<RotError> for Failure {
    fn from(e: RotError) -> Self {
        Self(e.to_string())
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Self(e.to_string())
    }
}

pub(crate) type CliResult = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Nothing here should ever be dumped: PINs and, when provisioning, the fuses'
    // secrets pass through this process.
    let _ = ihsm_crypto::memory::harden_process();
    let state = StateDir::new(&cli.state).with_fuses_at(cli.fuses.clone());
    let result = match cli.command {
        None => status_cmd::front_door(&state),
        Some(Command::Status { json }) => status_cmd::status(&state, json),
        Some(Command::Partition(cmd)) => partition_cmd::run(&state, cmd),
        Some(Command::Key(cmd)) => key_cmd::run(&state, cmd),
        Some(Command::Rot(cmd)) => rot_cmd::run(&state, cmd),
        Some(Command::Tamper { sensor }) => tamper(&state, &sensor),
        Some(Command::Provision(args)) => provision(&state, &args),
        Some(Command::Manifest(cmd)) => manifest_cmd::run(&state, cmd),
        Some(Command::Audit(cmd)) => audit_cmd::run(&state, cmd),
        Some(Command::Fleet(cmd)) => fleet_cmd::run(&state, cmd),
        Some(Command::Verify(cmd)) => {
            return match verify_cmd::run(cmd) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(Failure(msg)) => {
                    eprintln!("ihsm: {msg}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("ihsm: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// A connection to the daemon's admin socket.
pub(crate) fn admin(state: &StateDir) -> Result<Client, Failure> {
    Ok(Client::connect_as(
        ihsm_proto::layout::admin_socket(state.root()),
        "ihsm",
    )?)
}

/// A connection to a partition's socket.
pub(crate) fn partition_socket(state: &StateDir, name: &str) -> PathBuf {
    ihsm_proto::layout::partition_socket(state.root(), name)
}

/// Reads a PIN from a file (`-`: standard input); one trailing newline is dropped.
pub(crate) fn read_pin(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    use std::io::Read;
    let mut pin = zeroize::Zeroizing::new(Vec::new());
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut pin)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut pin))
    };
    read.map_err(|e| Failure(format!("cannot read PIN file {}: {e}", path.display())))?;
    if pin.last() == Some(&b'\n') {
        pin.pop();
        if pin.last() == Some(&b'\r') {
            pin.pop();
        }
    }
    if pin.is_empty() {
        return Err(Failure(format!("PIN file {} is empty", path.display())));
    }
    Ok(pin)
}

/// The firmware image: `--image FILE` (or `$IHSM_IMAGE`), else the `ihsmd`
/// executable beside this one.
pub(crate) fn firmware_image(image: Option<&Path>) -> Result<[u8; 48], Failure> {
    let path = match image
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("IHSM_IMAGE").map(PathBuf::from))
    {
        Some(p) => p,
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("ihsmd")))
            .filter(|p| p.exists())
            .ok_or_else(|| {
                Failure(
                    "cannot find the ihsmd executable beside ihsm: build it (cargo build --release) or pass --image FILE".into(),
                )
            })?,
    };
    Ok(ihsm_rot::state::measure_file(&path)?)
}

fn tamper(state: &StateDir, sensor: &str) -> CliResult {
    admin(state)?.tamper(sensor)?;
    println!("{sensor} sensor fired: the HSM zeroized every secret and latched TAMPERED");
    Ok(())
}

fn provision(state: &StateDir, args: &ProvisionArgs) -> CliResult {
    if args.dev {
        let image = firmware_image(args.image.as_deref())?;
        state.provision_dev_under(args.wipe, &image, args.vendor_keys.as_deref())?;
        println!(
            "provisioned a development device in {}",
            state.root().display()
        );
        println!("  fuses      {}", state.fuses().display());
        println!(
            "  manifest   {} (signed for the firmware with development keys)",
            state.manifest().display()
        );
        println!("  config     {}", state.security_config().display());
        println!(
            "  dev keys   {} (DEVELOPMENT ONLY{})",
            state.dev_keys().display(),
            args.vendor_keys
                .as_ref()
                .map_or_else(String::new, |k| format!("; copied from {}", k.display()))
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
