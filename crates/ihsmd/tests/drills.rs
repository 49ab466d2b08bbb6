//! Drills of the hardening issue, against the real `ihsmd`:
//!
//! - the crash drill: SIGKILL at random points of a mixed stream of writes (key
//!   and object creation, destruction, attribute changes, partition creation and
//!   deletion), hundreds of times, checking after each restart that the daemon
//!   holds exactly the acknowledged state, and that each write in flight at the
//!   kill is either wholly there or wholly absent;
//! - a full disk (a small tmpfs) and a file system gone read-only (ext4 remounted
//!   read-only on error), each in a private mount namespace: writes fail with a
//!   clear error, reads go on, and after repair and a restart every object is
//!   intact;
//! - a soak: several tenants of mixed load, the daemon's memory sampled, latency
//!   per interval printed.
//!
//! See `docs/drills.md` for how to run them and the figures measured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use cryptoki_sys as ck;
use ihsm_client::{Client, ClientError};
use ihsm_proto::ErrorCode;
use ihsm_proto::attr::{AttrResult, AttrValue, Attribute};
use ihsm_proto::mech::{GcmIv, Hash, Mechanism};
use ihsm_proto::msg::{PartitionSpec, SecretBytes};
use ihsm_proto::types::{DeviceState, UserType};

// ---- shared helpers ----------------------------------------------------------------

/// xorshift64*: small, seeded, replayable.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// 8 to 31 random bytes.
    fn var_bytes(&mut self) -> Vec<u8> {
        let n = 8 + self.below(24) as usize;
        self.bytes(n)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The seed from `var` (decimal or 0x-hex) to replay a run, else a fresh one.
fn seed_from(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(s) => {
            let s = s.trim();
            s.strip_prefix("0x")
                .map_or_else(|| s.parse(), |h| u64::from_str_radix(h, 16))
                .unwrap_or_else(|e| panic!("{var}={s:?} is not a number: {e}"))
        }
        Err(_) => {
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
        }
    }
}

fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var).map_or(default, |s| {
        s.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{var}={s:?} is not a number: {e}"))
    })
}

/// A request that never reached an answer because the daemon went away, as
/// opposed to the HSM refusing it.
fn connection_lost(e: &ClientError) -> bool {
    !matches!(e, ClientError::Hsm(_))
}

fn spec(name: &str) -> PartitionSpec {
    PartitionSpec {
        name: name.into(),
        owner_uid: euid(),
        owner_gid: egid(),
        so_pin: SecretBytes::new(SO_PIN),
        user_pin: Some(SecretBytes::new(USER_PIN)),
        quotas: None,
        policy: Default::default(),
    }
}

fn tenant_at(sock: &Path) -> Result<(Client, u64), ClientError> {
    let mut c = Client::connect(sock)?;
    let s = c.open_session(true)?;
    c.login(s, UserType::User, USER_PIN)?;
    Ok((c, s))
}

fn value(r: &AttrResult) -> Option<&AttrValue> {
    match r {
        AttrResult::Value(v) => Some(v),
        _ => None,
    }
}

fn bytes_of(r: &AttrResult) -> Vec<u8> {
    match value(r) {
        Some(AttrValue::Bytes(b)) => b.clone(),
        other => panic!("expected bytes, got {other:?}"),
    }
}

fn ulong_of(r: &AttrResult) -> u64 {
    match value(r) {
        Some(AttrValue::Ulong(u)) => *u,
        other => panic!("expected a number, got {other:?}"),
    }
}

fn gcm() -> Mechanism {
    Mechanism::AesGcm {
        iv: GcmIv::Generate,
        aad: b"drill".to_vec(),
        tag_bits: 128,
    }
}

/// Encrypts and decrypts with `key`: the key is whole and usable.
fn aes_round_trip(c: &mut Client, s: u64, key: u64) -> Result<(), ClientError> {
    let (ct, iv) = c.encrypt_once(s, gcm(), key, b"drill plaintext")?;
    let iv = iv.ok_or_else(|| ClientError::Protocol("no IV returned".into()))?;
    c.crypt_init(
        s,
        Mechanism::AesGcm {
            iv: GcmIv::Supplied(iv),
            aad: b"drill".to_vec(),
            tag_bits: 128,
        },
        key,
        false,
    )?;
    let pt = c.decrypt(s, ct)?;
    assert_eq!(
        pt.expose(),
        b"drill plaintext",
        "key {key:#x} decrypts wrongly"
    );
    Ok(())
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A daemon started with its log outside the state directory and a chosen log
/// level (the helper in `common` keeps the log inside, which a full or read-only
/// state directory cannot take). SIGTERM on drop.
struct Ihsmd {
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Ihsmd {
    fn start(dir: &Path, log: &Path, level: &str) -> Result<Self, String> {
        if !dir.join("ihsmd.toml").exists() {
            std::fs::write(dir.join("ihsmd.toml"), TEST_CONFIG).unwrap();
        }
        let out = std::fs::File::create(log).unwrap();
        // `IHSM_DRILL_IHSMD` runs another build of the daemon (a release one, for
        // the soak's latency figures).
        let exe = std::env::var_os("IHSM_DRILL_IHSMD")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ihsmd")), PathBuf::from);
        let child = Command::new(exe)
            .arg("--state")
            .arg(dir)
            .args(["--dev", "--log-level", level])
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut d = Self {
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = Client::connect(d.admin_socket())
                && c.ping().is_ok()
            {
                return Ok(d);
            }
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                d.child = None;
                return Err(format!("exited with {status}:\n{}", d.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("no admin socket after 60 s:\n{}", d.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    fn socket(&self, partition: &str) -> PathBuf {
        self.dir
            .join("partitions")
            .join(format!("{partition}.sock"))
    }

    fn admin(&self) -> Client {
        Client::connect(self.admin_socket()).unwrap()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        signal(&child, rustix::process::Signal::TERM);
        wait(&mut child, Duration::from_secs(30))
    }
}

impl Drop for Ihsmd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, rustix::process::Signal::TERM);
            let _ = wait(&mut child, Duration::from_secs(30));
        }
    }
}

// ---- the crash drill ------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An AES-256 key (generated inside); `second` is its CKA_ID.
    Aes,
    /// A data object; `second` is its CKA_VALUE.
    Data,
}

/// An object as the model knows it: everything the drill reads back.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Obj {
    kind: Kind,
    label: Vec<u8>,
    second: Vec<u8>,
}

/// A partition's token objects by handle (handles name (partition, object id) and
/// do not change across restarts).
type Objects = BTreeMap<u64, Obj>;

/// The one write a worker had sent when the daemon died.
#[derive(Clone, Debug)]
enum InFlight {
    Create { part: String, obj: Obj },
    Destroy { part: String, handle: u64 },
    Set { part: String, handle: u64, new: Obj },
    CreatePartition { name: String },
    DeletePartition { name: String },
}

impl InFlight {
    fn kind(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create object",
            Self::Destroy { .. } => "destroy object",
            Self::Set { .. } => "set attributes",
            Self::CreatePartition { .. } => "create partition",
            Self::DeletePartition { .. } => "delete partition",
        }
    }
}

