//! The whole appraisal: every check with its own verdict, run in the order of
//! docs/attestation.md, "How a verifier appraises a device".

use core::fmt;

use crate::chain::{self, Alg, ChainRefusal, PartitionIdentity, TrustAnchor, VerifiedChain};
use crate::keyreport::{self, AttestedKey, KeyPolicy, KeyReportExpectation, KeyReportRefusal};
use crate::quote::{self, BootMeasurements, PcrLogRefusal, QuoteRefusal, VerifiedQuote};
use crate::refvals::{self, RefValues, RefValuesRefusal};
use crate::sig;

/// One check of the appraisal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Check {
    /// The ECC P-384 DICE chain up to the anchor.
    EccChain,
    /// The ML-DSA-87 DICE chain up to the anchor, agreeing with the ECC one.
    MlDsaChain,
    /// The ECC P-384 quote.
    EccQuote,
    /// The ML-DSA-87 quote.
    MlDsaQuote,
    /// The PCR log replays to the quoted PCRs and holds the boot measurements.
    PcrLog,
    /// The reference values' signatures and format.
    ReferenceValues,
    /// The FMC FWID (image digest) is the reference's.
    FmcFirmware,
    /// The RT FWIDs (configuration and manifest digests) are the reference's.
    RtFirmware,
    /// PCR0..=3 are the reference's.
    Pcrs,
    /// The firmware SVN is at least the reference's minimum.
    Svn,
    /// The lifecycle is production, or development under a policy that accepts it.
    Lifecycle,
    /// The vendor and owner key hashes are the reference's.
    VendorKeys,
    /// The partition identity certificates were issued by the RT Alias keys.
    PartitionCertificates,
    /// The key report.
    KeyReport,
}

