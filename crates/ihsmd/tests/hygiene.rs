//! Memory and disk hygiene of the running daemon: it cannot be dumped or read by
//! its own user; a key's bytes are gone from its memory once the key is
//! destroyed, its partition deleted or the device tampered with, and were never in
//! the store file or the log in the clear; a partition's own keys (master, mask,
//! identity) are gone once it is deleted or the device tampered with; a key
//! whose import was refused leaves nothing behind; and a key released to another
//! device is never in the clear outside the two key objects.
//!
//! The memory searches read `/proc/PID/mem`, which a non-dumpable process allows to
//! root (CAP_SYS_PTRACE) alone: CI runs as root. Reading it attaches no tracer, so
//! the daemon's debugger sensor stays quiet. A test that cannot run skips, loudly,
//! except under `IHSM_REQUIRE_ROOT=1` (CI), where it fails.
//!
//! A partition's own keys never leave the daemon, so the test learns them from a
//! hook that only test builds have (ihsm-core's `test-hooks` feature, which
//! ihsmd's dev-dependencies turn on; see `ihsm-core/src/test_hooks.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use cryptoki_sys as ck;
use ihsm_client::Client;
use ihsm_proto::attr::Attribute;
use ihsm_proto::mech::{GcmIv, Mechanism};

fn is_root() -> bool {
    euid() == 0
}

/// Whether this process (and so the daemon it starts) may lock memory without
/// limit, as the daemon decides: `CAP_IPC_LOCK` in its effective set, or no
/// `RLIMIT_MEMLOCK`.
fn may_lock_without_limit() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let unlimited = rustix::process::getrlimit(rustix::process::Resource::Memlock)
        .current
        .is_none();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    unlimited || effective & (1 << CAP_IPC_LOCK) != 0
}

/// Every readable mapping of `pid`, as (start, bytes).
fn memory(pid: u32) -> Vec<(u64, Vec<u8>)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, perms) = (f.next().unwrap(), f.next().unwrap());
        let name = line.split_whitespace().nth(5).unwrap_or("");
        if !perms.starts_with('r') || name == "[vvar]" || name == "[vsyscall]" {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        // Read-only file mappings (the binary, libraries) hold no key.
        if !perms.contains('w') && name.starts_with('/') {
            continue;
        }
        let mut buf = vec![0u8; usize::try_from(b - a).unwrap()];
        if mem.seek(SeekFrom::Start(a)).is_ok() && mem.read_exact(&mut buf).is_ok() {
            out.push((a, buf));
        }
    }
    assert!(!out.is_empty(), "nothing of {pid}'s memory could be read");
    out
}

/// `needle` and its two halves (a copy cut in two still counts).
fn with_halves(needle: &[u8]) -> [&[u8]; 3] {
    let (a, b) = needle.split_at(needle.len() / 2);
    [needle, a, b]
}

/// Where `needle` or either half of it occurs in `pid`'s memory.
fn find_in_memory(pid: u32, needle: &[u8]) -> Vec<String> {
    let halves = with_halves(needle);
    let mut hits = Vec::new();
    for (start, bytes) in memory(pid) {
        for (i, n) in halves.iter().enumerate() {
            for at in memchr::memmem::find_iter(&bytes, n) {
                hits.push(format!(
                    "{:#x} ({})",
                    start + at as u64,
                    ["whole", "first half", "second half"][i]
                ));
            }
        }
    }
    hits
}

/// Fails, saying where, if `value` (or either half) is in `pid`'s memory.
fn assert_not_in_memory(pid: u32, value: &[u8], what: &str) {
    let hits = find_in_memory(pid, value);
    assert!(
        hits.is_empty(),
        "{what} is in the daemon's memory at {hits:?}"
    );
}

/// Every file under `dir` whose bytes contain `needle` or either half of it.
fn find_in_files(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                for n in with_halves(needle) {
                    if memchr::memmem::find(&bytes, n).is_some() {
                        hits.push(path.display().to_string());
                    }
                }
            }
        }
    }
    hits
}

/// A token AES-256 key of a value the test knows, used once (so the HSM has
/// built its key schedule).
fn known_key(c: &mut Client, s: u64, value: &[u8; 32]) -> u64 {
    let k = c
        .create_object(
            s,
            vec![
                Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
                Attribute::bool(ck::CKA_TOKEN, true),
                Attribute::bool(ck::CKA_ENCRYPT, true),
                Attribute::bytes(ck::CKA_VALUE, value.to_vec()),
            ],
        )
        .unwrap();
    let gcm = Mechanism::AesGcm {
        iv: GcmIv::Generate,
        aad: vec![],
        tag_bits: 128,
    };
    c.encrypt_once(s, gcm, k, b"use the key once").unwrap();
    k
}