/// What a worker reports when the daemon is gone.
#[derive(Default)]
struct Outcome {
    parts: BTreeMap<String, Objects>,
    in_flight: Option<InFlight>,
    acked: u64,
    error: Option<String>,
}

/// A write worker on one partition it owns alone: creates keys and data objects,
/// destroys them, changes two attributes at once, until the connection dies.
fn object_worker(sock: PathBuf, part: String, mut objects: Objects, seed: u64) -> Outcome {
    let mut rng = Rng::new(seed);
    let mut out = Outcome::default();
    if let Ok((mut c, s)) = tenant_at(&sock) {
        loop {
            match object_step(&mut c, s, &part, &mut objects, &mut rng, &mut out) {
                Ok(()) => {}
                Err(e) if connection_lost(&e) => break,
                Err(e) => {
                    out.error = Some(format!("{part}: {:?}: {e}", out.in_flight));
                    break;
                }
            }
        }
    }
    out.parts.insert(part, objects);
    out
}

/// One write: `out.in_flight` names it until it is acknowledged.
fn object_step(
    c: &mut Client,
    s: u64,
    part: &str,
    objects: &mut Objects,
    rng: &mut Rng,
    out: &mut Outcome,
) -> Result<(), ClientError> {
    let n = objects.len() as u64;
    // Keep a partition between 8 and 24 objects: more creation when small, more
    // destruction when large.
    let roll = rng.below(100);
    let label = |rng: &mut Rng| format!("{part}-{:016x}", rng.next()).into_bytes();
    if n < 8 || (n < 24 && roll < 35) {
        let kind = if rng.below(2) == 0 {
            Kind::Aes
        } else {
            Kind::Data
        };
        let obj = Obj {
            kind,
            label: label(rng),
            second: rng.var_bytes(),
        };
        out.in_flight = Some(InFlight::Create {
            part: part.into(),
            obj: obj.clone(),
        });
        let h = match kind {
            Kind::Aes => c.generate_key(
                s,
                Mechanism::AesKeyGen,
                vec![
                    Attribute::ulong(ck::CKA_VALUE_LEN, 32),
                    Attribute::bool(ck::CKA_TOKEN, true),
                    Attribute::bytes(ck::CKA_LABEL, obj.label.clone()),
                    Attribute::bytes(ck::CKA_ID, obj.second.clone()),
                ],
            )?,
            Kind::Data => c.create_object(
                s,
                vec![
                    Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
                    Attribute::bool(ck::CKA_TOKEN, true),
                    Attribute::bytes(ck::CKA_LABEL, obj.label.clone()),
                    Attribute::bytes(ck::CKA_APPLICATION, b"drill".to_vec()),
                    Attribute::bytes(ck::CKA_VALUE, obj.second.clone()),
                ],
            )?,
        };
        assert!(objects.insert(h, obj).is_none(), "handle {h:#x} reused");
    } else if roll < 65 || n >= 24 {
        let keys: Vec<u64> = objects.keys().copied().collect();
        let h = rng.pick(&keys);
        out.in_flight = Some(InFlight::Destroy {
            part: part.into(),
            handle: h,
        });
        c.destroy_object(s, h)?;
        objects.remove(&h);
    } else {
        let keys: Vec<u64> = objects.keys().copied().collect();
        let h = rng.pick(&keys);
        let old = objects[&h].clone();
        let new = Obj {
            kind: old.kind,
            label: label(rng),
            second: rng.var_bytes(),
        };
        out.in_flight = Some(InFlight::Set {
            part: part.into(),
            handle: h,
            new: new.clone(),
        });
        let second = match old.kind {
            Kind::Aes => ck::CKA_ID,
            Kind::Data => ck::CKA_VALUE,
        };
        // Two attributes in one request: both old or both new, never one of each.
        c.set_attributes(
            s,
            h,
            vec![
                Attribute::bytes(ck::CKA_LABEL, new.label.clone()),
                Attribute::bytes(second, new.second.clone()),
            ],
        )?;
        objects.insert(h, new);
    }
    out.in_flight = None;
    out.acked += 1;
    Ok(())
}

/// The partition worker: creates short-lived partitions (and a few objects in
/// each, through their own sockets) and deletes them, until the daemon dies.
fn partition_worker(
    dir: PathBuf,
    mut parts: BTreeMap<String, Objects>,
    mut next: u64,
    seed: u64,
) -> (Outcome, u64) {
    let mut rng = Rng::new(seed);
    let mut out = Outcome::default();
    let sock = |name: &str| dir.join("partitions").join(format!("{name}.sock"));
    let mut run = || -> Result<(), ClientError> {
        let mut admin = Client::connect(dir.join("admin.sock"))?;
        loop {
            if parts.len() < 2 || (parts.len() < 4 && rng.below(2) == 0) {
                let name = format!("e{next}");
                next += 1;
                out.in_flight = Some(InFlight::CreatePartition { name: name.clone() });
                admin.create_partition(spec(&name))?;
                parts.insert(name.clone(), Objects::new());
                out.in_flight = None;
                out.acked += 1;
                // Fill it a little, through its own socket.
                let (mut c, s) = tenant_at(&sock(&name))?;
                let objects = parts.get_mut(&name).unwrap();
                for _ in 0..1 + rng.below(3) {
                    let mut o = Outcome::default();
                    let r = object_step(&mut c, s, &name, objects, &mut rng, &mut o);
                    out.in_flight = o.in_flight;
                    out.acked += o.acked;
                    r?;
                }
            } else {
                let names: Vec<&String> = parts.keys().collect();
                let name = names[rng.below(names.len() as u64) as usize].clone();
                out.in_flight = Some(InFlight::DeletePartition { name: name.clone() });
                admin.delete_partition(&name)?;
                parts.remove(&name);
                out.in_flight = None;
                out.acked += 1;
            }
        }
    };
    match run() {
        Ok(()) => {}
        Err(e) if connection_lost(&e) => {}
        Err(e) => out.error = Some(format!("partition worker: {:?}: {e}", out.in_flight)),
    }
    out.parts = parts;
    (out, next)
}

/// Reads every object of a partition back: handle -> what it is.
fn read_partition(c: &mut Client, s: u64) -> Result<Objects, String> {
    let mut found = Objects::new();
    for h in c.find(s, vec![]).map_err(|e| format!("find: {e}"))? {
        let a = c
            .get_attributes(s, h, vec![ck::CKA_CLASS, ck::CKA_LABEL])
            .map_err(|e| format!("object {h:#x}: {e}"))?;
        let kind = match ulong_of(&a[0]) {
            ck::CKO_SECRET_KEY => Kind::Aes,
            ck::CKO_DATA => Kind::Data,
            other => return Err(format!("object {h:#x} of unexpected class {other:#x}")),
        };
        let second = match kind {
            Kind::Aes => ck::CKA_ID,
            Kind::Data => ck::CKA_VALUE,
        };
        let b = c
            .get_attributes(s, h, vec![second])
            .map_err(|e| format!("object {h:#x}: {e}"))?;
        found.insert(
            h,
            Obj {
                kind,
                label: bytes_of(&a[1]),
                second: bytes_of(&b[0]),
            },
        );
    }
    Ok(found)
}

