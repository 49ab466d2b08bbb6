//! A real crash test: a child process (this test binary, re-executed in child
//! mode) writes objects in a loop and acknowledges each write after it returns
//! Ok; the parent kills it with SIGKILL at a random moment, reopens the store and
//! checks that every acknowledged object is there and opens, that the write in
//! flight is all there or not at all, and that the counter crash window is
//! repaired. Repeated at least 50 times; then again with a seal budget so small that
//! the sealing key moves to a new epoch every few writes, so that kills land inside
//! re-keys too.
//!
//! The child is an ignored test, so that it counts as ignored (not as a pass) when
//! the suite runs; the parent runs it with `--ignored --exact`. One kill in ten
//! comes a random moment after the spawn (start-up, open, creation); the others
//! after the child has acknowledged a random number of writes (0 to 11) and a
//! random moment more, so that a slow machine still gets writes in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{DEVICE, Dir, digest, key, mac, read_object};
use ihsm_store::Store;

const CHILD_ENV: &str = "IHSM_STORE_CRASH_CHILD";
/// With it, the child opens the store with this seal budget and appends no audit
/// entries (so the records that a re-key seals again stay few).
const BUDGET_ENV: &str = "IHSM_STORE_CRASH_SEAL_BUDGET";
const CHILD_TEST: &str = "crash_child";
const RUNS: usize = 60;
const MIN_RUNS: usize = 50;
const BUDGET: Duration = Duration::from_secs(55);
const PID: u32 = 1;

fn record(oid: u64) -> Vec<u8> {
    format!("record of object {oid} ").repeat(4).into_bytes()
}

fn open(dir: &Path) -> (Store, ihsm_store::OpenReport) {
    let (store, counter) = Dir::at(dir);
    Store::open(&store, &counter, key(DEVICE), 1).unwrap()
}

fn open_with(dir: &Path, seal_budget: u64) -> (Store, ihsm_store::OpenReport) {
    let (store, counter) = Dir::at(dir);
    Store::open_with(
        &store,
        &counter,
        key(DEVICE),
        1,
        ihsm_store::StoreOptions { seal_budget },
    )
    .unwrap()
}

/// Child mode: write forever. Each write creates 1 to 4 objects (announced with
/// `try` from inside the write, before it commits), indexes them and appends an
/// audit entry naming them; `ack` follows once the write has returned Ok.
#[test]
#[ignore = "the child of the crash tests, which run it"]
fn crash_child() {
    let dir =
        std::env::var(CHILD_ENV).expect("run by the crash tests, with IHSM_STORE_CRASH_CHILD");
    let budget: Option<u64> = std::env::var(BUDGET_ENV).ok().map(|b| b.parse().unwrap());
    let (s, _) = match budget {
        Some(b) => open_with(Path::new(&dir), b),
        None => open(Path::new(&dir)),
    };
    if s.partition(PID).unwrap().is_none() {
        s.write(|tx| tx.put_partition(PID, b"crash partition"))
            .unwrap();
    }
    let pk = key(PID as u8);
    let out = Mutex::new(std::io::stdout());
    // The harness has printed "test crash_child ... " without a newline.
    // `ready`: the store is open and the partition exists; the parent times its
    // mid-stream kills from here, so that a slow machine still gets writes in.
    {
        let mut o = out.lock().unwrap();
        writeln!(o, "\nready").unwrap();
        o.flush().unwrap();
    }
    for n in 0u64.. {
        let ids = s
            .write(|tx| {
                let mut ids = Vec::new();
                for _ in 0..1 + n % 4 {
                    let oid = tx.next_object_id(PID)?;
                    tx.put_object(PID, oid, &pk, &digest(oid), &record(oid))?;
                    tx.index_add(PID, 1, &mac(oid), oid)?;
                    ids.push(oid);
                }
                let seq = ids[0];
                let names: Vec<String> = ids.iter().map(u64::to_string).collect();
                if budget.is_none() {
                    tx.audit_append(PID, seq, names.join(" ").as_bytes())?;
                }
                let mut o = out.lock().unwrap();
                writeln!(o, "try {}", names.join(" ")).unwrap();
                o.flush().unwrap();
                Ok(ids)
            })
            .unwrap();
        let names: Vec<String> = ids.iter().map(u64::to_string).collect();
        let mut o = out.lock().unwrap();
        writeln!(o, "ack {}", names.join(" ")).unwrap();
        o.flush().unwrap();
    }
}

fn ids(line: &str, prefix: &str) -> Option<Vec<u64>> {
    let rest = line.strip_prefix(prefix)?;
    Some(
        rest.split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect(),
    )
}

/// What one run of the child said before it died.
#[derive(Default)]
struct Said {
    acked: Vec<u64>,
    last_try: Vec<u64>,
    last_try_acked: bool,
}

/// When the parent kills the child: so long after it was spawned (during start-up,
/// open or creation), or so long after it acknowledged so many writes (mid-stream:
/// counting writes, not time, keeps a slow or loaded machine from killing every
/// child before its first write).
#[derive(Clone, Copy)]
enum Kill {
    AfterSpawn(Duration),
    AfterAcks(usize, Duration),
}

/// How long a child may take to say what the parent waits for before the test
/// fails: generous, so that only a hang fails it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

