//! The runtime (RT) stage: what the root of trust offers once booted — the
//! certificate chains, PCRs and quotes, the mailbox, and the sealing key from the
//! SVN key ladder — and its fatal state, in which every secret is gone.

use ihsm_crypto::ec::EccP384PublicKey;
use ihsm_crypto::hash::sha512_parts;
use ihsm_crypto::mldsa::MlDsa87PublicKey;
use ihsm_crypto::{ExposeSecret, Secret, kat};

use crate::boot::BootReport;
use crate::certs::Layer;
use crate::codec::{Reader, Writer};
use crate::dice::{self, LayerKeys};
use crate::error::{Alg, Result, RotError};
use crate::fuses::Lifecycle;
use crate::mailbox::{self, MailboxError, cmd};
use crate::manifest::Manifest;
use crate::pcr::{PCR_COUNT, PCR_LOG_ENTRY_LEN, PCR_STASH, PcrBank, PcrLogId};

/// One algorithm's certificates, root first, and the IDevID CSR.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// DER certificates: IDevID (self-signed), LDevID, FMC Alias, RT Alias.
    pub certs: [Vec<u8>; 4],
    /// DER PKCS#10 request for the IDevID key.
    pub idevid_csr: Vec<u8>,
}

/// Both algorithms' chains.
#[derive(Debug, Clone, Default)]
pub struct Chains {
    /// ECC P-384.
    pub ecc: Chain,
    /// ML-DSA-87.
    pub mldsa: Chain,
    pub(crate) idevid_public: Option<(EccP384PublicKey, MlDsa87PublicKey)>,
}

impl Chains {
    pub(crate) fn get_mut(&mut self, alg: Alg) -> &mut Chain {
        match alg {
            Alg::Ecc384 => &mut self.ecc,
            Alg::MlDsa87 => &mut self.mldsa,
        }
    }

    /// One algorithm's chain.
    #[must_use]
    pub fn get(&self, alg: Alg) -> &Chain {
        match alg {
            Alg::Ecc384 => &self.ecc,
            Alg::MlDsa87 => &self.mldsa,
        }
    }
}

/// The runtime's secrets. Dropped as a whole on a fatal error.
pub(crate) struct RtSecrets {
    pub(crate) fmc_alias: LayerKeys,
    pub(crate) rt_alias: LayerKeys,
    pub(crate) ladder: Secret<64>,
}

/// Public facts the runtime reports.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeFacts {
    pub(crate) fused_svn: u32,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) ueid: [u8; 17],
    pub(crate) owner_key_hash: [u8; 48],
    pub(crate) config_digest: [u8; 48],
    pub(crate) debug_locked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SelfTest {
    Idle,
    Done,
}

/// A booted root of trust.
pub struct Runtime {
    report: BootReport,
    chains: Chains,
    pcrs: PcrBank,
    manifest: Manifest,
    facts: RuntimeFacts,
    secrets: Option<RtSecrets>,
    fatal: Option<String>,
    self_test: SelfTest,
}

