//! `ihsmd`: the HSM device of a host.
//!
//! It boots the root of trust (ROM -> FMC -> RT), opens the sealed store, and serves
//! partitions to local tenants over Unix sockets (one per partition, checked with
//! SO_PEERCRED), device administration over an admin socket, and optionally the
//! same protocol over TCP with mutual TLS. SIGTERM or SIGINT: finish the requests
//! in flight, zeroize, exit 0.
//!
//! The root of trust runs here and nowhere else. Without serving, `ihsmd --check`
//! boots it and prints its report (a state directory, or with `--image` a new
//! build, checked before it is started), and `ihsmd --burn-svn N` burns the
//! firmware SVN fuse of a stopped device (`src/offline.rs`).
#![forbid(unsafe_code)]

mod config;
mod metrics;
mod offline;
mod serve;
mod server;
mod slow;
mod syslog;
mod tls;

/// What the fuzz targets drive (`fuzz/fuzz_targets/dispatch.rs` and `config.rs`),
/// compiled only under `cfg(fuzzing)`, which cargo-fuzz sets: the daemon's
/// build has no such entry points.
#[cfg(fuzzing)]
pub mod fuzz {
    use ihsm_core::CoreError;
    use ihsm_core::partition::Partition;
    use ihsm_proto::msg::{Reply, Request};

    pub use crate::config::Config;

    /// Carries out a partition request for application `app` as a tenant
    /// connection's requests are (the daemon's dispatcher, `serve::partition`).
    ///
    /// # Errors
    /// The core's.
    pub fn dispatch(p: &Partition, app: u64, svn: u32, req: Request) -> Result<Reply, CoreError> {
        crate::serve::partition(p, app, svn, req)
    }
}

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ihsm_core::{Device, DeviceConfig, TamperPolicy};
use ihsm_rot::config::TamperPolicyName;
use ihsm_rot::state::StateDir;

use crate::config::{Config, LogFormat};
use crate::server::Daemon;

/// The ihsm daemon: this host's hardware security module.
#[derive(Debug, Parser)]
#[command(name = "ihsmd", version, about, long_about = None)]
pub struct Args {
    /// State directory: fuses, manifest, security configuration, store, sockets.
    #[arg(long, env = "IHSM_STATE", default_value = "./ihsm-state")]
    state: PathBuf,
    /// The fuse file (default: fuses.bin in the state directory). It holds the
    /// device's root secret in the clear: kept apart from the state directory, a
    /// backup or copy of that directory is only sealed records.
    #[arg(long, env = "IHSM_FUSES", value_name = "FILE")]
    fuses: Option<PathBuf>,
    /// Operational configuration (default: ihsmd.toml in the state directory, if
    /// there is one).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Development mode: provision a development device on first run and re-sign
    /// its manifest for this build. This is also what happens without either flag
    /// when the state directory is empty or holds a development device.
    #[arg(long, conflicts_with = "production")]
    dev: bool,
    /// Production mode: refuse an unprovisioned state directory and a development
    /// device; never sign anything.
    #[arg(long)]
    production: bool,
    /// Boot the root of trust, print its boot report and exit, serving nothing:
    /// checks a state directory, or with --image a new build, without starting
    /// the device. Changes nothing: provisions nothing, re-signs nothing, opens
    /// no store.
    #[arg(long, conflicts_with_all = ["dev", "production", "burn_svn"])]
    check: bool,
    /// With --check: the firmware image to measure instead of this executable
    /// (a new build, before it replaces this one).
    #[arg(long, value_name = "FILE", requires = "check")]
    image: Option<PathBuf>,
    /// With --check: print the boot report as JSON.
    #[arg(long, requires = "check")]
    json: bool,
    /// Burn the minimum firmware SVN fuse up to N (anti-rollback: never down,
    /// at most 128, at most the installed manifest's SVN) on a stopped device,
    /// and exit. It takes effect at the next start.
    #[arg(long, value_name = "N", conflicts_with_all = ["dev", "production"])]
    burn_svn: Option<u32>,
    /// Log format (overrides the configuration).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. "info" or "ihsmd=debug" (overrides the configuration).
    #[arg(long)]
    log_level: Option<String>,
    /// Join a fleet through these etcd endpoints (overrides `[fleet]
    /// etcd_endpoints`).
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    fleet_etcd: Vec<String>,
    /// This host's name in the fleet (overrides `[fleet] host`).
    #[arg(long, value_name = "NAME")]
    fleet_host: Option<String>,
    /// The address other hosts reach this one at (overrides `[fleet]
    /// peer_listen`).
    #[arg(long, value_name = "ADDR")]
    fleet_peer: Option<String>,
}