fn random_value() -> [u8; 32] {
    let mut v = [0u8; 32];
    ihsm_crypto::rand::fill(&mut v).unwrap();
    v
}

/// Makes sure the daemon binary the tests start is the one `cargo test -p ihsmd`
/// builds, with ihsm-core's key-revealing hook (ihsmd's dev-dependencies turn its
/// feature on). Another package's tests run `cargo build -p ihsmd`, which relinks
/// the same file without the hook (a whole-workspace run does so before this test
/// runs), so it is built again here, once per test binary, before any test starts
/// a daemon; up to date, that costs a second.
fn hooked_ihsmd() -> &'static str {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let mut build = std::process::Command::new(env!("CARGO"));
        build.args([
            "build",
            "--locked",
            "-p",
            "ihsmd",
            "--features",
            "ihsm-core/test-hooks",
        ]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "cannot build ihsmd");
    });
    env!("CARGO_BIN_EXE_ihsmd")
}

/// `Daemon::start`, on the hooked binary.
fn start(dir: &Path) -> Daemon {
    hooked_ihsmd();
    Daemon::start(dir)
}

/// `Daemon::try_start`, on the hooked binary.
fn try_start(dir: &Path, extra: &[&str]) -> Result<Daemon, String> {
    hooked_ihsmd();
    Daemon::try_start(dir, extra)
}

/// Starts a development daemon in `dir` as `uid`/`gid`, optionally with a
/// security configuration written before its first start.
fn start_as(dir: &Path, uid: u32, gid: u32, security: Option<&str>) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    for (name, text) in [
        ("ihsmd.toml", Some(TEST_CONFIG)),
        ("security.toml", security),
    ] {
        if let Some(text) = text {
            std::fs::write(dir.join(name), text).unwrap();
            std::os::unix::fs::chown(dir.join(name), Some(uid), Some(gid)).unwrap();
        }
    }
    let log = std::fs::File::create(dir.join("ihsmd.log")).unwrap();
    let mut child = std::process::Command::new(hooked_ihsmd())
        .arg("--state")
        .arg(dir)
        .arg("--dev")
        .uid(uid)
        .gid(gid)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join("admin.sock").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "ihsmd as uid {uid} exited with {status}:\n{}",
                std::fs::read_to_string(dir.join("ihsmd.log")).unwrap()
            );
        }
        assert!(std::time::Instant::now() < deadline, "no admin socket");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// The owners of the daemon's /proc entries, and the uid it runs as.
fn proc_owners(pid: u32) -> (Vec<u32>, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let runs_as: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    let owners = ["status", "mem", "environ"]
        .iter()
        .map(|e| std::fs::metadata(format!("/proc/{pid}/{e}")).unwrap().uid())
        .collect();
    (owners, runs_as)
}

/// A `Vm*` line of `/proc/PID/status`, in KiB.
fn vm(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} for {pid}"))
}

#[test]
fn all_the_daemons_memory_is_locked_when_it_may_lock_without_limit() {
    if !may_lock_without_limit() {
        cannot_run(
            "locking without limit needs CAP_IPC_LOCK or no RLIMIT_MEMLOCK (CI runs as root)",
        );
        return;
    }
    let dir = state_dir();
    let d = start(dir.path());
    d.partition("t");
    let (mut c, s) = d.tenant("t");
    let _ = known_key(&mut c, s, &random_value());
    // mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT): every mapping is locked
    // (VmLck counts whole mappings, VmRSS the pages touched), so nothing the
    // daemon holds (aws-lc's private keys and key schedules included) is swapped.
    let (locked, resident) = (vm(d.pid(), "VmLck"), vm(d.pid(), "VmRSS"));
    assert!(
        locked >= resident,
        "VmLck {locked} kB < VmRSS {resident} kB"
    );
}