impl Check {
    /// The name used in EAR claims and the CLI.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::EccChain => "dice-chain-ecc384",
            Self::MlDsaChain => "dice-chain-mldsa87",
            Self::EccQuote => "quote-ecc384",
            Self::MlDsaQuote => "quote-mldsa87",
            Self::PcrLog => "pcr-log",
            Self::ReferenceValues => "reference-values",
            Self::FmcFirmware => "fmc-firmware",
            Self::RtFirmware => "rt-firmware",
            Self::Pcrs => "pcrs",
            Self::Svn => "svn",
            Self::Lifecycle => "lifecycle",
            Self::VendorKeys => "vendor-keys",
            Self::PartitionCertificates => "partition-certificates",
            Self::KeyReport => "key-report",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a measurement is not what the reference values say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MeasurementRefusal {
    /// The ML-DSA chain names another device or TCB than the ECC chain.
    #[error("the ML-DSA-87 chain's UEID or TCB info differs from the ECC chain's")]
    ChainsDisagree,
    /// The two quotes report different PCRs.
    #[error("the two quotes report different PCRs")]
    QuotesDisagree,
    /// The log lacks a boot measurement, or has one twice, or in other PCRs.
    #[error("the PCR log does not hold the six boot measurements")]
    BootMeasurements,
    /// The log's measurement differs from the certificate's TCB info.
    #[error("the PCR log's measurement differs from the certificate's TCB info")]
    LogDisagreesWithCertificate,
    /// The FMC FWID is not the reference's.
    #[error("the FMC firmware digest is not the reference's")]
    FmcFwid,
    /// The RT FWIDs are not the reference's.
    #[error("the runtime digests (configuration, manifest) are not the reference's")]
    RtFwid,
    /// A PCR is not the reference's.
    #[error("PCR{0} is not the reference's")]
    Pcr(u8),
    /// The firmware SVN is below the minimum.
    #[error("firmware SVN {svn} is below the minimum {min}")]
    SvnBelowMinimum {
        /// The device's.
        svn: u32,
        /// The reference's.
        min: u32,
    },
    /// The certificate's SVN is not the measured one.
    #[error("the certificate's SVN is not the measured SVN")]
    SvnDisagrees,
    /// A development (manufacturing-lifecycle) device under a production policy.
    #[error("a development device, and the policy requires production")]
    Development,
    /// The lifecycle is not the reference's.
    #[error("lifecycle {got} is not the reference's {want}")]
    LifecycleMismatch {
        /// The device's.
        got: u8,
        /// The reference's.
        want: u8,
    },
    /// The vendor key hash is not the reference's.
    #[error("the vendor key hash is not the reference's")]
    VendorKeyHash,
    /// The owner key hash is not the reference's.
    #[error("the owner key hash is not the reference's")]
    OwnerKeyHash,
    /// The fuse TCB info in the FMC Alias certificate disagrees with the log.
    #[error("the FMC Alias fuse TCB info disagrees with the measured device status")]
    FuseInfo,
}

/// Why a check did not affirm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A DICE or partition chain.
    #[error(transparent)]
    Chain(#[from] ChainRefusal),
    /// A quote.
    #[error(transparent)]
    Quote(#[from] QuoteRefusal),
    /// The PCR log.
    #[error(transparent)]
    PcrLog(#[from] PcrLogRefusal),
    /// The reference values.
    #[error(transparent)]
    RefValues(#[from] RefValuesRefusal),
    /// A measurement against the reference.
    #[error(transparent)]
    Measurement(#[from] MeasurementRefusal),
    /// A key report.
    #[error(transparent)]
    KeyReport(#[from] KeyReportRefusal),
    /// Not checked: a check it depends on did not affirm.
    #[error("not checked: {0} did not affirm")]
    Prerequisite(Check),
}

/// What the relying party trusts and requires.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The appraisal time (Unix seconds), for certificate validity.
    pub now: i64,
    /// Whether a development (manufacturing-lifecycle) device may affirm.
    pub accept_development: bool,
    /// What a key report's key must be.
    pub key_policy: KeyPolicy,
}

/// The trusted inputs: an anchor, the vendor's public keys for the reference
/// values, and the nonce the verifier chose.
#[derive(Debug, Clone)]
pub struct TrustInputs {
    /// The root certificate or pinned IDevID of the ECC P-384 chain.
    pub anchor_ecc: TrustAnchor,
    /// The root certificate or pinned IDevID of the ML-DSA-87 chain.
    pub anchor_mldsa: TrustAnchor,
    /// The vendor ECC P-384 public key (SEC1 point).
    pub vendor_ecc: Vec<u8>,
    /// The vendor ML-DSA-87 public key.
    pub vendor_mldsa: Vec<u8>,
    /// The nonce the quotes must carry.
    pub nonce: [u8; 32],
}

/// What the device sent.
#[derive(Debug, Clone)]
pub struct DeviceEvidence {
    /// ECC chain, DER: IDevID, LDevID, FMC Alias, RT Alias.
    pub ecc_chain: [Vec<u8>; 4],
    /// ML-DSA chain, DER, same order.
    pub mldsa_chain: [Vec<u8>; 4],
    /// The raw QUOTE_PCRS_ECC384 response.
    pub quote_ecc: Vec<u8>,
    /// The raw QUOTE_PCRS_MLDSA87 response.
    pub quote_mldsa: Vec<u8>,
    /// The GET_PCR_LOG data.
    pub pcr_log: Vec<u8>,
    /// The signed reference values.
    pub refvals: Vec<u8>,
}

/// A key report and the partition's identity certificates.
#[derive(Debug, Clone)]
pub struct KeyReportEvidence {
    /// The envelope.
    pub report: Vec<u8>,
    /// The ECC P-384 partition identity certificate (DER).
    pub ecc_partition_cert: Vec<u8>,
    /// The ML-DSA-87 partition identity certificate (DER).
    pub mldsa_partition_cert: Vec<u8>,
    /// The report_data the verifier asked for.
    pub report_data: [u8; keyreport::REPORT_DATA_LEN],
    /// The partition id, if the verifier knows it.
    pub partition_id: Option<u32>,
    /// The partition UUID, if the verifier knows it.
    pub app_id: Option<[u8; 16]>,
}

/// The attested key's flags and history, from an affirmed key report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttestedAttributes {
    /// The report's flags ([`keyreport::flags`]).
    pub flags: u32,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_LOCAL`.
    pub local: bool,
}

/// The result: a verdict per check and what the evidence established.
#[derive(Debug, Clone, Default)]
pub struct Appraisal {
    /// Each check and its verdict, in order.
    pub verdicts: Vec<(Check, Result<(), Refusal>)>,
    /// The device's UEID, when the ECC chain verified.
    pub ueid: Option<[u8; 17]>,
    /// The RT Alias FWIDs, when the ECC chain verified.
    pub tcb: Option<[[u8; 48]; 2]>,
    /// The FMC FWID, when the ECC chain verified.
    pub fmc_fwid: Option<[u8; 48]>,
    /// The firmware SVN from the RT Alias certificate.
    pub svn: Option<u32>,
    /// The measured lifecycle.
    pub lifecycle: Option<u8>,
    /// The nonce the quotes carried.
    pub nonce: Option<[u8; 32]>,
    /// The partition (name, id) a key report named, when it was checked.
    pub partition: Option<(String, u32)>,
    /// The attested key, when a key report affirmed.
    pub attested_key: Option<AttestedKey>,
    /// What the affirmed key report says of that key: its flags and
    /// extractability history.
    pub attested_attributes: Option<AttestedAttributes>,
    chains: Option<(VerifiedChain, VerifiedChain)>,
}

impl Appraisal {
    /// Whether every check affirmed.
    #[must_use]
    pub fn affirms(&self) -> bool {
        !self.verdicts.is_empty() && self.verdicts.iter().all(|(_, v)| v.is_ok())
    }

    /// The verdict of one check, if it ran.
    #[must_use]
    pub fn verdict(&self, c: Check) -> Option<&Result<(), Refusal>> {
        self.verdicts.iter().find(|(k, _)| *k == c).map(|(_, v)| v)
    }

    fn put(&mut self, c: Check, v: Result<(), Refusal>) {
        self.verdicts.push((c, v));
    }

    /// The verified chains (ECC, ML-DSA), when both affirmed.
    #[must_use]
    pub fn chains(&self) -> Option<&(VerifiedChain, VerifiedChain)> {
        self.chains.as_ref()
    }
}

fn need<T>(x: Option<T>, c: Check) -> Result<T, Refusal> {
    x.ok_or(Refusal::Prerequisite(c))
}

fn quote_pcrs(q: &Result<VerifiedQuote, Refusal>) -> Option<&[[u8; 48]; quote::PCR_COUNT]> {
    q.as_ref().ok().map(|q| &q.pcrs)
}

/// Appraises a device: both chains, both quotes, the log, the reference values and
/// every measurement against them.
#[must_use]
pub fn appraise_device(trust: &TrustInputs, ev: &DeviceEvidence, policy: &Policy) -> Appraisal {
    let mut a = Appraisal {
        nonce: Some(trust.nonce),
        ..Appraisal::default()
    };
    let ecc = chain::verify_chain(Alg::Ecc384, &ev.ecc_chain, &trust.anchor_ecc, policy.now);
    a.put(
        Check::EccChain,
        ecc.as_ref().map(|_| ()).map_err(|e| e.clone().into()),
    );
    let ecc = ecc.ok();
    let ml: Result<VerifiedChain, Refusal> = chain::verify_chain(
        Alg::MlDsa87,
        &ev.mldsa_chain,
        &trust.anchor_mldsa,
        policy.now,
    )
    .map_err(Refusal::from)
    .and_then(|m| match &ecc {
        Some(e) if e.ueid != m.ueid || e.fmc_tcb != m.fmc_tcb || e.rt_tcb != m.rt_tcb => {
            Err(MeasurementRefusal::ChainsDisagree.into())
        }
        _ => Ok(m),
    });
    a.put(
        Check::MlDsaChain,
        ml.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    let ml = ml.ok();
    if let Some(e) = &ecc {
        a.ueid = Some(e.ueid);
        a.tcb = e.rt_tcb.fwids.as_slice().try_into().ok();
        a.fmc_fwid = e.fmc_fwid().copied();
        a.svn = e.rt_tcb.svn;
    }

    let qe = need(ecc.as_ref(), Check::EccChain).and_then(|c| {
        quote::verify_quote(Alg::Ecc384, &ev.quote_ecc, &trust.nonce, &c.fmc_alias_key)
            .map_err(Refusal::from)
    });
    a.put(
        Check::EccQuote,
        qe.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    let qm = need(ml.as_ref(), Check::MlDsaChain).and_then(|c| {
        quote::verify_quote(
            Alg::MlDsa87,
            &ev.quote_mldsa,
            &trust.nonce,
            &c.fmc_alias_key,
        )
        .map_err(Refusal::from)
    });
    a.put(
        Check::MlDsaQuote,
        qm.as_ref().map(|_| ()).map_err(Clone::clone),
    );

    // The PCRs: from the ECC quote (or the ML-DSA one), both equal when both verified.
    let pcrs = match (quote_pcrs(&qe), quote_pcrs(&qm)) {
        (Some(x), Some(y)) if x != y => Err(Refusal::from(MeasurementRefusal::QuotesDisagree)),
        (Some(x), _) | (None, Some(x)) => Ok(*x),
        (None, None) => Err(Refusal::Prerequisite(Check::EccQuote)),
    };
    let log: Result<BootMeasurements, Refusal> = pcrs.clone().and_then(|p| {
        let entries = quote::parse_pcr_log(&ev.pcr_log)?;
        quote::check_replay(&entries, &p)?;
        quote::boot_measurements(&entries).ok_or(MeasurementRefusal::BootMeasurements.into())
    });
    a.put(
        Check::PcrLog,
        log.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    let log = log.ok();
    a.lifecycle = log.as_ref().map(BootMeasurements::lifecycle);

    let rv = RefValues::open(&ev.refvals, &trust.vendor_ecc, &trust.vendor_mldsa);
    a.put(
        Check::ReferenceValues,
        rv.as_ref().map(|_| ()).map_err(|e| (*e).into()),
    );
    let rv = rv.ok();

    // Every measurement check needs the chain, the log and the reference values.
    let base = || -> Result<(&VerifiedChain, &BootMeasurements, &RefValues), Refusal> {
        Ok((
            need(ecc.as_ref(), Check::EccChain)?,
            need(log.as_ref(), Check::PcrLog)?,
            need(rv.as_ref(), Check::ReferenceValues)?,
        ))
    };
    let m = |r: Result<(), MeasurementRefusal>| r.map_err(Refusal::from);

    a.put(
        Check::FmcFirmware,
        base().and_then(|(c, l, r)| {
            let cert = c.fmc_fwid().copied();
            m(if cert != Some(l.fmc_tci) {
                Err(MeasurementRefusal::LogDisagreesWithCertificate)
            } else if l.fmc_tci != r.fmc_fwid {
                Err(MeasurementRefusal::FmcFwid)
            } else {
                Ok(())
            })
        }),
    );
    a.put(
        Check::RtFirmware,
        base().and_then(|(c, l, r)| {
            let measured = [l.rt_tci, l.manifest_digest];
            m(if c.rt_tcb.fwids.as_slice() != measured.as_slice() {
                Err(MeasurementRefusal::LogDisagreesWithCertificate)
            } else if measured != r.rt_fwids {
                Err(MeasurementRefusal::RtFwid)
            } else {
                Ok(())
            })
        }),
    );
    a.put(
        Check::Pcrs,
        base().and_then(|(_, _, r)| {
            let p = pcrs.clone()?;
            for (i, want) in &r.pcrs {
                if p.get(usize::from(*i)) != Some(want) {
                    return m(Err(MeasurementRefusal::Pcr(*i)));
                }
            }
            Ok(())
        }),
    );
    a.put(
        Check::Svn,
        base().and_then(|(c, l, r)| {
            let svn = c.rt_tcb.svn.unwrap_or(0);
            m(if svn != u32::from(l.firmware_svn()) {
                Err(MeasurementRefusal::SvnDisagrees)
            } else if svn < r.svn_min {
                Err(MeasurementRefusal::SvnBelowMinimum {
                    svn,
                    min: r.svn_min,
                })
            } else {
                Ok(())
            })
        }),
    );
    a.put(
        Check::Lifecycle,
        base().and_then(|(_, l, r)| {
            let got = l.lifecycle();
            m(
                if got != refvals::lifecycle::PRODUCTION && !policy.accept_development {
                    Err(MeasurementRefusal::Development)
                } else if got != r.lifecycle {
                    Err(MeasurementRefusal::LifecycleMismatch {
                        got,
                        want: r.lifecycle,
                    })
                } else {
                    Ok(())
                },
            )
        }),
    );
    a.put(
        Check::VendorKeys,
        base().and_then(|(c, l, r)| {
            let ds = &l.device_status;
            // docs/certificates.md: the FMC Alias fuse TCB info entries.
            let owner = sig::sha384(&[&l.owner_key_hash, &[ds[8], 0, ds[5]]]);
            let vendor = sig::sha384(&[
                &l.vendor_key_hash,
                &[ds[7], ds[0], ds[1], ds[4], ds[3], ds[6]],
            ]);
            let fw = |i: usize| c.fmc_tcb.get(i).and_then(|t| t.fwids.first()).copied();
            m(if fw(0) != Some(owner) || fw(1) != Some(vendor) {
                Err(MeasurementRefusal::FuseInfo)
            } else if l.vendor_key_hash != r.vendor_key_hash {
                Err(MeasurementRefusal::VendorKeyHash)
            } else if l.owner_key_hash != r.owner_key_hash {
                Err(MeasurementRefusal::OwnerKeyHash)
            } else {
                Ok(())
            })
        }),
    );
    if let (Some(e), Some(mc)) = (ecc, ml) {
        a.chains = Some((e, mc));
    }
    a
}

/// Adds the key report checks: both partition certificates against the verified
/// chains, then [`add_key_report`].
pub fn appraise_key_report(a: &mut Appraisal, ev: &KeyReportEvidence, policy: &Policy) {
    let ids = need(a.chains.as_ref(), Check::EccChain).and_then(|(e, m)| {
        let ecc = chain::verify_partition_cert(e, &ev.ecc_partition_cert, policy.now)?;
        let ml = chain::verify_partition_cert(m, &ev.mldsa_partition_cert, policy.now)?;
        if ecc.common_name != ml.common_name {
            return Err(ChainRefusal::IssuerMismatch(chain::Layer::Partition).into());
        }
        Ok((ecc, ml))
    });
    a.put(
        Check::PartitionCertificates,
        ids.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    match ids {
        Ok((ecc, ml)) => add_key_report(a, ev, &ecc, &ml, policy),
        Err(_) => a.put(
            Check::KeyReport,
            Err(Refusal::Prerequisite(Check::PartitionCertificates)),
        ),
    }
}

/// Checks a key report against partition identities already verified (by
/// [`chain::verify_partition_cert`]), records the verdict and, when it affirms,
/// the partition and the attested key.
pub fn add_key_report(
    a: &mut Appraisal,
    ev: &KeyReportEvidence,
    ecc: &PartitionIdentity,
    mldsa: &PartitionIdentity,
    policy: &Policy,
) {
    let Some(tcb) = a.tcb else {
        a.put(
            Check::KeyReport,
            Err(Refusal::Prerequisite(Check::EccChain)),
        );
        return;
    };
    let name = ecc
        .common_name
        .strip_prefix("ihsm partition ")
        .unwrap_or_default()
        .to_string();
    let expect = KeyReportExpectation {
        report_data: ev.report_data,
        tcb,
        partition_name: name,
        partition_id: ev.partition_id,
        app_id: ev.app_id,
    };
    match keyreport::verify_key_report(
        &ev.report,
        &ecc.key,
        &mldsa.key,
        &expect,
        &policy.key_policy,
    ) {
        Ok(r) => {
            a.partition = Some((r.partition_name.clone(), r.partition_id));
            a.attested_attributes = Some(AttestedAttributes {
                flags: r.flags,
                never_extractable: r.never_extractable,
                always_sensitive: r.always_sensitive,
                local: r.local,
            });
            a.attested_key = Some(r.public_key);
            a.put(Check::KeyReport, Ok(()));
        }
        Err(e) => a.put(Check::KeyReport, Err(e.into())),
    }
}
