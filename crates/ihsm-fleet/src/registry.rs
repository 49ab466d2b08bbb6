//! The registry: hosts' records in etcd, each under its host's lease.
//!
//! A host grants itself a lease, publishes its record under
//! `/ihsm/fleet/v1/hosts/NAME` attached to it, keeps the lease alive and
//! republishes fresh evidence every [`Membership::refresh`]. A host that stops
//! refreshing leaves the fleet when its lease ends. Every etcd call is bounded by
//! a timeout: an unreachable etcd makes the fleet view unavailable, nothing more.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
};

use crate::domain;
use crate::placement::placement_key;
use tokio::sync::watch;

use crate::policy::{FleetPolicy, HostView};
use crate::record::{self, Evidence, HostBody, HostRecord};

/// Where the fleet's keys live.
pub const PREFIX: &str = "/ihsm/fleet/v1/";

/// The key of host `name`'s record.
#[must_use]
pub fn host_key(name: &str) -> String {
    format!("{PREFIX}hosts/{name}")
}

/// What went wrong talking to etcd or making a record.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// etcd did not answer in time or refused.
    #[error("etcd is unreachable ({endpoints}): {reason}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// What failed.
        reason: String,
    },
    /// The device could not produce its evidence.
    #[error("the device's evidence: {0}")]
    Evidence(String),
    /// The record could not be made.
    #[error(transparent)]
    Record(#[from] record::RecordError),
    /// The configuration is unusable.
    #[error("fleet configuration: {0}")]
    Config(String),
}

/// The device, as the registry needs it: evidence over a nonce, and what it
/// serves.
pub trait Attester: Send + Sync + 'static {
    /// Both chains, both quotes over `nonce`, and the PCR log.
    ///
    /// # Errors
    /// What the device said.
    fn evidence(&self, nonce: &[u8; 32]) -> Result<Evidence, String>;
    /// The transfer key's certificate (DER), issued by the RT Alias.
    ///
    /// # Errors
    /// What the device said.
    fn transfer_certificate(&self) -> Result<Vec<u8>, String>;
    /// The partitions served, by name, and the connections open to them.
    fn serving(&self) -> (Vec<String>, u32);
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A connection to etcd, every call bounded by `timeout`.
#[derive(Clone)]
pub struct Registry {
    client: Client,
    endpoints: String,
    timeout: Duration,
}

