//! The daemon's operational configuration, `ihsmd.toml`: logging, metrics, default
//! quotas, connection limits. It is not measured: everything that decides who may
//! reach what, and what a tamper destroys, lives in the measured `security.toml`
//! (`ihsm_rot::config`), signed in the firmware manifest.
//!
//! A bad file refuses to start and names the key.

use std::net::SocketAddr;
use std::path::Path;

use ihsm_core::quota::Quotas;
use serde::Deserialize;

/// The example written beside a new state directory's other files.
pub const EXAMPLE: &str = r#"# ihsmd operational configuration (not measured; see security.toml for the
# settings that decide access and tamper response).

[log]
# "text" for people, "json" for collectors.
format = "text"
# error, warn, info, debug or trace (or a tracing filter such as "ihsmd=debug").
level = "info"

[metrics]
# Prometheus metrics on a loopback address, e.g. "127.0.0.1:9464". Off when absent.
# listen = "127.0.0.1:9464"

[quotas]
# Defaults for partitions created without their own.
max_objects = 2000000
max_sessions = 1024
ops_per_second = 0

[daemon]
# Most simultaneous client connections, over all sockets.
max_connections = 4096
# Most simultaneous connections to one partition (its socket and the network
# together), so that one tenant cannot take every place.
max_connections_per_partition = 256
# Seconds a request may take to arrive once its first byte has: a client that
# drips a frame is closed. (The hello has 10 s from the connection.)
frame_timeout_secs = 10
# Most requests of one partition that run at once among those that take long
# (key generation, PIN hashing, durable writes); the partition's others wait
# their turn, so one tenant cannot occupy every CPU. 0: half this machine's
# CPUs, at least 1.
max_slow_requests_per_partition = 0
# Seconds a shutdown waits for requests in flight.
shutdown_grace_secs = 10
# PBKDF2 iterations of new PIN verifiers.
pin_iterations = 100000
# Microseconds a busy connection's next request is awaited without sleeping
# (0: never). Sleeping and waking costs tens of microseconds on virtual machines.
spin_micros = 100

[audit]
# Also write each audit entry, once durable, to the system log (authpriv.info) as
# one line: "ihsm-audit {json}", the JSON of `ihsm audit export` without the
# entry itself (docs/audit.md). Never a secret: entries hold none.
syslog = false
# syslog_socket = "/dev/log"

[fleet]
# A fleet of hosts on etcd (docs/fleet.md). Off while etcd_endpoints is empty.
# Which peers this host trusts is security configuration: security.toml [fleet].
# Also --fleet-etcd URL[,URL...], --fleet-host NAME, --fleet-peer ADDR.
etcd_endpoints = []
# host = "host-a"
# peer_listen = "127.0.0.1:7400"
# Seconds the host's registration outlives its last refresh.
lease_ttl_secs = 10
"#;

/// `ihsmd.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[log]`.
    #[serde(default)]
    pub log: LogSection,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// `[quotas]`: defaults for new partitions.
    #[serde(default)]
    pub quotas: QuotaSection,
    /// `[daemon]`.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// `[audit]`.
    #[serde(default)]
    pub audit: AuditSection,
    /// `[fleet]`.
    #[serde(default)]
    pub fleet: FleetSection,
}

/// `[fleet]`: how this host joins a fleet (who it trusts is in security.toml).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// etcd's client endpoints; the fleet is off while this is empty.
    #[serde(default)]
    pub etcd_endpoints: Vec<String>,
    /// This host's name in the fleet.
    #[serde(default)]
    pub host: Option<String>,
    /// The address other hosts reach this one at.
    #[serde(default)]
    pub peer_listen: Option<String>,
    /// Seconds the registration outlives its last refresh.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_secs: u64,
}

fn default_lease_ttl() -> u64 {
    10
}