#[test]
fn the_daemon_cannot_be_dumped_or_read_by_its_own_user() {
    // A non-dumpable process's /proc entries belong to root, whoever runs it: so
    // run the daemon as a user that is not root (nobody, when the test is root).
    let (uid, gid) = if is_root() {
        (65534, 65534)
    } else {
        (euid(), egid())
    };
    let dir = state_dir();
    let mut child = start_as(dir.path(), uid, gid, None);
    let security = std::fs::read_to_string(dir.path().join("security.toml")).unwrap();
    assert!(security.contains("debug_locked = true"), "{security}");
    let (owners, runs_as) = proc_owners(child.id());
    assert_eq!(runs_as, uid);
    // PR_SET_DUMPABLE 0: its own user cannot read its memory, and no core file
    // is written.
    assert_eq!(owners, [0, 0, 0], "the daemon is dumpable");
    if is_root() {
        // Nobody may lock only RLIMIT_MEMLOCK's worth: the secrets' own slots are
        // locked, the rest of memory is not (locking it all could abort).
        let (locked, resident) = (vm(child.id(), "VmLck"), vm(child.id(), "VmRSS"));
        assert!(
            locked > 0 && locked < resident,
            "VmLck {locked} kB, VmRSS {resident} kB"
        );
    } else {
        cannot_run(
            "the locked-memory half of this test runs the daemon as nobody, which needs root",
        );
    }
    signal(&child, rustix::process::Signal::TERM);
    assert!(wait(&mut child, std::time::Duration::from_secs(30)).success());
    // The check tells the two apart: a debug-unlocked development device stays
    // dumpable, and its entries are its user's.
    let open = state_dir();
    let unlocked = security.replace("debug_locked = true", "debug_locked = false");
    let mut child = start_as(open.path(), uid, gid, Some(&unlocked));
    let (owners, _) = proc_owners(child.id());
    assert_eq!(
        owners,
        [uid, uid, uid],
        "a debug-unlocked daemon is dumpable"
    );
    signal(&child, rustix::process::Signal::TERM);
    assert!(wait(&mut child, std::time::Duration::from_secs(30)).success());
}

#[test]
fn a_destroyed_key_leaves_no_bytes_in_memory_and_none_ever_reach_disk_or_log() {
    if !is_root() {
        cannot_run("reading a non-dumpable daemon's memory needs root (CI runs as root)");
        return;
    }
    let dir = state_dir();
    let d = start(dir.path());
    d.partition("t");
    d.partition("gone");
    let pid = d.pid();
    let (mut c, s) = d.tenant("t");
    let (mut g, gs) = d.tenant("gone");
    let destroyed = random_value();
    let in_deleted = random_value();
    let kept = random_value();
    let k = known_key(&mut c, s, &destroyed);
    let _ = known_key(&mut g, gs, &in_deleted);
    let _ = known_key(&mut c, s, &kept);
    // The search works: a live key is in the daemon's memory (locked, but there).
    for value in [&destroyed, &in_deleted, &kept] {
        assert!(
            !find_in_memory(pid, value).is_empty(),
            "the search cannot see a live key"
        );
    }
    c.destroy_object(s, k).unwrap();
    drop(g);
    d.admin().delete_partition("gone").unwrap();
    for (what, value) in [
        ("a destroyed key", &destroyed),
        ("a deleted partition's key", &in_deleted),
    ] {
        let hits = find_in_memory(pid, value);
        assert!(
            hits.is_empty(),
            "{what} is still in the daemon's memory at {hits:?}"
        );
    }
    // Never on disk in the clear, nor in the log (debug level).
    for value in [&destroyed, &in_deleted, &kept] {
        let hits = find_in_files(dir.path(), value);
        assert!(hits.is_empty(), "key bytes in the clear in {hits:?}");
    }
    // A tamper zeroizes what was live.
    d.admin().tamper("lid").unwrap();
    let hits = find_in_memory(pid, &kept);
    assert!(
        hits.is_empty(),
        "a key survives the tamper in memory at {hits:?}"
    );
}

/// The environment variable of ihsm-core's test hook (`test_hooks::REVEAL_DIR`).
const REVEAL_DIR: &str = "IHSM_TEST_REVEAL_DIR";

