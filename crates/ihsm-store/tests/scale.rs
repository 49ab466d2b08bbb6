//! The store at 1,000,000 objects: fill time, open time and memory (in a fresh
//! process, cleanly and after a SIGKILL during a write), `find` and `object`
//! latency percentiles, single-write latency. Ignored by default (it writes
//! about 400 MB and takes minutes); run it in release, since debug builds of
//! redb walk every page when they open a database:
//!
//! ```text
//! cargo test -p ihsm-store --release --test scale -- --ignored --nocapture
//! ```
//!
//! `IHSM_STORE_SCALE_N` changes the object count; `IHSM_STORE_SCALE_DIR` keeps
//! the filled store in that directory so later runs skip the fill. Nothing here
//! asserts on time: the figures are printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEVICE, Dir, key};
use ihsm_crypto::hash::sha256;
use ihsm_store::Store;

const CHILD_ENV: &str = "IHSM_STORE_SCALE_CHILD";
const DIR_ENV: &str = "IHSM_STORE_SCALE_DIR";
const BATCH: u64 = 10_000;
const RECORD_LEN: usize = 256;
const PID: u32 = 1;
const TAG: u8 = 3;

fn n_objects() -> u64 {
    std::env::var("IHSM_STORE_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// What the core would store as the index value: a MAC of an attribute value.
fn value_mac(oid: u64) -> [u8; 16] {
    let d = sha256(&oid.to_be_bytes());
    let mut m = [0u8; 16];
    m.copy_from_slice(&d[..16]);
    m
}

fn record(oid: u64) -> Vec<u8> {
    let mut r = vec![0x5a; RECORD_LEN];
    r[..8].copy_from_slice(&oid.to_be_bytes());
    r
}

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_owned())
        .unwrap_or_default()
}

fn open(dir: &Path) -> (Store, ihsm_store::OpenReport) {
    let (store, counter) = Dir::at(dir);
    Store::open(&store, &counter, key(DEVICE), 1).unwrap()
}

fn percentiles(label: &str, mut v: Vec<Duration>) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    println!(
        "metric {label}: n={} p50={:.1}us p90={:.1}us p99={:.1}us p99.9={:.1}us max={:.1}us",
        v.len(),
        at(0.50).as_secs_f64() * 1e6,
        at(0.90).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(0.999).as_secs_f64() * 1e6,
        v[v.len() - 1].as_secs_f64() * 1e6,
    );
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

