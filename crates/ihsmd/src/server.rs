//! Listeners and connections: the admin socket, one socket per partition, and the
//! network listener. Every connection is checked against what its endpoint
//! admits (a partition: its owner and principals), says hello, then sends
//! requests one at a time; each gets one response.
//!
//! This module holds the running daemon and what each partition may hold of it;
//! its parts: [`listen`] (the sockets and their accept loops), [`connection`] (a
//! connection from hello to close, and the reactor's loop over its requests),
//! [`step`] (one request, from its frame to its answer), [`hot`] (a busy
//! connection's polling thread), [`ring`] (a local connection's shared-memory
//! rings), [`apps`] (PKCS#11 applications spanning
//! connections) and [`admin`] (the admin socket's requests).

mod admin;
mod apps;
mod connection;
mod domain;
pub(crate) mod fleet;
mod hot;
mod listen;
mod moves;
mod ring;
mod step;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ihsm_core::Device;
use ihsm_rot::config::SecurityConfig;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::apps::App;
use self::connection::Live;
pub(crate) use self::connection::{Peer, Target};
use self::listen::PartitionListener;
use crate::config::Config;
use crate::slow::SlowPool;

/// Refusals a partition's socket hands out per second at its connection limit,
/// after a burst of as many. Past them the socket accepts only when a place
/// frees or the next refusal is due, and a flooding client waits in the
/// kernel's backlog, costing no one CPU, instead of being accepted and refused
/// at the daemon's expense.
const REFUSALS_PER_SEC: f64 = 1000.0;

/// A request frame longer than this is large: a partition receives at most
/// [`LARGE_FRAMES_PER_PARTITION`] of them at once, so that partly received
/// frames hold at most that many times [`ihsm_proto::frame::MAX_FRAME`] of the
/// daemon's memory (plus 1 MiB a connection), not 64 MiB times every connection.
const LARGE_FRAME: usize = 1 << 20;
/// Large frames a partition may have arriving at once; the others wait, unread.
const LARGE_FRAMES_PER_PARTITION: usize = 4;

/// What one partition may hold of the daemon at once, so that one tenant cannot
/// starve the others: connections (refused beyond the limit, with the reason,
/// and at a bounded rate), slow requests running (beyond the limit a request
/// waits its turn, as a task, holding no thread), and large frames being
/// received (beyond the limit the next waits, unread).
struct Limits {
    connections: Arc<Semaphore>,
    slow: Arc<Semaphore>,
    /// Refusals at the connection limit, for the log.
    refused: Throttle,
    /// Refusals at the connection limit, paced.
    pace: Pace,
    /// Connections refused because the partition does not admit the peer, for
    /// the log.
    denied: Throttle,
    /// Connections closed for a corrupt shared-memory ring, for the log.
    bad_rings: Throttle,
    /// Large frames being received.
    large: Arc<Semaphore>,
}

/// A token bucket of [`REFUSALS_PER_SEC`].
struct Pace {
    state: Mutex<(f64, Instant)>,
}

impl Pace {
    fn new() -> Self {
        Self {
            state: Mutex::new((REFUSALS_PER_SEC, Instant::now())),
        }
    }

    /// Takes a token: zero, or (taking none) how long until one is due.
    fn take(&self) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        s.0 =
            (s.0 + now.duration_since(s.1).as_secs_f64() * REFUSALS_PER_SEC).min(REFUSALS_PER_SEC);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - s.0) / REFUSALS_PER_SEC)
        }
    }
}

/// Counts events and says when to log them: at most once a second, with how
/// many happened since the last line (a flood of refusals is not a flood of
/// log lines).
#[derive(Default)]
struct Throttle {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    /// One more event; `Some(n)` when a line should say `n` happened.
    fn hit(&self) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last.lock().ok()?;
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return None;
        }
        *last = Some(now);
        Some(self.count.swap(0, Ordering::Relaxed))
    }
}

/// The running daemon.
pub(crate) struct Daemon {
    pub device: Device,
    pub security: SecurityConfig,
    pub config: Config,
    pub state_dir: PathBuf,
    pub admin_socket: PathBuf,
    pub partition_dir: PathBuf,
    pub development: bool,
    pub network: Option<String>,
    pub started: Instant,
    pub euid: u32,
    pub metrics: bool,
    /// The boot report, kept: after a tamper the root of trust is gone, and
    /// the status still says what the device was.
    boot_report: String,
    listeners: Mutex<HashMap<u32, PartitionListener>>,
    next_app: AtomicU64,
    /// The PKCS#11 applications on partition sockets, by id.
    apps: Mutex<HashMap<u64, App>>,
    /// The connections to partitions, by the id of the application each began
    /// with.
    live: Mutex<HashMap<u64, Live>>,
    connections: Arc<Semaphore>,
    /// Each partition's [`Limits`], made at its first connection.
    limits: Mutex<HashMap<u32, Arc<Limits>>>,
    /// Where partitions' slow requests run.
    slow_pool: SlowPool,
    /// Refusals at the daemon's connection limit, for the log.
    refused: Throttle,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    /// This host's part in a fleet, when `[fleet]` configures one.
    pub fleet: std::sync::OnceLock<fleet::Fleet>,
    /// The partition moves this process is carrying out.
    moves: moves::InFlight,
    /// What the fleet masking domain's looks remember.
    domain: domain::DomainState,
}

impl Daemon {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        device: Device,
        security: SecurityConfig,
        config: Config,
        state_dir: PathBuf,
        development: bool,
        network: Option<String>,
        metrics: bool,
        shutdown: CancellationToken,
    ) -> Self {
        let max = config.daemon.max_connections as usize;
        let boot_report = device.boot_report_json().unwrap_or_else(|_| "{}".into());
        Self {
            boot_report,
            device,
            security,
            config,
            admin_socket: ihsm_proto::layout::admin_socket(&state_dir),
            partition_dir: ihsm_proto::layout::partition_dir(&state_dir),
            state_dir,
            development,
            network,
            started: Instant::now(),
            euid: rustix::process::geteuid().as_raw(),
            metrics,
            listeners: Mutex::new(HashMap::new()),
            next_app: AtomicU64::new(1),
            apps: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            connections: Arc::new(Semaphore::new(max)),
            limits: Mutex::new(HashMap::new()),
            // Enough that several partitions' generations and durable writes run
            // side by side; each partition's own share is its limit.
            slow_pool: SlowPool::new(
                std::thread::available_parallelism().map_or(8, |n| (n.get() * 4).max(8)),
            ),
            refused: Throttle::default(),
            tracker: TaskTracker::new(),
            shutdown,
            fleet: std::sync::OnceLock::new(),
            moves: moves::InFlight::default(),
            domain: domain::DomainState::default(),
        }
    }

    /// A partition's limits.
    fn limits(&self, id: u32) -> Arc<Limits> {
        let mut all = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let d = &self.config.daemon;
        Arc::clone(all.entry(id).or_insert_with(|| {
            Arc::new(Limits {
                connections: Arc::new(Semaphore::new(d.max_connections_per_partition as usize)),
                slow: Arc::new(Semaphore::new(d.slow_requests_per_partition())),
                refused: Throttle::default(),
                pace: Pace::new(),
                denied: Throttle::default(),
                bad_rings: Throttle::default(),
                large: Arc::new(Semaphore::new(LARGE_FRAMES_PER_PARTITION)),
            })
        }))
    }
}
