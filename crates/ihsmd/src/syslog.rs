//! `[audit] syslog = true`: each audit entry, once durable, is also written to the
//! system log as one line, `ihsm-audit {json}`, the JSON of `ihsm audit export`
//! (docs/audit.md) without the stored entry, at authpriv.info. Entries hold no
//! secret, so neither do the lines.
//!
//! The datagram socket is non-blocking: the HSM never waits for the system log; a
//! line the log cannot take is dropped, and the first such drop is reported.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The system log's usual socket.
pub const DEFAULT_SOCKET: &str = "/dev/log";
/// authpriv (10) * 8 + info (6).
const PRIORITY: u32 = 86;

/// The audit sink for `DeviceConfig::audit_sink`.
///
/// # Errors
/// The socket cannot be made.
pub fn sink(socket: Option<PathBuf>) -> std::io::Result<ihsm_core::AuditObserver> {
    let path = socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    let pid = std::process::id();
    let warned = AtomicBool::new(false);
    Ok(Arc::new(move |partition, _seq, entry| {
        let Ok(mut line) = ihsm_verify::audit::export_line(partition, entry) else {
            return;
        };
        if let Some(o) = line.as_object_mut() {
            o.remove("entry");
        }
        let msg = format!("<{PRIORITY}>ihsmd[{pid}]: ihsm-audit {line}");
        if let Err(e) = sock.send_to(msg.as_bytes(), &path)
            && !warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(socket = %path.display(), error = %e, "the system log does not take audit lines; they are dropped (the audit log itself is whole)");
        }
    }))
}
