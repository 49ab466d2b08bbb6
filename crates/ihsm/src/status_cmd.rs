//! `ihsm status`, and `ihsm` without a command.

use ihsm_proto::msg::DeviceStatus;
use ihsm_proto::types::DeviceState;
use ihsm_rot::state::StateDir;
use serde_json::Value;

use crate::{CliResult, Failure, admin, output};

fn state_line(s: &DeviceState) -> String {
    match s {
        DeviceState::Operational => "operational".into(),
        DeviceState::Booting => "booting".into(),
        DeviceState::Tampered(why) => {
            format!("TAMPERED ({why}): secrets zeroized; re-provision to recover")
        }
        DeviceState::Fatal(why) => format!("FATAL ({why})"),
    }
}

/// The status as JSON: the boot report embedded as an object, not a string.
fn status_json(st: &DeviceStatus) -> Result<Value, Failure> {
    let mut v =
        serde_json::to_value(st).map_err(|e| Failure(format!("cannot encode JSON: {e}")))?;
    let report: Value = serde_json::from_str(&st.boot_report).unwrap_or(Value::Null);
    v["boot_report"] = report;
    Ok(v)
}

fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else {
        format!("{m}m {s}s")
    }
}

pub(crate) fn status(state: &StateDir, json: bool) -> CliResult {
    let st = admin(state)?.status()?;
    if json {
        return output::print_json(&status_json(&st)?);
    }
    let report: Value = serde_json::from_str(&st.boot_report).unwrap_or(Value::Null);
    let dev = &report["device"];
    println!("ihsm {} on {}", st.version, st.state_dir);
    println!("  state        {}", state_line(&st.state));
    println!(
        "  device       {} device, lifecycle {}, UEID {}, SVN {}, debug {}",
        if st.development {
            "development"
        } else {
            "production"
        },
        dev["lifecycle"].as_str().unwrap_or("?"),
        dev["ueid"].as_str().unwrap_or("?"),
        dev["fused_svn"].as_u64().unwrap_or(0),
        if dev["debug_locked"].as_bool().unwrap_or(true) {
            "locked"
        } else {
            "UNLOCKED"
        }
    );
    if let Some(total) = report["total_micros"].as_u64() {
        let stages: Vec<String> = report["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["stage"].as_str().unwrap_or("?").to_owned())
            .collect();
        println!(
            "  boot         {} -> passed in {}",
            stages.join(" -> "),
            output::ms(total)
        );
    } else {
        println!("  boot         report unavailable");
    }
    for (i, p) in report["boot_pcrs"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = p.as_str().unwrap_or("");
        println!("  PCR{i}         {}…", p.get(..32).unwrap_or(p));
    }
    println!("  uptime       {}", uptime(st.uptime_secs));
    println!("  admin        {}", st.admin_socket);
    println!(
        "  network      {}",
        st.network
            .as_deref()
            .map_or_else(|| "off".into(), |n| format!("{n} (mutual TLS)"))
    );
    println!(
        "  metrics      {}",
        st.metrics
            .as_deref()
            .map_or_else(|| "off".into(), |m| format!("http://{m}/metrics"))
    );
    println!("  partitions   {}", st.partitions.len());
    if !st.partitions.is_empty() {
        println!();
        crate::partition_cmd::print_partitions(&st.partitions);
    }
    Ok(())
}

/// `ihsm` alone: the status of the running HSM (the connection error says how to
/// start it when it is not running).
pub(crate) fn front_door(state: &StateDir) -> CliResult {
    status(state, false)
}
