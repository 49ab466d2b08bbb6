//! `ihsm-bench`: drives PKCS#11 modules with the same workload, side by side, run
//! by run (A B A B ...) so the machine's drift hits all of them alike, and prints
//! throughput, latency percentiles and the ratios between them. `--raw` adds the
//! ceiling (aws-lc-rs in this process); `--topology` compares ihsm's local socket
//! with a central HSM reached over mutual TLS; `--hostile` measures one
//! partition's latency while another attacks the daemon; `--tls` measures nginx's
//! TLS 1.3 handshakes with its key in ihsm, in SoftHSM2 and in a file; `--fleet`
//! measures moving a partition between two hosts of a fleet on a real etcd.
#![forbid(unsafe_code)]

mod fleet;
mod hostile;
mod measure;
mod p11;
mod raw;
mod report;
mod setup;
mod tls;
mod topology;
mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;

use measure::{Bench, Sample, Summary};
use report::{Report, Row};
use workload::Workload;

/// What can go wrong, said so an operator knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Setup(String),
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    #[error("{0}")]
    Raw(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Client(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Set in the process the harness re-runs itself as, once SoftHSM2's token and
/// ihsm's daemon are ready (the modules read their configuration from the
/// environment, which a running process cannot safely change).
const CHILD: &str = "IHSM_BENCH_CHILD";
/// Set in that process to the state directory of the ihsmd the harness started.
const OWN_STATE: &str = "IHSM_BENCH_OWN_STATE";

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Side-by-side benchmarks of PKCS#11 modules, the raw aws-lc-rs ceiling, and the host HSM against a central one",
    after_help = "Examples:\n  ihsm-bench --vs softhsm2 --raw --workload ecdsa-p256,rsa2048-pkcs1 --threads 1,2\n  ihsm-bench --module /usr/lib/other.so --pin 1234 --workload all --json out.json --plot out.svg\n  ihsm-bench --topology --rtt-us 200\n  ihsm-bench --hostile --duration 30s --runs 5\n  ihsm-bench --tls --threads 1,2,4 --duration 20s --runs 5\n  ihsm-bench --fleet --keys 1000,100000 --runs 5\n\nWithout IHSM_STATE or IHSM_SOCKET, ihsm's module is pointed at an ihsmd the harness starts itself."
)]
struct Args {
    /// The module benchmarked first (A); default: libihsm_pkcs11.so beside this program.
    #[arg(long)]
    module: Option<PathBuf>,
    /// Modules compared with it (B, C, ...); `softhsm2` sets up a SoftHSM2 token itself.
    #[arg(long = "vs")]
    vs: Vec<String>,
    /// The user PIN of every module's token.
    #[arg(long, default_value = "ihsm-bench-pin", env = "IHSM_BENCH_PIN")]
    pin: String,
    /// The token label to use (default: the first slot with a token).
    #[arg(long)]
    token: Option<String>,
    /// Comma-separated workloads, or `all`.
    #[arg(long, default_value = "ecdsa-p256")]
    workload: String,
    /// Comma-separated thread counts.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Time per module and thread count, split over the runs.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Runs per module, interleaved A B A B ...
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Operations per thread and run instead of a duration (a smoke test).
    #[arg(long)]
    iterations: Option<u64>,
    /// Also measure the operations called directly on aws-lc-rs in this process.
    #[arg(long)]
    raw: bool,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw ops/s per workload and module as an SVG chart.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Measure nothing: read a report written by --json and print it (and draw
    /// it, with --plot).
    #[arg(long, value_name = "JSON")]
    from: Option<PathBuf>,
    /// The ihsmd binary for the daemon the harness starts (default: beside this program).
    #[arg(long)]
    ihsmd: Option<PathBuf>,
    /// Compare ihsm's local socket with a central HSM over mutual TLS, pooled and
    /// with a handshake per request.
    #[arg(long)]
    topology: bool,
    /// With --topology as root: the round trip `tc netem` adds to the network path.
    #[arg(long, default_value_t = 200)]
    rtt_us: u64,
    /// Measure one partition's ECDSA P-256 latency, idle and while another
    /// partition attacks (connection flood, slow drip, sessions left open, RSA
    /// key generation loop, shared-memory ring abuse); --duration is each
    /// attack's time over all runs.
    #[arg(long)]
    hostile: bool,
    /// With --hostile: start the daemon with its per-partition limits opened wide.
    #[arg(long)]
    hostile_without_limits: bool,
    /// With --hostile: the modulus of the attacker's RSA key generations.
    #[arg(long, default_value_t = 4096)]
    rsa_bits: u32,
    /// nginx (2 workers) serving TLS 1.3 with its EC P-256 and RSA-2048 keys in
    /// ihsm, in SoftHSM2 and in a file: full handshakes per second and their
    /// latency, interleaved run by run; --threads are the client threads.
    #[arg(long)]
    tls: bool,
    /// Two fleet hosts on a 3-member etcd (the `etcd` on the PATH): the time to
    /// move a partition of each --keys size back and forth --runs times and the
    /// blackout an application signing all along sees, then ECDSA signs on a
    /// fleet host against the same ihsmd alone (--duration over the runs).
    #[arg(long)]
    fleet: bool,
    /// With --fleet: comma-separated partition sizes, in EC P-256 key pairs.
    #[arg(long, default_value = "1000,100000", value_delimiter = ',')]
    keys: Vec<u64>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?}: a duration such as 5s or 500ms"))?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: the unit is s, ms or m")),
    };
    if secs.is_finite() && secs > 0.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("{s:?}: must be more than zero"))
    }
}

