//! A real etcd cluster for tests: Debian's `etcd` (3.4), N members on loopback,
//! each its own process and data directory, which a test can stop, kill, pause
//! and restart. Every wait is bounded. Not a mock: this is what the fleet's tests
//! run against.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member may take to start serving.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One member.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A running cluster. Dropping it kills every member.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
}

/// Why the cluster could not run.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `etcd` is not installed.
    #[error("etcd is not installed (Debian: apt-get install etcd-server): {0}")]
    NotInstalled(std::io::Error),
    /// A member did not come up.
    #[error("etcd member {0} did not start: {1}")]
    Start(String, String),
    /// The file system.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether an `etcd` binary is on the PATH.
#[must_use]
pub fn etcd_installed() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl EtcdCluster {
    /// Starts `n` members under `base` and waits until each serves.
    ///
    /// # Errors
    /// [`ClusterError`] when etcd is missing or a member does not come up within
    /// [`START_TIMEOUT`].
    pub fn start(base: &Path, n: usize) -> Result<Self, ClusterError> {
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let dir = base.join(format!("etcd-{i}"));
            std::fs::create_dir_all(&dir)?;
            members.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                dir,
                child: None,
            });
        }
        let mut c = Self {
            members,
            token: format!("ihsm-test-{}", std::process::id()),
        };
        for i in 0..n {
            c.spawn(i, "new")?;
        }
        for i in 0..n {
            c.wait_serving(i)?;
        }
        Ok(c)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<(), ClusterError> {
        let initial = self.initial_cluster();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("etcd.log"))?;
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(m.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            // Small for tests: a 2-core machine runs three members beside the
            // hosts.
            .args(["--quota-backend-bytes", "268435456"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(ClusterError::NotInstalled)?;
        m.child = Some(child);
        Ok(())
    }

    fn wait_serving(&mut self, i: usize) -> Result<(), ClusterError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let port = self.members[i].client_port;
        loop {
            if let Some(child) = self.members[i].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(ClusterError::Start(
                    self.members[i].name.clone(),
                    format!("exited with {status}; see {}", self.log(i).display()),
                ));
            }
            if health(port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Start(
                    self.members[i].name.clone(),
                    format!("not healthy within {START_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The client endpoints, `http://127.0.0.1:PORT` each.
    #[must_use]
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Member `i`'s log file.
    #[must_use]
    pub fn log(&self, i: usize) -> PathBuf {
        self.members[i].dir.join("etcd.log")
    }

    /// Kills member `i` (SIGKILL) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts a killed member with its data.
    ///
    /// # Errors
    /// When it does not come back.
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill(i);
        self.spawn(i, "existing")?;
        self.wait_serving(i)
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) member `i`.
    pub fn pause(&mut self, i: usize, paused: bool) {
        if let Some(c) = self.members[i].child.as_ref() {
            let sig = if paused { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.pause(i, false);
            self.kill(i);
        }
    }
}

/// Whether the member on `port` answers `/health` with `"health":"true"`.
fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.take(4096).read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.contains("\"health\":\"true\"")
}
