//! Boot: ROM -> FMC -> RT, as in Caliptra.
//!
//! Each stage is a type that consumes the one before, so the order cannot be
//! skipped or repeated, and each drops (and so wipes) the secrets the next stage
//! must not have: the runtime never holds the UDS, the field entropy, the IDevID or
//! LDevID CDIs or their private keys.
//!
//! - [`Rom::power_on`]: known-answer self-tests of every algorithm; IDevID from the
//!   UDS, LDevID with the field entropy; their certificates and CSRs.
//! - [`Rom::verify_firmware`]: the manifest against the fuses (both vendor
//!   signatures, descriptor hash, owner, anti-rollback) and against what was
//!   measured; PCR0/PCR1 extended with the device status, key hashes and the FMC
//!   measurement; FMC Alias derived from PCR0; the SVN key ladder.
//! - [`Fmc::launch_runtime`]: the runtime measured into PCR2/PCR3; RT Alias derived.

use std::time::Instant;

use ihsm_crypto::ec::EccP384PublicKey;
use ihsm_crypto::hash::sha384_parts;
use ihsm_crypto::mldsa::MlDsa87PublicKey;
use ihsm_crypto::{Secret, kat};
use serde::Serialize;

use crate::certs::{self, DiceExtensions, DiceKey, DicePublic, Layer};
use crate::dice::{self, Cdi, LayerKeys};
use crate::error::{Alg, Result, RotError};
use crate::fuses::{Fuses, Lifecycle};
use crate::manifest::{Manifest, ManifestSummary};
use crate::pcr::{
    PCR_FMC_CURRENT, PCR_FMC_JOURNEY, PCR_RT_CURRENT, PCR_RT_JOURNEY, PcrBank, PcrLogId,
};
use crate::runtime::{Chains, RtSecrets, Runtime};
use crate::tcg;

/// Caliptra's `FwVerificationPqcKeyType` for ML-DSA.
const PQC_KEY_TYPE_MLDSA: u8 = 1;

/// What the boot measured before verifying: the running executable and the
/// security configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurements {
    /// SHA-384 of the firmware image (the executable that runs the RoT).
    pub image: [u8; 48],
    /// SHA-384 of the security configuration file's bytes.
    pub config: [u8; 48],
}

/// One stage's line in the boot report.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// ROM, FMC or RT.
    pub stage: &'static str,
    /// Wall time of the stage in microseconds.
    pub micros: u64,
    /// What it did.
    pub summary: String,
}

/// A key of the chain in the report.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityReport {
    /// The layer.
    pub layer: Layer,
    /// ecc384 or mldsa87.
    pub alg: &'static str,
    /// Subject key identifier (hex).
    pub key_id: String,
}

/// The fused state, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    /// Lifecycle.
    pub lifecycle: Lifecycle,
    /// UEID (hex).
    pub ueid: String,
    /// Fused minimum firmware SVN.
    pub fused_svn: u32,
    /// Debug locked (from the measured configuration).
    pub debug_locked: bool,
    /// Fused vendor key hash (hex).
    pub vendor_key_hash: String,
    /// Fused owner key hash (hex), if any.
    pub owner_key_hash: Option<String>,
}

/// Digests the boot measured.
#[derive(Debug, Clone, Serialize)]
pub struct MeasurementReport {
    /// Firmware image (FMC TCI).
    pub image: String,
    /// Security configuration (RT TCI).
    pub config: String,
    /// The manifest file.
    pub manifest: String,
}

