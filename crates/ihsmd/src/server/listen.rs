//! The sockets: the admin socket and one per partition, bound with the modes and
//! owners the security configuration gives, and their accept loops.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ihsm_core::partition::PartitionInfo;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::{Daemon, Peer, Target};

/// The mode of every partition socket: anyone may connect, and the daemon's
/// check of the peer's credentials (SO_PEERCRED, against the partition's owner
/// and principals, `Partition::authorize`) is the one access rule. A file mode
/// cannot express a set of uids and gids, and a caller the file mode kept out
/// would get `EACCES` from `connect`, with no word of why; the daemon tells a
/// caller it refuses which partition refused it, who it admits, and the command
/// that would admit it (docs/daemon.md, "Who may connect").
const PARTITION_SOCKET_MODE: u32 = 0o666;

pub(super) struct PartitionListener {
    stop: CancellationToken,
    path: PathBuf,
}

impl Daemon {
    /// The socket path of a partition.
    pub(crate) fn partition_socket(&self, name: &str) -> PathBuf {
        self.partition_dir
            .join(format!("{name}.{}", ihsm_proto::layout::SOCKET_EXTENSION))
    }

    /// Binds the admin socket and every partition's, and starts accepting.
    pub(crate) fn listen_all(self: &Arc<Self>) -> io::Result<()> {
        std::fs::create_dir_all(&self.partition_dir)?;
        // Tenants must reach their sockets: the state directory becomes
        // traverse-only for others (its files stay 0600), the socket directory
        // listable. Each socket is owned by its partition's owner, and anyone
        // may connect to it: the daemon checks who (PARTITION_SOCKET_MODE).
        std::fs::set_permissions(&self.state_dir, std::fs::Permissions::from_mode(0o711))?;
        std::fs::set_permissions(&self.partition_dir, std::fs::Permissions::from_mode(0o755))?;
        let admin = bind(&self.admin_socket)?;
        let mode = self.security.access.admin_socket_mode;
        if let Some(gid) = self.security.access.admin_gid {
            std::os::unix::fs::chown(&self.admin_socket, None, Some(gid))?;
        }
        std::fs::set_permissions(&self.admin_socket, std::fs::Permissions::from_mode(mode))?;
        let configured = self.security.access.partition_socket_mode;
        if configured != 0o660 && configured != PARTITION_SOCKET_MODE {
            tracing::warn!(
                "access.partition_socket_mode = 0o{configured:o} is no longer used: partition sockets are 0o666 and the daemon admits each peer by its uid and gid (ihsm partition allow)"
            );
        }
        let parts = self.device.partitions().map_err(io::Error::other)?;
        for p in &parts {
            self.listen_partition(p)?;
        }
        // The admin socket answers only once every partition's is bound: a
        // client (or a test) that reached the admin socket finds them all, not
        // a stale socket file of the daemon before a restart.
        let d = Arc::clone(self);
        self.tracker.spawn(async move {
            let stop = d.shutdown.clone();
            d.accept_loop(admin, Target::Admin, stop).await;
        });
        Ok(())
    }

    /// Binds one partition's socket and starts accepting on it.
    pub(crate) fn listen_partition(self: &Arc<Self>, info: &PartitionInfo) -> io::Result<()> {
        let path = self.partition_socket(&info.name);
        let listener = bind(&path)?;
        if rustix::process::geteuid().is_root() {
            // u32::MAX is "no group": the socket keeps the daemon's group.
            let gid = Some(info.owner_gid).filter(|g| *g != u32::MAX);
            std::os::unix::fs::chown(&path, Some(info.owner_uid), gid)?;
        }
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(PARTITION_SOCKET_MODE),
        )?;
        let stop = self.shutdown.child_token();
        if let Ok(mut l) = self.listeners.lock() {
            l.insert(
                info.id,
                PartitionListener {
                    stop: stop.clone(),
                    path,
                },
            );
        }
        let d = Arc::clone(self);
        let id = info.id;
        self.tracker.spawn(async move {
            d.accept_loop(listener, Target::Partition(id), stop).await;
        });
        Ok(())
    }

    /// Stops a partition's listener and its connections; removes its socket.
    pub(super) fn unlisten_partition(&self, id: u32) {
        if let Ok(mut l) = self.limits.lock() {
            l.remove(&id);
        }
        let l = self.listeners.lock().ok().and_then(|mut l| l.remove(&id));
        if let Some(l) = l {
            l.stop.cancel();
            let _ = std::fs::remove_file(&l.path);
        }
    }

    /// Removes every socket file (shutdown).
    pub(crate) fn remove_sockets(&self) {
        let _ = std::fs::remove_file(&self.admin_socket);
        if let Ok(l) = self.listeners.lock() {
            for p in l.values() {
                let _ = std::fs::remove_file(&p.path);
            }
        }
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: UnixListener,
        target: Target,
        stop: CancellationToken,
    ) {
        let limits = match target {
            Target::Partition(id) => Some(self.limits(id)),
            Target::Admin | Target::Unmapped(_) => None,
        };
        loop {
            // At its limit, a partition's socket accepts as fast as places free,
            // and refuses at most REFUSALS_PER_SEC.
            while let Some(l) = &limits
                && l.connections.available_permits() == 0
            {
                let wait = l.pace.take();
                if wait.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::timeout(wait, l.connections.acquire()) => {}
                    () = stop.cancelled() => return,
                }
            }
            let accepted = tokio::select! {
                r = listener.accept() => r,
                () = stop.cancelled() => return,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let peer = match stream.peer_cred() {
                Ok(c) => Peer {
                    uid: c.uid(),
                    gid: c.gid(),
                    pid: c.pid(),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the peer's credentials; connection dropped");
                    continue;
                }
            };
            let d = Arc::clone(&self);
            let stop = stop.clone();
            let target = target.clone();
            self.tracker.spawn(async move {
                d.connection(stream, peer, target, stop).await;
            });
        }
    }
}

/// Binds a Unix socket, replacing a stale socket file (never another kind of file).
fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            // A live daemon would still answer on it: refuse to steal its socket.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use: is another ihsmd running on this state directory?",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))
}
