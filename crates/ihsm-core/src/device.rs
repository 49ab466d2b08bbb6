//! The device: its state machine (booting -> operational -> tampered | fatal), its
//! partitions, its store, and the tamper response.

use crate::Map;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ihsm_crypto::ExposeSecret;
use ihsm_crypto::ec::EccP384PrivateKey;
use ihsm_crypto::seal::SealKey;
use ihsm_rot::runtime::Runtime;
use ihsm_rot::state::StateDir;
use ihsm_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::audit::{AuditEvent, Head};
use crate::error::{CoreError, Result};
use crate::partition::{Partition, PartitionInfo, PartitionRecord, RecordKeys};
use crate::pin::PinVerifier;
use crate::quota::Quotas;
pub use ihsm_proto::types::PartitionPolicy;

/// The purpose string of the store's sealing key on the RoT key ladder.
const SEALING_PURPOSE: &[u8] = b"ihsm store sealing key v1";
/// Partition id 0 holds the device record and the device audit log.
const DEVICE_PID: u32 = 0;

pub use ihsm_proto::types::{DeviceState, TamperPolicy};

/// How the device runs.
#[derive(Clone)]
pub struct DeviceConfig {
    /// The state directory (fuses, store, latch).
    pub state_dir: PathBuf,
    /// The fuse file, when it is not `fuses.bin` in the state directory.
    pub fuses: Option<PathBuf>,
    /// Tamper response.
    pub tamper_policy: TamperPolicy,
    /// PBKDF2 iterations of new PIN verifiers.
    pub pin_iterations: u32,
    /// Most partitions.
    pub max_partitions: u32,
    /// Told of every audit entry (`pid`, `seq`, its encoding, docs/audit.md) once
    /// it is durable: the daemon's `[audit] syslog` output. It must not block.
    pub audit_sink: Option<ihsm_store::AuditObserver>,
}

impl core::fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("state_dir", &self.state_dir)
            .field("fuses", &self.fuses)
            .field("tamper_policy", &self.tamper_policy)
            .field("pin_iterations", &self.pin_iterations)
            .field("max_partitions", &self.max_partitions)
            .field("audit_sink", &self.audit_sink.is_some())
            .finish()
    }
}

impl DeviceConfig {
    /// Production defaults for `state_dir`.
    #[must_use]
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            fuses: None,
            tamper_policy: TamperPolicy::ZeroizeAndDestroy,
            pin_iterations: 100_000,
            max_partitions: 4096,
            audit_sink: None,
        }
    }
}

mod domain;
mod migrate;
pub(crate) use domain::LiveDomain;
#[cfg(fuzzing)]
pub(crate) use domain::parse_offer;
pub use domain::{DomainInfo, DomainOffer};
pub use migrate::PendingMove;

/// The device record (partition id 0 of the store): its first format's fields,
/// then (`migrate::Moves`) the partitions in the middle of a move, if any.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeviceRecord {
    next_pid: u32,
    #[serde(skip)]
    moves: migrate::Moves,
    #[serde(skip)]
    domain: domain::Domain,
}

/// What a new partition starts with.
#[derive(Debug)]
pub struct PartitionSpec {
    /// Name: 1 to 32 of a-z, 0-9, '-', '_'.
    pub name: String,
    /// Owner uid.
    pub owner_uid: u32,
    /// Owner gid.
    pub owner_gid: u32,
    /// The Security Officer PIN.
    pub so_pin: Zeroizing<Vec<u8>>,
    /// The user PIN, if set now (else the SO sets it with C_InitPIN).
    pub user_pin: Option<Zeroizing<Vec<u8>>>,
    /// Quotas.
    pub quotas: Quotas,
    /// What it allows that the HSM refuses by default.
    pub policy: PartitionPolicy,
}