impl core::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Runtime")
            .field("svn", &self.manifest.header.svn)
            .field("holds_secrets", &self.secrets.is_some())
            .field("fatal", &self.fatal)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    pub(crate) fn new(
        report: BootReport,
        chains: Chains,
        pcrs: PcrBank,
        manifest: Manifest,
        facts: RuntimeFacts,
        secrets: RtSecrets,
    ) -> Self {
        Self {
            report,
            chains,
            pcrs,
            manifest,
            facts,
            secrets: Some(secrets),
            fatal: None,
            self_test: SelfTest::Idle,
        }
    }

    /// The boot report.
    #[must_use]
    pub fn report(&self) -> &BootReport {
        &self.report
    }

    /// The certificate chains and CSRs.
    #[must_use]
    pub fn chains(&self) -> &Chains {
        &self.chains
    }

    /// One certificate (DER).
    #[must_use]
    pub fn cert(&self, layer: Layer, alg: Alg) -> &[u8] {
        let idx = match layer {
            Layer::IdevId => 0,
            Layer::LdevId => 1,
            Layer::FmcAlias => 2,
            Layer::RtAlias => 3,
        };
        self.chains
            .get(alg)
            .certs
            .get(idx)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The PCR bank.
    #[must_use]
    pub fn pcrs(&self) -> &PcrBank {
        &self.pcrs
    }

    /// The verified manifest.
    #[must_use]
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The running firmware SVN.
    #[must_use]
    pub fn svn(&self) -> u32 {
        self.manifest.header.svn
    }

    /// The lifecycle state.
    #[must_use]
    pub fn lifecycle(&self) -> Lifecycle {
        self.facts.lifecycle
    }

    /// The UEID.
    #[must_use]
    pub fn ueid(&self) -> [u8; 17] {
        self.facts.ueid
    }

    /// True until a fatal error wiped the secrets.
    #[must_use]
    pub fn holds_secrets(&self) -> bool {
        self.secrets.is_some()
    }

    /// The fatal reason, if any.
    #[must_use]
    pub fn fatal_reason(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// Enters the fatal state: every secret (alias keys, CDI, key ladder) is dropped,
    /// which wipes it, and every later request is refused with the reason.
    pub fn fatal(&mut self, reason: impl Into<String>) {
        self.secrets = None;
        if self.fatal.is_none() {
            self.fatal = Some(reason.into());
        }
    }

    fn secrets(&self) -> Result<&RtSecrets> {
        match (&self.secrets, &self.fatal) {
            (Some(s), None) => Ok(s),
            (_, Some(reason)) => Err(RotError::Fatal(reason.clone())),
            (None, None) => Err(RotError::Fatal("secrets unavailable".into())),
        }
    }

    /// A 32-byte key from the stable-identity ladder, the same across reboots and
    /// across signed upgrades: firmware at SVN s can derive the key of any
    /// `target_svn <= s` (so a store sealed at an older SVN still opens after an
    /// upgrade), never of a newer one. `purpose` separates uses.
    ///
    /// # Errors
    /// [`RotError::LadderTargetSvnTooLarge`] or [`RotError::Fatal`].
    pub fn sealing_key(&self, target_svn: u32, purpose: &[u8]) -> Result<Secret<32>> {
        let s = self.secrets()?;
        let current = self.svn();
        if target_svn > current {
            return Err(RotError::LadderTargetSvnTooLarge {
                target: target_svn,
                current,
            });
        }
        let out = dice::ladder_output(&s.ladder, current, target_svn, purpose)?;
        Ok(Secret::from_slice(
            out.expose_secret().get(..32).unwrap_or_default(),
        )?)
    }

    /// Issues the certificate of a partition identity key, signed by the RT Alias
    /// ECC P-384 key, so evidence can name the partition.
    ///
    /// # Errors
    /// [`RotError::Fatal`] or [`RotError::Certificate`].
    pub fn certify_partition_key(
        &self,
        name: &str,
        pid: u32,
        key: &EccP384PublicKey,
    ) -> Result<Vec<u8>> {
        let s = self.secrets()?;
        crate::certs::issue_partition(
            name,
            pid,
            crate::certs::DicePublic::Ecc(key),
            &self.facts.ueid,
            crate::certs::DiceKey::Ecc(&s.rt_alias.ecc),
            self.manifest.header.validity(),
        )
    }

    /// Issues the certificate of the device's transfer key (ECC P-384, HPKE
    /// between fleet hosts), signed by the RT Alias ECC P-384 key:
    /// `CN=ihsm device transfer`, keyAgreement.
    ///
    /// # Errors
    /// [`RotError::Fatal`] or [`RotError::Certificate`].
    pub fn certify_transfer_key(&self, key: &EccP384PublicKey) -> Result<Vec<u8>> {
        let s = self.secrets()?;
        crate::certs::issue_transfer(
            crate::certs::DicePublic::Ecc(key),
            &self.facts.ueid,
            crate::certs::DiceKey::Ecc(&s.rt_alias.ecc),
            self.manifest.header.validity(),
        )
    }

    /// Issues the certificate of a partition's ML-DSA-87 identity key, signed by
    /// the RT Alias ML-DSA-87 key (the same profile as the ECC one).
    ///
    /// # Errors
    /// [`RotError::Fatal`] or [`RotError::Certificate`].
    pub fn certify_partition_mldsa_key(
        &self,
        name: &str,
        pid: u32,
        key: &MlDsa87PublicKey,
    ) -> Result<Vec<u8>> {
        let s = self.secrets()?;
        crate::certs::issue_partition(
            name,
            pid,
            crate::certs::DicePublic::MlDsa(key),
            &self.facts.ueid,
            crate::certs::DiceKey::MlDsa(&s.rt_alias.mldsa),
            self.manifest.header.validity(),
        )
    }

    /// The RT Alias TcbInfo FWIDs: `[RT TCI (the configuration digest), SHA-384 of
    /// the manifest]`, as the RT Alias certificate carries them (the TCB of a key
    /// report, docs/attestation.md §2).
    #[must_use]
    pub fn tcb_fwids(&self) -> [[u8; 48]; 2] {
        [self.manifest.config().digest, self.manifest.digest]
    }

    /// Handles one mailbox command: `payload` starts with the checksum header.
    /// Returns the response (with its checksum header) or Caliptra's error code.
    /// Never panics, whatever the bytes.
    ///
    /// # Errors
    /// The [`MailboxError`] the command fails with.
    pub fn mailbox(
        &mut self,
        command: u32,
        payload: &[u8],
    ) -> core::result::Result<Vec<u8>, MailboxError> {
        if payload.len() > mailbox::MAX_PAYLOAD {
            return Err(MailboxError::REQUEST_TOO_LARGE);
        }
        let mut r = Reader::new(payload);
        let chksum = r.u32().map_err(|_| MailboxError::INVALID_PARAMS)?;
        let args = payload.get(4..).unwrap_or_default();
        if !mailbox::verify_checksum(chksum, command, args) {
            return Err(MailboxError::INVALID_CHECKSUM);
        }
        if self.fatal.is_some() {
            return Err(MailboxError::FATAL);
        }
        let resp = match command {
            cmd::GET_IDEV_ECC384_CSR => var_size(&self.chains.ecc.idevid_csr),
            cmd::GET_IDEV_MLDSA87_CSR => var_size(&self.chains.mldsa.idevid_csr),
            // Caliptra's manufacturing form (a TBS and the CA's signature) is not
            // offered: only the no-argument form, the certificate held.
            cmd::GET_IDEV_ECC384_CERT | cmd::GET_IDEV_MLDSA87_CERT if !args.is_empty() => {
                Err(MailboxError::INVALID_PARAMS)
            }
            cmd::GET_IDEV_ECC384_CERT => var_size(self.cert(Layer::IdevId, Alg::Ecc384)),
            cmd::GET_IDEV_MLDSA87_CERT => var_size(self.cert(Layer::IdevId, Alg::MlDsa87)),
            cmd::GET_LDEV_ECC384_CERT => var_size(self.cert(Layer::LdevId, Alg::Ecc384)),
            cmd::GET_LDEV_MLDSA87_CERT => var_size(self.cert(Layer::LdevId, Alg::MlDsa87)),
            cmd::GET_FMC_ALIAS_ECC384_CERT => var_size(self.cert(Layer::FmcAlias, Alg::Ecc384)),
            cmd::GET_FMC_ALIAS_MLDSA87_CERT => var_size(self.cert(Layer::FmcAlias, Alg::MlDsa87)),
            cmd::GET_RT_ALIAS_ECC384_CERT => var_size(self.cert(Layer::RtAlias, Alg::Ecc384)),
            cmd::GET_RT_ALIAS_MLDSA87_CERT => var_size(self.cert(Layer::RtAlias, Alg::MlDsa87)),
            cmd::GET_IDEV_ECC384_INFO => {
                let (ecc, _) = self
                    .chains
                    .idevid_public
                    .as_ref()
                    .ok_or(MailboxError::INTERNAL)?;
                let mut w = mailbox::response();
                w.bytes(ecc.x()).bytes(ecc.y());
                Ok(w)
            }
            cmd::GET_IDEV_MLDSA87_INFO => {
                let (_, ml) = self
                    .chains
                    .idevid_public
                    .as_ref()
                    .ok_or(MailboxError::INTERNAL)?;
                let mut w = mailbox::response();
                w.bytes(ml.as_bytes());
                Ok(w)
            }
            cmd::STASH_MEASUREMENT => self.stash_measurement(args),
            cmd::EXTEND_PCR => self.extend_pcr(args),
            cmd::INCREMENT_PCR_RESET_COUNTER => self.increment_reset_counter(args),
            cmd::QUOTE_PCRS_ECC384 => self.quote(args, Alg::Ecc384),
            cmd::QUOTE_PCRS_MLDSA87 => self.quote(args, Alg::MlDsa87),
            cmd::GET_PCR_LOG => {
                let mut data = Vec::with_capacity(self.pcrs.log().len() * PCR_LOG_ENTRY_LEN);
                for e in self.pcrs.log() {
                    data.extend_from_slice(&e.encode());
                }
                var_size(&data)
            }
            cmd::CAPABILITIES => {
                // RT_BASE is bit 64 of a big-endian u128.
                let caps: u128 = 1 << 64;
                let mut w = mailbox::response();
                w.bytes(&caps.to_be_bytes());
                Ok(w)
            }
            cmd::FW_INFO => Ok(self.fw_info()),
            cmd::VERSION => {
                let mut w = mailbox::response();
                w.u32(0x4649_5053) // "FIPS"
                    .u32(0) // hardware revision: none, this is software
                    .u32(version_word())
                    .u32(version_word())
                    .bytes(b"ihsm RoT    ");
                Ok(w)
            }
            cmd::SELF_TEST_START => self.self_test_start(),
            cmd::SELF_TEST_GET_RESULTS => {
                if self.self_test == SelfTest::Done {
                    self.self_test = SelfTest::Idle;
                    Ok(mailbox::response())
                } else {
                    Err(MailboxError::SELF_TEST_NOT_STARTED)
                }
            }
            _ => Err(MailboxError::UNIMPLEMENTED_COMMAND),
        }?;
        Ok(mailbox::seal_response(resp))
    }

    fn stash_measurement(&mut self, args: &[u8]) -> core::result::Result<Writer, MailboxError> {
        // metadata[4], measurement[48], context[48], svn u32: exactly 104 bytes.
        if args.len() != 104 {
            return Err(MailboxError::INSUFFICIENT_MEMORY);
        }
        let measurement = args.get(4..52).ok_or(MailboxError::INSUFFICIENT_MEMORY)?;
        self.pcrs
            .extend_logged(&[PCR_STASH], PcrLogId::StashMeasurement, measurement);
        let mut w = mailbox::response();
        w.u32(0); // dpe_result: no DPE context was changed
        Ok(w)
    }

    fn extend_pcr(&mut self, args: &[u8]) -> core::result::Result<Writer, MailboxError> {
        if args.len() != 52 {
            return Err(MailboxError::INSUFFICIENT_MEMORY);
        }
        let mut r = Reader::new(args);
        let idx = r.u32().map_err(|_| MailboxError::INSUFFICIENT_MEMORY)?;
        let data = r.take(48).map_err(|_| MailboxError::INSUFFICIENT_MEMORY)?;
        let idx = pcr_index(idx)?;
        if idx < 4 {
            return Err(MailboxError::PCR_RESERVED);
        }
        self.pcrs.extend(idx, data);
        Ok(mailbox::response())
    }

    fn increment_reset_counter(
        &mut self,
        args: &[u8],
    ) -> core::result::Result<Writer, MailboxError> {
        if args.len() != 4 {
            return Err(MailboxError::INSUFFICIENT_MEMORY);
        }
        let idx = Reader::new(args)
            .u32()
            .map_err(|_| MailboxError::INSUFFICIENT_MEMORY)?;
        let idx = pcr_index(idx).map_err(|_| MailboxError::INVALID_PARAMS)?;
        if !self.pcrs.increment_reset_counter(idx) {
            return Err(MailboxError::PCR_RESET_MAX_REACHED);
        }
        Ok(mailbox::response())
    }

    /// QUOTE_PCRS: `H = SHA-512(PCR0 || .. || PCR31 || nonce)`; ECC signs the first
    /// 48 bytes of H as a pre-hashed digest, ML-DSA signs H byte-reversed as the
    /// message; both with the FMC Alias keys (Caliptra 2.1).
    fn quote(&mut self, args: &[u8], alg: Alg) -> core::result::Result<Writer, MailboxError> {
        let nonce: [u8; 32] = args.try_into().map_err(|_| MailboxError::INVALID_PARAMS)?;
        let secrets = self.secrets().map_err(|_| MailboxError::FATAL)?;
        let mut parts: Vec<&[u8]> = self.pcrs.all().iter().map(|p| p.as_slice()).collect();
        parts.push(&nonce);
        let h = sha512_parts(&parts);
        let mut w = mailbox::response();
        for pcr in self.pcrs.all() {
            w.bytes(pcr);
        }
        w.bytes(&nonce);
        for c in self.pcrs.reset_counters() {
            w.u32(*c);
        }
        match alg {
            Alg::Ecc384 => {
                let mut digest = [0u8; 48];
                digest.copy_from_slice(h.get(..48).ok_or(MailboxError::INTERNAL)?);
                let sig = secrets
                    .fmc_alias
                    .ecc
                    .sign_prehashed(&digest)
                    .map_err(|_| MailboxError::INTERNAL)?;
                w.bytes(&digest).bytes(&sig.r).bytes(&sig.s);
            }
            Alg::MlDsa87 => {
                let mut digest = h;
                digest.reverse();
                let sig = secrets
                    .fmc_alias
                    .mldsa
                    .sign(&digest)
                    .map_err(|_| MailboxError::INTERNAL)?;
                w.bytes(&digest).bytes(sig.as_bytes()).u8(0);
            }
        }
        Ok(w)
    }

    fn fw_info(&self) -> Writer {
        let mut w = mailbox::response();
        let rev = revision();
        let image = self.manifest.image().digest;
        let mut rom_sha256 = [0u8; 32];
        rom_sha256.copy_from_slice(&ihsm_crypto::hash::sha256(&image));
        w.u32(0) // pl0_pauser
            .u32(self.svn())
            .u32(self.facts.fused_svn)
            .u32(self.svn()) // cold-boot SVN
            .u32(0) // attestation enabled
            .bytes(&rev)
            .bytes(&rev)
            .bytes(&rev)
            .bytes(&rom_sha256)
            .bytes(&image)
            .bytes(&self.facts.config_digest)
            .bytes(&self.facts.owner_key_hash)
            .zeros(48) // no auth manifest
            .u32(0); // most recent firmware error
        w
    }

    fn self_test_start(&mut self) -> core::result::Result<Writer, MailboxError> {
        if self.self_test != SelfTest::Idle {
            return Err(MailboxError::SELF_TEST_IN_PROGRESS);
        }
        match kat::run_all() {
            Ok(_) => {
                self.self_test = SelfTest::Done;
                Ok(mailbox::response())
            }
            Err(e) => {
                self.fatal(format!("runtime self-test failed: {e}"));
                Err(MailboxError::FATAL)
            }
        }
    }

    /// Convenience: a quote through the mailbox, returning the raw response.
    ///
    /// # Errors
    /// The mailbox error.
    pub fn quote_pcrs(
        &mut self,
        alg: Alg,
        nonce: &[u8; 32],
    ) -> core::result::Result<Vec<u8>, MailboxError> {
        let command = match alg {
            Alg::Ecc384 => cmd::QUOTE_PCRS_ECC384,
            Alg::MlDsa87 => cmd::QUOTE_PCRS_MLDSA87,
        };
        self.mailbox(command, &mailbox::request(command, nonce))
    }

    /// Whether debug is locked (from the measured configuration).
    #[must_use]
    pub fn debug_locked(&self) -> bool {
        self.facts.debug_locked
    }
}

fn pcr_index(idx: u32) -> core::result::Result<usize, MailboxError> {
    let idx = u8::try_from(idx).map_err(|_| MailboxError::INVALID_PARAMS)?;
    let idx = usize::from(idx);
    if idx >= PCR_COUNT {
        return Err(MailboxError::PCR_INVALID_INDEX);
    }
    Ok(idx)
}

fn var_size(data: &[u8]) -> core::result::Result<Writer, MailboxError> {
    if data.len() > mailbox::MAX_RESP_DATA {
        return Err(MailboxError::INTERNAL);
    }
    let mut w = mailbox::response();
    w.u32(u32::try_from(data.len()).map_err(|_| MailboxError::INTERNAL)?)
        .bytes(data);
    Ok(w)
}

/// `major << 16 | minor << 8 | patch` of this build.
fn version_word() -> u32 {
    let part = |s: &str| s.parse::<u32>().unwrap_or(0) & 0xff;
    part(env!("CARGO_PKG_VERSION_MAJOR")) << 16
        | part(env!("CARGO_PKG_VERSION_MINOR")) << 8
        | part(env!("CARGO_PKG_VERSION_PATCH"))
}

/// 20 bytes naming this build: the crate version, zero-padded.
fn revision() -> [u8; 20] {
    let mut r = [0u8; 20];
    let v = concat!("ihsm ", env!("CARGO_PKG_VERSION")).as_bytes();
    let n = v.len().min(20);
    r[..n].copy_from_slice(&v[..n]);
    r
}
