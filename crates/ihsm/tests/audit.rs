//! `ihsm audit show|export` from a running daemon, and `ihsm verify audit` on the
//! export alone: an intact export verifies; one edited, one dropped and two
//! swapped lines are each named; another partition's export is refused under this
//! partition's certificate; quotes served are device-log events.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{Daemon, ihsm};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn audit_exports_verify_from_the_file_alone_and_tampering_is_named() {
    if !common::require_root("the daemon's locked memory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = d.join("s");
    common::ihsmd();
    let run = |args: &[&str]| -> String {
        let o = ihsm(&s, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    run(&["provision", "--dev"]);
    let daemon = Daemon::start(&s);
    let put = |name: &str, b: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, b).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let (so, pin) = (put("so", b"so-pin-1234\n"), put("pin", b"user-pin-1234\n"));
    for name in ["payments", "other"] {
        run(&[
            "partition",
            "create",
            name,
            "--owner-uid",
            "0",
            "--so-pin-file",
            &so,
            "--pin-file",
            &pin,
        ]);
        run(&[
            "key",
            "generate",
            "-p",
            name,
            "--pin-file",
            &pin,
            "--type",
            "ec-p384",
            "--label",
            "sig",
        ]);
    }
    // Restarted: each partition's log gets a signed checkpoint as it is opened.
    drop(daemon);
    let _daemon = Daemon::start(&s);
    run(&[
        "key",
        "attest",
        "-p",
        "payments",
        "--pin-file",
        &pin,
        "--label",
        "sig",
        "--out",
        d.join("r").to_str().unwrap(),
    ]);
    run(&[
        "key",
        "generate",
        "-p",
        "payments",
        "--pin-file",
        &pin,
        "--type",
        "aes256",
        "--label",
        "bulk",
        "--count",
        "3",
    ]);

    let shown = run(&["audit", "show", "-p", "payments"]);
    for event in [
        "partition_created",
        "login",
        "object_created",
        "checkpoint",
        "key_reported",
    ] {
        assert!(shown.contains(event), "{event}: {shown}");
    }
    // Evidence served is an attestation event of the device log, nonce and all.
    let nonce = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    run(&[
        "rot",
        "evidence",
        "--nonce",
        nonce,
        "--out",
        d.join("ev").to_str().unwrap(),
    ]);
    let device = run(&["audit", "show", "--device", "--json"]);
    let device: serde_json::Value = serde_json::from_str(&device).unwrap();
    assert!(
        device
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["event"]["type"] == "partition_created" && l["pid"] == 0),
        "{device}"
    );
    let served: Vec<&serde_json::Value> = device
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["event"]["type"] == "quote_served")
        .collect();
    assert_eq!(served.len(), 2, "{device}");
    assert_eq!(served[0]["event"]["command"], "PCRQ");
    assert_eq!(served[1]["event"]["command"], "PCRM");
    assert!(served.iter().all(|l| l["event"]["nonce"] == nonce));

    let export = d.join("payments.jsonl");
    let out = run(&[
        "audit",
        "export",
        "-p",
        "payments",
        "--out",
        export.to_str().unwrap(),
    ]);
    assert!(out.contains("lines, entries 1..="), "{out}");
    let cert = d.join("payments.pem");
    run(&[
        "partition",
        "cert",
        "payments",
        "--out",
        cert.to_str().unwrap(),
    ]);
    let verify = |file: &Path| -> (Option<i32>, String) {
        let o = ihsm(
            &s,
            &[
                "verify",
                "audit",
                file.to_str().unwrap(),
                "--cert",
                cert.to_str().unwrap(),
            ],
        );
        (o.status.code(), text(&o))
    };
    let (code, out) = verify(&export);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verified: partition payments"), "{out}");

    let lines: Vec<String> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(lines.len() >= 8, "{}", lines.len());
    let write = |name: &str, ls: &[String]| {
        let p = d.join(name);
        std::fs::write(&p, ls.join("\n") + "\n").unwrap();
        p
    };
    let seq = |l: &str| -> u64 {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };

    // One edited line: its event says another handle than its entry.
    let mut edited = lines.clone();
    let mut v: serde_json::Value = serde_json::from_str(&edited[3]).unwrap();
    v["time"] = serde_json::json!(v["time"].as_u64().unwrap() + 1);
    edited[3] = v.to_string();
    let (code, out) = verify(&write("edited.jsonl", &edited));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "line 4 (entry {}) was edited: its time",
            seq(&lines[3])
        )),
        "{out}"
    );
    // The entry itself edited (one byte of its time), the line made to agree: the
    // next entry no longer chains to it.
    let mut forged = lines.clone();
    {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut v: serde_json::Value = serde_json::from_str(&forged[2]).unwrap();
        let mut e = b64.decode(v["entry"].as_str().unwrap()).unwrap();
        // seq (one byte for entry 3), then the time varint: flip its lowest bit.
        e[1] ^= 1;
        let line = ihsm_verify::audit::export_line(v["pid"].as_u64().unwrap() as u32, &e).unwrap();
        v = line;
        forged[2] = v.to_string();
    }
    let (code, out) = verify(&write("forged.jsonl", &forged));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("line 4: entry 4 does not chain"), "{out}");
    // One dropped line.
    let mut dropped = lines.clone();
    dropped.remove(4);
    let (code, out) = verify(&write("dropped.jsonl", &dropped));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("entry {} was dropped", seq(&lines[4]))),
        "{out}"
    );
    // Two lines swapped.
    let mut swapped = lines.clone();
    swapped.swap(5, 6);
    let (code, out) = verify(&write("swapped.jsonl", &swapped));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("reordered"), "{out}");
    assert!(out.contains("line 6:"), "{out}");

    // Another partition's export, under this partition's certificate.
    let other = d.join("other.jsonl");
    run(&[
        "audit",
        "export",
        "-p",
        "other",
        "--out",
        other.to_str().unwrap(),
    ]);
    let (code, out) = verify(&other);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("partition"), "{out}");
    // The device log verifies too, under the certificate of its checkpoint key
    // (issued by the RT Alias as partition 0's); not under a partition's.
    let device_export = d.join("device.jsonl");
    run(&[
        "audit",
        "export",
        "--device",
        "--out",
        device_export.to_str().unwrap(),
    ]);
    let device_cert = d.join("device.pem");
    run(&[
        "audit",
        "cert",
        "--device",
        "--out",
        device_cert.to_str().unwrap(),
    ]);
    let o = ihsm(
        &s,
        &[
            "verify",
            "audit",
            device_export.to_str().unwrap(),
            "--cert",
            device_cert.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("verified: partition device (id 0)"),
        "{}",
        text(&o)
    );
    let (code, out) = verify(&device_export);
    assert_eq!(code, Some(1), "{out}");
    // Unusable input: exit 2.
    let (code, out) = verify(&d.join("missing.jsonl"));
    assert_eq!(code, Some(2), "{out}");
    let (code, out) = verify(&write("garbage.jsonl", &["{not json".to_owned()]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("line 1: not JSON"), "{out}");
}
