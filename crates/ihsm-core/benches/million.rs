//! A partition of 1,000,000 keys: fill it once (kept under target/ between runs),
//! then measure, each in a fresh process, opening the device (time and peak RSS)
//! and find-by-label latency percentiles: once with the store file evicted from
//! the page cache (disk-bound), twice with it cached.
//!
//! `cargo bench -p ihsm-core --bench million` (set IHSM_MILLION_KEYS for fewer).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cryptoki_sys as ck;
use ihsm_core::attr::Attribute;
use ihsm_core::quota::Quotas;
use ihsm_core::session::UserType;
use ihsm_core::{Device, DeviceConfig, PartitionSpec};
use ihsm_rot::state::StateDir;
use zeroize::Zeroizing;

const IMAGE: [u8; 48] = [1; 48];

fn keys() -> u64 {
    std::env::var("IHSM_MILLION_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn start(dir: &Path) -> Device {
    let mut cfg = DeviceConfig::new(dir);
    cfg.pin_iterations = 1000;
    Device::start(cfg, StateDir::new(dir).boot(&IMAGE).unwrap()).unwrap()
}

fn vm(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field).map(|v| {
                v.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
        })
        .unwrap_or(0)
}

fn fill(dir: &Path, n: u64) {
    StateDir::new(dir).provision_dev(false, &IMAGE).unwrap();
    let d = start(dir);
    let info = d
        .create_partition(PartitionSpec {
            name: "million".into(),
            owner_uid: 0,
            owner_gid: 0,
            so_pin: Zeroizing::new(b"so-pin-1".to_vec()),
            user_pin: Some(Zeroizing::new(b"user-pin".to_vec())),
            quotas: Quotas {
                max_objects: n + 10,
                ..Quotas::default()
            },
            policy: Default::default(),
        })
        .unwrap();
    let p = d.partition(info.id).unwrap();
    let s = p.open_session(1, true).unwrap();
    p.login(1, s, UserType::User, b"user-pin").unwrap();
    let t = Instant::now();
    let batch = 10_000u64;
    let mut i = 0;
    while i < n {
        let templates: Vec<Vec<Attribute>> = (i..(i + batch).min(n))
            .map(|k| {
                vec![
                    Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                    Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
                    Attribute::bytes(ck::CKA_VALUE, [(k % 251) as u8; 32].to_vec()),
                    Attribute::bytes(ck::CKA_LABEL, format!("key-{k}").into_bytes()),
                    Attribute::bool(ck::CKA_TOKEN, true),
                ]
            })
            .collect();
        p.create_objects(1, s, &templates).unwrap();
        i += batch;
    }
    println!("filled {n} keys in {:.1} s", t.elapsed().as_secs_f64());
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Child: open, then measure finds; print one line of results.
fn measure(dir: &Path, n: u64) {
    let t = Instant::now();
    let d = start(dir);
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_open = vm("VmHWM:");
    let p = d.partition_by_name("million").unwrap();
    let s = p.open_session(1, false).unwrap();
    p.login(1, s, UserType::User, b"user-pin").unwrap();
    let mut lat = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let label = format!("key-{}", x % n);
        let t = Instant::now();
        let found = p
            .find(1, s, &[Attribute::bytes(ck::CKA_LABEL, label.into_bytes())])
            .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(found.len(), 1);
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "open {open_ms:.1} ms, peak RSS after open {:.1} MiB, after 20,000 finds {:.1} MiB; find by label p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us",
        rss_open as f64 / 1024.0,
        vm("VmHWM:") as f64 / 1024.0,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
    );
}

fn main() {
    let n = keys();
    if let Ok(dir) = std::env::var("IHSM_MILLION_CHILD") {
        measure(Path::new(&dir), n);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ihsm-million-{n}"));
    if !dir.join("store.redb").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        fill(&dir, n);
    }
    // Run 1 starts with the store file dropped from the page cache, so every find
    // that misses redb's own cache reads the disk; runs 2 and 3 start with the
    // whole file read into the page cache (as on a host whose HSM is in use).
    for (run, cold) in [(1, true), (2, false), (3, false)] {
        let mut f = std::fs::File::open(dir.join("store.redb")).unwrap();
        if cold {
            rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        } else {
            std::io::copy(&mut f, &mut std::io::sink()).unwrap();
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .env("IHSM_MILLION_CHILD", &dir)
            .env("IHSM_MILLION_KEYS", n.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!(
            "run {run} ({n} keys, {}): {}",
            if cold {
                "page cache dropped"
            } else {
                "page cache warm"
            },
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
