//! The registry against a real 3-member etcd cluster (Debian's etcd-server, started
//! here), with hosts whose evidence comes from real development devices booted in
//! memory by `ihsm-rot` under one vendor and one manifest, as a fleet's are.
//!
//! Hosts register and are affirmed; records that are forged, moved, edited,
//! replayed, stale or from a device outside the anchors are refused with their own
//! reasons; a host that stops refreshing leaves; the fleet view survives one etcd
//! member down, is unavailable (within its timeout, never hanging) with two, and
//! heals when they come back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use ihsm_crypto::Secret;
use ihsm_crypto::mldsa::{MlDsaLevel, MlDsaPrivateKey};
use ihsm_fleet::policy::{FleetPolicy, HostRefusal, SignedRefvals};
use ihsm_fleet::record::{Evidence, HostBody, HostRecord};
use ihsm_fleet::registry::{self, Attester, MemberConfig, MemberState, Membership, Registry};
use ihsm_fleet::testing::{self, EtcdCluster};
use ihsm_rot::Alg;
use ihsm_rot::boot::{self, Measurements};
use ihsm_rot::fuses::{FuseSpec, Fuses, Lifecycle, Ueid};
use ihsm_rot::keyset::KeySet;
use ihsm_rot::mailbox::{self, cmd};
use ihsm_rot::manifest;
use ihsm_rot::runtime::Runtime;
use ihsm_rot::state::default_body;
use ihsm_verify::chain::TrustAnchor;
use ihsm_verify::envelope::{self, EnvelopeRefusal};
use ihsm_verify::refvals::RefValues;

const IMAGE: [u8; 48] = [0x11; 48];
const CONFIG: [u8; 48] = [0x22; 48];
const SVN: u32 = 3;
/// Every wait in this file is bounded by this.
const WAIT: Duration = Duration::from_secs(45);

fn cannot_run(why: &str) {
    assert!(
        std::env::var("IHSM_REQUIRE_ROOT").as_deref() != Ok("1"),
        "{why}: IHSM_REQUIRE_ROOT=1 says this run must be able to run it, so it fails instead of skipping"
    );
    eprintln!("\n*** SKIPPED: {why} (with IHSM_REQUIRE_ROOT=1 this fails) ***\n");
}

fn sha384(parts: &[&[u8]]) -> [u8; 48] {
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA384);
    for p in parts {
        c.update(p);
    }
    c.finish().as_ref().try_into().unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A vendor: the key sets fused into every device of the fleet, the manifest they
/// all boot, and the key that signs the reference values.
struct Vendor {
    vendor: KeySet,
    owner: KeySet,
    manifest: Vec<u8>,
    refvals_ecc: EcdsaKeyPair,
    refvals_mldsa: MlDsaPrivateKey,
}

impl Vendor {
    fn new() -> Self {
        let dir = std::path::Path::new("/nonexistent");
        let vendor = KeySet::generate(dir, 2).unwrap();
        let owner = KeySet::generate(dir, 1).unwrap();
        let manifest = manifest::sign(
            &default_body(SVN, &IMAGE, &CONFIG),
            &vendor.vendor_signer(0, 0).unwrap(),
            Some(&owner.owner_signer().unwrap()),
        )
        .unwrap();
        Self {
            vendor,
            owner,
            manifest,
            refvals_ecc: EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
            refvals_mldsa: MlDsaPrivateKey::generate(MlDsaLevel::L87).unwrap(),
        }
    }

    fn spec(&self, lifecycle: Lifecycle) -> FuseSpec {
        FuseSpec {
            lifecycle,
            vendor_key_hash: self.vendor.vendor_key_hash().unwrap(),
            owner_key_hash: self.owner.owner_key_hash().unwrap(),
            svn: SVN,
        }
    }