#[derive(Default)]
struct Figures {
    kills: u64,
    acked_checked: u64,
    present: BTreeMap<&'static str, u64>,
    absent: BTreeMap<&'static str, u64>,
    objects_checked: u64,
    index_checked: u64,
    keys_used: u64,
    restarting: Duration,
    checking: Duration,
    writing: Duration,
    delays_ms: u64,
    partitions: u64,
    objects: u64,
}

impl Figures {
    fn add(&mut self, o: &Self) {
        self.kills += o.kills;
        self.acked_checked += o.acked_checked;
        for (k, v) in &o.present {
            *self.present.entry(k).or_default() += v;
        }
        for (k, v) in &o.absent {
            *self.absent.entry(k).or_default() += v;
        }
        self.objects_checked += o.objects_checked;
        self.index_checked += o.index_checked;
        self.keys_used += o.keys_used;
        self.restarting += o.restarting;
        self.checking += o.checking;
        self.writing += o.writing;
        self.delays_ms += o.delays_ms;
        self.partitions += o.partitions;
        self.objects += o.objects;
    }

    fn outcome(&mut self, op: &InFlight, present: bool) {
        let m = if present {
            &mut self.present
        } else {
            &mut self.absent
        };
        *m.entry(op.kind()).or_default() += 1;
    }
}

/// After a restart: resolves the writes that were in flight (each wholly there
/// or wholly absent), then checks that the daemon holds exactly the model.
fn check_against_model(
    d: &Daemon,
    model: &mut BTreeMap<String, Objects>,
    in_flight: &[InFlight],
    figures: &mut Figures,
    rng: &mut Rng,
) -> Result<(), String> {
    let mut admin = d.admin();
    let listed: BTreeSet<String> = admin
        .list_partitions()
        .map_err(|e| format!("list partitions: {e}"))?
        .into_iter()
        .map(|p| p.name)
        .collect();
    for op in in_flight {
        match op {
            InFlight::CreatePartition { name } => {
                let there = listed.contains(name);
                if there {
                    model.insert(name.clone(), Objects::new());
                }
                figures.outcome(op, there);
            }
            InFlight::DeletePartition { name } => {
                let there = listed.contains(name);
                if !there {
                    model.remove(name);
                }
                figures.outcome(op, there);
            }
            _ => {}
        }
    }
    let expected: BTreeSet<String> = model.keys().cloned().collect();
    if listed != expected {
        return Err(format!(
            "partitions: the daemon lists {listed:?}, the acknowledged state is {expected:?}"
        ));
    }
    // Exactly one socket per partition, no leftover of a deleted one.
    let sockets: BTreeSet<String> = std::fs::read_dir(d.dir.join("partitions"))
        .map_err(|e| format!("partition socket directory: {e}"))?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".sock").map(str::to_owned)
        })
        .collect();
    if sockets != expected {
        return Err(format!(
            "partition sockets {sockets:?} do not match the partitions {expected:?}"
        ));
    }
    for (name, objects) in model.iter_mut() {
        // Usable: its socket answers, its user PIN logs in.
        let (mut c, s) =
            tenant_at(&d.socket(name)).map_err(|e| format!("partition {name}: {e}"))?;
        let found = read_partition(&mut c, s).map_err(|e| format!("partition {name}: {e}"))?;
        let mut try_keys = Vec::new();
        // Labels the writes in flight may have taken away.
        let destroyed_labels: Vec<Vec<u8>> = in_flight
            .iter()
            .filter_map(|op| match op {
                InFlight::Destroy { part, handle } | InFlight::Set { part, handle, .. }
                    if part == name =>
                {
                    objects.get(handle).map(|o| o.label.clone())
                }
                _ => None,
            })
            .collect();
        for op in in_flight {
            match op {
                InFlight::Create { part, obj } if part == name => {
                    let new: Vec<u64> = found
                        .iter()
                        .filter(|(h, o)| !objects.contains_key(h) && *o == obj)
                        .map(|(h, _)| *h)
                        .collect();
                    if let Some(h) = new.first() {
                        objects.insert(*h, obj.clone());
                        if obj.kind == Kind::Aes {
                            try_keys.push(*h);
                        }
                    }
                    figures.outcome(op, !new.is_empty());
                }
                InFlight::Destroy { part, handle } if part == name => {
                    let there = found.contains_key(handle);
                    if !there {
                        objects.remove(handle);
                    }
                    figures.outcome(op, there);
                }
                InFlight::Set { part, handle, new } if part == name => {
                    let now = found.get(handle);
                    if now == Some(new) {
                        objects.insert(*handle, new.clone());
                        figures.outcome(op, true);
                    } else if now == objects.get(handle) {
                        figures.outcome(op, false);
                    } else {
                        return Err(format!(
                            "partition {name}: object {handle:#x} after an attribute change in flight is {now:?}: neither the old {:?} nor the new {new:?}",
                            objects.get(handle)
                        ));
                    }
                }
                _ => {}
            }
        }
        if found != *objects {
            let missing: Vec<_> = objects
                .iter()
                .filter(|(h, o)| found.get(h) != Some(o))
                .collect();
            let extra: Vec<_> = found
                .iter()
                .filter(|(h, o)| objects.get(h) != Some(o))
                .collect();
            return Err(format!(
                "partition {name}: acknowledged objects missing or changed: {missing:?}; objects that were never acknowledged (or differ): {extra:?}"
            ));
        }
        figures.objects_checked += found.len() as u64;
        // The attribute index agrees, written in the same transaction: each label
        // an object had or was given in flight finds exactly the objects holding
        // it now, for the writes in flight and one object at random.
        let mut labels: Vec<Vec<u8>> = Vec::new();
        for op in in_flight {
            match op {
                InFlight::Create { part, obj } if part == name => labels.push(obj.label.clone()),
                InFlight::Set { part, new, .. } if part == name => labels.push(new.label.clone()),
                _ => {}
            }
        }
        labels.extend(destroyed_labels.iter().cloned());
        if let Some((_, o)) = objects
            .iter()
            .nth(rng.below(objects.len() as u64 + 1) as usize)
        {
            labels.push(o.label.clone());
        }
        for label in labels {
            let mut hits = c
                .find(s, vec![Attribute::bytes(ck::CKA_LABEL, label.clone())])
                .map_err(|e| format!("partition {name}: find by label: {e}"))?;
            hits.sort_unstable();
            let holders: Vec<u64> = objects
                .iter()
                .filter(|(_, o)| o.label == label)
                .map(|(h, _)| *h)
                .collect();
            if hits != holders {
                return Err(format!(
                    "partition {name}: the index finds {hits:x?} for label {}, the objects holding it are {holders:x?}",
                    String::from_utf8_lossy(&label)
                ));
            }
            figures.index_checked += 1;
        }
        // Keys created in flight, and one other at random, still work.
        let aes: Vec<u64> = objects
            .iter()
            .filter(|(_, o)| o.kind == Kind::Aes)
            .map(|(h, _)| *h)
            .collect();
        if !aes.is_empty() {
            try_keys.push(rng.pick(&aes));
        }
        for k in try_keys {
            aes_round_trip(&mut c, s, k)
                .map_err(|e| format!("partition {name}: key {k:#x}: {e}"))?;
            figures.keys_used += 1;
        }
    }
    Ok(())
}

