//! `ihsm audit ...`: the audit logs, read through the admin socket and decoded by
//! `ihsm-verify` (docs/audit.md): shown, or exported as JSON lines for a SIEM.
//! `ihsm verify audit` checks an export from the file alone.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use ihsm_rot::state::StateDir;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{CliResult, Failure, admin, output};

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Log {
    /// A partition's log.
    #[arg(long, short = 'p')]
    partition: Option<String>,
    /// The device's own log (partition 0: partitions created and deleted,
    /// self-tests, tamper events).
    #[arg(long)]
    device: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Print a log: one line per entry (sequence number, time, event).
    Show {
        #[command(flatten)]
        log: Log,
        /// From this sequence number on.
        #[arg(long, default_value_t = 1)]
        since: u64,
        /// As JSON: an array of the export's lines.
        #[arg(long)]
        json: bool,
    },
    /// Write a log as JSON lines (one entry per line, with its hash, its event
    /// and the stored entry itself, checkpoints included): what a SIEM ingests
    /// and `ihsm verify audit` checks.
    Export {
        #[command(flatten)]
        log: Log,
        /// From this sequence number on.
        #[arg(long, default_value_t = 1)]
        since: u64,
        /// Where to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// The certificate (PEM) that checks a log's checkpoints with `ihsm verify
    /// audit`: the device log's key (`--device`, issued by the RT Alias as
    /// partition 0's), or a partition's identity certificate.
    Cert {
        #[command(flatten)]
        log: Log,
        /// Where to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// The lines of a log, decoded.
fn lines(state: &StateDir, log: &Log, since: u64) -> Result<Vec<Value>, Failure> {
    let mut a = admin(state)?;
    let pid = match &log.partition {
        Some(name) => a.describe_partition(name)?.id,
        None => 0,
    };
    let entries = a.audit_log(log.partition.as_deref(), since)?;
    entries
        .iter()
        .map(|e| {
            ihsm_verify::audit::export_line(pid, e)
                .map_err(|m| Failure(format!("the daemon sent an audit entry that {m}")))
        })
        .collect()
}

fn when(v: &Value) -> String {
    v.as_i64()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| v.to_string())
}

/// The event's fields after its type, `k=v` separated by spaces.
fn details(event: &Value) -> String {
    event
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "type")
                .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

pub(crate) fn run(state: &StateDir, cmd: AuditCommand) -> CliResult {
    match cmd {
        AuditCommand::Show { log, since, json } => {
            let lines = lines(state, &log, since)?;
            if json {
                return output::print_json(&lines);
            }
            let rows: Vec<Vec<String>> = lines
                .iter()
                .map(|l| {
                    vec![
                        l["seq"].to_string(),
                        when(&l["time"]),
                        l["event"]["type"].as_str().unwrap_or("").to_owned(),
                        details(&l["event"]),
                    ]
                })
                .collect();
            output::table(&["SEQ", "TIME", "EVENT", "DETAILS"], &rows);
            Ok(())
        }
        AuditCommand::Cert { log, out } => {
            let mut a = admin(state)?;
            let der = match &log.partition {
                Some(name) => a.partition_certificate(name)?,
                None => a.device_audit_certificate()?,
            };
            std::fs::write(&out, ihsm_rot::certs::cert_pem(&der).as_bytes())
                .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
            println!("{}", out.display());
            Ok(())
        }
        AuditCommand::Export { log, since, out } => {
            let lines = lines(state, &log, since)?;
            let mut text = Vec::new();
            for l in &lines {
                serde_json::to_writer(&mut text, l)
                    .map_err(|e| Failure(format!("cannot encode an entry: {e}")))?;
                text.push(b'\n');
            }
            std::fs::File::create(&out)
                .and_then(|mut f| f.write_all(&text))
                .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
            let range = match (lines.first(), lines.last()) {
                (Some(f), Some(l)) => format!("entries {}..={}", f["seq"], l["seq"]),
                _ => "no entries".to_owned(),
            };
            println!("{}: {} lines, {range}", out.display(), lines.len());
            Ok(())
        }
    }
}