    /// A new device of this vendor (its own UDS, field entropy and UEID), booted.
    fn device(&self, lifecycle: Lifecycle) -> Runtime {
        let fuses = Fuses::from_parts(
            &self.spec(lifecycle),
            Secret::from_slice(&ihsm_crypto::rand::array::<64>().unwrap()).unwrap(),
            Secret::from_slice(&ihsm_crypto::rand::array::<32>().unwrap()).unwrap(),
            Ueid::random().unwrap(),
        )
        .unwrap();
        boot::boot(
            &fuses,
            true,
            &self.manifest,
            &Measurements {
                image: IMAGE,
                config: CONFIG,
            },
        )
        .unwrap()
    }

    /// The signed reference values, computed from docs/boot.md's extension order.
    fn refvals(&self, lifecycle: Lifecycle) -> Vec<u8> {
        let spec = self.spec(lifecycle);
        let status = boot::device_status(lifecycle, true, 0, SVN, SVN, 0, true);
        let zero = [0u8; 48];
        let pcr0 = [
            status.as_slice(),
            &spec.vendor_key_hash,
            &spec.owner_key_hash,
            &IMAGE,
        ]
        .iter()
        .fold(zero, |p, m| sha384(&[&p, m]));
        let mdig = sha384(&[&self.manifest]);
        let pcr2 = [CONFIG.as_slice(), &mdig]
            .iter()
            .fold(zero, |p, m| sha384(&[&p, m]));
        let r = RefValues {
            fmc_fwid: IMAGE,
            rt_fwids: [CONFIG, mdig],
            pcrs: vec![(0, pcr0), (1, pcr0), (2, pcr2), (3, pcr2)],
            svn_min: SVN,
            vendor_key_hash: spec.vendor_key_hash,
            owner_key_hash: spec.owner_key_hash,
            lifecycle: lifecycle.as_u8(),
        };
        envelope::seal::<EnvelopeRefusal>(
            &r.to_payload(),
            |tbs| {
                Ok(self
                    .refvals_ecc
                    .sign(&SystemRandom::new(), tbs)
                    .unwrap()
                    .as_ref()
                    .to_vec())
            },
            |tbs| Ok(self.refvals_mldsa.sign(tbs).unwrap()),
        )
        .unwrap()
    }
}

/// A device as the registry sees it: a real root of trust answering quotes, and
/// a transfer key its RT Alias certified.
struct Device {
    rt: Mutex<Runtime>,
    partitions: Vec<String>,
    transfer_cert: Vec<u8>,
}

fn new_device(rt: Runtime, partitions: Vec<String>) -> Device {
    let key = ihsm_crypto::ec::EccP384PrivateKey::generate().unwrap();
    let transfer_cert = rt.certify_transfer_key(key.public_key()).unwrap();
    Device {
        rt: Mutex::new(rt),
        partitions,
        transfer_cert,
    }
}

impl Device {
    fn anchor(&self) -> (TrustAnchor, TrustAnchor) {
        let rt = self.rt.lock().unwrap();
        (
            TrustAnchor::from_der(&rt.chains().get(Alg::Ecc384).certs[0]).unwrap(),
            TrustAnchor::from_der(&rt.chains().get(Alg::MlDsa87).certs[0]).unwrap(),
        )
    }
}

impl Attester for Device {
    fn evidence(&self, nonce: &[u8; 32]) -> Result<Evidence, String> {
        let mut rt = self.rt.lock().map_err(|_| "poisoned".to_owned())?;
        let chain = |alg| {
            rt.chains()
                .get(alg)
                .certs
                .clone()
                .map(serde_bytes::ByteBuf::from)
        };
        let ecc_chain = chain(Alg::Ecc384);
        let mldsa_chain = chain(Alg::MlDsa87);
        let quote_ecc = rt
            .quote_pcrs(Alg::Ecc384, nonce)
            .map_err(|e| e.to_string())?;
        let quote_mldsa = rt
            .quote_pcrs(Alg::MlDsa87, nonce)
            .map_err(|e| e.to_string())?;
        let log = rt
            .mailbox(cmd::GET_PCR_LOG, &mailbox::request(cmd::GET_PCR_LOG, &[]))
            .map_err(|e| e.to_string())?;
        Ok(Evidence {
            ecc_chain,
            mldsa_chain,
            quote_ecc,
            quote_mldsa,
            pcr_log: log[12..].to_vec(),
        })
    }

