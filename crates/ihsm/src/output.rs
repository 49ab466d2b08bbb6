//! What the CLI prints: aligned text for people, JSON for scripts.

use ihsm_rot::boot::BootReport;
use ihsm_rot::manifest::ManifestSummary;
use ihsm_rot::pcr::PCR_COUNT;
use ihsm_rot::runtime::Runtime;
use ihsm_rot::state::StateDir;
use serde::Serialize;

use crate::{CliResult, Failure};

pub(crate) fn print_json<T: Serialize>(value: &T) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure(format!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn ms(micros: u64) -> String {
    // Integer arithmetic: micros to milliseconds with one decimal.
    format!("{}.{} ms", micros / 1000, (micros % 1000) / 100)
}

pub(crate) fn print_report(r: &BootReport, state: &StateDir) {
    println!("ihsm root of trust: boot report");
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
    for s in &r.stages {
        println!("  {:<4} {:>9}  {}", s.stage, ms(s.micros), s.summary);
    }
    if let Some(m) = &r.measurements {
        println!("  image       {}", m.image);
        println!("  config      {}", m.config);
        println!("  manifest    {}", m.manifest);
    }
    for (i, p) in r.boot_pcrs.iter().enumerate() {
        println!("  PCR{i}        {p}");
    }
    for id in &r.identities {
        println!(
            "  {:<11} {:<8} key id {}",
            id.layer.name(),
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

#[derive(Serialize)]
struct PcrLine {
    index: usize,
    value: String,
    reset_counter: u32,
}

pub(crate) fn print_pcrs(rt: &Runtime, json: bool) -> CliResult {
    let lines: Vec<PcrLine> = (0..PCR_COUNT)
        .filter_map(|i| {
            Some(PcrLine {
                index: i,
                value: hex::encode(rt.pcrs().read(i)?),
                reset_counter: *rt.pcrs().reset_counters().get(i)?,
            })
        })
        .collect();
    if json {
        return print_json(&lines);
    }
    for l in lines {
        println!("PCR{:<2} {}", l.index, l.value);
    }
    Ok(())
}

pub(crate) fn print_log(rt: &Runtime, json: bool) -> CliResult {
    let log = rt.pcrs().log();
    if json {
        return print_json(&log);
    }
    for e in log {
        let pcrs: Vec<String> = (0..32)
            .filter(|b| e.pcr_ids & (1 << b) != 0)
            .map(|b| format!("PCR{b}"))
            .collect();
        println!(
            "{:<17} {:<10} {}",
            format!("{:?}", e.id),
            pcrs.join(","),
            hex::encode(&e.data)
        );
    }
    Ok(())
}

pub(crate) fn print_manifest(m: &ManifestSummary) {
    println!("firmware manifest, SVN {}", m.svn);
    println!(
        "  vendor      ECC key {} of {}, ML-DSA key {} of {}",
        m.vendor_ecc_key_index, m.vendor_ecc_keys, m.vendor_mldsa_key_index, m.vendor_mldsa_keys
    );
    println!("  vendor key hash  {}", m.vendor_key_hash);
    match &m.owner_key_hash {
        Some(h) => println!("  owner key hash   {h} (countersigned)"),
        None => println!("  owner            none"),
    }
    if let Some((nb, na)) = m.validity {
        println!("  validity    {nb} .. {na} (Unix seconds)");
    }
    for c in &m.components {
        println!(
            "  {:<14} {} (version {:#x})",
            c.name,
            hex::encode(c.digest),
            c.version
        );
    }
    println!("  digest      {}", m.digest);
}