/// Everything `ihsm rot boot` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BootReport {
    /// Fused state.
    pub device: DeviceReport,
    /// Per-stage results.
    pub stages: Vec<StageReport>,
    /// Self-tests that passed.
    pub self_tests: Vec<&'static str>,
    /// The verified manifest.
    pub manifest: Option<ManifestSummary>,
    /// Measured digests.
    pub measurements: Option<MeasurementReport>,
    /// PCR0..PCR3 (hex).
    pub boot_pcrs: Vec<String>,
    /// The keys of the chain.
    pub identities: Vec<IdentityReport>,
    /// Secret regions that could not be locked into RAM (RLIMIT_MEMLOCK).
    pub unlocked_secret_regions: usize,
    /// Total boot time in microseconds.
    pub total_micros: u64,
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn identity(layer: Layer, alg: Alg, raw: &[u8]) -> IdentityReport {
    IdentityReport {
        layer,
        alg: alg.file_suffix(),
        key_id: hex::encode(certs::key_id(raw)),
    }
}

/// The ROM stage: self-tested, IDevID and LDevID derived.
pub struct Rom<'f> {
    fuses: &'f Fuses,
    debug_locked: bool,
    started: Instant,
    report: BootReport,
    chains: Chains,
    ldevid_cdi: Cdi,
    ldevid: LayerKeys,
}