/// Starts a development daemon in `dir` (as `Daemon::start` does) that writes each
/// partition's keys into `reveal` as it loads the partition.
fn start_revealing(dir: &Path, reveal: &Path) -> Daemon {
    std::fs::write(dir.join("ihsmd.toml"), TEST_CONFIG).unwrap();
    let log = std::fs::File::create(dir.join("ihsmd.log")).unwrap();
    let child = std::process::Command::new(hooked_ihsmd())
        .arg("--state")
        .arg(dir)
        .arg("--dev")
        .args(["--log-level", "ihsmd=debug,warn"])
        .env(REVEAL_DIR, reveal)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut d = Daemon {
        dir: dir.to_path_buf(),
        child: Some(child),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !Client::connect(d.admin_socket()).is_ok_and(|mut c| c.ping().is_ok()) {
        if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
            d.child = None;
            panic!("ihsmd exited with {status}:\n{}", d.log());
        }
        assert!(std::time::Instant::now() < deadline, "no admin socket");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    d
}

/// A partition's own keys, as the test hook revealed them.
struct PartitionKeys {
    master: Vec<u8>,
    mask: Vec<u8>,
    /// The identity key's private scalar, big-endian (as its PKCS#8 holds it).
    scalar: Vec<u8>,
    /// The same scalar least significant byte first, as a big number's words
    /// hold it in memory.
    scalar_le: Vec<u8>,
}

impl PartitionKeys {
    fn read(reveal: &Path, pid: u32) -> Self {
        let path = reveal.join(format!("partition-{pid}.keys"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "no {} ({e}): this daemon has no key-revealing test hook; the hygiene \
                 tests need the debug build that cargo test makes",
                path.display()
            )
        });
        let field = |name: &str| {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {name} in {}", path.display()));
            hex::decode(line).unwrap()
        };
        let (master, mask, der) = (field("master"), field("mask"), field("identity"));
        // PKCS#8 of P-384: the ECPrivateKey inside begins INTEGER 1, OCTET
        // STRING (48) d.
        let at = memchr::memmem::find(&der, &[0x02, 0x01, 0x01, 0x04, 0x30]).unwrap() + 5;
        let scalar = der[at..at + 48].to_vec();
        // The scalar found is the key's: it gives the same public key.
        let from_scalar = ihsm_crypto::ec::EccP384PrivateKey::from_scalar(
            &ihsm_crypto::Secret::<48>::from_slice(&scalar).unwrap(),
        )
        .unwrap();
        let from_der = ihsm_crypto::ec::EccP384PrivateKey::from_der(&der).unwrap();
        assert_eq!(from_scalar.public_key(), from_der.public_key());
        let mut scalar_le = scalar.clone();
        scalar_le.reverse();
        Self {
            master,
            mask,
            scalar,
            scalar_le,
        }
    }

    fn each(&self) -> [(&'static str, &[u8]); 4] {
        [
            ("master key", &self.master),
            ("mask key", &self.mask),
            ("identity key's scalar", &self.scalar),
            ("identity key's scalar (little-endian)", &self.scalar_le),
        ]
    }
}

#[test]
fn a_deleted_or_tampered_partitions_own_keys_leave_no_bytes_in_memory() {
    if !is_root() {
        cannot_run("reading a non-dumpable daemon's memory needs root (CI runs as root)");
        return;
    }
    let dir = state_dir();
    let reveal = tempfile::tempdir().unwrap();
    let d = start_revealing(dir.path(), reveal.path());
    let pid = d.pid();
    let gone = d.partition("gone");
    let kept = d.partition("kept");
    // Use every key: the master key seals an object, the identity key signs the
    // audit checkpoints (and is written with the record at each login), the mask
    // key masks a key.
    for name in ["gone", "kept"] {
        let (mut c, s) = d.tenant(name);
        let k = known_key(&mut c, s, &random_value());
        c.export_masked(s, k).unwrap();
    }
    let gone_keys = PartitionKeys::read(reveal.path(), gone.id);
    let kept_keys = PartitionKeys::read(reveal.path(), kept.id);
    // The search works: the live keys are in the daemon's memory (locked).
    for (what, value) in gone_keys.each().into_iter().take(3) {
        assert!(
            !find_in_memory(pid, value).is_empty(),
            "the search cannot see a live partition's {what}"
        );
    }
    d.admin().delete_partition("gone").unwrap();
    for (what, value) in gone_keys.each() {
        assert_not_in_memory(pid, value, &format!("a deleted partition's {what}"));
    }
    d.admin().tamper("lid").unwrap();
    for (what, value) in kept_keys.each() {
        assert_not_in_memory(pid, value, &format!("after a tamper, a partition's {what}"));
    }
    // And none was ever on disk, or in the log, in the clear.
    for (what, value) in gone_keys.each().into_iter().chain(kept_keys.each()) {
        let hits = find_in_files(dir.path(), value);
        assert!(
            hits.is_empty(),
            "a partition's {what} in the clear in {hits:?}"
        );
    }
}

#[test]
fn a_refused_import_leaves_no_key_bytes_in_memory() {
    if !is_root() {
        cannot_run("reading a non-dumpable daemon's memory needs root (CI runs as root)");
        return;
    }
    let dir = state_dir();
    let d = start(dir.path());
    d.partition("t");
    let pid = d.pid();
    let (mut c, s) = d.tenant("t");
    let aes = |value: &[u8], extra: &[Attribute]| {
        let mut t = vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::bytes(ck::CKA_VALUE, value.to_vec()),
        ];
        t.extend_from_slice(extra);
        t
    };
    // The core refuses each, at a different step: after the key is built (key
    // separation), before it is (one attribute twice), and in building it (a
    // length AES does not have).
    let separated = random_value();
    let (twice, other) = (random_value(), random_value());
    let short_value = random_value();
    let short = &short_value[..31];
    let refusals = [
        (
            "an inconsistent template",
            &separated[..],
            aes(
                &separated,
                &[
                    Attribute::bool(ck::CKA_WRAP, true),
                    Attribute::bool(ck::CKA_DECRYPT, true),
                ],
            ),
        ),
        (
            "a value given twice",
            &twice[..],
            aes(&twice, &[Attribute::bytes(ck::CKA_VALUE, other.to_vec())]),
        ),
        ("a value of the wrong length", short, aes(short, &[])),
    ];
    for (what, _, template) in &refusals {
        let e = c.create_object(s, template.clone()).unwrap_err();
        assert!(
            !matches!(e.code(), ihsm_proto::ErrorCode::Tampered),
            "{what}: {e}"
        );
    }
    // The session goes on: a later request reuses whatever buffers the refused
    // ones had.
    let _ = known_key(&mut c, s, &random_value());
    for (what, value, _) in &refusals {
        assert_not_in_memory(pid, value, &format!("the key of a refused import ({what})"));
    }
    assert_not_in_memory(pid, &other, "the second value of a refused import");
}