fn run_child(dir: &Path, kill: Kill, seal_budget: Option<u64>) -> Said {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        CHILD_TEST,
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, dir);
    if let Some(b) = seal_budget {
        cmd.env(BUDGET_ENV, b.to_string());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                // Only complete lines count.
                if line.ends_with('\n') {
                    lines.lock().unwrap().push(line.trim_end().to_owned());
                }
                line.clear();
            }
        })
    };
    match kill {
        Kill::AfterSpawn(delay) => std::thread::sleep(delay),
        Kill::AfterAcks(acks, delay) => {
            let since = Instant::now();
            let seen = || {
                let lines = lines.lock().unwrap();
                lines.iter().any(|l| l == "ready")
                    && lines.iter().filter(|l| l.starts_with("ack ")).count() >= acks
            };
            // A child that exited falls through and is reported below.
            while !seen() && child.try_wait().unwrap().is_none() {
                if since.elapsed() > CHILD_TIMEOUT {
                    let _ = child.kill();
                    panic!("the child did not get {acks} writes through in {CHILD_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(delay);
        }
    }
    // Still running? Then this is SIGKILL at an arbitrary point.
    let exited_early = child.try_wait().unwrap();
    child.kill().unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    if let Some(st) = exited_early {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        panic!("child exited on its own ({st}): {err}");
    }
    assert!(status.code().is_none(), "child was not killed: {status}");
    let mut said = Said::default();
    for line in lines.lock().unwrap().iter() {
        if let Some(t) = ids(line, "try ") {
            said.last_try = t;
            said.last_try_acked = false;
        } else if let Some(a) = ids(line, "ack ") {
            assert_eq!(a, said.last_try, "ack without its try");
            said.acked.extend(&a);
            said.last_try_acked = true;
        }
    }
    said
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write_and_leaves_no_half_write() {
    crash_runs(None, RUNS, MIN_RUNS, BUDGET);
}

/// A seal budget of 24 re-keys every fourth or fifth write (each seals the
/// partition state and the generation record), so about one kill in five lands in
/// a re-key or just after one.
#[test]
fn kill_9_during_re_keys_of_the_sealing_key_loses_nothing() {
    crash_runs(Some(24), 25, 20, Duration::from_secs(30));
}

fn crash_runs(seal_budget: Option<u64>, max_runs: usize, min_runs: usize, budget: Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("crash test seed {seed:#x}");
    let mut rng = Rng(seed);
    let pk = key(PID as u8);
    let mut acked_ever = BTreeSet::new();
    let (mut runs, mut repaired, mut in_flight_committed, mut in_flight_lost) = (0, 0, 0, 0);
    let start = Instant::now();
    let mut epochs = BTreeSet::new();
    while runs < max_runs && start.elapsed() < budget {
        // Mostly mid-stream, sometimes during start-up, open or creation.
        let kill = match rng.next() % 10 {
            0 => Kill::AfterSpawn(Duration::from_millis(rng.next() % 60)),
            _ => Kill::AfterAcks(
                (rng.next() % 12) as usize,
                Duration::from_micros(rng.next() % 20_000),
            ),
        };
        let said = run_child(dir, kill, seal_budget);
        runs += 1;

        let (s, report) = match seal_budget {
            Some(b) => open_with(dir, b),
            None => open(dir),
        };
        epochs.insert(s.seal_epoch());
        repaired += usize::from(report.repaired_counter);
        let present: BTreeSet<u64> = s.object_ids(PID).unwrap().into_iter().collect();
        acked_ever.extend(&said.acked);

        // Every acknowledged object, ever, is present, opens, and is indexed.
        for &oid in &acked_ever {
            assert!(
                present.contains(&oid),
                "run {runs}: acknowledged {oid} lost"
            );
        }
        // Every present object opens completely, and is indexed.
        for &oid in &present {
            assert_eq!(
                read_object(&s, PID, oid, &pk),
                Some((digest(oid), record(oid))),
                "run {runs}: object {oid}"
            );
            assert_eq!(s.find(PID, 1, &mac(oid)).unwrap(), vec![oid]);
        }
        // Writes are whole: ids are 1..=n without gaps, and the audit entries
        // (written in the same transactions) name exactly the present objects.
        let n = present.len() as u64;
        assert_eq!(present, (1..=n).collect(), "run {runs}: a gap in the ids");
        assert_eq!(s.object_count(PID).unwrap(), n);
        if seal_budget.is_none() {
            let mut audited = BTreeSet::new();
            for (seq, entry) in s.audit(PID, 0, usize::MAX).unwrap() {
                let named: Vec<u64> = String::from_utf8(entry)
                    .unwrap()
                    .split_whitespace()
                    .map(|t| t.parse().unwrap())
                    .collect();
                assert_eq!(named[0], seq);
                audited.extend(named);
            }
            assert_eq!(audited, present, "run {runs}: audit and objects disagree");
        }
        // The write in flight at the kill: all of it or none of it.
        if !said.last_try.is_empty() && !said.last_try_acked {
            let there = said.last_try.iter().filter(|o| present.contains(o)).count();
            assert!(
                there == 0 || there == said.last_try.len(),
                "run {runs}: half of write {:?} is present",
                said.last_try
            );
            if there == 0 {
                in_flight_lost += 1;
            } else {
                in_flight_committed += 1;
            }
        }
        assert_eq!(s.generation(), report.generation);
        drop(s);
    }
    println!(
        "crash test (seal budget {seal_budget:?}): {runs} SIGKILLs in {:.1} s, {} objects \
         acknowledged, {in_flight_committed} in-flight writes found committed, {in_flight_lost} \
         rolled back, {repaired} counter repairs (crash between commit and counter), sealing \
         key epochs seen {:?}",
        start.elapsed().as_secs_f64(),
        acked_ever.len(),
        epochs
    );
    assert!(runs >= min_runs, "only {runs} runs in {budget:?}");
    if seal_budget.is_some() {
        assert!(
            epochs.len() > 2,
            "the sealing key hardly changed epochs: {epochs:?}"
        );
    }
    assert!(
        !acked_ever.is_empty(),
        "the child never got a write through"
    );
}