/// State shared by the device and its partitions.
pub(crate) struct Shared {
    state: RwLock<DeviceState>,
    /// `state == Operational`, readable without the lock: the per-call check's
    /// fast path. Cleared before the state leaves Operational.
    operational: AtomicBool,
    partitions: RwLock<Map<u32, Arc<Partition>>>,
    runtime: Mutex<Option<Runtime>>,
    store: RwLock<Option<Arc<Store>>>,
    device_audit: Mutex<Head>,
    config: DeviceConfig,
    /// An id of this start of the device, random (a key report's launch id).
    launch_id: [u8; 16],
    /// The EARs releases have accepted, until they expire: each is used once.
    pub(crate) release_replays: Mutex<ihsm_verify::release::ReplayCache>,
    /// The key that signs the device log's checkpoints (derived from the root of
    /// trust's stable identity, certified by the RT Alias); gone on tamper.
    device_audit_key: Mutex<Option<EccP384PrivateKey>>,
    /// The fleet transfer key (HPKE's DHKEM P-384 between hosts): drawn at each
    /// start, never stored, zeroized with the rest.
    transfer_key: Mutex<Option<EccP384PrivateKey>>,
    /// The fleet masking domain's keys, when this device holds it.
    domain: RwLock<Option<Arc<LiveDomain>>>,
    /// The transfer key's certificate, issued once per start.
    transfer_cert: Mutex<Option<Vec<u8>>>,
}

/// The device log's checkpoint key: a P-384 scalar from the root of trust's
/// stable-identity ladder at SVN 0 (the same across reboots and signed upgrades),
/// for this purpose only.
fn device_audit_key(rt: &Runtime) -> Result<EccP384PrivateKey> {
    let seed = rt.sealing_key(0, b"ihsm device audit checkpoint key v1")?;
    let scalar = ihsm_crypto::kdf::hkdf(
        ihsm_crypto::hash::HashAlg::Sha384,
        b"",
        seed.expose_secret(),
        b"ihsm device audit P-384 scalar v1",
        48,
    )?;
    let s = ihsm_crypto::Secret::<48>::from_slice(scalar.expose_secret())?;
    Ok(EccP384PrivateKey::from_scalar(&s)?)
}

fn latch_path(config: &DeviceConfig) -> PathBuf {
    config.state_dir.join("TAMPERED")
}

impl Shared {
    /// This start's launch id.
    pub(crate) fn launch_id(&self) -> [u8; 16] {
        self.launch_id
    }

    /// Runs `f` with the root of trust, while it is there.
    fn with_runtime<T>(&self, f: impl FnOnce(&Runtime) -> Result<T>) -> Result<T> {
        let rt = self
            .runtime
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        f(rt.as_ref()
            .ok_or_else(|| CoreError::Fatal("root of trust gone".into()))?)
    }

    /// The fleet masking domain's keys, when this device holds it.
    pub(crate) fn fleet_domain(&self) -> Option<Arc<LiveDomain>> {
        self.domain.read().ok().and_then(|d| d.clone())
    }

    /// The RT Alias TcbInfo FWIDs (a key report's TCB).
    pub(crate) fn tcb(&self) -> Result<[[u8; 48]; 2]> {
        self.with_runtime(|rt| Ok(rt.tcb_fwids()))
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.operational.load(Ordering::Acquire) {
            return Ok(());
        }
        match &*self
            .state
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
        {
            DeviceState::Operational => Ok(()),
            DeviceState::Tampered(r) => Err(CoreError::Tampered(r.clone())),
            DeviceState::Fatal(r) => Err(CoreError::Fatal(r.clone())),
            DeviceState::Booting => Err(CoreError::Fatal("device is still booting".into())),
        }
    }

    fn zeroize_all(&self) {
        let parts: Vec<Arc<Partition>> = self
            .partitions
            .write()
            .map(|mut m| m.drain().map(|(_, p)| p).collect())
            .unwrap_or_default();
        for p in &parts {
            p.zeroize();
        }
        drop(parts);
        if let Ok(mut k) = self.device_audit_key.lock() {
            *k = None;
        }
        if let Ok(mut k) = self.transfer_key.lock() {
            *k = None;
        }
        if let Ok(mut d) = self.domain.write() {
            *d = None;
        }
        if let Ok(mut c) = self.transfer_cert.lock() {
            *c = None;
        }
        if let Ok(mut rt) = self.runtime.lock() {
            if let Some(r) = rt.as_mut() {
                r.fatal("device tampered or fatal");
            }
            *rt = None;
        }
    }