    fn transfer_certificate(&self) -> Result<Vec<u8>, String> {
        Ok(self.transfer_cert.clone())
    }

    fn serving(&self) -> (Vec<String>, u32) {
        (self.partitions.clone(), 0)
    }
}

struct Fleet {
    _dir: tempfile::TempDir,
    etcd: EtcdCluster,
    vendor: Vendor,
    devices: Vec<Arc<Device>>,
    policy: FleetPolicy,
}

fn fleet(hosts: usize) -> Option<Fleet> {
    if !testing::etcd_installed() {
        cannot_run("etcd is not installed (apt-get install etcd-server)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(dir.path(), 3).unwrap();
    let vendor = Vendor::new();
    let devices: Vec<Arc<Device>> = (0..hosts)
        .map(|i| {
            Arc::new(new_device(
                vendor.device(Lifecycle::Production),
                vec![format!("tenant-{i}")],
            ))
        })
        .collect();
    let policy = FleetPolicy {
        anchors: devices.iter().map(|d| d.anchor()).collect(),
        refvals: vec![SignedRefvals {
            envelope: vendor.refvals(Lifecycle::Production),
            vendor_ecc: vendor.refvals_ecc.public_key().as_ref().to_vec(),
            vendor_mldsa: vendor.refvals_mldsa.public_key().to_vec(),
        }],
        accept_development: false,
        max_age: 60,
        min_svn: None,
        cache: None,
    };
    Some(Fleet {
        _dir: dir,
        etcd,
        vendor,
        devices,
        policy,
    })
}

fn member(f: &Fleet, i: usize) -> Membership {
    Membership::start(
        MemberConfig {
            endpoints: f.etcd.endpoints(),
            host: format!("host-{i}"),
            peer: format!("127.0.0.1:{}", 7100 + i),
            ttl: Duration::from_secs(3),
            refresh: Duration::from_secs(2),
        },
        Arc::clone(&f.devices[i]) as Arc<dyn Attester>,
    )
    .unwrap()
}

async fn registry(f: &Fleet) -> Registry {
    Registry::connect(&f.etcd.endpoints(), Duration::from_secs(3))
        .await
        .unwrap()
}

/// Waits (bounded) until `pred` holds of the fleet view.
async fn until(
    reg: &Registry,
    policy: &FleetPolicy,
    what: &str,
    pred: impl Fn(&[ihsm_fleet::HostView]) -> bool,
) -> Vec<ihsm_fleet::HostView> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(v) = reg.hosts(policy).await
            && pred(&v)
        {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn affirmed(v: &[ihsm_fleet::HostView]) -> Vec<String> {
    v.iter()
        .filter(|h| h.verdict.is_ok())
        .map(|h| h.host.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_register_are_affirmed_and_leave_when_they_stop_refreshing() {
    let Some(f) = fleet(3) else { return };
    let members: Vec<Membership> = (0..3).map(|i| member(&f, i)).collect();
    let reg = registry(&f).await;
    let v = until(&reg, &f.policy, "three hosts are affirmed", |v| {
        affirmed(v).len() == 3
    })
    .await;
    for (i, h) in v.iter().enumerate() {
        let body = h.body.as_ref().unwrap();
        assert_eq!(body.host, format!("host-{i}"));
        assert_eq!(body.partitions, vec![format!("tenant-{i}")]);
        assert_eq!(h.svn, Some(SVN));
        assert!(h.ueid.is_some());
        assert!(h.checks.iter().all(|(_, ok)| *ok), "{:?}", h.checks);
    }
    assert!(matches!(members[0].state(), MemberState::Joined { .. }));
    // A host that stops refreshing (its process gone) leaves when its lease ends.
    let mut members = members;
    drop(members.remove(2));
    let v = until(&reg, &f.policy, "host-2 has left", |v| v.len() == 2).await;
    assert_eq!(affirmed(&v), ["host-0", "host-1"]);
}

/// What the records written by
/// `forged_moved_edited_replayed_stale_and_foreign_records_are_refused` must be
/// appraised as, in `pass`.
fn check_refusals(v: &[ihsm_fleet::HostView], pass: &str) {
    let verdict = |name: &str| {
        v.iter()
            .find(|h| h.host == name)
            .unwrap_or_else(|| panic!("{pass}: {name} not listed"))
            .verdict
            .clone()
    };
    assert_eq!(affirmed(v), ["host-0"], "{pass}: {v:#?}");
    assert!(matches!(verdict("copy"), Err(HostRefusal::WrongKey { .. })));
    assert!(matches!(verdict("garbage"), Err(HostRefusal::Record(_))));
    assert!(matches!(
        verdict("host-0-replay"),
        Err(HostRefusal::WrongKey { .. })
    ));
    let refused_checks = |name: &str| match verdict(name) {
        Err(HostRefusal::Evidence(c)) => c.into_iter().map(|(c, _)| c).collect::<Vec<_>>(),
        other => panic!("{pass}: {name}: {other:?}"),
    };
    // The edited body is not what the quotes signed.
    let c = refused_checks("edited");
    assert!(
        c.contains(&"quote-ecc384") && c.contains(&"quote-mldsa87"),
        "{pass}: {c:?}"
    );
    assert!(matches!(verdict("stale"), Err(HostRefusal::Stale { .. })));
    assert!(refused_checks("outsider").contains(&"dice-chain-ecc384"));
    assert!(refused_checks("dev").contains(&"lifecycle"));
    for name in ["swapped", "wrong-profile"] {
        assert!(
            matches!(verdict(name), Err(HostRefusal::TransferKey(_))),
            "{pass}: {name}: {:?}",
            verdict(name)
        );
    }
    // An accepted host's transfer key is its certificate's.
    let h0 = v.iter().find(|h| h.host == "host-0").unwrap();
    assert_eq!(h0.transfer_key.as_ref().unwrap().len(), 97);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_moved_edited_replayed_stale_and_foreign_records_are_refused() {
    let Some(f) = fleet(1) else { return };
    let m0 = member(&f, 0);
    let reg = registry(&f).await;
    until(&reg, &f.policy, "host-0 is affirmed", |v| {
        affirmed(v).len() == 1
    })
    .await;
    let (_, lease, genuine) = reg
        .records()
        .await
        .unwrap()
        .into_iter()
        .find(|(h, _, _)| h == "host-0")
        .unwrap();
    let (record, body) = HostRecord::decode(&genuine).unwrap();

    // Someone with etcd access writes records of their own.
    let put = |key: String, bytes: Vec<u8>, lease: Option<i64>| {
        let reg = reg.clone();
        async move { reg.put(&key, bytes, lease).await.unwrap() }
    };
    // host-0's record copied under another host's name.
    put(registry::host_key("copy"), genuine.clone(), Some(lease)).await;
    // Garbage.
    put(registry::host_key("garbage"), vec![0xff; 300], None).await;
    // A body edited (another peer address) with the genuine evidence.
    let mut edited = body.clone();
    edited.host = "edited".into();
    edited.peer = "10.0.0.66:7000".into();
    put(
        registry::host_key("edited"),
        HostRecord {
            body: edited.encode().unwrap(),
            evidence: record.evidence.clone(),
        }
        .encode()
        .unwrap(),
        Some(lease),
    )
    .await;
    // The genuine record replayed under a name of its own.
    put(registry::host_key("host-0-replay"), genuine.clone(), None).await;

    // Genuine evidence over a stale body: quoted an hour ago.
    let device = &f.devices[0];
    let stale_body = HostBody {
        host: "stale".into(),
        issued_at: now() - 3600,
        lease: 0,
        ..body.clone()
    }
    .encode()
    .unwrap();
    let stale = HostRecord {
        evidence: device.evidence(&HostRecord::nonce(&stale_body)).unwrap(),
        body: stale_body,
    };
    put(registry::host_key("stale"), stale.encode().unwrap(), None).await;

    // A genuine device of the same vendor whose IDevID is not among the anchors.
    let outsider = new_device(f.vendor.device(Lifecycle::Production), vec![]);
    let out_body = HostBody {
        host: "outsider".into(),
        issued_at: now(),
        lease: 0,
        ..body.clone()
    }
    .encode()
    .unwrap();
    let out = HostRecord {
        evidence: outsider.evidence(&HostRecord::nonce(&out_body)).unwrap(),
        body: out_body,
    };
    put(registry::host_key("outsider"), out.encode().unwrap(), None).await;

    // A development device of the same vendor, under a production policy, with
    // its IDevID among the anchors.
    let dev = new_device(f.vendor.device(Lifecycle::Manufacturing), vec![]);
    let mut policy = f.policy.clone();
    policy.anchors.push(dev.anchor());
    let dev_body = HostBody {
        host: "dev".into(),
        issued_at: now(),
        lease: 0,
        ..body.clone()
    }
    .encode()
    .unwrap();
    let devrec = HostRecord {
        evidence: dev.evidence(&HostRecord::nonce(&dev_body)).unwrap(),
        body: dev_body,
    };
    put(registry::host_key("dev"), devrec.encode().unwrap(), None).await;

    // Genuine evidence of host-0's device beside a transfer key another device's
    // RT Alias certified: refused (a peer would seal partitions to a stranger).
    let swapped_body = HostBody {
        host: "swapped".into(),
        issued_at: now(),
        lease: 0,
        transfer_cert: outsider.transfer_cert.clone(),
        ..body.clone()
    }
    .encode()
    .unwrap();
    let swapped = HostRecord {
        evidence: device.evidence(&HostRecord::nonce(&swapped_body)).unwrap(),
        body: swapped_body,
    };
    put(
        registry::host_key("swapped"),
        swapped.encode().unwrap(),
        None,
    )
    .await;

    // ... or beside its own RT Alias's partition certificate (digitalSignature,
    // not keyAgreement): refused too.
    let partition_cert = {
        let key = ihsm_crypto::ec::EccP384PrivateKey::generate().unwrap();
        device
            .rt
            .lock()
            .unwrap()
            .certify_partition_key("p", 1, key.public_key())
            .unwrap()
    };
    let wrong_body = HostBody {
        host: "wrong-profile".into(),
        issued_at: now(),
        lease: 0,
        transfer_cert: partition_cert,
        ..body.clone()
    }
    .encode()
    .unwrap();
    let wrong = HostRecord {
        evidence: device.evidence(&HostRecord::nonce(&wrong_body)).unwrap(),
        body: wrong_body,
    };
    put(
        registry::host_key("wrong-profile"),
        wrong.encode().unwrap(),
        None,
    )
    .await;

    // Appraised afresh, then with a cache of appraisals twice (filled, then
    // used): the same verdicts. The edited record carries host-0's genuine
    // evidence, cached by then, over another body: still refused.
    let cache = Arc::new(ihsm_fleet::AppraisalCache::default());
    let mut cached = policy.clone();
    cached.cache = Some(Arc::clone(&cache));
    for (pass, p) in [
        ("afresh", &policy),
        ("cache filled", &cached),
        ("cache used", &cached),
    ] {
        check_refusals(&reg.hosts(p).await.unwrap(), pass);
    }
    assert!(!cache.is_empty());
    // The same cache under a policy that anchors none of these devices but the
    // development one: nothing is affirmed.
    let mut strangers = cached.clone();
    strangers.anchors = vec![dev.anchor()];
    let v = reg.hosts(&strangers).await.unwrap();
    assert!(affirmed(&v).is_empty(), "{v:#?}");

    // The genuine record replayed under host-0's own key, after host-0 has gone
    // quiet (its process stopped), attached to no lease: refused.
    drop(m0);
    put(registry::host_key("host-0"), genuine.clone(), None).await;
    let v = reg.hosts(&f.policy).await.unwrap();
    let h0 = v.iter().find(|h| h.host == "host-0").unwrap();
    assert!(
        matches!(h0.verdict, Err(HostRefusal::WrongLease { .. })),
        "{:?}",
        h0.verdict
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_survives_one_etcd_member_down_fails_fast_with_two_and_heals() {
    let Some(mut f) = fleet(2) else { return };
    let members: Vec<Membership> = (0..2).map(|i| member(&f, i)).collect();
    let reg = registry(&f).await;
    until(&reg, &f.policy, "two hosts are affirmed", |v| {
        affirmed(v).len() == 2
    })
    .await;

    // One member down: the cluster has a quorum; hosts stay registered.
    f.etcd.kill(0);
    let reg = Registry::connect(&f.etcd.endpoints()[1..], Duration::from_secs(3))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let v = until(&reg, &f.policy, "two hosts with one member down", |v| {
        affirmed(v).len() == 2
    })
    .await;
    assert_eq!(v.len(), 2);

    // Two down: no quorum. The view is unavailable, within its timeout.
    f.etcd.kill(1);
    let started = Instant::now();
    let err = reg.hosts(&f.policy).await.unwrap_err();
    assert!(
        matches!(err, registry::FleetError::Unreachable { .. }),
        "{err}"
    );
    assert!(started.elapsed() < WAIT, "the call must be bounded");
    // The hosts notice they are cut off (and would keep serving).
    let deadline = Instant::now() + WAIT;
    while !matches!(members[0].state(), MemberState::Cut { .. }) {
        assert!(Instant::now() < deadline, "host-0 never noticed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Restored: the hosts register again and the view heals.
    f.etcd.restart(0).unwrap();
    f.etcd.restart(1).unwrap();
    let reg = registry(&f).await;
    until(&reg, &f.policy, "the view healed", |v| {
        affirmed(v).len() == 2
    })
    .await;
}

/// A device whose evidence takes as long as `delay` says (a quote waiting
/// behind a long store write, as when a large partition arrives).
struct Slow {
    device: Arc<Device>,
    delay: Arc<std::sync::atomic::AtomicU64>,
}

impl Attester for Slow {
    fn evidence(&self, nonce: &[u8; 32]) -> Result<Evidence, String> {
        let ms = self.delay.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(ms));
        self.device.evidence(nonce)
    }
    fn transfer_certificate(&self) -> Result<Vec<u8>, String> {
        self.device.transfer_certificate()
    }
    fn serving(&self) -> (Vec<String>, u32) {
        self.device.serving()
    }
}

/// Regression: the keep-alive waited for each refresh's evidence, so evidence
/// slower than the lease (10 s of a destination writing 200,000 arriving
/// objects) ended the lease and the host left the fleet in the middle of a
/// move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_kept_while_evidence_is_slow() {
    let Some(f) = fleet(1) else { return };
    let delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let m = Membership::start(
        MemberConfig {
            endpoints: f.etcd.endpoints(),
            host: "host-0".into(),
            peer: "127.0.0.1:7100".into(),
            ttl: Duration::from_secs(3),
            refresh: Duration::from_secs(1),
        },
        Arc::new(Slow {
            device: Arc::clone(&f.devices[0]),
            delay: Arc::clone(&delay),
        }),
    )
    .unwrap();
    let reg = registry(&f).await;
    until(&reg, &f.policy, "host-0 is affirmed", |v| {
        affirmed(v).len() == 1
    })
    .await;
    let MemberState::Joined { lease, .. } = m.state() else {
        panic!("not joined: {:?}", m.state())
    };
    // Each refresh now takes twice the lease's time to live.
    delay.store(6000, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(14)).await;
    let MemberState::Joined { lease: now, .. } = m.state() else {
        panic!("the host left the fleet: {:?}", m.state())
    };
    assert_eq!(now, lease, "the lease ended while the evidence was slow");
    let v = reg.hosts(&f.policy).await.unwrap();
    assert_eq!(affirmed(&v), ["host-0"], "{v:#?}");
}