impl core::fmt::Debug for Rom<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Rom")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl<'f> Rom<'f> {
    /// Power on: self-tests, then IDevID and LDevID with their certificates.
    ///
    /// # Errors
    /// [`RotError::SelfTest`] naming the algorithm, or any derivation failure.
    /// Every secret derived so far is wiped before the error returns.
    pub fn power_on(fuses: &'f Fuses, debug_locked: bool) -> Result<Self> {
        let started = Instant::now();
        if fuses.lifecycle == Lifecycle::Unprovisioned {
            return Err(RotError::FusesBadLifecycle(0));
        }
        // The entropy source first: aws-lc seeds its DRBG (CPU jitter and OS
        // entropy) on first use, which is most of a cold boot's time in a new process.
        ihsm_crypto::rand::array::<32>()?;
        let entropy_micros = micros(started);
        let kats = kat::run_all()?;
        let ext = DiceExtensions {
            ueid: fuses.ueid.0,
            tcb: None,
            validity: None,
        };

        let idevid_cdi = dice::idevid_cdi(fuses.uds())?;
        let idevid = dice::layer_keys(&idevid_cdi, dice::IDEVID)?;
        let ldevid_cdi = dice::ldevid_cdi(&idevid_cdi, fuses.field_entropy())?;
        drop(idevid_cdi);
        let ldevid = dice::layer_keys(&ldevid_cdi, dice::LDEVID)?;

        let mut chains = Chains::default();
        for (alg, idev, ldev) in [
            (
                Alg::Ecc384,
                DiceKey::Ecc(&idevid.ecc),
                DicePublic::Ecc(ldevid.ecc.public_key()),
            ),
            (
                Alg::MlDsa87,
                DiceKey::MlDsa(&idevid.mldsa),
                DicePublic::MlDsa(ldevid.mldsa.public_key()),
            ),
        ] {
            let chain = chains.get_mut(alg);
            chain.idevid_csr = certs::csr(Layer::IdevId, idev, &ext)?;
            chain.certs[0] = certs::self_signed(Layer::IdevId, idev, &ext)?;
            chain.certs[1] = certs::issue(Layer::LdevId, ldev, &ext, Layer::IdevId, idev)?;
        }
        let identities = vec![
            identity(
                Layer::IdevId,
                Alg::Ecc384,
                idevid.ecc.public_key().as_bytes(),
            ),
            identity(
                Layer::IdevId,
                Alg::MlDsa87,
                idevid.mldsa.public_key().as_bytes(),
            ),
            identity(
                Layer::LdevId,
                Alg::Ecc384,
                ldevid.ecc.public_key().as_bytes(),
            ),
            identity(
                Layer::LdevId,
                Alg::MlDsa87,
                ldevid.mldsa.public_key().as_bytes(),
            ),
        ];
        chains.idevid_public = Some((
            idevid.ecc.public_key().clone(),
            idevid.mldsa.public_key().clone(),
        ));
        // The IDevID private keys end here, as in Caliptra's ROM.
        drop(idevid);

        let report = BootReport {
            device: DeviceReport {
                lifecycle: fuses.lifecycle,
                ueid: fuses.ueid.to_string(),
                fused_svn: fuses.svn.svn(),
                debug_locked,
                vendor_key_hash: hex::encode(fuses.vendor_key_hash),
                owner_key_hash: fuses
                    .owner_fused()
                    .then(|| hex::encode(fuses.owner_key_hash)),
            },
            stages: vec![
                StageReport {
                    stage: "ROM",
                    micros: entropy_micros,
                    summary: "entropy source ready (aws-lc DRBG seeded from CPU jitter and the OS)"
                        .into(),
                },
                StageReport {
                    stage: "ROM",
                    micros: micros(started).saturating_sub(entropy_micros),
                    summary: format!(
                        "{} self-tests passed; IDevID and LDevID derived (ECC P-384, ML-DSA-87)",
                        kats.passed.len()
                    ),
                },
            ],
            self_tests: kats.passed,
            manifest: None,
            measurements: None,
            boot_pcrs: Vec::new(),
            identities,
            unlocked_secret_regions: 0,
            total_micros: 0,
        };
        Ok(Self {
            fuses,
            debug_locked,
            started,
            report,
            chains,
            ldevid_cdi,
            ldevid,
        })
    }

    /// The public keys of the IDevID (ECC, ML-DSA).
    #[must_use]
    pub fn idevid_public(&self) -> Option<&(EccP384PublicKey, MlDsa87PublicKey)> {
        self.chains.idevid_public.as_ref()
    }

    /// Verifies the firmware and hands over to the FMC.
    ///
    /// # Errors
    /// The first verification that fails, each with its own error; every secret is
    /// wiped before it returns.
    pub fn verify_firmware(
        mut self,
        manifest_bytes: &[u8],
        measured: &Measurements,
    ) -> Result<Fmc> {
        let t = Instant::now();
        let manifest = Manifest::parse(manifest_bytes)?;
        manifest.verify(self.fuses)?;
        if !ihsm_crypto::ct_eq(&measured.image, &manifest.image().digest) {
            return Err(RotError::ImageDigestMismatch {
                measured: hex::encode(measured.image),
                signed: hex::encode(manifest.image().digest),
            });
        }
        if !ihsm_crypto::ct_eq(&measured.config, &manifest.config().digest) {
            return Err(RotError::ConfigDigestMismatch {
                measured: hex::encode(measured.config),
                signed: hex::encode(manifest.config().digest),
            });
        }
        let fuses = self.fuses;
        let h = &manifest.header;
        let owner_in_fuses = fuses.owner_fused();
        let owner_hash = if owner_in_fuses {
            fuses.owner_key_hash
        } else {
            manifest.owner_key_hash().unwrap_or([0; 48])
        };
        let status = device_status(
            fuses.lifecycle,
            self.debug_locked,
            h.vendor_ecc_key_index,
            h.svn,
            fuses.svn.svn(),
            h.vendor_mldsa_key_index,
            owner_in_fuses,
        );

        let mut pcrs = PcrBank::default();
        let fmc_pcrs = [PCR_FMC_CURRENT, PCR_FMC_JOURNEY];
        pcrs.extend_logged(&fmc_pcrs, PcrLogId::DeviceStatus, &status);
        pcrs.extend_logged(
            &fmc_pcrs,
            PcrLogId::VendorPubKeyHash,
            &fuses.vendor_key_hash,
        );
        pcrs.extend_logged(&fmc_pcrs, PcrLogId::OwnerPubKeyHash, &owner_hash);
        pcrs.extend_logged(&fmc_pcrs, PcrLogId::FmcTci, &measured.image);
        let pcr0 = *pcrs
            .read(PCR_FMC_CURRENT)
            .ok_or(RotError::Fatal("PCR0 missing".into()))?;

        let fmc_cdi = dice::fmc_alias_cdi(&self.ldevid_cdi, &pcr0)?;
        let fmc = dice::layer_keys(&fmc_cdi, dice::FMC_ALIAS)?;
        let ladder = dice::key_ladder(
            &self.ldevid_cdi,
            fuses.lifecycle.as_u8(),
            self.debug_locked,
            h.svn,
        )?;

        let owner_info = sha384_parts(&[
            &owner_hash,
            &[u8::from(owner_in_fuses), 0, low_u8(fuses.svn.svn())],
        ]);
        let vendor_info = sha384_parts(&[
            &fuses.vendor_key_hash,
            &[
                PQC_KEY_TYPE_MLDSA,
                fuses.lifecycle.as_u8(),
                u8::from(self.debug_locked),
                low_u8(h.svn),
                low_u8(h.vendor_ecc_key_index),
                low_u8(h.vendor_mldsa_key_index),
            ],
        ]);
        let multi = tcg::multi_tcb_info_der(&[
            tcg::DiceTcbInfo::new("IHSM_FUSE_OWNER_INFO", None, &[&owner_info])?,
            tcg::DiceTcbInfo::new("IHSM_FUSE_VENDOR_INFO", None, &[&vendor_info])?,
            tcg::DiceTcbInfo::new("IHSM_FMC_FIRMWARE_INFO", Some(h.svn), &[&measured.image])?,
        ])?;
        let ext = DiceExtensions {
            ueid: fuses.ueid.0,
            tcb: Some((&[2, 23, 133, 5, 4, 5], multi)),
            validity: h.validity(),
        };
        for (alg, ldev, subject) in [
            (
                Alg::Ecc384,
                DiceKey::Ecc(&self.ldevid.ecc),
                DicePublic::Ecc(fmc.ecc.public_key()),
            ),
            (
                Alg::MlDsa87,
                DiceKey::MlDsa(&self.ldevid.mldsa),
                DicePublic::MlDsa(fmc.mldsa.public_key()),
            ),
        ] {
            self.chains.get_mut(alg).certs[2] =
                certs::issue(Layer::FmcAlias, subject, &ext, Layer::LdevId, ldev)?;
        }
        self.report.identities.push(identity(
            Layer::FmcAlias,
            Alg::Ecc384,
            fmc.ecc.public_key().as_bytes(),
        ));
        self.report.identities.push(identity(
            Layer::FmcAlias,
            Alg::MlDsa87,
            fmc.mldsa.public_key().as_bytes(),
        ));
        self.report.manifest = Some(manifest.summary());
        self.report.measurements = Some(MeasurementReport {
            image: hex::encode(measured.image),
            config: hex::encode(measured.config),
            manifest: hex::encode(manifest.digest),
        });
        self.report.stages.push(StageReport {
            stage: "ROM",
            micros: micros(t),
            summary: format!(
                "manifest verified (vendor keys ECC #{} and ML-DSA #{}, SVN {} >= fused {}{}); FMC measured into PCR0/PCR1; FMC Alias derived",
                h.vendor_ecc_key_index,
                h.vendor_mldsa_key_index,
                h.svn,
                fuses.svn.svn(),
                if manifest.owner.is_some() { ", owner countersigned" } else { "" },
            ),
        });
        // `self` drops here: the LDevID CDI and private keys are wiped.
        Ok(Fmc {
            started: self.started,
            report: self.report,
            chains: self.chains,
            pcrs,
            manifest,
            config_digest: measured.config,
            fmc_cdi,
            fmc,
            ladder,
            fused_svn: fuses.svn.svn(),
            lifecycle: fuses.lifecycle,
            ueid: fuses.ueid.0,
            owner_key_hash: owner_hash,
            debug_locked: self.debug_locked,
        })
    }
}