/// An EAR for `partition`'s unwrap-only RSA key (n, e), signed by `signer`, as a
/// verifier writes one after an affirming appraisal with a key report.
fn release_ear(
    signer: &ihsm_verify::ear::EarSigner,
    partition: &str,
    n: &[u8],
    e: &[u8],
) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "eat_profile": ihsm_verify::ear::EAR_PROFILE, "iat": now, "exp": now + 300,
        "submods": {"ihsm": {
            "ear_status": "affirming",
            "ihsm_partition": {"name": partition, "id": 1},
            "ihsm_attested_key": {"kty": "RSA", "n": b64.encode(n), "e": b64.encode(e)},
            "ihsm_attested_key_attributes": {"unwrap": true, "decrypt": false,
                "never_extractable": true, "always_sensitive": true, "local": true,
                "session": false},
        }},
    });
    ihsm_verify::ear::sign(signer, &claims)
        .unwrap()
        .into_bytes()
}

#[test]
fn a_released_key_is_never_in_the_clear_outside_its_two_partitions() {
    if !is_root() {
        cannot_run("reading a non-dumpable daemon's memory needs root (CI runs as root)");
        return;
    }
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
    let (src_dir, dst_dir) = (state_dir(), state_dir());
    let src = start(src_dir.path());
    let dst = start(dst_dir.path());
    src.partition("vault");
    dst.partition("app");
    let (mut c, s) = src.tenant("vault");
    let (mut t, ts) = dst.tenant("app");

    // The destination's unwrap-only RSA key.
    let (rsa_pub, rsa_priv) = t
        .generate_key_pair(
            ts,
            Mechanism::RsaKeyPairGen,
            vec![
                Attribute::ulong(ck::CKA_MODULUS_BITS, 2048),
                Attribute::bool(ck::CKA_WRAP, true),
                Attribute::bool(ck::CKA_TOKEN, true),
            ],
            vec![
                Attribute::bool(ck::CKA_UNWRAP, true),
                Attribute::bool(ck::CKA_TOKEN, true),
            ],
        )
        .unwrap();
    let bytes =
        |t: &mut Client, h: u64, ty: u64| match t.get_attributes(ts, h, vec![ty]).unwrap().pop() {
            Some(ihsm_proto::attr::AttrResult::Value(ihsm_proto::attr::AttrValue::Bytes(
                ref b,
            ))) => b.clone(),
            other => panic!("{other:?}"),
        };
    let n = bytes(&mut t, rsa_pub, ck::CKA_MODULUS);
    let e = bytes(&mut t, rsa_pub, ck::CKA_PUBLIC_EXPONENT);

    // The source trusts the verifier (its SO) and holds a key of a known value
    // with a release policy naming it.
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P384_SHA384_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let signer = ihsm_verify::ear::EarSigner::from_pkcs8(pkcs8.as_ref()).unwrap();
    let authority = ihsm_verify::release::verifier_authority(&signer.public_key()).unwrap();
    let mut so = Client::connect(src.socket("vault")).unwrap();
    let sos = so.open_session(true).unwrap();
    so.login(sos, ihsm_proto::types::UserType::SecurityOfficer, SO_PIN)
        .unwrap();
    let mut point = vec![0x04, 0x61];
    point.extend(signer.public_key());
    so.create_object(
        sos,
        vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_EC),
            Attribute::bytes(
                ck::CKA_EC_PARAMS,
                vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            ),
            Attribute::bytes(ck::CKA_EC_POINT, point),
            Attribute::bool(ck::CKA_TRUSTED, true),
            Attribute::bool(ck::CKA_TOKEN, true),
        ],
    )
    .unwrap();
    let policy = format!(
        r#"{{"version":"1.0.0","anyOf":[{{"authority":"{authority}","allOf":[{{"claim":"submods.ihsm.ihsm_partition.name","equals":"app"}}]}}]}}"#
    );
    let value = random_value();
    let key = c
        .create_object(
            s,
            vec![
                Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
                Attribute::bool(ck::CKA_TOKEN, true),
                Attribute::bool(ck::CKA_ENCRYPT, true),
                Attribute::bool(ck::CKA_EXTRACTABLE, true),
                Attribute::bytes(ck::CKA_VALUE, value.to_vec()),
                Attribute::bytes(
                    ihsm_proto::attr::CKA_IHSM_RELEASE_POLICY,
                    policy.into_bytes(),
                ),
            ],
        )
        .unwrap();

    // Released and unwrapped.
    let wrapped = c
        .wrap_key(
            s,
            Mechanism::KeyRelease {
                ear: release_ear(&signer, "app", &n, &e),
            },
            0,
            key,
        )
        .unwrap();
    assert!(!wrapped.windows(value.len()).any(|w| w == value));
    let got = t
        .unwrap_key(
            ts,
            Mechanism::RsaAesKeyWrap {
                aes_bits: 256,
                oaep: ihsm_proto::mech::OaepParams {
                    hash: ihsm_proto::mech::Hash::Sha256,
                    mgf: ihsm_proto::mech::Hash::Sha256.mgf1(),
                    label: vec![],
                },
            },
            rsa_priv,
            wrapped,
            vec![
                Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
                Attribute::bool(ck::CKA_TOKEN, true),
                Attribute::bool(ck::CKA_ENCRYPT, true),
            ],
        )
        .unwrap();
    // Live in both partitions (the search sees it), never in a file or a log.
    for (d, what) in [(&src, "source"), (&dst, "destination")] {
        assert!(
            !find_in_memory(d.pid(), &value).is_empty(),
            "the search cannot see the live key in the {what}"
        );
    }
    for (dir, what) in [(src_dir.path(), "source"), (dst_dir.path(), "destination")] {
        let hits = find_in_files(dir, &value);
        assert!(
            hits.is_empty(),
            "the released key in the clear in the {what}'s {hits:?}"
        );
    }
    // Destroyed on both sides: nothing of it is left in either daemon, so no
    // copy of it lived outside the two key objects (the release's and the
    // unwrap's buffers were wiped).
    c.destroy_object(s, key).unwrap();
    t.destroy_object(ts, got).unwrap();
    let _ = known_key(&mut c, s, &random_value());
    let _ = known_key(&mut t, ts, &random_value());
    assert_not_in_memory(src.pid(), &value, "the released key, in the source");
    assert_not_in_memory(dst.pid(), &value, "the released key, in the destination");
}