impl Default for FleetSection {
    fn default() -> Self {
        Self {
            etcd_endpoints: Vec::new(),
            host: None,
            peer_listen: None,
            lease_ttl_secs: default_lease_ttl(),
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Also write each audit entry, once durable, to the system log as one line
    /// (the export's JSON without the entry itself; never a secret).
    #[serde(default)]
    pub syslog: bool,
    /// The system log's datagram socket (default `/dev/log`).
    #[serde(default)]
    pub syslog_socket: Option<std::path::PathBuf>,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Output format.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Loopback address of the Prometheus endpoint.
    #[serde(default)]
    pub listen: Option<String>,
}

/// `[quotas]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSection {
    /// Most objects.
    #[serde(default = "default_max_objects")]
    pub max_objects: u64,
    /// Most sessions.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u32,
    /// Most operations per second (0: unlimited).
    #[serde(default)]
    pub ops_per_second: u32,
}

fn default_max_objects() -> u64 {
    Quotas::default().max_objects
}

fn default_max_sessions() -> u32 {
    Quotas::default().max_sessions
}

impl Default for QuotaSection {
    fn default() -> Self {
        let q = Quotas::default();
        Self {
            max_objects: q.max_objects,
            max_sessions: q.max_sessions,
            ops_per_second: q.ops_per_second,
        }
    }
}

impl QuotaSection {
    /// As the core's quotas.
    #[must_use]
    pub fn quotas(&self) -> Quotas {
        Quotas {
            max_objects: self.max_objects,
            max_sessions: self.max_sessions,
            ops_per_second: self.ops_per_second,
        }
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Most simultaneous connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Most simultaneous connections to one partition.
    #[serde(default = "default_max_connections_per_partition")]
    pub max_connections_per_partition: u32,
    /// Seconds a request frame may take once its first byte arrived.
    #[serde(default = "default_frame_timeout")]
    pub frame_timeout_secs: u64,
    /// Most slow requests (key generation, PIN hashing, durable writes) of one
    /// partition running at once; 0: half the CPUs, at least 1
    /// ([`DaemonSection::slow_requests_per_partition`]).
    #[serde(default)]
    pub max_slow_requests_per_partition: u32,
    /// Seconds a shutdown waits for requests in flight.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// PBKDF2 iterations of new PIN verifiers.
    #[serde(default = "default_pin_iterations")]
    pub pin_iterations: u32,
    /// Microseconds a hot connection's next request is awaited without sleeping.
    #[serde(default = "default_spin")]
    pub spin_micros: u64,
}

fn default_spin() -> u64 {
    100
}

fn default_max_connections() -> u32 {
    4096
}

fn default_max_connections_per_partition() -> u32 {
    256
}

fn default_frame_timeout() -> u64 {
    10
}

fn default_grace() -> u64 {
    10
}

fn default_pin_iterations() -> u32 {
    100_000
}

impl Default for DaemonSection {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            max_connections_per_partition: default_max_connections_per_partition(),
            frame_timeout_secs: default_frame_timeout(),
            max_slow_requests_per_partition: 0,
            shutdown_grace_secs: default_grace(),
            pin_iterations: default_pin_iterations(),
            spin_micros: default_spin(),
        }
    }
}

impl DaemonSection {
    /// How many slow requests of one partition run at once: the configured
    /// number, or half this machine's CPUs (at least 1).
    #[must_use]
    pub fn slow_requests_per_partition(&self) -> usize {
        match self.max_slow_requests_per_partition {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n as usize,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong, naming the key.
    pub message: String,
}

impl Config {
    /// Reads `path`; a missing file is the defaults.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the key.
    pub fn load(path: &Path, must_exist: bool) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.display().to_string(),
            message,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Self::default());
            }
            Err(e) => return Err(err(format!("cannot read: {e}"))),
        };
        Self::parse(&text).map_err(err)
    }

    /// Parses and checks the text.
    ///
    /// # Errors
    /// A message naming the key and line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let c: Self = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .and_then(|r| text.get(..r.start))
                .map(|t| t.matches('\n').count() + 1);
            match line {
                Some(l) => format!("{} (line {l})", e.message()),
                None => e.message().to_owned(),
            }
        })?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| format!("log.level: {e}"))?;
        if let Some(l) = &self.metrics.listen {
            let a: SocketAddr = l.parse().map_err(|_| {
                "metrics.listen: must be an address and port, e.g. \"127.0.0.1:9464\"".to_owned()
            })?;
            if !a.ip().is_loopback() {
                return Err(format!(
                    "metrics.listen: {a} is not a loopback address; metrics stay on this host"
                ));
            }
        }
        if !(2..=3600).contains(&self.fleet.lease_ttl_secs) {
            return Err("fleet.lease_ttl_secs: from 2 to 3600 seconds".into());
        }
        if self.quotas.max_objects == 0 || self.quotas.max_sessions == 0 {
            return Err("quotas: max_objects and max_sessions must be at least 1".into());
        }
        if self.daemon.max_connections == 0 {
            return Err("daemon.max_connections: must be at least 1".into());
        }
        if self.daemon.max_connections_per_partition == 0 {
            return Err("daemon.max_connections_per_partition: must be at least 1".into());
        }
        if self.daemon.frame_timeout_secs == 0 || self.daemon.frame_timeout_secs > 3600 {
            return Err("daemon.frame_timeout_secs: from 1 to 3600".into());
        }
        if self.daemon.spin_micros > 10_000 {
            return Err("daemon.spin_micros: at most 10000 (10 ms)".into());
        }
        if self.daemon.pin_iterations < 1000 {
            return Err("daemon.pin_iterations: must be at least 1000".into());
        }
        Ok(())
    }

    /// The metrics address, if metrics are on.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.listen.as_deref().and_then(|l| l.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_and_empty_files_parse() {
        assert_eq!(Config::parse(EXAMPLE).unwrap(), Config::default());
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        for (text, needle) in [
            ("[log]\nformat = \"xml\"\n", "xml"),
            ("[log]\nlevel = \"=\"\n", "log.level"),
            ("[metrics]\nlisten = \"0.0.0.0:9464\"\n", "loopback"),
            ("[metrics]\nlisten = \"here\"\n", "metrics.listen"),
            ("[quotas]\nmax_objects = 0\n", "quotas"),
            ("[daemon]\nmax_conections = 5\n", "max_conections"),
            ("[daemon]\npin_iterations = 10\n", "pin_iterations"),
            (
                "[daemon]\nmax_connections_per_partition = 0\n",
                "max_connections_per_partition",
            ),
            ("[daemon]\nframe_timeout_secs = 0\n", "frame_timeout_secs"),
            ("[nope]\n", "nope"),
            ("[daemon]\nmax_connections = -1\n", "line 2"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
