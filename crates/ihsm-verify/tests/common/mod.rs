//! Genuine evidence from a development device booted in memory by `ihsm-rot`
//! (a dev-dependency only), and reference values computed from the documents.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use ihsm_crypto::Secret;
use ihsm_crypto::mldsa::{MlDsaLevel, MlDsaPrivateKey};
use ihsm_rot::Alg;
use ihsm_rot::boot::{self, Measurements};
use ihsm_rot::fuses::{FuseSpec, Fuses, Lifecycle, Ueid};
use ihsm_rot::keyset::KeySet;
use ihsm_rot::mailbox::{self, cmd};
use ihsm_rot::manifest;
use ihsm_rot::runtime::Runtime;
use ihsm_rot::state::default_body;
use ihsm_verify::appraise::{DeviceEvidence, Policy, TrustInputs};
use ihsm_verify::chain::TrustAnchor;
use ihsm_verify::envelope::{self, EnvelopeRefusal};
use ihsm_verify::keyreport::KeyPolicy;
use ihsm_verify::refvals::RefValues;

pub const IMAGE: [u8; 48] = [0x11; 48];
pub const CONFIG: [u8; 48] = [0x22; 48];
pub const SVN: u32 = 3;
/// 2026-12-01: inside the certificates' validity.
pub const NOW: i64 = 1_796_083_200;

pub struct Device {
    pub vendor: KeySet,
    pub owner: KeySet,
    pub uds: [u8; 64],
    pub fe: [u8; 32],
    pub ueid: Ueid,
    pub spec: FuseSpec,
}

impl Device {
    pub fn new(lifecycle: Lifecycle) -> Self {
        let dir = std::path::Path::new("/nonexistent");
        let vendor = KeySet::generate(dir, 2).unwrap();
        let owner = KeySet::generate(dir, 1).unwrap();
        let spec = FuseSpec {
            lifecycle,
            vendor_key_hash: vendor.vendor_key_hash().unwrap(),
            owner_key_hash: owner.owner_key_hash().unwrap(),
            svn: SVN,
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

    pub fn manifest(&self, image: &[u8; 48]) -> Vec<u8> {
        manifest::sign(
            &default_body(SVN, image, &CONFIG),
            &self.vendor.vendor_signer(0, 0).unwrap(),
            Some(&self.owner.owner_signer().unwrap()),
        )
        .unwrap()
    }

    pub fn boot_image(&self, image: &[u8; 48]) -> (Runtime, Vec<u8>) {
        let m = self.manifest(image);
        let rt = boot::boot(
            &self.fuses(),
            true,
            &m,
            &Measurements {
                image: *image,
                config: CONFIG,
            },
        )
        .unwrap();
        (rt, m)
    }

    pub fn boot(&self) -> (Runtime, Vec<u8>) {
        self.boot_image(&IMAGE)
    }
}

pub fn sha384(parts: &[&[u8]]) -> [u8; 48] {
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA384);
    for p in parts {
        c.update(p);
    }
    c.finish().as_ref().try_into().unwrap()
}

/// Signs envelopes: the reference values' vendor, or a partition identity.
pub struct Signer {
    pub ecc: EcdsaKeyPair,
    pub mldsa: MlDsaPrivateKey,
}

impl Signer {
    pub fn new() -> Self {
        Self {
            ecc: EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
            mldsa: MlDsaPrivateKey::generate(MlDsaLevel::L87).unwrap(),
        }
    }

    pub fn ecc_public(&self) -> Vec<u8> {
        self.ecc.public_key().as_ref().to_vec()
    }

    pub fn mldsa_public(&self) -> Vec<u8> {
        self.mldsa.public_key().to_vec()
    }

