//! Reference values (docs/attestation.md §3), producer side: what a genuine device
//! of one manifest measures, computed with the boot's own PCR code and encoded
//! here (independently of `ihsm-verify`'s encoder, which is the checker), then
//! signed by the vendor keys in the two-COSE_Sign1 envelope (§2).

use ihsm_crypto::ec::EccP384PrivateKey;
use ihsm_crypto::mldsa::MlDsa87PrivateKey;

use crate::boot::device_status;
use crate::cose::{bstr, head, uint};
use crate::error::Result;
use crate::fuses::Lifecycle;
use crate::manifest::Manifest;
use crate::pcr::{
    PCR_FMC_CURRENT, PCR_FMC_JOURNEY, PCR_RT_CURRENT, PCR_RT_JOURNEY, PcrBank, PcrLogId,
};

/// The device a set of reference values describes (what PCR0/1 depend on).
#[derive(Debug, Clone, Copy)]
pub struct DeviceFacts {
    /// The fused lifecycle.
    pub lifecycle: Lifecycle,
    /// Debug locked (the security configuration's `debug_locked`).
    pub debug_locked: bool,
    /// The fused minimum SVN.
    pub fused_svn: u32,
    /// The fused vendor key hash.
    pub vendor_key_hash: [u8; 48],
    /// The fused owner key hash, or `None` when no owner is fused (the manifest's
    /// owner key, or zeros, is measured then).
    pub owner_key_hash: Option<[u8; 48]>,
    /// The minimum firmware SVN a verifier accepts.
    pub svn_min: u32,
}

/// The reference values of one manifest on one kind of device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceValues {
    /// The image digest.
    pub fmc_fwid: [u8; 48],
    /// [configuration digest, SHA-384 of the manifest].
    pub rt_fwids: [[u8; 48]; 2],
    /// PCR0..=3 as the boot extends them.
    pub pcrs: [[u8; 48]; 4],
    /// The minimum SVN.
    pub svn_min: u32,
    /// Vendor key hash.
    pub vendor_key_hash: [u8; 48],
    /// Owner key hash (zeros: no owner).
    pub owner_key_hash: [u8; 48],
    /// Lifecycle (1 or 3).
    pub lifecycle: u8,
}

impl ReferenceValues {
    /// Computes the values the boot measures for `manifest` on a device with
    /// `facts`, with the same PCR extends as ROM and FMC (boot.rs).
    #[must_use]
    pub fn compute(manifest: &Manifest, facts: &DeviceFacts) -> Self {
        let h = &manifest.header;
        let owner_hash = facts
            .owner_key_hash
            .unwrap_or_else(|| manifest.owner_key_hash().unwrap_or([0; 48]));
        let status = device_status(
            facts.lifecycle,
            facts.debug_locked,
            h.vendor_ecc_key_index,
            h.svn,
            facts.fused_svn,
            h.vendor_mldsa_key_index,
            facts.owner_key_hash.is_some(),
        );
        let image = manifest.image().digest;
        let config = manifest.config().digest;
        let mut bank = PcrBank::default();
        let fmc = [PCR_FMC_CURRENT, PCR_FMC_JOURNEY];
        bank.extend_logged(&fmc, PcrLogId::DeviceStatus, &status);
        bank.extend_logged(&fmc, PcrLogId::VendorPubKeyHash, &facts.vendor_key_hash);
        bank.extend_logged(&fmc, PcrLogId::OwnerPubKeyHash, &owner_hash);
        bank.extend_logged(&fmc, PcrLogId::FmcTci, &image);
        let rt = [PCR_RT_CURRENT, PCR_RT_JOURNEY];
        bank.extend_logged(&rt, PcrLogId::RtTci, &config);
        bank.extend_logged(&rt, PcrLogId::FwImageManifest, &manifest.digest);
        let all = bank.all();
        Self {
            fmc_fwid: image,
            rt_fwids: [config, manifest.digest],
            pcrs: [all[0], all[1], all[2], all[3]],
            svn_min: facts.svn_min,
            vendor_key_hash: facts.vendor_key_hash,
            owner_key_hash: owner_hash,
            lifecycle: facts.lifecycle.as_u8(),
        }
    }

    /// The canonical CBOR payload (§3): a map of 8, keys ascending, shortest
    /// integer heads, PCR indices ascending.
    #[must_use]
    pub fn payload(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(512);
        head(&mut o, 5, 8);
        uint(&mut o, 0);
        uint(&mut o, 1);
        uint(&mut o, 1);
        bstr(&mut o, &self.fmc_fwid);
        uint(&mut o, 2);
        head(&mut o, 4, 2);
        bstr(&mut o, &self.rt_fwids[0]);
        bstr(&mut o, &self.rt_fwids[1]);
        uint(&mut o, 3);
        head(&mut o, 5, 4);
        for (i, p) in (0u64..).zip(&self.pcrs) {
            uint(&mut o, i);
            bstr(&mut o, p);
        }
        uint(&mut o, 4);
        uint(&mut o, u64::from(self.svn_min));
        uint(&mut o, 5);
        bstr(&mut o, &self.vendor_key_hash);
        uint(&mut o, 6);
        bstr(&mut o, &self.owner_key_hash);
        uint(&mut o, 7);
        uint(&mut o, u64::from(self.lifecycle));
        o
    }

    /// The signed reference values: ES384 COSE_Sign1 ‖ ML-DSA-87 COSE_Sign1
    /// (docs/attestation.md §2's envelope) over [`Self::payload`].
    ///
    /// # Errors
    /// A signing failure.
    pub fn seal(&self, ecc: &EccP384PrivateKey, mldsa: &MlDsa87PrivateKey) -> Result<Vec<u8>> {
        crate::cose::envelope(&self.payload(), ecc, mldsa)
    }
}
