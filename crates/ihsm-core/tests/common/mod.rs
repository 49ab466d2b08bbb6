//! A real device on a temporary state directory: provisioned, booted through the
//! root of trust, started.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use cryptoki_sys as ck;
use ihsm_core::attr::{AttrResult, AttrValue, Attribute};
use ihsm_core::partition::Partition;
use ihsm_core::quota::Quotas;
use ihsm_core::session::UserType;
use ihsm_core::{Device, DeviceConfig, PartitionSpec};
use ihsm_rot::state::StateDir;
use zeroize::Zeroizing;

pub const IMAGE: [u8; 48] = [0x11; 48];
pub const SO_PIN: &[u8] = b"so-pin-1234";
pub const USER_PIN: &[u8] = b"user-pin-1234";

pub fn provision(dir: &Path) {
    StateDir::new(dir).provision_dev(false, &IMAGE).unwrap();
}

pub fn config(dir: &Path) -> DeviceConfig {
    let mut c = DeviceConfig::new(dir);
    c.pin_iterations = 1000;
    c
}

pub fn start(dir: &Path) -> ihsm_core::Result<Device> {
    let rt = StateDir::new(dir).boot(&IMAGE).unwrap();
    Device::start(config(dir), rt)
}

pub fn device() -> (tempfile::TempDir, Device) {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let d = start(dir.path()).unwrap();
    (dir, d)
}

pub fn spec(name: &str) -> PartitionSpec {
    PartitionSpec {
        name: name.into(),
        owner_uid: 1000,
        owner_gid: 1000,
        so_pin: Zeroizing::new(SO_PIN.to_vec()),
        user_pin: Some(Zeroizing::new(USER_PIN.to_vec())),
        quotas: Quotas::default(),
        policy: Default::default(),
    }
}

/// A partition with a user logged in on a RW session of application 1.
pub struct Tenant {
    pub p: Arc<Partition>,
    pub app: u64,
    pub s: u64,
}

impl Tenant {
    pub fn new(d: &Device, name: &str) -> Self {
        let info = d.create_partition(spec(name)).unwrap();
        let p = d.partition(info.id).unwrap();
        Self::login(p, 1)
    }

    pub fn login(p: Arc<Partition>, app: u64) -> Self {
        let s = p.open_session(app, true).unwrap();
        p.login(app, s, UserType::User, USER_PIN).unwrap();
        Self { p, app, s }
    }

    pub fn get(&self, h: u64, ty: u64) -> AttrResult {
        self.p
            .get_attributes(self.app, self.s, h, &[ty])
            .unwrap()
            .remove(0)
    }

    pub fn bytes(&self, h: u64, ty: u64) -> Vec<u8> {
        match self.get(h, ty) {
            AttrResult::Value(AttrValue::Bytes(ref b)) => b.clone(),
            other => panic!("attribute 0x{ty:x}: {other:?}"),
        }
    }
}

pub fn b(ty: u64, v: bool) -> Attribute {
    Attribute::bool(ty, v)
}
pub fn u(ty: u64, v: u64) -> Attribute {
    Attribute::ulong(ty, v)
}
pub fn by(ty: u64, v: &[u8]) -> Attribute {
    Attribute::bytes(ty, v.to_vec())
}

pub const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
pub const P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];

pub fn aes_key(t: &Tenant, label: &str, extra: &[Attribute]) -> u64 {
    let mut tpl = vec![
        u(ck::CKA_VALUE_LEN, 32),
        by(ck::CKA_LABEL, label.as_bytes()),
        b(ck::CKA_TOKEN, true),
    ];
    tpl.extend_from_slice(extra);
    t.p.generate_key(t.app, t.s, &ihsm_core::mech::Mechanism::AesKeyGen, &tpl)
        .unwrap()
}