    /// The tamper response, in order: zeroize every volatile secret, destroy the
    /// persistent sealing material if the policy says so, latch TAMPERED, audit it.
    pub(crate) fn tamper(&self, source: &str) {
        self.operational.store(false, Ordering::Release);
        {
            let Ok(mut st) = self.state.write() else {
                return;
            };
            if matches!(*st, DeviceState::Tampered(_)) {
                return;
            }
            *st = DeviceState::Tampered(source.to_owned());
        }
        self.zeroize_all();
        let state = StateDir::new(&self.config.state_dir).with_fuses_at(self.config.fuses.clone());
        let destroyed = self.config.tamper_policy == TamperPolicy::ZeroizeAndDestroy
            && state.destroy_fuses().is_ok();
        let latch = format!(
            "tampered at {} (unix seconds): {source}\nfuses destroyed: {destroyed}\n",
            now()
        );
        let _ = ihsm_rot::fuses::write_atomic(&latch_path(&self.config), latch.as_bytes(), 0o600);
        // The audit entry goes to the store with the last use of its key; then the
        // store (and with it the sealing key) is dropped.
        let store = self.store.write().ok().and_then(|mut s| s.take());
        if let Some(store) = store
            && let Ok(mut head) = self.device_audit.lock()
        {
            let mut next = head.clone();
            if let Ok((seq, bytes)) = next.append(AuditEvent::Tamper {
                source: source.to_owned(),
            }) && store
                .write(|tx| tx.audit_append(DEVICE_PID, seq, &bytes))
                .is_ok()
            {
                *head = next;
            }
        }
    }

    /// Enters the fatal state (a self-test failed), dropping every secret.
    pub(crate) fn fatal(&self, reason: &str) {
        if let Ok(mut st) = self.state.write() {
            if !matches!(*st, DeviceState::Operational | DeviceState::Booting) {
                return;
            }
            self.operational.store(false, Ordering::Release);
            *st = DeviceState::Fatal(reason.to_owned());
        }
        self.zeroize_all();
        if let Ok(mut s) = self.store.write() {
            *s = None;
        }
    }

