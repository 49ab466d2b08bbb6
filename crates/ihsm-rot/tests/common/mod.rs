//! A development device built in memory through the public API.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ihsm_crypto::Secret;
use ihsm_rot::boot::{self, Measurements};
use ihsm_rot::fuses::{FuseSpec, Fuses, Lifecycle, Ueid};
use ihsm_rot::keyset::KeySet;
use ihsm_rot::manifest::{self, ManifestBody};
use ihsm_rot::runtime::Runtime;
use ihsm_rot::state::default_body;

pub const IMAGE: [u8; 48] = [0x11; 48];
pub const CONFIG: [u8; 48] = [0x22; 48];

pub struct Device {
    pub vendor: KeySet,
    pub owner: KeySet,
    pub uds: [u8; 64],
    pub fe: [u8; 32],
    pub ueid: Ueid,
    pub spec: FuseSpec,
}

impl Device {
    pub fn new() -> Self {
        let dir = std::path::Path::new("/nonexistent");
        let vendor = KeySet::generate(dir, 2).unwrap();
        let owner = KeySet::generate(dir, 1).unwrap();
        let spec = FuseSpec {
            lifecycle: Lifecycle::Production,
            vendor_key_hash: vendor.vendor_key_hash().unwrap(),
            owner_key_hash: owner.owner_key_hash().unwrap(),
            svn: 3,
        };
        Self {
            vendor,
            owner,
            uds: ihsm_crypto::rand::array().unwrap(),
            fe: ihsm_crypto::rand::array().unwrap(),
            ueid: Ueid::random().unwrap(),
            spec,
        }
    }

    pub fn fuses(&self) -> Fuses {
        Fuses::from_parts(
            &self.spec,
            Secret::from_slice(&self.uds).unwrap(),
            Secret::from_slice(&self.fe).unwrap(),
            self.ueid,
        )
        .unwrap()
    }

    pub fn body(&self, svn: u32, image: &[u8; 48]) -> ManifestBody {
        default_body(svn, image, &CONFIG)
    }

    pub fn manifest(&self, body: &ManifestBody) -> Vec<u8> {
        manifest::sign(
            body,
            &self.vendor.vendor_signer(0, 0).unwrap(),
            Some(&self.owner.owner_signer().unwrap()),
        )
        .unwrap()
    }

    pub fn boot_with(&self, manifest: &[u8], image: &[u8; 48]) -> ihsm_rot::Result<Runtime> {
        boot::boot(
            &self.fuses(),
            true,
            manifest,
            &Measurements {
                image: *image,
                config: CONFIG,
            },
        )
    }

    pub fn boot(&self) -> Runtime {
        let m = self.manifest(&self.body(3, &IMAGE));
        self.boot_with(&m, &IMAGE).unwrap()
    }
}