/// A module to load: a name for the report and its path.
fn resolve(spec: &str) -> Result<(String, PathBuf)> {
    if spec == "softhsm2" {
        return Ok(("softhsm2".into(), setup::softhsm_module()?));
    }
    let path = PathBuf::from(spec);
    if !path.exists() {
        return Err(Error::Usage(format!("module {spec}: no such file")));
    }
    Ok((module_name(&path), path))
}

fn module_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.trim_start_matches("lib") {
        "ihsm_pkcs11" => "ihsm".into(),
        s => s.to_owned(),
    }
}

fn default_module() -> Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name("libihsm_pkcs11.so"))
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ihsm-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<ExitCode> {
    if args.threads.is_empty() || args.threads.contains(&0) || args.runs == 0 {
        return Err(Error::Usage(
            "--threads and --runs must be at least 1".into(),
        ));
    }
    if args.topology {
        return topology::run(args).map(|()| ExitCode::SUCCESS);
    }
    if args.fleet {
        if args.keys.is_empty() || args.keys.contains(&0) {
            return Err(Error::Usage("--keys: sizes of at least 1".into()));
        }
        return fleet::run(args).map(|()| ExitCode::SUCCESS);
    }
    if args.hostile || args.hostile_without_limits {
        return hostile::run(args).map(|()| ExitCode::SUCCESS);
    }
    if let Some(from) = &args.from {
        let report: Report = serde_json::from_slice(&std::fs::read(from)?).map_err(|e| {
            Error::Usage(format!("{}: not a report of --json: {e}", from.display()))
        })?;
        for row in &report.rows {
            row.print_progress();
        }
        report.print();
        if let Some(p) = &args.plot {
            report::plot(&report, p)?;
            eprintln!("wrote {}", p.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let workloads = Workload::parse_list(&args.workload)?;
    let module = match &args.module {
        Some(m) => m.clone(),
        None => default_module()?,
    };
    if !module.exists() {
        return Err(Error::Usage(format!(
            "module {}: no such file{}",
            module.display(),
            if args.module.is_none() {
                " (build it: cargo build --release -p ihsm-pkcs11)"
            } else {
                ""
            }
        )));
    }
    if args.tls {
        if std::env::var_os(CHILD).is_none() {
            let softhsm = setup::softhsm_module().is_ok();
            let own_daemon = module_name(&module) == "ihsm"
                && std::env::var_os("IHSM_STATE").is_none()
                && std::env::var_os("IHSM_SOCKET").is_none();
            if softhsm || own_daemon {
                return rerun(args, softhsm, own_daemon);
            }
        }
        return tls::run(args, &module).map(|()| ExitCode::SUCCESS);
    }
    if std::env::var_os(CHILD).is_none() {
        let softhsm = args.vs.iter().any(|v| v == "softhsm2");
        let own_daemon = module_name(&module) == "ihsm"
            && std::env::var_os("IHSM_STATE").is_none()
            && std::env::var_os("IHSM_SOCKET").is_none();
        if softhsm || own_daemon {
            return rerun(args, softhsm, own_daemon);
        }
    }
    let first = module_name(&module);
    // The harness's own daemon goes with its state directory: nothing to tidy.
    let own = first == "ihsm" && std::env::var_os(OWN_STATE).is_some();
    let mut modules = vec![p11::Module::load(
        &first,
        &module,
        &args.pin,
        args.token.as_deref(),
        own,
    )?];
    for spec in &args.vs {
        let (name, path) = resolve(spec)?;
        // SoftHSM2's token is the harness's, in a temporary directory.
        let (token, own) = if spec == "softhsm2" {
            (Some(setup::TOKEN), true)
        } else {
            (args.token.as_deref(), false)
        };
        modules.push(p11::Module::load(&name, &path, &args.pin, token, own)?);
    }
    let report = compare(args, &modules, &workloads)?;
    report.print();
    if let Some(p) = &args.json {
        report::write_json(p, &report)?;
    }
    if let Some(p) = &args.plot {
        report::plot(&report, p)?;
        eprintln!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Sets up SoftHSM2's token and ihsm's daemon, then runs this program again
/// with the environment pointing at them; tears them down after.
fn rerun(args: &Args, softhsm: bool, own_daemon: bool) -> Result<ExitCode> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(std::env::args_os().skip(1)).env(CHILD, "1");
    let soft = if softhsm {
        let s = setup::SoftHsm::new(&args.pin)?;
        cmd.env("SOFTHSM2_CONF", s.conf());
        Some(s)
    } else {
        None
    };
    let daemon = if own_daemon {
        let bin = setup::ihsmd_binary(args.ihsmd.as_deref())?;
        eprintln!("starting ihsmd (development mode) for the benchmark ...");
        let d = setup::Daemon::start(&bin, &args.pin, "", |_| Ok(()), &[])?;
        cmd.env("IHSM_STATE", d.state())
            .env(OWN_STATE, d.state())
            .env_remove("IHSM_SOCKET");
        Some(d)
    } else {
        None
    };
    let status = cmd.status()?;
    drop((soft, daemon));
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// Every workload on every target at every thread count, interleaved run by run.
fn compare(args: &Args, modules: &[p11::Module], workloads: &[Workload]) -> Result<Report> {
    let mut report = Report::new(args.duration, args.runs);
    // Find keys accumulate in a token: the finds go last, fewest keys first.
    let mut order: Vec<Workload> = workloads.to_vec();
    order.sort_by_key(|w| match w {
        Workload::Find(n) => (1, *n),
        _ => (0, 0),
    });
    for &w in &order {
        let mut targets: Vec<Box<dyn Bench + '_>> = Vec::new();
        for m in modules {
            match m.prepare(w) {
                Ok(p) => targets.push(Box::new(p)),
                Err(Error::Unsupported(why)) => report.skipped(w, &m.name, &why),
                Err(e) => return Err(Error::Pkcs11(format!("{}: preparing {w}: {e}", m.name))),
            }
        }
        if args.raw {
            match raw::Raw::prepare(w) {
                Ok(r) => targets.push(Box::new(r)),
                Err(Error::Unsupported(why)) => report.skipped(w, raw::NAME, &why),
                Err(e) => return Err(e),
            }
        }
        for &threads in &args.threads {
            let per_run = args.duration / u32::try_from(args.runs).unwrap_or(u32::MAX);
            let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); targets.len()];
            let bar = measure::bar(
                (args.runs * targets.len()) as u64,
                &format!("{w} x{threads}"),
            );
            for _ in 0..args.runs {
                for (t, s) in targets.iter().zip(samples.iter_mut()) {
                    let sample = measure::run(t.as_ref(), threads, per_run, args.iterations)
                        .map_err(|e| Error::Pkcs11(format!("{}: {w}: {e}", t.name())))?;
                    s.push(sample);
                    bar.inc(1);
                }
            }
            bar.finish_and_clear();
            let summaries = targets
                .iter()
                .zip(&samples)
                .map(|(t, s)| Summary::of(t.name(), s))
                .collect();
            let row = Row::new(w, threads, summaries);
            row.print_progress();
            report.rows.push(row);
        }
        for t in &targets {
            t.finish()?;
        }
    }
    for m in modules {
        m.cleanup()?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_and_names() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        for bad in ["", "s", "0s", "-1s", "5h", "1e999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(module_name(Path::new("/x/libihsm_pkcs11.so")), "ihsm");
        assert_eq!(
            module_name(Path::new("/usr/lib/softhsm/libsofthsm2.so")),
            "softhsm2"
        );
        assert!(resolve("/no/such/module.so").is_err());
    }
}