    pub(crate) fn store(&self) -> Result<Arc<Store>> {
        self.check()?;
        self.store
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .clone()
            .ok_or_else(|| CoreError::Fatal("store closed".into()))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The HSM device.
pub struct Device {
    shared: Arc<Shared>,
}

impl core::fmt::Debug for Device {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Device")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Starts the device on a booted root of trust: power-on self-tests, the store
    /// opened with the sealing key from the key ladder, partitions loaded.
    ///
    /// # Errors
    /// [`CoreError::Tampered`] when latched (or when the store fails its integrity
    /// or rollback check, which latches it); [`CoreError::Fatal`] when a self-test
    /// fails; [`CoreError::Store`] (`WrongIdentity`) for a store sealed by another
    /// identity, which is left untouched.
    pub fn start(config: DeviceConfig, runtime: Runtime) -> Result<Self> {
        let latch = latch_path(&config);
        if let Ok(reason) = std::fs::read_to_string(&latch) {
            return Err(CoreError::Tampered(reason.trim().to_owned()));
        }
        let kats = ihsm_crypto::kat::run_all()
            .map_err(|e| CoreError::Fatal(format!("power-on self-test: {e}")))?;
        let store_path = config.state_dir.join("store.redb");
        let counter_path = config.state_dir.join("store.counter");
        let sealed_svn = Store::sealed_svn(&store_path)?.unwrap_or(runtime.svn());
        let sealing = runtime.sealing_key(sealed_svn, SEALING_PURPOSE)?;
        let audit_key = device_audit_key(&runtime)?;
        let opened = Store::open(
            &store_path,
            &counter_path,
            SealKey::new(sealing),
            sealed_svn,
        );
        let store = match opened {
            Ok((store, _report)) => {
                if let Some(sink) = &config.audit_sink {
                    store.set_audit_observer(Arc::clone(sink));
                }
                Arc::new(store)
            }
            Err(e @ (StoreError::Rollback { .. } | StoreError::Corrupt { .. })) => {
                let reason = format!("store integrity check failed at start: {e}");
                let _ = ihsm_rot::fuses::write_atomic(&latch, reason.as_bytes(), 0o600);
                return Err(CoreError::Tampered(reason));
            }
            Err(e) => return Err(e.into()),
        };
        let shared = Arc::new(Shared {
            state: RwLock::new(DeviceState::Booting),
            operational: AtomicBool::new(false),
            partitions: RwLock::new(Map::default()),
            runtime: Mutex::new(Some(runtime)),
            store: RwLock::new(Some(Arc::clone(&store))),
            device_audit: Mutex::new(Head::default()),
            config,
            launch_id: ihsm_crypto::rand::array()?,
            release_replays: Mutex::new(ihsm_verify::release::ReplayCache::new()),
            device_audit_key: Mutex::new(None),
            transfer_key: Mutex::new(Some(EccP384PrivateKey::generate()?)),
            domain: RwLock::new(None),
            transfer_cert: Mutex::new(None),
        });
        let device = Self { shared };
        let mut head = crate::partition::device_head(&store)?;
        let (seq, bytes) = head.append(AuditEvent::SelfTest {
            passed: true,
            detail: kats.passed.join(", "),
        })?;
        // A signed checkpoint at each start vouches for everything before it.
        let cp = head.checkpoint(DEVICE_PID, &audit_key)?;
        let (cseq, cbytes) = head.append(cp)?;
        store.write(|tx| {
            tx.audit_append(DEVICE_PID, seq, &bytes)?;
            tx.audit_append(DEVICE_PID, cseq, &cbytes)
        })?;
        *device
            .shared
            .device_audit_key
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))? = Some(audit_key);
        *device
            .shared
            .device_audit
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))? = head;
        let mut parts = Map::default();
        for (pid, bytes) in store.partitions()? {
            if pid == DEVICE_PID {
                continue;
            }
            let (rec, keys) = PartitionRecord::decode(bytes.expose_secret())?;
            let p = Arc::new(Partition::load(
                rec,
                keys,
                &store,
                Arc::downgrade(&device.shared),
            )?);
            parts.insert(pid, p);
        }
        *device
            .shared
            .partitions
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))? = parts;
        let rec = Self::device_record(&store)?;
        device.apply_marks(&rec.moves)?;
        device.load_domain(&rec.domain)?;
        *device
            .shared
            .state
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))? = DeviceState::Operational;
        device.shared.operational.store(true, Ordering::Release);
        for p in device.partitions_arc()? {
            if p.standing() == crate::partition::SERVING {
                p.audit_checkpoint()?;
            }
        }
        Ok(device)
    }

    /// The state.
    #[must_use]
    pub fn state(&self) -> DeviceState {
        self.shared
            .state
            .read()
            .map(|s| s.clone())
            .unwrap_or(DeviceState::Fatal("lock poisoned".into()))
    }

    fn partitions_arc(&self) -> Result<Vec<Arc<Partition>>> {
        Ok(self
            .shared
            .partitions
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .values()
            .cloned()
            .collect())
    }

    /// Every partition's description, by id.
    ///
    /// # Errors
    /// Device state errors.
    pub fn partitions(&self) -> Result<Vec<PartitionInfo>> {
        self.shared.check()?;
        let mut v = self
            .partitions_arc()?
            .iter()
            .filter(|p| p.standing() != crate::partition::INCOMING)
            .map(|p| p.info())
            .collect::<Result<Vec<_>>>()?;
        v.sort_by_key(|i| i.id);
        Ok(v)
    }

    /// A partition by id.
    ///
    /// # Errors
    /// [`CoreError::PartitionNotFound`], device state errors.
    pub fn partition(&self, id: u32) -> Result<Arc<Partition>> {
        self.shared.check()?;
        self.shared
            .partitions
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .get(&id)
            .cloned()
            .filter(|p| p.standing() != crate::partition::INCOMING)
            .map_or_else(
                || match self.moved_id(id)? {
                    Some((name, to)) => Err(CoreError::PartitionMoved { name, to }),
                    None => Err(CoreError::PartitionNotFound(id.to_string())),
                },
                Ok,
            )
    }

    /// A partition by name.
    ///
    /// # Errors
    /// [`CoreError::PartitionNotFound`], device state errors.
    pub fn partition_by_name(&self, name: &str) -> Result<Arc<Partition>> {
        self.shared.check()?;
        match self
            .partitions_arc()?
            .into_iter()
            .find(|p| p.name() == name)
        {
            Some(p) if p.standing() != crate::partition::SERVING => Err(p.standing_error()),
            Some(p) => Ok(p),
            None => match self.moved_to(name)? {
                Some(to) => Err(CoreError::PartitionMoved {
                    name: name.to_owned(),
                    to,
                }),
                None => Err(CoreError::PartitionNotFound(name.to_owned())),
            },
        }
    }

    fn device_record(store: &Store) -> Result<DeviceRecord> {
        match store.partition(DEVICE_PID)? {
            Some(b) => DeviceRecord::decode(b.expose_secret()),
            None => Ok(DeviceRecord {
                next_pid: 1,
                moves: migrate::Moves::default(),
                domain: domain::Domain::default(),
            }),
        }
    }

    /// Creates a partition: a random master key, a fresh identity key, the SO PIN
    /// (and optionally the user PIN).
    ///
    /// # Errors
    /// Name, limit and PIN errors.
    pub fn create_partition(&self, spec: PartitionSpec) -> Result<PartitionInfo> {
        let store = self.shared.store()?;
        if !valid_name(&spec.name) {
            return Err(CoreError::PartitionNameInvalid(spec.name));
        }
        let mut parts = self
            .shared
            .partitions
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        if parts.values().any(|p| p.name() == spec.name) {
            return Err(CoreError::PartitionExists(spec.name));
        }
        if parts.len() >= self.shared.config.max_partitions as usize {
            return Err(CoreError::PartitionLimit(self.shared.config.max_partitions));
        }
        let iterations = self.shared.config.pin_iterations;
        let mut dev = Self::device_record(&store)?;
        // A partition that arrived from another host keeps its id: skip the ids
        // in use.
        let mut pid = dev.next_pid;
        while pid == DEVICE_PID || parts.contains_key(&pid) {
            pid = pid
                .checked_add(1)
                .ok_or(CoreError::PartitionLimit(u32::MAX))?;
        }
        dev.next_pid = pid
            .checked_add(1)
            .ok_or(CoreError::PartitionLimit(u32::MAX))?;
        // The keys live in locked memory only: the record keeps the rest.
        let keys = RecordKeys {
            master: ihsm_crypto::Secret::<32>::random()?,
            identity: ihsm_crypto::SecretVec::from_slice(
                &EccP384PrivateKey::generate()?.to_pkcs8_der()?,
            )?,
        };
        let record = PartitionRecord {
            version: 1,
            id: pid,
            name: spec.name.clone(),
            owner_uid: spec.owner_uid,
            owner_gid: spec.owner_gid,
            so_pin: Some(PinVerifier::new(&spec.so_pin, iterations)?),
            user_pin: spec
                .user_pin
                .as_ref()
                .map(|p| PinVerifier::new(p, iterations))
                .transpose()?,
            pin_iterations: iterations,
            quotas: spec.quotas,
            created: now(),
            principals: Vec::new(),
            policy: spec.policy,
        };
        let rec_bytes = record.encode(&keys.master, keys.identity.expose_secret())?;
        let dev_bytes = dev.encode()?;
        let mut dhead = self
            .shared
            .device_audit
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let mut next = dhead.clone();
        let (dseq, dentry) = next.append(AuditEvent::PartitionCreated { pid })?;
        let mut phead = Head::default();
        let (pseq, pentry) = phead.append(AuditEvent::PartitionCreated { pid })?;
        store.write(|tx| {
            tx.put_partition(DEVICE_PID, &dev_bytes)?;
            tx.put_partition(pid, rec_bytes.expose_secret())?;
            tx.audit_append(DEVICE_PID, dseq, &dentry)?;
            tx.audit_append(pid, pseq, &pentry)
        })?;
        *dhead = next;
        drop(dhead);
        drop(rec_bytes);
        let p = Arc::new(Partition::load(
            record,
            keys,
            &store,
            Arc::downgrade(&self.shared),
        )?);
        let info = p.info()?;
        parts.insert(pid, Arc::clone(&p));
        drop(parts);
        p.audit_checkpoint()?;
        Ok(info)
    }

    /// Deletes a partition: every object, its record and its log are removed in one
    /// transaction, and its secrets are zeroized.
    ///
    /// # Errors
    /// [`CoreError::PartitionNotFound`].
    pub fn delete_partition(&self, id: u32) -> Result<()> {
        let store = self.shared.store()?;
        let p = {
            let parts = self
                .shared
                .partitions
                .read()
                .map_err(|_| CoreError::Internal("lock poisoned"))?;
            parts
                .get(&id)
                .cloned()
                .ok_or_else(|| CoreError::PartitionNotFound(id.to_string()))?
        };
        let mut dhead = self
            .shared
            .device_audit
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let mut next = dhead.clone();
        let (seq, entry) = next.append(AuditEvent::PartitionDeleted { pid: id })?;
        store.write(|tx| {
            tx.delete_partition(id)?;
            tx.audit_append(DEVICE_PID, seq, &entry)
        })?;
        *dhead = next;
        p.zeroize();
        self.shared
            .partitions
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .remove(&id);
        Ok(())
    }

    /// The tamper sensor input (the stand-in for lid, thermal and voltage sensors).
    pub fn tamper(&self, source: &str) {
        self.shared.tamper(source);
    }

    /// Polls the sensors the process can see itself: a debugger attached
    /// (`TracerPid` in `/proc/self/status`). Returns what fired.
    pub fn poll_sensors(&self) -> Option<String> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let tracer = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0);
        if tracer != 0 {
            let reason = format!("debugger attached (TracerPid {tracer})");
            self.tamper(&reason);
            return Some(reason);
        }
        None
    }

    /// The firmware SVN of the running root of trust.
    ///
    /// # Errors
    /// Device state errors.
    pub fn svn(&self) -> Result<u32> {
        self.shared.check()?;
        self.shared.with_runtime(|rt| Ok(rt.svn()))
    }

    /// The partition's identity certificate, issued now by the RT Alias key: of
    /// its ECC P-384 identity key, or (`mldsa`) of its ML-DSA-87 one.
    ///
    /// # Errors
    /// Device state and certificate errors.
    pub fn partition_certificate(&self, id: u32, mldsa: bool) -> Result<Vec<u8>> {
        let p = self.partition(id)?;
        self.shared.with_runtime(|rt| {
            Ok(if mldsa {
                rt.certify_partition_mldsa_key(p.name(), id, p.identity_mldsa_public())?
            } else {
                rt.certify_partition_key(p.name(), id, p.identity_public())?
            })
        })
    }

    /// At most `limit` stored entries of an audit log from sequence number `since`
    /// on, in order: the device's (`pid` 0) or a partition's. For `ihsm audit`.
    ///
    /// # Errors
    /// [`CoreError::PartitionNotFound`], store and device state errors.
    pub fn audit_page(&self, pid: u32, since: u64, limit: usize) -> Result<Vec<Vec<u8>>> {
        self.shared.check()?;
        if pid != DEVICE_PID {
            self.partition(pid)?;
        }
        let store = self.shared.store()?;
        Ok(store
            .audit(pid, since.max(1), limit)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// The device audit log (encoded entries).
    ///
    /// # Errors
    /// Store errors.
    pub fn device_audit(&self) -> Result<Vec<Vec<u8>>> {
        let store = self.shared.store()?;
        let mut out = Vec::new();
        let mut from = 1;
        loop {
            let batch = store.audit(DEVICE_PID, from, 4096)?;
            let Some((last, _)) = batch.last() else { break };
            from = last.saturating_add(1);
            out.extend(batch.into_iter().map(|(_, e)| e));
        }
        Ok(out)
    }

    /// Stops the device (an orderly shutdown): every volatile secret is zeroized
    /// and the store closed; every later call answers "device stopped". Nothing
    /// persistent changes, so the next start opens the same store.
    pub fn stop(&self) {
        if let Ok(mut st) = self.shared.state.write() {
            self.shared.operational.store(false, Ordering::Release);
            if matches!(*st, DeviceState::Operational | DeviceState::Booting) {
                *st = DeviceState::Fatal("device stopped".into());
            }
        }
        self.shared.zeroize_all();
        if let Ok(mut s) = self.shared.store.write() {
            *s = None;
        }
    }

    /// Runs a root-of-trust mailbox command (Caliptra's command code, checksummed
    /// payload) and returns the raw response or the mailbox's error.
    ///
    /// # Errors
    /// Device state errors (after a tamper the root of trust is gone); the inner
    /// result is the mailbox's own answer.
    pub fn mailbox(
        &self,
        command: u32,
        payload: &[u8],
    ) -> Result<core::result::Result<Vec<u8>, ihsm_rot::mailbox::MailboxError>> {
        self.shared.check()?;
        let mut guard = self
            .shared
            .runtime
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let answer = guard
            .as_mut()
            .ok_or_else(|| CoreError::Fatal("root of trust gone".into()))?
            .mailbox(command, payload);
        drop(guard);
        // Evidence served is an attestation event: each quote, with its nonce, is
        // in the device log before the verifier gets it.
        use ihsm_rot::mailbox::cmd;
        if answer.is_ok() && matches!(command, cmd::QUOTE_PCRS_ECC384 | cmd::QUOTE_PCRS_MLDSA87) {
            let nonce = payload.get(4..36).unwrap_or_default().to_vec();
            self.device_event(AuditEvent::QuoteServed { command, nonce })?;
        }
        Ok(answer)
    }

    /// Writes one event to the device log, durably.
    fn device_event(&self, event: AuditEvent) -> Result<()> {
        let store = self.shared.store()?;
        let mut head = self
            .shared
            .device_audit
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let mut next = head.clone();
        let (seq, bytes) = next.append(event)?;
        let checkpoint = if next.checkpoint_due() {
            let key = self
                .shared
                .device_audit_key
                .lock()
                .map_err(|_| CoreError::Internal("lock poisoned"))?;
            let key = key
                .as_ref()
                .ok_or_else(|| CoreError::Fatal("the device audit key is gone".into()))?;
            let cp = next.checkpoint(DEVICE_PID, key)?;
            Some(next.append(cp)?)
        } else {
            None
        };
        store.write(|tx| {
            tx.audit_append(DEVICE_PID, seq, &bytes)?;
            match &checkpoint {
                Some((cseq, cbytes)) => tx.audit_append(DEVICE_PID, *cseq, cbytes),
                None => Ok(()),
            }
        })?;
        *head = next;
        Ok(())
    }

    /// The certificate of the key that signs the device log's checkpoints, issued
    /// now by the RT Alias key in the partition certificates' profile, as the log
    /// of partition 0: `CN=ihsm partition device`, `OU=partition 0`.
    ///
    /// # Errors
    /// Device state and certificate errors.
    pub fn device_audit_certificate(&self) -> Result<Vec<u8>> {
        self.shared.check()?;
        let key = self
            .shared
            .device_audit_key
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let public = key
            .as_ref()
            .ok_or_else(|| CoreError::Fatal("the device audit key is gone".into()))?
            .public_key()
            .clone();
        drop(key);
        self.shared
            .with_runtime(|rt| Ok(rt.certify_partition_key("device", DEVICE_PID, &public)?))
    }

    /// The certificate of this start's transfer key (ECC P-384, for HPKE between
    /// fleet hosts), issued by the RT Alias key at its first use and the same
    /// bytes for the rest of the start (its validity is the manifest's), so that
    /// what peers sealed to is recognised in every record: `CN=ihsm device
    /// transfer`, keyAgreement (docs/fleet.md).
    ///
    /// # Errors
    /// Device state and certificate errors.
    pub fn transfer_certificate(&self) -> Result<Vec<u8>> {
        self.shared.check()?;
        let public = self
            .shared
            .transfer_key
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .as_ref()
            .ok_or_else(|| CoreError::Fatal("the transfer key is gone".into()))?
            .public_key()
            .clone();
        let mut cached = self
            .shared
            .transfer_cert
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        if let Some(cert) = cached.as_ref() {
            return Ok(cert.clone());
        }
        let cert = self
            .shared
            .with_runtime(|rt| Ok(rt.certify_transfer_key(&public)?))?;
        *cached = Some(cert.clone());
        Ok(cert)
    }

    /// The root of trust's boot report, as JSON.
    ///
    /// # Errors
    /// Device state errors.
    pub fn boot_report_json(&self) -> Result<String> {
        self.shared.with_runtime(|rt| {
            serde_json::to_string(rt.report())
                .map_err(|_| CoreError::Internal("boot report encoding"))
        })
    }
}