fn init_logging(config: &Config, args: &Args) -> Result<(), String> {
    let level = args
        .log_level
        .clone()
        .unwrap_or_else(|| config.log.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .map_err(|e| format!("--log-level {level:?}: {e}"))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let done = match args.log_format.unwrap_or(config.log.format) {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    done.map_err(|e| format!("cannot start logging: {e}"))
}

/// Refuses a state directory (or the directory of the fuse file) that others can
/// write to: whoever can write there can replace the fuses, the store, the
/// manifest or the sockets.
fn check_state_dir(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // Provisioning creates it, 0700.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", path.display()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by {} (mode {mode:04o}): whoever can write there can replace the fuses, the store or the sockets; `chmod 0700 {}` and start again",
            path.display(),
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            path.display()
        ));
    }
    Ok(())
}

/// Does what `args` say: serves the device until SIGTERM or SIGINT, or with
/// `--check` or `--burn-svn` acts on it without serving and returns.
///
/// # Errors
/// Why the daemon cannot start (or stopped), or why the check or the burn was
/// refused, as one line for the operator.
pub fn run(args: Args) -> Result<(), String> {
    let state = preflight(&args)?;
    if args.check {
        let report = if args.json {
            offline::Report::Json
        } else {
            offline::Report::Text
        };
        return offline::check(&state, args.image.as_deref(), report);
    }
    if let Some(svn) = args.burn_svn {
        return offline::burn_svn(&state, svn);
    }
    serve_device(&args, state)
}

/// The state directory, once it (and the fuse file's directory) is safe to use.
fn preflight(args: &Args) -> Result<StateDir, String> {
    check_state_dir(&args.state)?;
    if let Some(fuses) = &args.fuses {
        let dir = fuses
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(format!(
                "--fuses {}: {} is not a directory",
                fuses.display(),
                dir.display()
            ));
        }
        check_state_dir(dir)?;
    }
    Ok(StateDir::new(&args.state).with_fuses_at(args.fuses.clone()))
}

/// Boots the device in `state` and serves it until a signal.
fn serve_device(args: &Args, state: StateDir) -> Result<(), String> {
    let (config_path, must_exist) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (state.root().join("ihsmd.toml"), false),
    };
    let mut config = Config::load(&config_path, must_exist).map_err(|e| e.to_string())?;
    if !args.fleet_etcd.is_empty() {
        config.fleet.etcd_endpoints.clone_from(&args.fleet_etcd);
    }
    if let Some(h) = &args.fleet_host {
        config.fleet.host = Some(h.clone());
    }
    if let Some(p) = &args.fleet_peer {
        config.fleet.peer_listen = Some(p.clone());
    }
    init_logging(&config, args)?;
    raise_open_files(config.daemon.max_connections);

    let image = ihsm_rot::state::measure_running_image().map_err(|e| e.to_string())?;
    let development = prepare(&state, &image, args)?;
    if args.config.is_none() && !config_path.exists() {
        // Leave the operator the file to edit, with every key and its default.
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&config_path)
            .and_then(|mut f| f.write_all(config::EXAMPLE.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    }
    let (security, _) = state.load_config().map_err(|e| e.to_string())?;
    if security.device.debug_locked {
        // No core dumps, no ptrace by other users: the keys live in this process.
        ihsm_crypto::memory::harden_process()
            .map_err(|e| format!("cannot make the process non-dumpable: {e}"))?;
    }
    let runtime = state
        .boot(&image)
        .map_err(|e| offline::boot_refused(&e, &state, true))?;
    let boot_lines: Vec<String> = runtime
        .report()
        .stages
        .iter()
        .map(|s| {
            format!(
                "{:<4} {:>6.1} ms  {}",
                s.stage,
                s.micros as f64 / 1e3,
                s.summary
            )
        })
        .collect();
    let boot_total = runtime.report().total_micros;
    let device = Device::start(
        DeviceConfig {
            state_dir: state.root().to_path_buf(),
            fuses: args.fuses.clone(),
            tamper_policy: match security.tamper.policy {
                TamperPolicyName::ZeroizeAndDestroy => TamperPolicy::ZeroizeAndDestroy,
                TamperPolicyName::Zeroize => TamperPolicy::Zeroize,
            },
            pin_iterations: config.daemon.pin_iterations,
            audit_sink: if config.audit.syslog {
                Some(
                    syslog::sink(config.audit.syslog_socket.clone())
                        .map_err(|e| format!("[audit] syslog: cannot make a socket: {e}"))?,
                )
            } else {
                None
            },
            ..DeviceConfig::new(state.root())
        },
        runtime,
    )
    .map_err(|e| format!("the HSM core did not start: {e}"))?;

    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("ihsmd")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(serve(
        device,
        security,
        config,
        state,
        development,
        boot_lines,
        boot_total,
    ))
}