/// One lane of the drill: its own state directory and daemon, `kills` kills.
fn crash_lane(lane: u64, kills: u64, seed: u64) -> Figures {
    let mut rng = Rng::new(seed);
    let dir = state_dir();
    let mut d = Daemon::start(dir.path());
    let mut model: BTreeMap<String, Objects> = BTreeMap::new();
    for name in ["s0", "s1"] {
        d.partition(name);
        model.insert(name.into(), Objects::new());
    }
    let mut figures = Figures::default();
    let mut next_partition = 0;
    let mut in_flight: Vec<InFlight> = Vec::new();
    for round in 0..kills {
        let t = Instant::now();
        if let Err(e) = check_against_model(&d, &mut model, &in_flight, &mut figures, &mut rng) {
            panic!(
                "lane {lane} round {round} (seed {seed:#x}): {e}\nin flight: {in_flight:?}\nlog:\n{}",
                d.log()
            );
        }
        figures.checking += t.elapsed();
        let t = Instant::now();
        // Workers: one per long-lived partition, one for partitions.
        let mut workers = Vec::new();
        for name in ["s0", "s1"] {
            let sock = d.socket(name);
            let objects = model.remove(name).unwrap();
            let wseed = rng.next();
            let name = name.to_owned();
            workers.push(std::thread::spawn(move || {
                (object_worker(sock, name, objects, wseed), None)
            }));
        }
        let ephemeral: BTreeMap<String, Objects> = std::mem::take(&mut model);
        let pdir = d.dir.clone();
        let pseed = rng.next();
        let pnext = next_partition;
        workers.push(std::thread::spawn(move || {
            let (o, next) = partition_worker(pdir, ephemeral, pnext, pseed);
            (o, Some(next))
        }));
        // Mostly in the thick of the writes, sometimes while the workers are still
        // connecting and logging in.
        let delay = if rng.below(8) == 0 {
            rng.below(15)
        } else {
            15 + rng.below(235)
        };
        figures.delays_ms += delay;
        std::thread::sleep(Duration::from_millis(delay));
        d.kill9();
        figures.kills += 1;
        in_flight.clear();
        for w in workers {
            let (o, next) = w.join().unwrap();
            if let Some(e) = o.error {
                panic!("lane {lane} round {round} (seed {seed:#x}): the HSM refused a write: {e}");
            }
            figures.acked_checked += o.acked;
            in_flight.extend(o.in_flight);
            model.extend(o.parts);
            if let Some(n) = next {
                next_partition = n;
            }
        }
        figures.writing += t.elapsed();
        let t = Instant::now();
        d = Daemon::start(dir.path());
        figures.restarting += t.elapsed();
    }
    if let Err(e) = check_against_model(&d, &mut model, &in_flight, &mut figures, &mut rng) {
        panic!(
            "lane {lane} after the last kill (seed {seed:#x}): {e}\nlog:\n{}",
            d.log()
        );
    }
    // Every partition's audit chain still verifies.
    for name in model.keys() {
        let mut c = Client::connect(d.socket(name)).unwrap();
        c.audit_verify()
            .unwrap_or_else(|e| panic!("audit log of {name} after the drill: {e}"));
    }
    figures.partitions += model.len() as u64;
    figures.objects += model.values().map(|o| o.len() as u64).sum::<u64>();
    figures
}