/// Child modes: `measure` opens and measures; `write` writes until killed.
#[test]
#[ignore = "writes ~400 MB; run with --release --ignored --nocapture"]
fn scale_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR_ENV).unwrap());
    println!();
    println!("metric rss before open: {}", proc_status("VmRSS:"));
    let t = Instant::now();
    let (s, report) = open(&dir);
    let open_time = t.elapsed();
    println!(
        "metric open: {:.1} ms (generation {}, repaired_counter {})",
        open_time.as_secs_f64() * 1e3,
        report.generation,
        report.repaired_counter
    );
    println!("metric rss after open: {}", proc_status("VmRSS:"));
    let n = s.object_count(PID).unwrap();
    match mode.as_str() {
        "measure" => {
            println!("metric objects: {n}");
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let pk = key(PID as u8);
            let mut finds = Vec::new();
            for _ in 0..20_000 {
                let oid = 1 + rng.next() % n;
                let mac = value_mac(oid);
                let t = Instant::now();
                let hits = s.find(PID, TAG, &mac).unwrap();
                finds.push(t.elapsed());
                assert_eq!(hits, vec![oid]);
            }
            percentiles("find (random, cold then warm)", finds);
            let mut reads = Vec::new();
            for _ in 0..20_000 {
                let oid = 1 + rng.next() % n;
                let t = Instant::now();
                let (_, r) = s.object(PID, oid, &pk).unwrap().unwrap();
                reads.push(t.elapsed());
                assert_eq!(r.len(), RECORD_LEN);
            }
            percentiles("object (random, open + decrypt)", reads);
            let mut writes = Vec::new();
            for _ in 0..50 {
                let t = Instant::now();
                s.write(|tx| {
                    let oid = tx.next_object_id(PID)?;
                    tx.put_object(PID, oid, &pk, &[0; 32], &record(oid))?;
                    tx.index_add(PID, TAG, &value_mac(oid), oid)
                })
                .unwrap();
                writes.push(t.elapsed());
            }
            percentiles("write of one object (commit + counter, fsyncs)", writes);
            println!(
                "metric rss after reads and writes: {}",
                proc_status("VmRSS:")
            );
            println!("metric peak rss: {}", proc_status("VmHWM:"));
        }
        "write" => {
            let pk = key(PID as u8);
            let mut out = std::io::stdout();
            loop {
                s.write(|tx| {
                    for _ in 0..1_000 {
                        let oid = tx.next_object_id(PID)?;
                        tx.put_object(PID, oid, &pk, &[0; 32], &record(oid))?;
                        tx.index_add(PID, TAG, &value_mac(oid), oid)?;
                    }
                    Ok(())
                })
                .unwrap();
                writeln!(out, "ack").unwrap();
                out.flush().unwrap();
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn child(dir: &Path, mode: &str, kill_after: Option<Duration>) {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "scale_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .env(DIR_ENV, dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = c.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acks = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line == "ack" {
                acks += 1;
            } else if let Some(m) = line.strip_prefix("metric ") {
                println!("  [child] {m}");
            }
        }
        acks
    });
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        c.kill().unwrap();
    }
    let status = c.wait().unwrap();
    let acks = reader.join().unwrap();
    if kill_after.is_some() {
        println!("  [child] SIGKILLed after {acks} committed batches of 1,000 objects");
    } else {
        assert!(status.success(), "child {mode} failed: {status}");
    }
}

#[test]
#[ignore = "writes ~400 MB; run with --release --ignored --nocapture"]
fn one_million_objects() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let n = n_objects();
    let tmp;
    let dir = match std::env::var(DIR_ENV) {
        Ok(d) => {
            std::fs::create_dir_all(&d).unwrap();
            PathBuf::from(d)
        }
        Err(_) => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_owned()
        }
    };
    let (store_path, _) = Dir::at(&dir);
    {
        let (s, _) = open(&dir);
        if s.partition(PID).unwrap().is_none() {
            s.write(|tx| tx.put_partition(PID, b"scale")).unwrap();
        }
        let have = s.object_count(PID).unwrap();
        if have < n {
            let pk = key(PID as u8);
            let t = Instant::now();
            let mut done = have;
            while done < n {
                let k = BATCH.min(n - done);
                s.write(|tx| {
                    for _ in 0..k {
                        let oid = tx.next_object_id(PID)?;
                        tx.put_object(PID, oid, &pk, &[oid as u8; 32], &record(oid))?;
                        tx.index_add(PID, TAG, &value_mac(oid), oid)?;
                    }
                    Ok(())
                })
                .unwrap();
                done += k;
                if done % 100_000 < BATCH {
                    print!("\r  filled {done}/{n}");
                    std::io::stdout().flush().unwrap();
                }
            }
            let el = t.elapsed();
            println!(
                "\nfill: {} objects of {RECORD_LEN} bytes in {:.1} s ({:.0} objects/s, one write per {BATCH})",
                n - have,
                el.as_secs_f64(),
                (n - have) as f64 / el.as_secs_f64()
            );
        }
        println!("parent rss after fill: {}", proc_status("VmRSS:"));
    }
    let size = std::fs::metadata(&store_path).unwrap().len();
    println!("store file: {:.1} MiB", size as f64 / (1 << 20) as f64);

    println!("clean open in a fresh process:");
    child(&dir, "measure", None);
    println!("writer killed with SIGKILL mid-stream:");
    child(&dir, "write", Some(Duration::from_millis(2_500)));
    println!("open after the crash in a fresh process:");
    child(&dir, "measure", None);
}