/// Raises the soft limit on open files to the hard one: every connection is a
/// descriptor, and with systemd's default soft limit (1,024) a tenant holding a
/// thousand connections would make every accept fail, for every partition, long
/// before `max_connections`. Warns when the limit still cannot hold them.
fn raise_open_files(max_connections: u32) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: l.maximum,
                maximum: l.maximum,
            },
        );
    }
    // Sockets, the store, the listeners and the log take some too.
    let want = u64::from(max_connections) + 64;
    if let Some(n) = getrlimit(Resource::Nofile).current
        && n < want
    {
        tracing::warn!(
            open_files = n,
            max_connections,
            "the limit on open files ({n}) is below [daemon] max_connections + 64 ({want}): \
             raise it (LimitNOFILE=) or lower max_connections, or connections will fail to be accepted"
        );
    }
}

/// Provisions or re-signs a development device as the mode allows; returns whether
/// the device is a development one.
fn prepare(state: &StateDir, image: &[u8; 48], args: &Args) -> Result<bool, String> {
    // A tampered device stays tampered: never provision over its latch.
    offline::refuse_tampered(state)?;
    let provisioned = state.fuses().exists();
    if !provisioned && state.root().join("store.redb").exists() {
        // Provisioning here would make another device beside this one's store.
        return Err(format!(
            "{} holds a device's store but there is no fuse file at {}: a state directory without its fuses is not the device; start with --fuses FILE (or IHSM_FUSES) where its fuses are kept",
            state.root().display(),
            state.fuses().display()
        ));
    }
    if args.production {
        if !provisioned {
            return Err(format!(
                "{} holds no provisioned device; provision it first (`ihsm provision --vendor-keys DIR`)",
                state.root().display()
            ));
        }
        if state.is_dev() {
            return Err(format!(
                "{} holds a development device; --production refuses it",
                state.root().display()
            ));
        }
        return Ok(false);
    }
    if !provisioned {
        state
            .provision_dev(false, image)
            .map_err(|e| format!("cannot provision a development device: {e}"))?;
        println!(
            "first run: provisioned a development device in {}",
            state.root().display()
        );
        return Ok(true);
    }
    if !state.is_dev() {
        if args.dev {
            return Err(format!(
                "{} holds a production device; --dev does not apply",
                state.root().display()
            ));
        }
        return Ok(false);
    }
    let (_, digest) = state.load_config().map_err(|e| e.to_string())?;
    let current = state.load_manifest().ok();
    let stale = current
        .as_ref()
        .is_none_or(|(_, m)| m.image().digest != *image || m.config().digest != digest);
    if stale {
        let svn = current.as_ref().map_or(0, |(_, m)| m.header.svn);
        state
            .sign_dev_manifest(image, svn)
            .map_err(|e| format!("cannot re-sign the development manifest: {e}"))?;
        println!("development device: re-signed the manifest for this build (SVN {svn})");
    }
    Ok(true)
}