impl core::fmt::Debug for Registry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registry")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Connects to the first of the endpoints (`http://IP:port` or `IP:port`)
    /// that answers with a leader, trying each alone in turn: a client balanced
    /// over every endpoint sends some requests to a member that is down, and
    /// those fail, so one member down would fail moves at random.
    ///
    /// # Errors
    /// [`FleetError::Unreachable`] when none answers within `timeout` (all of
    /// them together), naming the last failure.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Self, FleetError> {
        let joined = endpoints.join(",");
        if endpoints.is_empty() {
            return Err(FleetError::Config("no etcd endpoints".into()));
        }
        let opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(2), timeout)
            .with_require_leader(true);
        // Each endpoint gets its share of the time, so that a member that is
        // paused (or a black hole) leaves time to try the others.
        let deadline = tokio::time::Instant::now() + timeout;
        let share = timeout / u32::try_from(endpoints.len()).unwrap_or(u32::MAX);
        let mut last = String::from("timed out connecting");
        for ep in endpoints {
            let attempt = async {
                let mut c = Client::connect([ep.as_str()], Some(opts.clone())).await?;
                // Any key: a member without a leader refuses it (require_leader).
                c.get(PREFIX, Some(GetOptions::new().with_count_only()))
                    .await?;
                Ok::<_, etcd_client::Error>(c)
            };
            let until = deadline.min(tokio::time::Instant::now() + share);
            match tokio::time::timeout_at(until, attempt).await {
                Ok(Ok(client)) => {
                    return Ok(Self {
                        client,
                        endpoints: joined,
                        timeout,
                    });
                }
                Ok(Err(e)) => last = format!("{ep}: {e}"),
                Err(_) => last = format!("{ep}: no answer in {} ms", share.as_millis()),
            }
        }
        Err(FleetError::Unreachable {
            endpoints: joined,
            reason: last,
        })
    }

    async fn bounded<T>(
        &self,
        f: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, FleetError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(FleetError::Unreachable {
                endpoints: self.endpoints.clone(),
                reason: e.to_string(),
            }),
            Err(_) => Err(FleetError::Unreachable {
                endpoints: self.endpoints.clone(),
                reason: format!("no answer in {} ms", self.timeout.as_millis()),
            }),
        }
    }

    /// Every record under the hosts prefix: (host name, lease, bytes).
    ///
    /// # Errors
    /// [`FleetError::Unreachable`].
    pub async fn records(&self) -> Result<Vec<(String, i64, Vec<u8>)>, FleetError> {
        let prefix = host_key("");
        let mut c = self.client.clone();
        let resp = self
            .bounded(c.get(prefix.clone(), Some(GetOptions::new().with_prefix())))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = kv.key().strip_prefix(prefix.as_bytes())?;
                let name = std::str::from_utf8(name).ok()?.to_owned();
                Some((name, kv.lease(), kv.value().to_vec()))
            })
            .collect())
    }

    /// Every host, appraised against `policy`, sorted by name. A record that is
    /// refused is shown with its reason.
    ///
    /// # Errors
    /// [`FleetError::Unreachable`].
    pub async fn hosts(&self, policy: &FleetPolicy) -> Result<Vec<HostView>, FleetError> {
        let now = i64::try_from(now_secs()).unwrap_or(i64::MAX);
        let mut views: Vec<HostView> = self
            .records()
            .await?
            .into_iter()
            .map(|(name, lease, bytes)| policy.appraise(&name, lease, &bytes, now))
            .collect();
        views.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(views)
    }

    /// Partition `name`'s placement: its epoch (`mod_revision`) and bytes.
    ///
    /// # Errors
    /// [`FleetError::Unreachable`].
    pub async fn placement(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>, FleetError> {
        let mut c = self.client.clone();
        let resp = self.bounded(c.get(placement_key(name), None)).await?;
        Ok(resp.kvs().first().map(|kv| {
            (
                u64::try_from(kv.mod_revision()).unwrap_or(0),
                kv.value().to_vec(),
            )
        }))
    }

    /// Every placement: partition, epoch, bytes.
    ///
    /// # Errors
    /// [`FleetError::Unreachable`].
    pub async fn placements(&self) -> Result<Vec<(String, u64, Vec<u8>)>, FleetError> {
        let prefix = placement_key("");
        let mut c = self.client.clone();
        let resp = self
            .bounded(c.get(prefix.clone(), Some(GetOptions::new().with_prefix())))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = kv.key().strip_prefix(prefix.as_bytes())?;
                let name = std::str::from_utf8(name).ok()?.to_owned();
                Some((
                    name,
                    u64::try_from(kv.mod_revision()).unwrap_or(0),
                    kv.value().to_vec(),
                ))
            })
            .collect())
    }

    /// Writes partition `name`'s placement only if the one there now is of
    /// epoch `expected` (0: only if there is none), in one transaction. Returns
    /// the new epoch, or `None` when the comparison failed (nothing written).
    ///
    /// # Errors
    /// [`FleetError::Unreachable`]: whether it was written is then unknown.
    pub async fn replace_placement(
        &self,
        name: &str,
        expected: u64,
        value: Vec<u8>,
    ) -> Result<Option<u64>, FleetError> {
        let key = placement_key(name);
        let compare = revision_is(&key, expected);
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, value, None)]);
        let mut c = self.client.clone();
        let resp = self.bounded(c.txn(txn)).await?;
        if !resp.succeeded() {
            return Ok(None);
        }
        Ok(resp
            .header()
            .map(|h| u64::try_from(h.revision()).unwrap_or(0)))
    }

    /// The masking domain as etcd holds it: the epoch record (its revision and
    /// bytes) and every wrap (epoch, recipient, bytes).
    ///
    /// # Errors
    /// [`FleetError::Unreachable`].
    pub async fn domain(&self) -> Result<DomainKeys, FleetError> {
        let prefix = domain::domain_prefix();
        let mut c = self.client.clone();
        let resp = self
            .bounded(c.get(prefix.clone(), Some(GetOptions::new().with_prefix())))
            .await?;
        let mut out = DomainKeys::default();
        let epoch_key = domain::epoch_key();
        let wraps = format!("{prefix}wraps/");
        for kv in resp.kvs() {
            if kv.key() == epoch_key.as_bytes() {
                out.epoch = Some((
                    u64::try_from(kv.mod_revision()).unwrap_or(0),
                    kv.value().to_vec(),
                ));
            } else if let Some(rest) = kv.key().strip_prefix(wraps.as_bytes())
                && let Ok(rest) = std::str::from_utf8(rest)
                && let Some((epoch, to)) = rest.split_once('/')
                && let Ok(epoch) = epoch.parse::<u32>()
            {
                out.wraps.push((epoch, to.to_owned(), kv.value().to_vec()));
            }
        }
        Ok(out)
    }

    /// Replaces the epoch record only if the one there now is of revision
    /// `expected` (0: only if there is none), writing `wraps` (key, bytes) in
    /// the same transaction. False when the comparison failed (nothing
    /// written).
    ///
    /// # Errors
    /// [`FleetError::Unreachable`]: whether it was written is then unknown.
    pub async fn replace_epoch(
        &self,
        expected: u64,
        record: Vec<u8>,
        wraps: Vec<(String, Vec<u8>)>,
    ) -> Result<bool, FleetError> {
        let key = domain::epoch_key();
        let compare = revision_is(&key, expected);
        let mut ops = vec![TxnOp::put(key, record, None)];
        ops.extend(wraps.into_iter().map(|(k, v)| TxnOp::put(k, v, None)));
        let txn = Txn::new().when([compare]).and_then(ops);
        let mut c = self.client.clone();
        Ok(self.bounded(c.txn(txn)).await?.succeeded())
    }

    /// Deletes every wrap of epochs before `epoch`.
    ///
    /// # Errors
    /// [`FleetError::Unreachable`].
    pub async fn delete_wraps_before(&self, epoch: u32) -> Result<(), FleetError> {
        let from = format!("{}domain/wraps/", PREFIX);
        let to = domain::wraps_prefix(epoch);
        let mut c = self.client.clone();
        self.bounded(c.delete(from, Some(DeleteOptions::new().with_range(to))))
            .await
            .map(|_| ())
    }

    /// Writes raw bytes under a key (the membership's publication; tests that
    /// play an attacker with etcd access use it too).
    ///
    /// # Errors
    /// [`FleetError::Unreachable`].
    pub async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<(), FleetError> {
        let mut c = self.client.clone();
        let opts = lease.map(|l| PutOptions::new().with_lease(l));
        self.bounded(c.put(key, value, opts)).await.map(|_| ())
    }
}

