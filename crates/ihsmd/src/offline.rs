//! What `ihsmd` does to a device without serving it: `--check` boots the root of
//! trust, prints its report and exits; `--burn-svn N` burns the firmware SVN
//! fuse of a stopped device. The root of trust runs in this executable and
//! nowhere else: the `ihsm` tool, which tenants also run, never boots it, reads
//! the fuses' secrets or burns them.

use std::path::Path;

use ihsm_rot::RotError;
use ihsm_rot::boot::BootReport;
use ihsm_rot::fuses::Fuses;
use ihsm_rot::state::StateDir;

/// How `--check` prints the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// Aligned lines for people.
    Text,
    /// The boot report as JSON.
    Json,
}

/// Refuses a device whose tamper latch is set: only re-provisioning recovers it.
pub(crate) fn refuse_tampered(state: &StateDir) -> Result<(), String> {
    match std::fs::read_to_string(state.root().join("TAMPERED")) {
        Ok(why) => Err(format!(
            "device TAMPERED: {}; only re-provisioning recovers (`ihsm provision --dev --wipe` for a development device)",
            why.lines().next().unwrap_or("").trim()
        )),
        Err(_) => Ok(()),
    }
}

/// Why a boot was refused, with what to do about it: when `serving`, as the
/// daemon's start says it; for `--check`, how a development device's stale
/// manifest is re-signed.
pub(crate) fn boot_refused(e: &RotError, state: &StateDir, serving: bool) -> String {
    let stale = matches!(
        e,
        RotError::ImageDigestMismatch { .. } | RotError::ConfigDigestMismatch { .. }
    );
    let hint = match (serving, state.is_dev()) {
        (true, true) => "",
        (true, false) => " (a production device boots only the firmware its manifest names)",
        (false, true) if stale => {
            " (development device: starting ihsmd re-signs the manifest for its build)"
        }
        (false, _) => "",
    };
    format!("boot refused: {e}{hint}")
}

/// `--check`: boots the root of trust of `state` as if `image` (this executable
/// unless given) were the firmware, prints the boot report and returns, having
/// served nothing and changed nothing: the store is not opened (a running
/// daemon may hold it) and a development device's manifest is not re-signed.
/// The runtime, and every secret of the boot, is dropped (and wiped) on return.
///
/// # Errors
/// Why the device would not boot, as `ihsmd` itself would refuse it.
pub(crate) fn check(state: &StateDir, image: Option<&Path>, report: Report) -> Result<(), String> {
    // The boot derives the device's keys in this process: keep it out of core
    // dumps and other users' debuggers whatever the configuration says.
    ihsm_crypto::memory::harden_process()
        .map_err(|e| format!("cannot make the process non-dumpable: {e}"))?;
    refuse_tampered(state)?;
    let digest = match image {
        Some(p) => ihsm_rot::state::measure_file(p),
        None => ihsm_rot::state::measure_running_image(),
    }
    .map_err(|e| e.to_string())?;
    let runtime = state
        .boot(&digest)
        .map_err(|e| boot_refused(&e, state, false))?;
    match report {
        Report::Json => {
            let text = serde_json::to_string_pretty(runtime.report())
                .map_err(|e| format!("cannot encode the report as JSON: {e}"))?;
            println!("{text}");
        }
        Report::Text => print_report(runtime.report(), state),
    }
    Ok(())
}

fn ms(micros: u64) -> String {
    format!("{}.{} ms", micros / 1000, (micros % 1000) / 100)
}

fn print_report(r: &BootReport, state: &StateDir) {
    println!("ihsmd --check: the root of trust boots; nothing served");
    let kind = if state.is_dev() {
        format!("development device, keys in {}", state.dev_keys().display())
    } else {
        "production key material is not in the state directory".to_owned()
    };
    println!("  state       {} ({kind})", state.root().display());
    let d = &r.device;
    println!(
        "  device      lifecycle {}, UEID {}, fused SVN {}, debug {}",
        d.lifecycle,
        d.ueid,
        d.fused_svn,
        if d.debug_locked { "locked" } else { "UNLOCKED" }
    );
    if let Some(m) = &r.manifest {
        println!("  manifest    SVN {}, {}", m.svn, m.digest);
    }
    for s in &r.stages {
        println!("  {:<4} {:>9}  {}", s.stage, ms(s.micros), s.summary);
    }
    if let Some(m) = &r.measurements {
        println!("  image       {}", m.image);
        println!("  config      {}", m.config);
    }
    for (i, p) in r.boot_pcrs.iter().enumerate() {
        println!("  PCR{i}        {p}");
    }
    for id in &r.identities {
        println!(
            "  {:<11} {:<8} key id {}",
            id.layer.file_stem(),
            id.alg,
            id.key_id
        );
    }
    if r.unlocked_secret_regions > 0 {
        println!(
            "  WARNING     {} secret regions could not be locked into RAM (raise RLIMIT_MEMLOCK)",
            r.unlocked_secret_regions
        );
    }
    println!(
        "  boot        {} from fuses to RT ready",
        ms(r.total_micros)
    );
}

/// `--burn-svn N`: burns the minimum firmware SVN fuse of the stopped device in
/// `state` up to `svn`.
///
/// The fuses are read at boot, as a chip's are: a burn takes effect at the
/// next start, and a running daemon (whose tamper response may destroy the
/// fuse file) must not have the file changed under it, so a device whose
/// admin socket answers is refused. Refused too: an SVN below the fused one
/// (fuses only burn upwards) or above 128, a damaged fuse file, a tampered
/// device, and an SVN above the installed manifest's, which would leave the
/// device unable to boot the firmware it has.
///
/// # Errors
/// Each refusal above, said as what to do.
pub(crate) fn burn_svn(state: &StateDir, svn: u32) -> Result<(), String> {
    let admin = state.root().join("admin.sock");
    if std::os::unix::net::UnixStream::connect(&admin).is_ok() {
        return Err(format!(
            "ihsmd is running on {} (its admin socket {} answers): stop it first; the fuses are read at boot, and a burn takes effect at the next start",
            state.root().display(),
            admin.display()
        ));
    }
    refuse_tampered(state)?;
    let path = state.fuses();
    let mut fuses = Fuses::load(&path).map_err(|e| e.to_string())?;
    let before = fuses.svn.svn();
    fuses.burn_svn(svn).map_err(|e| e.to_string())?;
    let (_, manifest) = state.load_manifest().map_err(|e| {
        format!("{e}: the SVN is burnt only for a device with its firmware installed")
    })?;
    if manifest.header.svn < svn {
        return Err(format!(
            "the installed manifest is SVN {}: with the fuse at {svn} the device would refuse to boot it; install a manifest of SVN {svn} or more first (`ihsm manifest sign --svn {svn}`)",
            manifest.header.svn
        ));
    }
    fuses.store(&path, true).map_err(|e| e.to_string())?;
    println!("firmware SVN fuse: {before} -> {svn}");
    Ok(())
}
