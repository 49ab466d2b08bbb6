//! Where a device's sockets are, and the limits every side checks: defined here
//! once, because the daemon, the command line, the PKCS#11 module, the Rust client
//! and the benchmarks all need the same answer.
//!
//! A state directory `STATE` holds the admin socket `STATE/admin.sock` and one
//! socket per partition, `STATE/partitions/NAME.sock`.

use std::path::{Path, PathBuf};

/// File name of the admin socket in a state directory.
pub const ADMIN_SOCKET: &str = "admin.sock";
/// Directory of the partitions' sockets in a state directory.
pub const PARTITION_DIR: &str = "partitions";
/// Extension of a partition's socket file.
pub const SOCKET_EXTENSION: &str = "sock";

/// `state/admin.sock`.
#[must_use]
pub fn admin_socket(state: &Path) -> PathBuf {
    state.join(ADMIN_SOCKET)
}

/// `state/partitions`.
#[must_use]
pub fn partition_dir(state: &Path) -> PathBuf {
    state.join(PARTITION_DIR)
}

/// `state/partitions/NAME.sock`.
#[must_use]
pub fn partition_socket(state: &Path, name: &str) -> PathBuf {
    partition_dir(state).join(format!("{name}.{SOCKET_EXTENSION}"))
}

/// The partition a socket file of [`PARTITION_DIR`] is for (`NAME` of
/// `NAME.sock`), or `None` for any other file.
#[must_use]
pub fn partition_of(socket: &Path) -> Option<&str> {
    if socket.extension()? != SOCKET_EXTENSION {
        return None;
    }
    socket.file_stem()?.to_str().filter(|n| !n.is_empty())
}

/// Shortest PIN a partition takes, in bytes (`CKA_MIN_PIN_LEN` of the token).
pub const MIN_PIN_LEN: usize = 4;
/// Longest PIN a partition takes, in bytes (`ulMaxPinLen`).
pub const MAX_PIN_LEN: usize = 256;
/// Most bytes of data one request may carry to an operation (a message to sign,
/// a plaintext, the parts of a multi-part operation together).
pub const MAX_DATA: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout() {
        let s = Path::new("/var/lib/ihsm");
        assert_eq!(admin_socket(s), Path::new("/var/lib/ihsm/admin.sock"));
        assert_eq!(
            partition_socket(s, "web"),
            Path::new("/var/lib/ihsm/partitions/web.sock")
        );
        assert_eq!(partition_of(&partition_socket(s, "web")), Some("web"));
        for other in ["web.sock.tmp", "web", ".sock", "web.socket"] {
            assert_eq!(partition_of(Path::new(other)), None, "{other}");
        }
        const { assert!(MIN_PIN_LEN <= MAX_PIN_LEN) };
        const { assert!(MAX_DATA < crate::frame::MAX_FRAME) };
    }
}
