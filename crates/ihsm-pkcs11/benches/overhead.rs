//! What the PKCS#11 module adds per call on top of `ihsm-client`, against a real
//! ihsmd (release build), in one run: the same requests made through the
//! module's C entry points and through the client directly, interleaved in
//! rounds so drift hits both alike.
//!
//! `cargo bench -p ihsm-pkcs11 --bench overhead`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    missing_docs
)]

use core::ptr::null_mut;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use ihsm_client::Client;
use ihsm_pkcs11::ffi::*;
use ihsm_proto::attr::Attribute;
use ihsm_proto::mech::{Hash, Mechanism};
use ihsm_proto::msg::{PartitionSpec, SecretBytes};
use ihsm_proto::types::UserType;

const PIN: &[u8] = b"user-pin-1234";
const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.0.id()).unwrap()).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.0.wait();
    }
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let target = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--locked", "--release", "-p", "ihsmd"]);
    assert!(build.status().unwrap().success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ihsmd.toml"),
        "[daemon]\npin_iterations = 1000\n",
    )
    .unwrap();
    let child = Command::new(target.join("ihsmd"))
        .arg("--state")
        .arg(dir.path())
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _d = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut admin = loop {
        if let Ok(mut c) = Client::connect(dir.path().join("admin.sock"))
            && c.ping().is_ok()
        {
            break c;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    };
    admin
        .create_partition(PartitionSpec {
            name: "bench".into(),
            owner_uid: rustix::process::geteuid().as_raw(),
            owner_gid: u32::MAX,
            so_pin: SecretBytes::new(b"so-pin-1234"),
            user_pin: Some(SecretBytes::new(PIN)),
            quotas: None,
            policy: Default::default(),
        })
        .unwrap();
    let sock = dir.path().join("partitions/bench.sock");

    // The client, directly.
    let mut c = Client::connect(&sock).unwrap();
    let s = c.open_session(true).unwrap();
    c.login(s, UserType::User, PIN).unwrap();
    let (_, sk) = c
        .generate_key_pair(
            s,
            Mechanism::EcKeyPairGen,
            vec![
                Attribute::bytes(CKA_EC_PARAMS, P256.to_vec()),
                Attribute::bool(CKA_TOKEN, true),
            ],
            vec![
                Attribute::bool(CKA_TOKEN, true),
                Attribute::bytes(CKA_LABEL, b"k".to_vec()),
            ],
        )
        .unwrap();
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let msg = vec![0x5au8; 64];

    // The module, through its C entry points.
    // SAFETY: single-threaded here; nothing else reads the environment.
    unsafe { std::env::set_var("IHSM_SOCKET", &sock) };
    let mut h = 0;
    // SAFETY: a null C_Initialize argument; `h` is a live local for the session
    // handle; `pin` a live buffer passed with its own length.
    unsafe {
        assert_eq!(C_Initialize(null_mut()), CKR_OK);
        assert_eq!(
            C_OpenSession(
                0,
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                null_mut(),
                None,
                &mut h
            ),
            CKR_OK
        );
        let mut pin = PIN.to_vec();
        assert_eq!(
            C_Login(h, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_OK
        );
    }
    let mut ck_mech = CK_MECHANISM {
        mechanism: CKM_ECDSA_SHA256,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut data = msg.clone();
    let mut sig = [0u8; 64];

    let n = 5_000;
    let (mut c_info, mut m_info, mut c_sign, mut m_sign) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _round in 0..4 {
        c_info.extend(time(n, || {
            c.session_state(s).unwrap();
        }));
        m_info.extend(time(n, || {
            // SAFETY: CK_SESSION_INFO is plain integers; all-zero is a valid value.
            let mut info: CK_SESSION_INFO = unsafe { core::mem::zeroed() };
            // SAFETY: `info` is a live CK_SESSION_INFO for the answer.
            assert_eq!(unsafe { C_GetSessionInfo(h, &mut info) }, CKR_OK);
        }));
        c_sign.extend(time(n / 2, || {
            c.sign_init(s, mech.clone(), sk, false).unwrap();
            c.sign(s, msg.clone()).unwrap();
        }));
        m_sign.extend(time(n / 2, || {
            let mut len = 64;
            // SAFETY: `ck_mech` is a mechanism without parameter; `data` is 64 live
            // bytes, `sig` room for the `len` = 64 bytes said.
            unsafe {
                assert_eq!(C_SignInit(h, &mut ck_mech, sk), CKR_OK);
                assert_eq!(
                    C_Sign(h, data.as_mut_ptr(), 64, sig.as_mut_ptr(), &mut len),
                    CKR_OK
                );
            }
        }));
    }
    let (ci, mi, cs, ms) = (p50(c_info), p50(m_info), p50(c_sign), p50(m_sign));
    println!(
        "PKCS#11 module overhead over ihsm-client (p50, {} calls each, interleaved)",
        4 * n
    );
    println!(
        "  session info: client {ci:.1} us, module {mi:.1} us: +{:.2} us per call",
        mi - ci
    );
    println!(
        "  ECDSA P-256 sign (Init + Sign, 2 calls): client {cs:.1} us, module {ms:.1} us: +{:.2} us per call",
        (ms - cs) / 2.0
    );
    // SAFETY: C_Finalize's one argument is reserved and null, as PKCS#11 requires;
    // no handle of this module is used after it.
    unsafe { assert_eq!(C_Finalize(null_mut()), CKR_OK) };
}