fn low_u8(v: u32) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

/// Caliptra's 9-byte device status, the first thing measured into PCR0: lifecycle,
/// debug locked, anti-rollback disabled, ECC key index, firmware SVN, fused SVN,
/// PQC key index, PQC key type, owner key hash fused.
#[must_use]
pub fn device_status(
    lifecycle: Lifecycle,
    debug_locked: bool,
    ecc_index: u32,
    fw_svn: u32,
    fused_svn: u32,
    pqc_index: u32,
    owner_in_fuses: bool,
) -> [u8; 9] {
    [
        lifecycle.as_u8(),
        u8::from(debug_locked),
        0,
        low_u8(ecc_index),
        low_u8(fw_svn),
        low_u8(fused_svn),
        low_u8(pqc_index),
        PQC_KEY_TYPE_MLDSA,
        u8::from(owner_in_fuses),
    ]
}

/// The FMC stage: firmware verified and measured; FMC Alias derived.
pub struct Fmc {
    started: Instant,
    report: BootReport,
    chains: Chains,
    pcrs: PcrBank,
    manifest: Manifest,
    config_digest: [u8; 48],
    fmc_cdi: Cdi,
    fmc: LayerKeys,
    ladder: Secret<64>,
    fused_svn: u32,
    lifecycle: Lifecycle,
    ueid: [u8; 17],
    owner_key_hash: [u8; 48],
    debug_locked: bool,
}