/// The comparison of a replacement: `key` is at revision `expected` (0: there
/// is no `key`).
fn revision_is(key: &str, expected: u64) -> Compare {
    if expected == 0 {
        Compare::create_revision(key, CompareOp::Equal, 0)
    } else {
        Compare::mod_revision(
            key,
            CompareOp::Equal,
            i64::try_from(expected).unwrap_or(i64::MAX),
        )
    }
}

/// The masking domain's keys in etcd ([`Registry::domain`]).
#[derive(Debug, Clone, Default)]
pub struct DomainKeys {
    /// The epoch record's revision and bytes, if there is one.
    pub epoch: Option<(u64, Vec<u8>)>,
    /// Every wrap: epoch, recipient, bytes.
    pub wraps: Vec<(u32, String, Vec<u8>)>,
}

/// Where a host stands with the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberState {
    /// Not yet registered.
    Joining,
    /// Registered under this lease; its record was last published at this time.
    Joined {
        /// The lease.
        lease: i64,
        /// When the record was last published (Unix seconds).
        published: u64,
    },
    /// Cut off from etcd (or the lease was lost); it keeps serving what it holds.
    Cut {
        /// Why.
        reason: String,
    },
}

/// A host's membership: registration, keep-alive and refresh, in a task.
#[derive(Debug)]
pub struct Membership {
    state: watch::Receiver<MemberState>,
    task: tokio::task::JoinHandle<()>,
}

/// How a host registers.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// etcd endpoints.
    pub endpoints: Vec<String>,
    /// The host's name.
    pub host: String,
    /// Its peer address.
    pub peer: String,
    /// The lease's time to live.
    pub ttl: Duration,
    /// How often fresh evidence is published.
    pub refresh: Duration,
}

impl Membership {
    /// Starts registering `attester`'s device as `cfg.host`, on the current tokio
    /// runtime. It retries for ever, with the state telling where it stands.
    ///
    /// # Errors
    /// [`FleetError::Config`] for an unusable host name, peer address or TTL.
    pub fn start(cfg: MemberConfig, attester: Arc<dyn Attester>) -> Result<Self, FleetError> {
        if !record::valid_host_name(&cfg.host) {
            return Err(FleetError::Config(format!(
                "host name {:?}: 1 to {} of a-z, 0-9 and '-', not at either end",
                cfg.host,
                record::MAX_HOST_NAME
            )));
        }
        if cfg.peer.parse::<std::net::SocketAddr>().is_err() {
            return Err(FleetError::Config(format!(
                "peer address {:?}: it must be IP:port",
                cfg.peer
            )));
        }
        if cfg.ttl < Duration::from_secs(2) || cfg.ttl > Duration::from_secs(3600) {
            return Err(FleetError::Config(
                "lease TTL: from 2 to 3600 seconds".into(),
            ));
        }
        let (tx, rx) = watch::channel(MemberState::Joining);
        let task = tokio::spawn(run(cfg, attester, tx));
        Ok(Self { state: rx, task })
    }