    pub fn seal(&self, payload: &[u8]) -> Vec<u8> {
        envelope::seal::<EnvelopeRefusal>(
            payload,
            |tbs| {
                Ok(self
                    .ecc
                    .sign(&SystemRandom::new(), tbs)
                    .unwrap()
                    .as_ref()
                    .to_vec())
            },
            |tbs| Ok(self.mldsa.sign(tbs).unwrap()),
        )
        .unwrap()
    }
}

/// Reference values computed from the documents (docs/boot.md's extension order),
/// not read back from the device.
pub fn refvals_for(d: &Device, image: &[u8; 48], manifest: &[u8]) -> RefValues {
    let status = boot::device_status(d.spec.lifecycle, true, 0, SVN, SVN, 0, true);
    let zero = [0u8; 48];
    let pcr0 = [
        status.as_slice(),
        &d.spec.vendor_key_hash,
        &d.spec.owner_key_hash,
        image,
    ]
    .iter()
    .fold(zero, |p, m| sha384(&[&p, m]));
    let mdig = sha384(&[manifest]);
    let pcr2 = [CONFIG.as_slice(), &mdig]
        .iter()
        .fold(zero, |p, m| sha384(&[&p, m]));
    RefValues {
        fmc_fwid: *image,
        rt_fwids: [CONFIG, mdig],
        pcrs: vec![(0, pcr0), (1, pcr0), (2, pcr2), (3, pcr2)],
        svn_min: SVN,
        vendor_key_hash: d.spec.vendor_key_hash,
        owner_key_hash: d.spec.owner_key_hash,
        lifecycle: d.spec.lifecycle.as_u8(),
    }
}

pub fn pcr_log(rt: &mut Runtime) -> Vec<u8> {
    let resp = rt
        .mailbox(cmd::GET_PCR_LOG, &mailbox::request(cmd::GET_PCR_LOG, &[]))
        .unwrap();
    resp[12..].to_vec()
}

pub fn chain(rt: &Runtime, alg: Alg) -> [Vec<u8>; 4] {
    rt.chains().get(alg).certs.clone()
}

/// Everything a verifier gets: genuine evidence, its trust inputs, a policy.
pub struct Case {
    pub device: Device,
    pub rt: Runtime,
    pub manifest: Vec<u8>,
    pub vendor: Signer,
    pub trust: TrustInputs,
    pub evidence: DeviceEvidence,
    pub policy: Policy,
    pub refvals: RefValues,
}

impl Case {
    pub fn new(lifecycle: Lifecycle) -> Self {
        let device = Device::new(lifecycle);
        let (rt, manifest) = device.boot();
        Self::from_runtime(device, rt, manifest)
    }

    pub fn from_runtime(device: Device, mut rt: Runtime, manifest: Vec<u8>) -> Self {
        let nonce: [u8; 32] = ihsm_crypto::rand::array().unwrap();
        let vendor = Signer::new();
        let refvals = refvals_for(&device, &IMAGE, &manifest);
        let evidence = DeviceEvidence {
            ecc_chain: chain(&rt, Alg::Ecc384),
            mldsa_chain: chain(&rt, Alg::MlDsa87),
            quote_ecc: rt.quote_pcrs(Alg::Ecc384, &nonce).unwrap(),
            quote_mldsa: rt.quote_pcrs(Alg::MlDsa87, &nonce).unwrap(),
            pcr_log: pcr_log(&mut rt),
            refvals: vendor.seal(&refvals.to_payload()),
        };
        let trust = TrustInputs {
            // A development device: its self-signed IDevID, pinned.
            anchor_ecc: TrustAnchor::from_der(&evidence.ecc_chain[0]).unwrap(),
            anchor_mldsa: TrustAnchor::from_der(&evidence.mldsa_chain[0]).unwrap(),
            vendor_ecc: vendor.ecc_public(),
            vendor_mldsa: vendor.mldsa_public(),
            nonce,
        };
        let policy = Policy {
            now: NOW,
            accept_development: false,
            key_policy: KeyPolicy::sign_only_generated(),
        };
        Self {
            device,
            rt,
            manifest,
            vendor,
            trust,
            evidence,
            policy,
            refvals,
        }
    }

    /// Quotes again for `nonce` (a verifier's challenge, say a service's session):
    /// both quotes and the trusted nonce become it.
    pub fn quote_for(&mut self, nonce: &[u8; 32]) {
        self.evidence.quote_ecc = self.rt.quote_pcrs(Alg::Ecc384, nonce).unwrap();
        self.evidence.quote_mldsa = self.rt.quote_pcrs(Alg::MlDsa87, nonce).unwrap();
        self.trust.nonce = *nonce;
    }

    /// Re-signs other reference values with the same vendor key.
    pub fn set_refvals(&mut self, r: RefValues) {
        self.evidence.refvals = self.vendor.seal(&r.to_payload());
        self.refvals = r;
    }
}

/// Fixes a mailbox response's checksum after an edit.
pub fn fix_checksum(resp: &mut [u8]) {
    let sum = resp[4..]
        .iter()
        .fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
    resp[..4].copy_from_slice(&0u32.wrapping_sub(sum).to_le_bytes());
}