impl core::fmt::Debug for Fmc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Fmc")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl Fmc {
    /// Measures the runtime and derives the RT Alias identity.
    ///
    /// # Errors
    /// Any derivation or certificate failure; secrets are wiped before it returns.
    pub fn launch_runtime(mut self) -> Result<Runtime> {
        let t = Instant::now();
        let rt_pcrs = [PCR_RT_CURRENT, PCR_RT_JOURNEY];
        self.pcrs
            .extend_logged(&rt_pcrs, PcrLogId::RtTci, &self.config_digest);
        self.pcrs
            .extend_logged(&rt_pcrs, PcrLogId::FwImageManifest, &self.manifest.digest);
        let rt_cdi = dice::rt_alias_cdi(&self.fmc_cdi, &self.config_digest, &self.manifest.digest)?;
        drop(self.fmc_cdi);
        let rt = dice::layer_keys(&rt_cdi, dice::RT_ALIAS)?;
        // No later layer is derived yet, so the RT CDI ends here.
        drop(rt_cdi);
        let svn = self.manifest.header.svn;
        let tcb = tcg::tcb_info_der(&tcg::DiceTcbInfo::new(
            "IHSM_RT_FIRMWARE_INFO",
            Some(svn),
            &[&self.config_digest, &self.manifest.digest],
        )?)?;
        let ext = DiceExtensions {
            ueid: self.ueid,
            tcb: Some((&[2, 23, 133, 5, 4, 1], tcb)),
            validity: self.manifest.header.validity(),
        };
        for (alg, fmc, subject) in [
            (
                Alg::Ecc384,
                DiceKey::Ecc(&self.fmc.ecc),
                DicePublic::Ecc(rt.ecc.public_key()),
            ),
            (
                Alg::MlDsa87,
                DiceKey::MlDsa(&self.fmc.mldsa),
                DicePublic::MlDsa(rt.mldsa.public_key()),
            ),
        ] {
            self.chains.get_mut(alg).certs[3] =
                certs::issue(Layer::RtAlias, subject, &ext, Layer::FmcAlias, fmc)?;
        }
        self.report.identities.push(identity(
            Layer::RtAlias,
            Alg::Ecc384,
            rt.ecc.public_key().as_bytes(),
        ));
        self.report.identities.push(identity(
            Layer::RtAlias,
            Alg::MlDsa87,
            rt.mldsa.public_key().as_bytes(),
        ));
        self.report.stages.push(StageReport {
            stage: "FMC",
            micros: micros(t),
            summary:
                "runtime (configuration and manifest) measured into PCR2/PCR3; RT Alias derived"
                    .into(),
        });
        self.report.boot_pcrs = (0..4)
            .filter_map(|i| self.pcrs.read(i).map(hex::encode))
            .collect();
        self.report.stages.push(StageReport {
            stage: "RT",
            micros: 0,
            summary: "ready; sealing key available from the SVN key ladder".into(),
        });
        self.report.unlocked_secret_regions = ihsm_crypto::memory::unlocked_regions();
        self.report.total_micros = micros(self.started);
        Ok(Runtime::new(
            self.report,
            self.chains,
            self.pcrs,
            self.manifest,
            crate::runtime::RuntimeFacts {
                fused_svn: self.fused_svn,
                lifecycle: self.lifecycle,
                ueid: self.ueid,
                owner_key_hash: self.owner_key_hash,
                config_digest: self.config_digest,
                debug_locked: self.debug_locked,
            },
            RtSecrets {
                fmc_alias: self.fmc,
                rt_alias: rt,
                ladder: self.ladder,
            },
        ))
    }
}