    /// Where the host stands now.
    #[must_use]
    pub fn state(&self) -> MemberState {
        self.state.borrow().clone()
    }

    /// A receiver of state changes.
    #[must_use]
    pub fn watch(&self) -> watch::Receiver<MemberState> {
        self.state.clone()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Makes a fresh record for `lease`: the body, then evidence whose quotes carry
/// the body's digest.
///
/// # Errors
/// The device's or the encoder's.
pub fn make_record(
    cfg: &MemberConfig,
    attester: &dyn Attester,
    lease: i64,
) -> Result<Vec<u8>, FleetError> {
    let (partitions, connections) = attester.serving();
    let body = HostBody {
        version: record::VERSION,
        host: cfg.host.clone(),
        peer: cfg.peer.clone(),
        lease,
        issued_at: now_secs(),
        partitions,
        connections,
        transfer_cert: attester
            .transfer_certificate()
            .map_err(FleetError::Evidence)?,
    }
    .encode()?;
    let evidence = attester
        .evidence(&HostRecord::nonce(&body))
        .map_err(FleetError::Evidence)?;
    Ok(HostRecord { body, evidence }.encode()?)
}

async fn run(cfg: MemberConfig, attester: Arc<dyn Attester>, tx: watch::Sender<MemberState>) {
    let timeout = (cfg.ttl / 3).max(Duration::from_millis(500));
    loop {
        let reason = match session(&cfg, &attester, &tx, timeout).await {
            Ok(()) => "the lease ended".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(host = %cfg.host, %reason, "fleet: not registered; serving continues, retrying");
        let _ = tx.send(MemberState::Cut { reason });
        tokio::time::sleep(timeout).await;
    }
}

/// One lease's life: grant, publish, keep alive and refresh until it fails.
async fn session(
    cfg: &MemberConfig,
    attester: &Arc<dyn Attester>,
    tx: &watch::Sender<MemberState>,
    timeout: Duration,
) -> Result<(), FleetError> {
    let reg = Registry::connect(&cfg.endpoints, timeout).await?;
    let ttl = i64::try_from(cfg.ttl.as_secs()).unwrap_or(60);
    let mut c = reg.client.clone();
    let lease = reg.bounded(c.lease_grant(ttl, None)).await?.id();
    let (mut keeper, mut stream) = reg.bounded(c.lease_keep_alive(lease)).await?;
    let key = host_key(&cfg.host);
    let mut last_publish: Option<tokio::time::Instant> = None;
    let beat = cfg.ttl / 3;
    // One heartbeat: false when the lease is gone.
    let mut beat_once = async || -> Result<bool, FleetError> {
        reg.bounded(keeper.keep_alive()).await?;
        Ok(matches!(reg.bounded(stream.message()).await?, Some(r) if r.ttl() > 0))
    };
    loop {
        if last_publish.is_none_or(|t| t.elapsed() >= cfg.refresh) {
            let a = Arc::clone(attester);
            let c2 = cfg.clone();
            let making = tokio::task::spawn_blocking(move || make_record(&c2, a.as_ref(), lease));
            tokio::pin!(making);
            // The evidence may wait for the device (a quote waits behind a long
            // store write, a large partition arriving): the lease is kept alive
            // meanwhile.
            let bytes = loop {
                tokio::select! {
                    made = &mut making => {
                        break made.map_err(|e| FleetError::Evidence(e.to_string()))??;
                    }
                    () = tokio::time::sleep(beat) => {
                        if !beat_once().await? {
                            return Ok(());
                        }
                    }
                }
            };
            reg.put(&key, bytes, Some(lease)).await?;
            last_publish = Some(tokio::time::Instant::now());
            tracing::debug!(host = %cfg.host, lease = format_args!("{lease:x}"), "fleet: record published");
            let _ = tx.send(MemberState::Joined {
                lease,
                published: now_secs(),
            });
        }
        if !beat_once().await? {
            return Ok(());
        }
        tokio::time::sleep(beat).await;
    }
}