/// Kills ihsmd with SIGKILL at random points during mixed writes (object
/// creation, destruction and attribute changes in two long-lived partitions,
/// partition creation and deletion with objects made in each) `IHSM_DRILL_KILLS`
/// times (default 200), spread over `IHSM_DRILL_LANES` daemons killed side by side
/// (default 2: a restart mostly waits on the daemon measuring its own image, and
/// two lanes keep both cores of a CI machine busy); after each restart the
/// daemon must hold every acknowledged change, and each write in flight must be
/// wholly there or wholly absent. `IHSM_DRILL_SEED` replays a run's choices.
#[test]
fn crash_drill_sigkill_during_mixed_writes() {
    let kills = env_u64("IHSM_DRILL_KILLS", 200);
    let lanes = env_u64("IHSM_DRILL_LANES", 2).clamp(1, kills.max(1));
    let seed = seed_from("IHSM_DRILL_SEED");
    println!(
        "crash drill: {kills} kills in {lanes} lane(s), seed {seed:#x} (replay with IHSM_DRILL_SEED={seed:#x})"
    );
    let started = Instant::now();
    let mut seeds = Rng::new(seed);
    let handles: Vec<_> = (0..lanes)
        .map(|lane| {
            let n = kills / lanes + u64::from(lane < kills % lanes);
            let lane_seed = seeds.next();
            std::thread::spawn(move || crash_lane(lane, n, lane_seed))
        })
        .collect();
    let mut figures = Figures::default();
    let mut failed = None;
    for h in handles {
        match h.join() {
            Ok(f) => figures.add(&f),
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        std::panic::resume_unwind(e);
    }
    let sum = |m: &BTreeMap<&str, u64>| m.values().sum::<u64>();
    println!(
        "crash drill: {} kills in {:.1} s (seed {seed:#x}); {} acknowledged writes checked; \
         {} objects read back over all rounds, {} labels looked up in the index, {} keys used; \
         writes in flight at a kill: {} present, {} absent",
        figures.kills,
        started.elapsed().as_secs_f64(),
        figures.acked_checked,
        figures.objects_checked,
        figures.index_checked,
        figures.keys_used,
        sum(&figures.present),
        sum(&figures.absent),
    );
    for op in [
        "create object",
        "destroy object",
        "set attributes",
        "create partition",
        "delete partition",
    ] {
        println!(
            "  in flight: {op:<16} present {:>4}  absent {:>4}",
            figures.present.get(op).unwrap_or(&0),
            figures.absent.get(op).unwrap_or(&0)
        );
    }
    println!(
        "  time: restarting {:.1} s, checking {:.1} s, writing until the kill {:.1} s (kill delays {} ms in all)",
        figures.restarting.as_secs_f64(),
        figures.checking.as_secs_f64(),
        figures.writing.as_secs_f64(),
        figures.delays_ms
    );
    println!(
        "  final state: {} partitions, {} objects",
        figures.partitions, figures.objects
    );
    assert_eq!(figures.kills, kills);
    // On a loaded machine a round is mostly the restart; still, most kills must
    // land among acknowledged writes for the drill to mean anything.
    assert!(
        figures.acked_checked >= kills / 2,
        "too few writes were acknowledged to mean anything: {} in {kills} kills",
        figures.acked_checked
    );
}

// ---- the soak -----------------------------------------------------------------------

/// Latencies and counts shared by the load threads.
#[derive(Default)]
struct Load {
    /// Latencies of the current interval, in microseconds: requests that only
    /// read or compute, and durable writes (token objects, logins), which wait for
    /// the disk.
    samples: Mutex<(Vec<u32>, Vec<u32>)>,
    /// Every latency of the run, by request.
    by_kind: Mutex<BTreeMap<&'static str, Vec<u32>>>,
    ops: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Load {
    fn timed<T>(
        &self,
        what: &'static str,
        f: impl FnOnce() -> Result<T, ClientError>,
    ) -> Option<T> {
        let t = Instant::now();
        let r = f();
        let us = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.ops.fetch_add(1, Ordering::Relaxed);
        match r {
            Ok(v) => {
                let durable = matches!(what, "generate token key" | "destroy token key" | "login");
                let mut samples = self.samples.lock().unwrap();
                if durable {
                    samples.1.push(us);
                } else {
                    samples.0.push(us);
                }
                drop(samples);
                self.by_kind
                    .lock()
                    .unwrap()
                    .entry(what)
                    .or_default()
                    .push(us);
                Some(v)
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_errors.lock().unwrap();
                if first.len() < 20 {
                    eprintln!("soak: {what}: {e}");
                    first.push(format!("{what}: {e}"));
                }
                None
            }
        }
    }
}

/// A tenant's long-lived keys.
#[derive(Clone, Copy)]
struct TenantKeys {
    sign_public: u64,
    sign_private: u64,
    aes: u64,
}

/// One load thread: its own connection (application), session and login on a
/// tenant's partition, mixed requests until told to stop.
fn load_thread(sock: PathBuf, keys: TenantKeys, load: Arc<Load>, seed: u64, think: Duration) {
    let mut rng = Rng::new(seed);
    let Some((mut c, s)) = load.timed("connect and log in", || tenant_at(&sock)) else {
        return;
    };
    // More requests in flight than cores: do not spin past the default.
    c.set_spin_longer(false);
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let mut logged_in = true;
    let mut n = 0u64;
    // `IHSM_SOAK_DURABLE=0` leaves out the durable writes (token keys, logins):
    // memory that then stays flat grew with the store before.
    let durable = env_u64("IHSM_SOAK_DURABLE", 1) != 0;
    while !load.stop.load(Ordering::Relaxed) {
        n += 1;
        let mut roll = rng.below(100);
        if !durable && matches!(roll, 60..=67 | 87..=93) {
            roll -= 60;
        }
        let msg = rng.bytes(32);
        match roll {
            0..=29 => {
                if let Some(sig) = load.timed("sign", || {
                    c.sign_once(s, mech.clone(), keys.sign_private, msg.clone())
                }) && n.is_multiple_of(8)
                {
                    load.timed("verify", || {
                        c.sign_init(s, mech.clone(), keys.sign_public, true)?;
                        c.verify(s, msg.clone(), sig.clone())
                    });
                }
            }
            30..=49 => {
                load.timed("encrypt", || c.encrypt_once(s, gcm(), keys.aes, &msg));
            }
            50..=59 => {
                load.timed("find", || {
                    c.find(s, vec![Attribute::bytes(ck::CKA_LABEL, b"sign".to_vec())])
                });
            }
            60..=67 => {
                let label = format!("tmp-{:x}", rng.next()).into_bytes();
                if let Some(h) = load.timed("generate token key", || {
                    c.generate_key(
                        s,
                        Mechanism::AesKeyGen,
                        vec![
                            Attribute::ulong(ck::CKA_VALUE_LEN, 32),
                            Attribute::bool(ck::CKA_TOKEN, true),
                            Attribute::bytes(ck::CKA_LABEL, label.clone()),
                        ],
                    )
                }) {
                    load.timed("encrypt with new key", || c.encrypt_once(s, gcm(), h, &msg));
                    load.timed("destroy token key", || c.destroy_object(s, h));
                }
            }
            68..=74 => {
                if let Some(h) = load.timed("create session object", || {
                    c.create_object(
                        s,
                        vec![
                            Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
                            Attribute::bool(ck::CKA_TOKEN, false),
                            Attribute::bytes(ck::CKA_VALUE, msg.clone()),
                        ],
                    )
                }) {
                    load.timed("get attribute", || {
                        c.get_attributes(s, h, vec![ck::CKA_VALUE])
                    });
                    load.timed("destroy session object", || c.destroy_object(s, h));
                }
            }
            75..=86 => {
                if let Some(s2) = load.timed("open session", || c.open_session(rng.below(2) == 0)) {
                    load.timed("close session", || c.close_session(s2));
                }
            }
            87..=93 => {
                if logged_in {
                    load.timed("logout", || c.logout(s));
                }
                logged_in = load
                    .timed("login", || c.login(s, UserType::User, USER_PIN))
                    .is_some();
            }
            _ => {
                load.timed("random", || c.random(s, 32));
            }
        }
        if !think.is_zero() {
            std::thread::sleep(think);
        }
    }
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One interval's figures.
struct Sample {
    at: Duration,
    ops: u64,
    /// p50 and p99 of reads and computations.
    p50: u32,
    p99: u32,
    /// p50 and p99 of durable writes.
    w50: u32,
    w99: u32,
    rss_kib: u64,
    fds: usize,
    threads: u64,
    store_bytes: u64,
}

/// The store's page cache may hold up to this much of a growing file (redb's
/// cache, `CACHE_BYTES` in `ihsm-store`), plus allocator slack.
const SOAK_RSS_BOUND_KIB: u64 = (64 + 16) * 1024;

/// Mixed load from several tenants for `total`, sampled every `interval`: fails on
/// any error and on RSS growth beyond [`SOAK_RSS_BOUND_KIB`] after warm-up.
/// Latency is printed, never asserted.
fn soak(total: Duration, interval: Duration) {
    let tenants = env_u64("IHSM_SOAK_TENANTS", 4);
    let per_tenant = env_u64("IHSM_SOAK_THREADS", 2);
    let think = Duration::from_micros(env_u64("IHSM_SOAK_THINK_MICROS", 1000));
    let seed = seed_from("IHSM_SOAK_SEED");
    let intervals = (total.as_secs_f64() / interval.as_secs_f64())
        .ceil()
        .max(2.0) as usize;
    let warm_up = (intervals / 10).max(1);
    println!(
        "soak: {} s, {tenants} tenants x {per_tenant} threads, think {} us, interval {} s, \
         warm-up {warm_up} interval(s), RSS bound +{} MiB after warm-up, seed {seed:#x}, daemon {}",
        total.as_secs(),
        think.as_micros(),
        interval.as_secs(),
        SOAK_RSS_BOUND_KIB / 1024,
        std::env::var("IHSM_DRILL_IHSMD").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ihsmd").into())
    );
    let dir = state_dir();
    let log = dir.path().join("soak-ihsmd.log");
    let d = Ihsmd::start(dir.path(), &log, "warn").unwrap_or_else(|e| panic!("{e}"));
    let pid = d.pid();
    let rss_start = vm_rss_kib(pid);
    let mut rng = Rng::new(seed);
    let mut admin = d.admin();
    let mut keys = Vec::new();
    for t in 0..tenants {
        let name = format!("tenant{t}");
        admin.create_partition(spec(&name)).unwrap();
        let (mut c, s) = tenant_at(&d.socket(&name)).unwrap();
        let (sign_public, sign_private) = ec_pair(&mut c, s, "sign");
        let aes = aes_key(&mut c, s, "aes").unwrap();
        keys.push((
            name,
            TenantKeys {
                sign_public,
                sign_private,
                aes,
            },
        ));
    }
    let load = Arc::new(Load::default());
    let mut threads_ = Vec::new();
    for (name, k) in &keys {
        for _ in 0..per_tenant {
            let sock = d.socket(name);
            let load = Arc::clone(&load);
            let k = *k;
            let seed = rng.next();
            threads_.push(std::thread::spawn(move || {
                load_thread(sock, k, load, seed, think);
            }));
        }
    }
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut last_ops = 0;
    for i in 1..=intervals {
        let due = interval * u32::try_from(i).unwrap();
        while started.elapsed() < due.min(total) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let (mut lat, mut wlat) = std::mem::take(&mut *load.samples.lock().unwrap());
        lat.sort_unstable();
        wlat.sort_unstable();
        let ops = load.ops.load(Ordering::Relaxed);
        let s = Sample {
            at: started.elapsed(),
            ops: ops - last_ops,
            p50: percentile(&lat, 0.50),
            p99: percentile(&lat, 0.99),
            w50: percentile(&wlat, 0.50),
            w99: percentile(&wlat, 0.99),
            rss_kib: vm_rss_kib(pid),
            fds: open_fds(pid),
            threads: threads(pid),
            store_bytes: std::fs::metadata(dir.path().join("store.redb")).map_or(0, |m| m.len()),
        };
        last_ops = ops;
        println!(
            "soak: t={:>6.0} s  ops {:>7} ({:>5.0}/s)  p50/p99 {:>5}/{:>6} us  writes {:>5}/{:>6} us  RSS {:>7.1} MiB  fds {:>3}  threads {:>3}  store {:>6.1} MiB  errors {}",
            s.at.as_secs_f64(),
            s.ops,
            s.ops as f64 / interval.as_secs_f64(),
            s.p50,
            s.p99,
            s.w50,
            s.w99,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            s.store_bytes as f64 / 1_048_576.0,
            load.errors.load(Ordering::Relaxed)
        );
        samples.push(s);
        if started.elapsed() >= total {
            break;
        }
    }
    load.stop.store(true, Ordering::Relaxed);
    for t in threads_ {
        t.join().unwrap();
    }
    let ops = load.ops.load(Ordering::Relaxed);
    let errors = load.errors.load(Ordering::Relaxed);
    let rss_warm = samples[warm_up - 1].rss_kib;
    let rss_end = samples.last().unwrap().rss_kib;
    let rss_max = samples[warm_up..]
        .iter()
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(rss_warm);
    let mid = &samples[samples.len() / 2];
    let (first, last) = (&samples[0], samples.last().unwrap());
    println!(
        "soak: {:.0} s, {ops} requests ({:.0}/s), {errors} errors; RSS start {:.1} MiB, after warm-up {:.1} MiB, max after warm-up {:.1} MiB, end {:.1} MiB; \
         p50/p99 first {}/{} us, middle {}/{} us, last {}/{} us; durable writes p50/p99 first {}/{} us, middle {}/{} us, last {}/{} us",
        started.elapsed().as_secs_f64(),
        ops as f64 / started.elapsed().as_secs_f64(),
        rss_start as f64 / 1024.0,
        rss_warm as f64 / 1024.0,
        rss_max as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        first.p50,
        first.p99,
        mid.p50,
        mid.p99,
        last.p50,
        last.p99,
        first.w50,
        first.w99,
        mid.w50,
        mid.w99,
        last.w50,
        last.w99,
    );
    for (what, lat) in load.by_kind.lock().unwrap().iter_mut() {
        lat.sort_unstable();
        println!(
            "soak: {what:<24} {:>8} requests  p50 {:>6} us  p99 {:>7} us  max {:>7} us",
            lat.len(),
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            lat.last().copied().unwrap_or(0)
        );
    }
    assert_eq!(
        errors,
        0,
        "errors during the soak: {:?}",
        load.first_errors.lock().unwrap()
    );
    assert!(
        rss_max <= rss_warm + SOAK_RSS_BOUND_KIB,
        "the daemon's RSS grew from {rss_warm} KiB after warm-up to {rss_max} KiB, more than the {SOAK_RSS_BOUND_KIB} KiB bound"
    );
    // Nothing leaked in the sessions or the objects: every tenant is back to its
    // two keys, and the daemon still answers and stops cleanly.
    for (name, _) in &keys {
        // Connections close asynchronously: give the daemon a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = admin.describe_partition(name).unwrap();
            if info.sessions == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: {} sessions left open",
                info.sessions
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (mut c, s) = tenant_at(&d.socket(name)).unwrap();
        assert_eq!(
            c.find(s, vec![]).unwrap().len(),
            3,
            "{name}: objects left behind"
        );
        let audit = c.audit_verify().unwrap();
        println!(
            "soak: {name}: audit log verifies, {} entries, {} checkpoints",
            audit.entries, audit.checkpoints
        );
    }
    drop(admin);
    assert!(d.stop().success());
}

/// The soak, short enough for every CI run (`IHSM_SOAK_SHORT_SECS`, default 24).
#[test]
fn soak_short_mixed_load_from_several_tenants() {
    let secs = env_u64("IHSM_SOAK_SHORT_SECS", 24);
    soak(
        Duration::from_secs(secs),
        Duration::from_secs((secs / 6).max(1)),
    );
}

/// The full soak: `IHSM_SOAK_SECS` (default 1800) of mixed load, sampled every
/// `IHSM_SOAK_INTERVAL_SECS` (default 60). Run with
/// `cargo test -p ihsmd --test drills soak_full -- --ignored --nocapture`.
#[test]
#[ignore = "30 minutes; run on purpose"]
fn soak_full_mixed_load_from_several_tenants() {
    let secs = env_u64("IHSM_SOAK_SECS", 1800);
    let interval = env_u64("IHSM_SOAK_INTERVAL_SECS", 60);
    soak(Duration::from_secs(secs), Duration::from_secs(interval));
}

// ---- a full disk and a read-only file system ------------------------------------------

const CHILD_ENV: &str = "IHSM_DRILL_CHILD";

/// Runs the test `child` of this binary (one marked `#[ignore]`, which runs
/// only so) again inside a private mount namespace (`unshare -m`), so that its
/// mounts touch nothing else on the host. Without root, the tools, or a mount
/// namespace, the drill cannot run: it says so loudly and is skipped, not
/// passed, or with `IHSM_REQUIRE_ROOT=1` fails ([`common::cannot_run`]).
fn run_in_mount_namespace(child: &str, needs: &[&str]) {
    if !require_root(&format!("{child} (mount, losetup)")) {
        return;
    }
    for tool in needs.iter().chain(&["unshare", "mount", "umount"]) {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            cannot_run(&format!("{child} needs `{tool}`, which is not installed"));
            return;
        }
    }
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    if !probe.status.success() {
        cannot_run(&format!(
            "{child} cannot make a mount namespace (unshare -m): {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
        return;
    }
    let out = output_within(
        Command::new("unshare")
            .args(["-m", "--propagation", "private"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                child,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, child),
        Duration::from_secs(600),
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{child} failed: {}", out.status);
    // The child's harness runs the named test: make sure it did not filter it out.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{child} did not run"
    );
}

/// Asserts that this process is the child `name`, run by its parent in a mount
/// namespace; a child run any other way (`--ignored` on its own) fails rather
/// than mount over the host's file systems or pass having done nothing.
fn assert_child(name: &str) {
    assert_eq!(
        std::env::var(CHILD_ENV).as_deref(),
        Ok(name),
        "{name} runs only inside the mount namespace its parent test makes; run the parent"
    );
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What a tenant stored before the trouble began, to find again after it.
struct Before {
    sign_public: u64,
    sign_private: u64,
    keys: Vec<(u64, String)>,
    data: Vec<(u64, String, Vec<u8>)>,
}

fn populate(c: &mut Client, s: u64) -> Before {
    let (sign_public, sign_private) = ec_pair(c, s, "sign");
    let keys = (0..10)
        .map(|i| {
            let label = format!("key-{i}");
            (aes_key(c, s, &label).unwrap(), label)
        })
        .collect();
    let data = (0..5)
        .map(|i| {
            let label = format!("data-{i}");
            let v = format!("value of data object {i}").into_bytes();
            let h = c
                .create_object(
                    s,
                    vec![
                        Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
                        Attribute::bool(ck::CKA_TOKEN, true),
                        Attribute::bytes(ck::CKA_LABEL, label.clone().into_bytes()),
                        Attribute::bytes(ck::CKA_VALUE, v.clone()),
                    ],
                )
                .unwrap();
            (h, label, v)
        })
        .collect();
    Before {
        sign_public,
        sign_private,
        keys,
        data,
    }
}

/// Reads: signatures, finds, attributes, encryption, status; all must work.
fn reads_work(d: &Ihsmd, c: &mut Client, s: u64, b: &Before) {
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let sig = c
        .sign_once(s, mech.clone(), b.sign_private, b"read path".to_vec())
        .unwrap();
    c.sign_init(s, mech, b.sign_public, true).unwrap();
    c.verify(s, b"read path".to_vec(), sig).unwrap();
    for (h, label) in &b.keys {
        assert_eq!(find_label(c, s, label), vec![*h], "{label}");
    }
    aes_round_trip(c, s, b.keys[1].0).unwrap();
    for (h, label, v) in &b.data {
        let a = c
            .get_attributes(s, *h, vec![ck::CKA_LABEL, ck::CKA_VALUE])
            .unwrap();
        assert_eq!(bytes_of(&a[0]), label.as_bytes());
        assert_eq!(&bytes_of(&a[1]), v);
    }
    let status = d.admin().status().unwrap();
    assert_eq!(
        status.state,
        DeviceState::Operational,
        "a storage failure is not a tamper event"
    );
    d.admin().describe_partition("p").unwrap();
}

/// A write refused for lack of storage: the right code, and a message that names
/// the cause.
fn refused(what: &str, r: Result<impl std::fmt::Debug, ClientError>, cause: &[&str]) -> String {
    let e = match r {
        Ok(v) => panic!("{what} succeeded on a broken file system: {v:?}"),
        Err(e) => e,
    };
    println!("  {what}: refused, {} {e}", e.code());
    let shown = e.to_string();
    assert!(
        matches!(e.code(), ErrorCode::Store | ErrorCode::DaemonFailed),
        "{what}: unexpected code {}: {shown}",
        e.code()
    );
    assert!(
        cause.iter().any(|c| shown.contains(c)),
        "{what}: the message does not say why ({cause:?}): {shown}"
    );
    shown
}

/// The drill both children run: populate, break the file system, check that
/// writes fail clearly and change nothing while reads go on, stop, repair,
/// restart, and find everything.
fn storage_drill(
    state: &Path,
    log: &Path,
    cause: &[&str],
    break_it: impl FnOnce(),
    repair: impl FnOnce(),
) {
    let d = Ihsmd::start(state, log, "ihsmd=debug,warn").unwrap_or_else(|e| panic!("{e}"));
    d.admin().create_partition(spec("p")).unwrap();
    let (mut c, s) = tenant_at(&d.socket("p")).unwrap();
    let b = populate(&mut c, s);
    // A second tenant connection, logged in before the trouble.
    let (mut c2, s2) = tenant_at(&d.socket("p")).unwrap();

    break_it();

    // Space the store file already holds can still take a write or two: write
    // until one is refused; those acknowledged must survive like any other.
    let mut b = b;
    let first = loop {
        let label = format!("key-{}", b.keys.len());
        match aes_key(&mut c, s, &label) {
            Ok(h) => b.keys.push((h, label)),
            Err(e) => break Err::<(), _>(e),
        }
        assert!(
            b.keys.len() < 1000,
            "a thousand keys written to a broken file system"
        );
    };
    println!(
        "  {} key(s) acknowledged after the failure began",
        b.keys.len() - 10
    );
    refused("generate key", first, cause);
    refused(
        "generate key again",
        aes_key(&mut c, s, "after-the-failure"),
        cause,
    );
    refused(
        "create data object",
        c.create_object(
            s,
            vec![
                Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
                Attribute::bool(ck::CKA_TOKEN, true),
                Attribute::bytes(ck::CKA_LABEL, b"after-the-failure".to_vec()),
            ],
        ),
        cause,
    );
    refused(
        "set attribute",
        c.set_attributes(
            s,
            b.data[0].0,
            vec![Attribute::bytes(ck::CKA_LABEL, b"renamed".to_vec())],
        ),
        cause,
    );
    refused("destroy object", c.destroy_object(s, b.keys[0].0), cause);
    refused(
        "create partition",
        d.admin().create_partition(spec("q")),
        cause,
    );
    // Reads go on, on both connections, and nothing changed.
    reads_work(&d, &mut c, s, &b);
    reads_work(&d, &mut c2, s2, &b);
    assert!(find_label(&mut c, s, "after-the-failure").is_empty());
    // A new connection and session work; a login writes its audit entry, so it
    // fails like any write.
    let mut c3 = Client::connect(d.socket("p")).unwrap();
    let s3 = c3.open_session(false).unwrap();
    match c3.login(s3, UserType::User, USER_PIN) {
        Ok(()) => println!("  new login: accepted"),
        Err(e) => println!("  new login: refused, {} {e}", e.code()),
    }
    // The session handles and the daemon are fine: a clean stop.
    drop((c, c2, c3));
    let status = d.stop();
    println!("  SIGTERM with the file system broken: {status}");
    assert!(status.success(), "{status}");

    repair();

    let d = Ihsmd::start(state, log, "ihsmd=debug,warn")
        .unwrap_or_else(|e| panic!("restart after the repair: {e}"));
    let (mut c, s) = tenant_at(&d.socket("p")).unwrap();
    reads_work(&d, &mut c, s, &b);
    for (h, _) in &b.keys {
        aes_round_trip(&mut c, s, *h).unwrap();
    }
    assert!(find_label(&mut c, s, "after-the-failure").is_empty());
    assert_eq!(
        c.find(s, vec![]).unwrap().len(),
        2 + b.keys.len() + b.data.len(),
        "objects appeared or vanished"
    );
    c.audit_verify().unwrap();
    d.admin().describe_partition("q").unwrap_err();
    // And it takes writes again.
    let h = aes_key(&mut c, s, "after-the-repair").unwrap();
    c.destroy_object(s, b.keys[0].0).unwrap();
    d.admin().create_partition(spec("q")).unwrap();
    drop(c);
    assert!(d.stop().success());
    let d = Ihsmd::start(state, log, "ihsmd=debug,warn").unwrap();
    let (mut c, s) = tenant_at(&d.socket("p")).unwrap();
    assert_eq!(find_label(&mut c, s, "after-the-repair"), vec![h]);
    assert!(find_label(&mut c, s, &b.keys[0].1).is_empty());
    drop(c);
    assert!(d.stop().success());
}

/// The child: a 32 MiB tmpfs as the state directory, filled up under the daemon.
#[test]
#[ignore = "run in a mount namespace by disk_full_writes_fail_clearly_reads_go_on_nothing_is_lost"]
fn disk_full_child() {
    assert_child("disk_full_child");
    let base = tempfile::Builder::new()
        .prefix("ihsmd-full")
        .tempdir()
        .unwrap();
    let state = base.path().join("state");
    std::fs::create_dir(&state).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=32m,mode=0700 ihsm-drill {}",
        state.display()
    ));
    let filler = state.join("filler");
    storage_drill(
        &state,
        &base.path().join("ihsmd.log"),
        &["No space left on device"],
        || {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![0x5a; 64 << 10];
            let e = loop {
                if let Err(e) = f.write_all(&chunk) {
                    break e;
                }
            };
            // The last pages, a byte at a time would take long: 4 KiB at a time.
            while f.write_all(&chunk[..4096]).is_ok() {}
            assert_eq!(e.raw_os_error(), Some(28), "filling the disk: {e}");
            // Leave a little room, so that the store's own file, and not only the
            // monotonic counter's, meets the wall as it grows.
            let len = f.metadata().unwrap().len();
            f.set_len(len - (8 << 10)).unwrap();
            println!(
                "disk full: {} MiB of filler, `df`: {}",
                f.metadata().unwrap().len() >> 20,
                sh(&format!("df -k {} | tail -1", filler.display()))
            );
        },
        || {
            std::fs::remove_file(&filler).unwrap();
            println!("disk full: filler removed");
        },
    );
    sh(&format!("umount {}", state.display()));
}

/// A full disk: writes fail with a clear error, reads keep working, nothing is
/// corrupted, and after space is freed and the daemon restarted every object is
/// there. Runs in a private mount namespace on a 32 MiB tmpfs.
#[test]
fn disk_full_writes_fail_clearly_reads_go_on_nothing_is_lost() {
    run_in_mount_namespace("disk_full_child", &[]);
}

/// The child: an ext4 file system (on a loop device) as the state directory,
/// remounted read-only under the daemon by an error, as the kernel does.
#[test]
#[ignore = "run in a mount namespace by read_only_file_system_writes_fail_clearly_reads_go_on_nothing_is_lost"]
fn read_only_child() {
    assert_child("read_only_child");
    let base = tempfile::Builder::new()
        .prefix("ihsmd-ro")
        .tempdir()
        .unwrap();
    let state = base.path().join("state");
    let image = base.path().join("ext4.img");
    std::fs::create_dir(&state).unwrap();
    let (st, img) = (state.display(), image.display());
    sh(&format!("truncate -s 64M {img} && mkfs.ext4 -q -F {img}"));
    let mount = format!("mount -o loop,errors=remount-ro {img} {st} && chmod 0700 {st}");
    sh(&mount);
    storage_drill(
        &state,
        &base.path().join("ihsmd.log"),
        &["Read-only file system", "Input/output error"],
        || {
            // ext4 answers an error it finds with errors=remount-ro by making the
            // file system read-only under every open file: trigger one.
            let dev = sh(&format!("basename $(findmnt -n -o SOURCE {st})"));
            sh(&format!("echo 1 > /sys/fs/ext4/{dev}/trigger_fs_error"));
            println!("read-only: {}", sh(&format!("findmnt -n -o OPTIONS {st}")));
        },
        || {
            // What an operator does: unmount, check, mount read-write again.
            sh(&format!(
                "umount {st} && (e2fsck -fy {img} >/dev/null 2>&1; test $? -le 1) && {mount}"
            ));
            println!("read-only: checked and remounted read-write");
        },
    );
    sh(&format!("umount {st}"));
}

/// A state directory whose file system turns read-only under the daemon (ext4
/// `errors=remount-ro`): writes fail with a clear error, reads keep working,
/// nothing is corrupted; after a check and a read-write mount every object is
/// there. Runs in a private mount namespace on a loop device.
#[test]
fn read_only_file_system_writes_fail_clearly_reads_go_on_nothing_is_lost() {
    let ext4 = std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("ext4"));
    if !ext4 {
        cannot_run("read_only_child needs ext4, which the kernel does not have");
        return;
    }
    if !Path::new("/dev/loop-control").exists() {
        cannot_run("read_only_child needs loop devices (/dev/loop-control)");
        return;
    }
    run_in_mount_namespace(
        "read_only_child",
        &["mkfs.ext4", "e2fsck", "losetup", "findmnt", "truncate"],
    );
}