/// The whole boot in one call.
///
/// # Errors
/// The first failure of any stage.
pub fn boot(
    fuses: &Fuses,
    debug_locked: bool,
    manifest: &[u8],
    measured: &Measurements,
) -> Result<Runtime> {
    Rom::power_on(fuses, debug_locked)?
        .verify_firmware(manifest, measured)?
        .launch_runtime()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dice::tests::words;

    /// caliptra-sw test/src/derive.rs `test_derive_pcr0`: the same inputs measured
    /// the way this ROM measures them give Caliptra's golden PCR0.
    #[test]
    fn caliptra_golden_pcr0() {
        // Production, debug locked, no anti-rollback disable, ECC key 0, cold boot
        // SVN 5, fused SVN 2, PQC key index u32::MAX, PQC type LMS (3), owner fused.
        let status: [u8; 9] = [3, 1, 0, 0, 5, 2, 0xff, 3, 1];
        let vendor = words::<48>(&[
            0xed6dd78c, 0x131d69e2, 0x313b5d89, 0x0acd8e4e, 0xe2a1db67, 0x790721de, 0x01346b64,
            0x1c5cf3c9, 0xcf284e7d, 0x0e114d50, 0xe894b381, 0xd874ba94,
        ]);
        let owner = words::<48>(&[
            0xdc1a27ef, 0x0c08201a, 0x8b066094, 0x118c29fe, 0x0bc2270e, 0xbd965c43, 0xf7b9a68d,
            0x8eaf37fa, 0x968ca8d8, 0x13b2920b, 0x3b88b026, 0xf2f0ebb0,
        ]);
        let fmc = words::<48>(&[
            0xe44ea855, 0x9fcf4063, 0xd3110a9a, 0xd60579db, 0xe03e6dd7, 0x4556cd98, 0xb2b941f5,
            0x1bb5034b, 0x587eea1f, 0xfcdd0e0f, 0x8e88d406, 0x3327a3fe,
        ]);
        let mut bank = PcrBank::default();
        for data in [&status[..], &vendor, &owner, &fmc] {
            bank.extend_logged(&[0, 1], PcrLogId::DeviceStatus, data);
        }
        let expected = words::<48>(&[
            1597321057, 3306746665, 3870835391, 3103173150, 3318383838, 3407565263, 3776158384,
            4231654246, 1759479765, 3561253448, 1491479508, 1619944441,
        ]);
        assert_eq!(bank.read(0).unwrap(), &expected);
        assert_eq!(bank.read(0), bank.read(1));
        // And our status encoder lays the same fields out in the same order.
        let mine = device_status(Lifecycle::Production, true, 0, 5, 2, u32::MAX, true);
        assert_eq!(&mine[..7], &status[..7]);
        assert_eq!(mine[8], status[8]);
    }
}
