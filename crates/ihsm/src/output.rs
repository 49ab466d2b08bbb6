//! What the CLI prints: aligned text for people, JSON for scripts.

use ihsm_rot::manifest::ManifestSummary;
use ihsm_rot::pcr::PcrLogEntry;
use ihsm_rot::state::StateDir;
use serde::Serialize;
use serde_json::Value;

use crate::{CliResult, Failure};

pub(crate) fn print_json<T: Serialize>(value: &T) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure(format!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

pub(crate) fn ms(micros: u64) -> String {
    // Integer arithmetic: micros to milliseconds with one decimal.
    format!("{}.{} ms", micros / 1000, (micros % 1000) / 100)
}

/// Prints a boot report (ihsm-rot's `BootReport`, as JSON).
pub(crate) fn print_report(r: &Value, state: &StateDir, development: bool) {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    println!("ihsm root of trust: boot report");
    let kind = if development {
        format!("development device, keys in {}", state.dev_keys().display())
    } else {
        "production key material is not in the state directory".to_owned()
    };
    println!("  state       {} ({kind})", state.root().display());
    let d = &r["device"];
    println!(
        "  device      lifecycle {}, UEID {}, fused SVN {}, debug {}",
        s(&d["lifecycle"]),
        s(&d["ueid"]),
        u(&d["fused_svn"]),
        if d["debug_locked"].as_bool().unwrap_or(true) {
            "locked"
        } else {
            "UNLOCKED"
        }
    );
    for st in r["stages"].as_array().into_iter().flatten() {
        println!(
            "  {:<4} {:>9}  {}",
            s(&st["stage"]),
            ms(u(&st["micros"])),
            s(&st["summary"])
        );
    }
    let m = &r["measurements"];
    if m.is_object() {
        println!("  image       {}", s(&m["image"]));
        println!("  config      {}", s(&m["config"]));
        println!("  manifest    {}", s(&m["manifest"]));
    }
    for (i, p) in r["boot_pcrs"].as_array().into_iter().flatten().enumerate() {
        println!("  PCR{i}        {}", s(p));
    }
    for id in r["identities"].as_array().into_iter().flatten() {
        println!(
            "  {:<11} {:<8} key id {}",
            s(&id["layer"]),
            s(&id["alg"]),
            s(&id["key_id"])
        );
    }
    let unlocked = u(&r["unlocked_secret_regions"]);
    if unlocked > 0 {
        println!(
            "  WARNING     {unlocked} secret regions could not be locked into RAM (raise RLIMIT_MEMLOCK)"
        );
    }
    println!(
        "  boot        {} from fuses to RT ready",
        ms(u(&r["total_micros"]))
    );
}

#[derive(Serialize)]
struct PcrLine {
    index: usize,
    value: String,
    reset_counter: u32,
}

pub(crate) fn print_pcrs(pcrs: &[[u8; 48]], counters: &[u32], json: bool) -> CliResult {
    let lines: Vec<PcrLine> = pcrs
        .iter()
        .zip(counters)
        .enumerate()
        .map(|(index, (p, c))| PcrLine {
            index,
            value: hex::encode(p),
            reset_counter: *c,
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

pub(crate) fn print_log(log: &[PcrLogEntry], json: bool) -> CliResult {
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

/// Prints rows as aligned columns under a header.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = width.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
