//! `ihsm-verify` must not share code with the crates that produce evidence: none of
//! them may be a normal (non-dev) dependency, directly or through another crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PRODUCERS: [&str; 4] = ["ihsm-rot", "ihsm-core", "ihsm-crypto", "ihsm-store"];

#[test]
fn no_evidence_producer_is_a_normal_dependency() {
    let out = std::env::temp_dir().join(format!("ihsm-verify-tree-{}", std::process::id()));
    let file = std::fs::File::create(&out).unwrap();
    let mut child = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "ihsm-verify",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(file)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("cargo tree did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let tree = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert!(status.success(), "cargo tree failed");
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains(&"ihsm-verify"), "{tree}");
    assert!(names.contains(&"aws-lc-rs"), "{tree}");
    for p in PRODUCERS {
        assert!(
            !names.contains(&p),
            "{p} is a normal dependency of ihsm-verify:\n{tree}"
        );
    }
}