#[test]
fn a_debugger_attaching_sets_off_the_tamper_response() {
    if !is_root() {
        cannot_run("attaching to the daemon needs root (CI runs as root)");
        return;
    }
    let dir = state_dir();
    let d = start(dir.path());
    d.partition("t");
    let (mut c, s) = d.tenant("t");
    let (_, sk) = ec_pair(&mut c, s, "k");
    // A separate process attaches (PTRACE_SEIZE: the daemon is not even
    // stopped), stays past the sensor's one-second poll and exits, which detaches.
    let out = output_within(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tracer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("IHSM_TRACE_PID", d.pid().to_string()),
        std::time::Duration::from_secs(300),
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let e = c
        .sign_once(
            s,
            Mechanism::EcdsaHash(ihsm_proto::mech::Hash::Sha256),
            sk,
            b"x".to_vec(),
        )
        .unwrap_err();
    assert_eq!(e.code(), ihsm_proto::ErrorCode::Tampered, "{e}");
    assert!(e.to_string().contains("debugger attached"), "{e}");
    assert!(d.log().contains("debugger attached"), "{}", d.log());
}

/// Run by `a_debugger_attaching_sets_off_the_tamper_response`: attaches to the
/// daemon for three seconds.
#[test]
#[ignore = "run by a_debugger_attaching_sets_off_the_tamper_response"]
fn tracer() {
    let pid: libc::pid_t = std::env::var("IHSM_TRACE_PID")
        .expect("run by the parent test")
        .parse()
        .unwrap();
    // SAFETY: PTRACE_SEIZE takes a pid and no memory; the addr and data
    // arguments are null as the call requires.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    assert_eq!(r, 0, "PTRACE_SEIZE: {}", std::io::Error::last_os_error());
    std::thread::sleep(std::time::Duration::from_secs(3));
}

#[test]
fn the_fuses_can_live_apart_and_then_a_copy_of_the_state_directory_is_not_the_device() {
    use std::os::unix::fs::PermissionsExt;
    let dir = state_dir();
    let apart = tempfile::tempdir().unwrap();
    let fuses = apart.path().join("fuses.bin");
    let flag = ["--fuses", fuses.to_str().unwrap()];
    // A fuse directory others may write to is refused, like a state directory.
    std::fs::set_permissions(apart.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
    let log = try_start(dir.path(), &flag).err().expect("started");
    assert!(log.contains("writable by its group"), "{log}");
    std::fs::set_permissions(apart.path(), std::fs::Permissions::from_mode(0o700)).unwrap();

    let d = try_start(dir.path(), &flag).unwrap();
    d.partition("p");
    let (mut c, s) = d.tenant("p");
    let (_, sk) = ec_pair(&mut c, s, "k");
    drop(c);
    assert!(d.stop().success());
    assert!(!dir.path().join("fuses.bin").exists());
    let mode = std::fs::metadata(&fuses).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A copy of the state directory alone: the device is not in it.
    let copy = state_dir();
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.path().display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(cp.success());
    let log = try_start(copy.path(), &[]).err().expect("the copy started");
    assert!(
        log.contains("no fuse file") && log.contains("--fuses"),
        "{log}"
    );
    assert!(
        !copy.path().join("fuses.bin").exists(),
        "the copy was provisioned"
    );

    // The device with its fuses: the key is there; a tamper destroys the fuses
    // where they are.
    let d = try_start(dir.path(), &flag).unwrap();
    let (mut c, s) = d.tenant("p");
    assert_eq!(find_label(&mut c, s, "k").len(), 2);
    c.sign_once(
        s,
        Mechanism::EcdsaHash(ihsm_proto::mech::Hash::Sha256),
        sk,
        b"x".to_vec(),
    )
    .unwrap();
    d.admin().tamper("lid").unwrap();
    assert!(!fuses.exists(), "the fuses outlived the tamper");
}

/// The bytes of a connection's shared region, read through a descriptor of its
/// memfd (a read, not a mapping: the reader wipes nothing when it lets go).
fn region_bytes(memfd: &std::os::fd::OwnedFd) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::from(memfd.try_clone().unwrap());
    let len = f.metadata().unwrap().len();
    let mut buf = vec![0u8; usize::try_from(len).unwrap()];
    f.read_exact_at(&mut buf, 0).unwrap();
    buf
}

/// Waits (10 s at most) until `memfd`'s region is all zeros; fails saying what
/// is left and where.
fn assert_wiped(memfd: &std::os::fd::OwnedFd, who: &str) {
    let started = std::time::Instant::now();
    loop {
        let bytes = region_bytes(memfd);
        let Some(at) = bytes.iter().position(|b| *b != 0) else {
            return;
        };
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{who} did not wipe the ring's region: byte {at:#x} is {:#04x}",
            bytes[at]
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits (10 s at most) until `memfd`'s region holds `needle`.
fn wait_in_region(memfd: &std::os::fd::OwnedFd, needle: &[u8], what: &str) {
    let started = std::time::Instant::now();
    while memchr::memmem::find(&region_bytes(memfd), needle).is_none() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{what} never came into the ring"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// How many of the daemon's mappings are of a ring's memfd (root only: the
/// daemon is not dumpable).
fn ring_mappings(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:ihsm-ring"))
        .count()
}

/// A raw tenant of application `token` (see common's `raw_hello`) whose
/// decryption of `ct` (initialised on `session`) is answered in its completion
/// ring and left there, never taken: the region, its doorbell and memfd.
fn raw_decrypt_left_in_ring(
    d: &Daemon,
    partition: &str,
    token: &ihsm_proto::msg::SecretBytes,
    session: u64,
    ct: &[u8],
    plain: &[u8],
) -> (
    std::os::unix::net::UnixStream,
    ihsm_ring::Region,
    std::os::fd::OwnedFd,
    std::os::fd::OwnedFd,
) {
    use ihsm_proto::{Reply, Request};
    let mut s = raw_hello(&d.socket(partition));
    let joined = raw_call(
        &mut s,
        &Request::JoinApp {
            token: token.duplicate(),
        },
    );
    assert!(matches!(joined, Ok(Reply::Done)), "{joined:?}");
    let (region, bell, memfd) = raw_open_ring(&mut s);
    raw_submit(
        &region,
        &bell,
        &Request::Decrypt {
            session,
            data: ct.to_vec(),
        },
    );
    // The check can fail: the secret is there, in the clear, before the close.
    wait_in_region(&memfd, plain, "the decrypted data");
    (s, region, bell, memfd)
}

/// Issue 16: a connection's shared-memory region holds the tenant's decrypted
/// data while it lives, and only zeros once it closes, whichever side lets go
/// first: the daemon wipes it when the client goes, or stops, without the
/// client's help; the client wipes it when it closes, without the daemon's.
#[test]
fn a_rings_region_is_wiped_when_its_connection_closes() {
    let dir = state_dir();
    let d = start(dir.path());
    d.partition("t");
    let pid = d.pid();
    // The setup on a connection without rings, so the daemon's only rings
    // are those below.
    let mut c = Client::connect_with(d.socket("t"), "test", false).unwrap();
    let s = c.open_session(true).unwrap();
    c.login(s, ihsm_proto::types::UserType::User, USER_PIN)
        .unwrap();
    let key = aes_key(&mut c, s, "k").unwrap();
    let gcm = |iv: Option<Vec<u8>>| Mechanism::AesGcm {
        iv: iv.map_or(GcmIv::Generate, GcmIv::Supplied),
        aad: b"ring".to_vec(),
        tag_bits: 128,
    };
    let plain = random_value();
    let (ct, iv) = c.encrypt_once(s, gcm(None), key, &plain).unwrap();
    let token = c.app_token().unwrap();
    assert!(!c.uses_rings());
    if is_root() {
        assert_eq!(ring_mappings(pid), 0);
    }

    // 1. The client goes without wiping (a raw one, its mapping kept): the
    // daemon wipes the region and unmaps it.
    c.crypt_init(s, gcm(iv.clone()), key, false).unwrap();
    let (sock, region, bell, memfd) = raw_decrypt_left_in_ring(&d, "t", &token, s, &ct, &plain);
    if is_root() {
        assert_eq!(ring_mappings(pid), 1, "the daemon does not map the ring");
    }
    drop((sock, bell));
    assert_wiped(&memfd, "the daemon, when its client went,");
    if is_root() {
        let started = std::time::Instant::now();
        while ring_mappings(pid) != 0 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "the daemon still maps a closed connection's ring"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    drop(region);

    // 2. The client (ihsm-client) wipes it when it closes, the daemon stopped
    // meanwhile. An honest call leaves nothing behind in the first place:
    // each side zeroes a slot as it takes it.
    let mut r = Client::connect_with(d.socket("t"), "test", true).unwrap();
    r.join_app(&token).unwrap();
    r.ping().unwrap();
    assert!(r.uses_rings());
    let memfd = r.ring_memfd().unwrap().try_clone_to_owned().unwrap();
    r.crypt_init(s, gcm(iv.clone()), key, false).unwrap();
    assert_eq!(r.decrypt(s, ct.clone()).unwrap().expose(), &plain[..]);
    let bytes = region_bytes(&memfd);
    assert!(
        memchr::memmem::find(&bytes, &plain).is_none(),
        "a taken reply stays in its slot"
    );
    assert!(bytes.iter().any(|b| *b != 0), "the region is empty");
    // A reply the client stopped waiting for is left in its slot: the
    // daemon, stopped, answers after the client's time limit.
    r.crypt_init(s, gcm(iv.clone()), key, false).unwrap();
    r.set_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let stopped = Stopped::new(pid);
    assert!(
        r.decrypt(s, ct.clone()).is_err(),
        "a stopped daemon answered"
    );
    drop(stopped);
    wait_in_region(&memfd, &plain, "the late reply");
    let stopped = Stopped::new(pid);
    drop(r);
    let bytes = region_bytes(&memfd);
    assert!(
        bytes.iter().all(|b| *b == 0),
        "the client did not wipe its ring's region as it closed"
    );
    drop(stopped);
    c.ping().unwrap();

    // 3. The daemon stops (SIGTERM) while a client's ring holds a reply: it
    // wipes the region before it exits.
    c.crypt_init(s, gcm(iv), key, false).unwrap();
    let (_sock, _region, _bell, memfd) = raw_decrypt_left_in_ring(&d, "t", &token, s, &ct, &plain);
    drop(c);
    assert!(d.stop().success());
    assert_wiped(&memfd, "the daemon, as it stopped,");
}