async fn serve(
    device: Device,
    security: ihsm_rot::config::SecurityConfig,
    config: Config,
    state: StateDir,
    development: bool,
    boot_lines: Vec<String>,
    boot_total: u64,
) -> Result<(), String> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Watched before any socket is bound: a SIGTERM that comes as soon as the
    // sockets answer is a shutdown, not the signal's default death.
    let signals = Signals::watch()?;
    let metrics = match config.metrics_addr() {
        Some(addr) => {
            metrics::install(addr)?;
            true
        }
        None => false,
    };
    let network = security
        .network
        .enabled
        .then(|| security.network.listen.clone().unwrap_or_default());
    let grace = Duration::from_secs(config.daemon.shutdown_grace_secs);
    let d = Arc::new(Daemon::new(
        device,
        security,
        config,
        state.root().to_path_buf(),
        development,
        network,
        metrics,
        shutdown.clone(),
    ));
    d.listen_all().map_err(|e| e.to_string())?;
    if d.network.is_some() {
        tls::listen(&d, state.root()).await?;
    }
    server::fleet::start(&d)?;
    print_banner(&d, &boot_lines, boot_total);
    tracing::info!(
        state = %d.state_dir.display(),
        admin = %d.admin_socket.display(),
        development,
        "ihsmd serving"
    );

    // Sensors: a debugger attaching to this process is a tamper.
    let sensors = Arc::clone(&d);
    let stop = d.shutdown.clone();
    d.tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            if let Some(reason) = sensors.device.poll_sensors() {
                tracing::error!(%reason, "TAMPER: zeroized every secret");
            }
            if sensors.metrics {
                metrics::gauges(
                    sensors.tampered(),
                    &sensors.device.partitions().unwrap_or_default(),
                );
            }
        }
    });

    signals.wait().await;
    tracing::info!("shutting down: finishing requests in flight");
    shutdown.cancel();
    d.tracker.close();
    if tokio::time::timeout(grace, d.tracker.wait()).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight after the grace period; stopping anyway"
        );
    }
    d.remove_sockets();
    // Zeroize now, even if a stuck connection still holds a reference.
    d.device.stop();
    drop(d);
    tracing::info!("stopped; secrets zeroized");
    Ok(())
}

/// SIGTERM and SIGINT, watched from the start of serving.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn watch() -> Result<Self, String> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())
                .map_err(|e| format!("cannot watch SIGTERM: {e}"))?,
            int: signal(SignalKind::interrupt())
                .map_err(|e| format!("cannot watch SIGINT: {e}"))?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

fn print_banner(d: &Daemon, boot_lines: &[String], boot_total: u64) {
    let parts = d.device.partitions().unwrap_or_default();
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    let module = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("libihsm_pkcs11.so")));
    let kind = if d.development {
        "development device"
    } else {
        "production device"
    };
    println!(
        "ihsmd {}: this host's HSM is up ({kind})",
        env!("CARGO_PKG_VERSION")
    );
    println!("  state        {}", d.state_dir.display());
    println!("  admin        {}", d.admin_socket.display());
    println!(
        "  partitions   {}/<name>.sock ({} partition{}{}{})",
        d.partition_dir.display(),
        parts.len(),
        if parts.len() == 1 { "" } else { "s" },
        if names.is_empty() { "" } else { ": " },
        names.join(", ")
    );
    if let Some(m) = module {
        let built = if m.exists() { "" } else { " (not built)" };
        println!("  pkcs11       {}{built}", m.display());
    }
    println!(
        "  network      {}",
        d.network
            .as_deref()
            .map_or_else(|| "off".to_owned(), |n| format!("{n} (mutual TLS)"))
    );
    println!(
        "  metrics      {}",
        d.config
            .metrics
            .listen
            .as_deref()
            .map_or_else(|| "off".to_owned(), |m| format!("http://{m}/metrics"))
    );
    for l in boot_lines {
        println!("  {l}");
    }
    #[allow(clippy::cast_precision_loss)]
    let ms = boot_total as f64 / 1e3;
    println!("  boot         {ms:.1} ms from fuses to RT ready");
    println!("Next: `ihsm status`, `ihsm partition create NAME ...`; stop with Ctrl-C or SIGTERM.");
}
