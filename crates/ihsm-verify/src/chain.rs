//! The DICE chains, `IDevID -> LDevID -> FMC Alias -> RT Alias`, as
//! docs/certificates.md describes them, checked up to a trust anchor.

use core::fmt;

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::der;
use crate::sig;

/// The chain's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECC P-384, ecdsa-with-SHA384.
    Ecc384,
    /// ML-DSA-87, id-ml-dsa-87 (pure).
    MlDsa87,
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ecc384 => "ECC P-384",
            Self::MlDsa87 => "ML-DSA-87",
        })
    }
}

impl Alg {
    fn signature_oid(self) -> &'static str {
        match self {
            Self::Ecc384 => "1.2.840.10045.4.3.3",
            Self::MlDsa87 => "2.16.840.1.101.3.4.3.19",
        }
    }

    fn key_len(self) -> usize {
        match self {
            Self::Ecc384 => sig::P384_POINT_LEN,
            Self::MlDsa87 => sig::MLDSA87_PUBLIC_LEN,
        }
    }

    /// Verifies an X.509 signature (DER ECDSA, or the raw ML-DSA signature).
    pub(crate) fn verify(self, key: &[u8], msg: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Ecc384 => sig::ecdsa_der(key, msg, signature),
            Self::MlDsa87 => sig::mldsa87(key, msg, signature),
        }
    }
}

/// A certificate's place in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The device identity (fuses only).
    IdevId,
    /// The locally-significant identity (fuses and field entropy).
    LdevId,
    /// The FMC Alias: the ROM's measurement of the firmware; signs quotes.
    FmcAlias,
    /// The RT Alias: the FMC's measurement of the runtime; issues partition certificates.
    RtAlias,
    /// A partition identity certificate, issued by the RT Alias.
    Partition,
    /// The device's fleet transfer key certificate, issued by the RT Alias.
    Transfer,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IdevId => "IDevID",
            Self::LdevId => "LDevID",
            Self::FmcAlias => "FMC Alias",
            Self::RtAlias => "RT Alias",
            Self::Partition => "partition",
            Self::Transfer => "transfer key",
        })
    }
}

const LAYERS: [Layer; 4] = [
    Layer::IdevId,
    Layer::LdevId,
    Layer::FmcAlias,
    Layer::RtAlias,
];
const PATH_LEN: [u32; 4] = [7, 6, 5, 4];
const OID_UEID: &str = "2.23.133.5.4.4";
const OID_TCB_INFO: &str = "2.23.133.5.4.1";
const OID_MULTI_TCB_INFO: &str = "2.23.133.5.4.5";
const KP_IDENTITY_INIT: &str = "2.23.133.5.4.100.6";
const KP_IDENTITY_LOC: &str = "2.23.133.5.4.100.7";
const KP_ATTEST_LOC: &str = "2.23.133.5.4.100.9";
const KP_ECA: &str = "2.23.133.5.4.100.12";

/// Why a chain was refused. Each reason names the certificate it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainRefusal {
    /// The bytes are not one DER X.509 certificate.
    #[error("the {0} certificate is not a DER X.509 certificate")]
    Malformed(Layer),
    /// The trust anchor is not a DER X.509 certificate.
    #[error("the trust anchor is not a DER X.509 certificate")]
    AnchorMalformed,
    /// The signature algorithm is not the chain's.
    #[error("the {0} certificate is not signed with the chain's algorithm")]
    SignatureAlgorithm(Layer),
    /// The subject key is not a key of the chain's algorithm.
    #[error("the {0} certificate's key is not of the chain's algorithm")]
    PublicKey(Layer),
    /// The IDevID is neither the anchor nor issued by it.
    #[error("the IDevID is neither the trust anchor nor issued by it")]
    NotAnchored,
    /// The issuer name is not the parent's subject.
    #[error("the {0} certificate's issuer is not its parent's subject")]
    IssuerMismatch(Layer),
    /// The signature does not verify with the issuer's key.
    #[error("the {0} certificate's signature does not verify with its issuer's key")]
    BadSignature(Layer),
    /// The authority key identifier is not the issuer's subject key identifier.
    #[error("the {0} certificate's authority key identifier is not its issuer's")]
    AuthorityKeyId(Layer),
    /// The subject key identifier is not SHA-256(key)[0..20].
    #[error("the {0} certificate's subject key identifier is not SHA-256 of its key")]
    SubjectKeyId(Layer),
    /// The certificate is not valid at the appraisal time.
    #[error("the {0} certificate is not valid at the appraisal time")]
    NotValidAt(Layer),
    /// basicConstraints is missing, not critical, not CA or has another path length.
    #[error("the {0} certificate's basicConstraints are not the profile's")]
    BasicConstraints(Layer),
    /// keyUsage is missing, not critical or not the profile's.
    #[error("the {0} certificate's keyUsage is not the profile's")]
    KeyUsage(Layer),
    /// The TCG DICE extended key usages are not the profile's.
    #[error("the {0} certificate's extended key usages are not the profile's")]
    ExtendedKeyUsage(Layer),
    /// A critical extension the profile does not have.
    #[error("the {0} certificate has a critical extension the profile does not")]
    UnknownCriticalExtension(Layer),
    /// The UEID extension is missing or malformed.
    #[error("the {0} certificate has no well-formed UEID")]
    Ueid(Layer),
    /// The UEID differs from the IDevID's.
    #[error("the {0} certificate's UEID is not the IDevID's")]
    UeidMismatch(Layer),
    /// The TcbInfo / MultiTcbInfo extension is missing or malformed.
    #[error("the {0} certificate has no well-formed TCB info")]
    TcbInfo(Layer),
}

/// One `DiceTcbInfo` as built (docs/certificates.md, "TCG extensions as built").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbInfo {
    /// `svn [3]`.
    pub svn: Option<u32>,
    /// `fwids [6]`: the SHA-384 digests, in order.
    pub fwids: Vec<[u8; 48]>,
    /// `type [9]`, e.g. `IHSM_RT_FIRMWARE_INFO`.
    pub tcb_type: Vec<u8>,
}

/// A chain that passed every check, and what it says.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// Its algorithm.
    pub alg: Alg,
    /// The device's UEID (type byte + 16 bytes).
    pub ueid: [u8; 17],
    /// The FMC Alias MultiTcbInfo: owner fuses, vendor fuses, FMC firmware.
    pub fmc_tcb: Vec<TcbInfo>,
    /// The RT Alias TcbInfo: FWIDs = [RT TCI, SHA-384 of the manifest].
    pub rt_tcb: TcbInfo,
    /// The FMC Alias public key (signs quotes).
    pub fmc_alias_key: Vec<u8>,
    /// The RT Alias public key (issues partition certificates).
    pub rt_alias_key: Vec<u8>,
    /// The RT Alias subject (raw DER), the issuer of partition certificates.
    pub rt_alias_subject: Vec<u8>,
    /// The RT Alias subject key identifier.
    pub rt_alias_ski: Vec<u8>,
}

impl VerifiedChain {
    /// The FWID of the `IHSM_FMC_FIRMWARE_INFO` entry (the image digest).
    #[must_use]
    pub fn fmc_fwid(&self) -> Option<&[u8; 48]> {
        self.fmc_tcb
            .iter()
            .find(|t| t.tcb_type == b"IHSM_FMC_FIRMWARE_INFO")
            .and_then(|t| t.fwids.first())
    }
}

/// What the caller trusts: a root certificate (a manufacturer CA that issued the
/// IDevID) or a pinned IDevID certificate (a development device's, self-signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    der: Vec<u8>,
}

impl TrustAnchor {
    /// An anchor from a DER certificate.
    ///
    /// # Errors
    /// [`ChainRefusal::AnchorMalformed`] when it is not one.
    pub fn from_der(der: &[u8]) -> Result<Self, ChainRefusal> {
        match X509Certificate::from_der(der) {
            Ok(([], _)) => Ok(Self { der: der.to_vec() }),
            _ => Err(ChainRefusal::AnchorMalformed),
        }
    }

    /// The DER bytes.
    #[must_use]
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

fn parse(der: &[u8], layer: Layer) -> Result<X509Certificate<'_>, ChainRefusal> {
    match X509Certificate::from_der(der) {
        Ok(([], c)) => Ok(c),
        _ => Err(ChainRefusal::Malformed(layer)),
    }
}

fn spki_raw<'a>(
    c: &'a X509Certificate<'_>,
    alg: Alg,
    layer: Layer,
) -> Result<&'a [u8], ChainRefusal> {
    let k: &[u8] = c.public_key().subject_public_key.data.as_ref();
    let oid = c.public_key().algorithm.algorithm.to_id_string();
    let ok = match alg {
        Alg::Ecc384 => oid == "1.2.840.10045.2.1" && k.first() == Some(&0x04),
        Alg::MlDsa87 => oid == "2.16.840.1.101.3.4.3.19",
    };
    if ok && k.len() == alg.key_len() {
        Ok(k)
    } else {
        Err(ChainRefusal::PublicKey(layer))
    }
}

fn signed_by(
    c: &X509Certificate<'_>,
    alg: Alg,
    issuer_key: &[u8],
    layer: Layer,
) -> Result<(), ChainRefusal> {
    if c.signature_algorithm.algorithm.to_id_string() != alg.signature_oid()
        || c.tbs_certificate.signature.algorithm != c.signature_algorithm.algorithm
    {
        return Err(ChainRefusal::SignatureAlgorithm(layer));
    }
    if alg == Alg::MlDsa87 && c.signature_algorithm.parameters.is_some() {
        return Err(ChainRefusal::SignatureAlgorithm(layer));
    }
    if alg.verify(
        issuer_key,
        c.tbs_certificate.as_ref(),
        c.signature_value.data.as_ref(),
    ) {
        Ok(())
    } else {
        Err(ChainRefusal::BadSignature(layer))
    }
}

fn key_id(raw: &[u8]) -> Vec<u8> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, raw);
    d.as_ref().get(..20).unwrap_or_default().to_vec()
}

fn ski(c: &X509Certificate<'_>) -> Option<Vec<u8>> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

fn aki(c: &X509Certificate<'_>) -> Option<Vec<u8>> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

fn ext_value<'a>(c: &'a X509Certificate<'_>, oid: &str) -> Option<&'a [u8]> {
    c.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid)
        .map(|e| e.value)
}

/// Parses the UEID extension value: `SEQUENCE { OCTET STRING (17 bytes) }`.
#[must_use]
pub fn parse_ueid(value: &[u8]) -> Option<[u8; 17]> {
    let seq = der::single(value, 0x30)?;
    let os = der::single(seq, 0x04)?;
    os.try_into().ok()
}

/// Parses one `DiceTcbInfo` (the fields ihsm builds; others are skipped).
#[must_use]
pub fn parse_tcb_info(value: &[u8]) -> Option<TcbInfo> {
    let seq = der::single(value, 0x30)?;
    let mut r = der::Reader::new(seq);
    let mut info = TcbInfo {
        svn: None,
        fwids: Vec::new(),
        tcb_type: Vec::new(),
    };
    let mut last = 0u8;
    while !r.is_empty() {
        let t = r.next()?;
        let n = t.tag & 0x1f;
        // Context tags in increasing order, each at most once.
        if t.tag & 0xc0 != 0x80 || (last != 0 && n <= last & 0x1f) {
            return None;
        }
        last = t.tag | 0x80;
        match t.tag {
            0x83 => info.svn = Some(der::uint(t.value)?),
            0xa6 => {
                let mut fw = der::Reader::new(t.value);
                while !fw.is_empty() {
                    let f = fw.expect(0x30)?;
                    let mut fr = der::Reader::new(f);
                    if fr.expect(0x06)? != der::OID_SHA384 {
                        return None;
                    }
                    let d: [u8; 48] = fr.expect(0x04)?.try_into().ok()?;
                    if !fr.is_empty() {
                        return None;
                    }
                    info.fwids.push(d);
                }
            }
            0x89 => info.tcb_type = t.value.to_vec(),
            _ => {}
        }
    }
    Some(info)
}

/// Parses a `MultiTcbInfo`: `SEQUENCE OF DiceTcbInfo`.
#[must_use]
pub fn parse_multi_tcb_info(value: &[u8]) -> Option<Vec<TcbInfo>> {
    let seq = der::single(value, 0x30)?;
    let mut r = der::Reader::new(seq);
    let mut out = Vec::new();
    while !r.is_empty() {
        let t = r.next()?;
        if t.tag != 0x30 {
            return None;
        }
        // Re-wrap: parse_tcb_info takes the whole SEQUENCE.
        let mut whole = vec![0x30];
        whole.extend(der_len(t.value.len()));
        whole.extend_from_slice(t.value);
        out.push(parse_tcb_info(&whole)?);
    }
    Some(out)
}

fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![u8::try_from(n).unwrap_or(0)];
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut v = vec![0x80 | u8::try_from(bytes.len()).unwrap_or(0)];
    v.extend(bytes);
    v
}

fn check_profile(c: &X509Certificate<'_>, i: usize, layer: Layer) -> Result<(), ChainRefusal> {
    let mut bc_ok = false;
    let mut ku_ok = false;
    let mut eku_ok = false;
    for e in c.extensions() {
        match e.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                bc_ok = e.critical && bc.ca && bc.path_len_constraint == PATH_LEN.get(i).copied();
            }
            ParsedExtension::KeyUsage(ku) => {
                ku_ok = e.critical
                    && ku.key_cert_sign()
                    && ku.digital_signature() == (layer == Layer::RtAlias);
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let got: Vec<String> = eku.other.iter().map(|o| o.to_id_string()).collect();
                let want: &[&str] = match layer {
                    Layer::IdevId => &[KP_IDENTITY_INIT, KP_ECA],
                    Layer::LdevId => &[KP_IDENTITY_LOC, KP_ECA],
                    Layer::FmcAlias => &[KP_ECA, KP_ATTEST_LOC],
                    _ => &[KP_ECA],
                };
                eku_ok = !e.critical
                    && got.len() == want.len()
                    && want.iter().all(|w| got.iter().any(|g| g == w));
            }
            _ if e.critical => return Err(ChainRefusal::UnknownCriticalExtension(layer)),
            _ => {}
        }
    }
    if !bc_ok {
        return Err(ChainRefusal::BasicConstraints(layer));
    }
    if !ku_ok {
        return Err(ChainRefusal::KeyUsage(layer));
    }
    if !eku_ok {
        return Err(ChainRefusal::ExtendedKeyUsage(layer));
    }
    Ok(())
}

fn valid_at(c: &X509Certificate<'_>, now: i64, layer: Layer) -> Result<(), ChainRefusal> {
    let v = c.validity();
    if v.not_before.timestamp() <= now && now <= v.not_after.timestamp() {
        Ok(())
    } else {
        Err(ChainRefusal::NotValidAt(layer))
    }
}

/// Checks a DICE chain, `[IDevID, LDevID, FMC Alias, RT Alias]` in DER, up to
/// `anchor`, at `now` (Unix seconds): the signatures and names link, each
/// certificate has the profile of docs/certificates.md, every UEID is the IDevID's,
/// and the TCB info is read.
///
/// # Errors
/// The first [`ChainRefusal`] found, naming its certificate.
pub fn verify_chain(
    alg: Alg,
    certs: &[Vec<u8>; 4],
    anchor: &TrustAnchor,
    now: i64,
) -> Result<VerifiedChain, ChainRefusal> {
    let parsed: Vec<X509Certificate<'_>> = certs
        .iter()
        .zip(LAYERS)
        .map(|(d, l)| parse(d, l))
        .collect::<Result<_, _>>()?;
    let anchor_cert =
        parse(&anchor.der, Layer::IdevId).map_err(|_| ChainRefusal::AnchorMalformed)?;
    let mut keys = Vec::with_capacity(4);
    for (c, l) in parsed.iter().zip(LAYERS) {
        keys.push(spki_raw(c, alg, l)?);
    }
    let mut ueid: Option<[u8; 17]> = None;
    for (i, (c, layer)) in parsed.iter().zip(LAYERS).enumerate() {
        let key = *keys.get(i).ok_or(ChainRefusal::Malformed(layer))?;
        // Issuer: the parent, or the anchor for the IDevID.
        if i == 0 {
            if certs[0] == anchor.der {
                // Pinned IDevID: self-issued and self-signed.
                if c.issuer().as_raw() != c.subject().as_raw() {
                    return Err(ChainRefusal::IssuerMismatch(layer));
                }
                signed_by(c, alg, key, layer)?;
            } else {
                if c.issuer().as_raw() != anchor_cert.subject().as_raw() {
                    return Err(ChainRefusal::NotAnchored);
                }
                let akey: &[u8] = anchor_cert.public_key().subject_public_key.data.as_ref();
                signed_by(c, alg, akey, layer).map_err(|e| match e {
                    ChainRefusal::BadSignature(_) => ChainRefusal::NotAnchored,
                    other => other,
                })?;
            }
        } else {
            let parent = parsed.get(i - 1).ok_or(ChainRefusal::Malformed(layer))?;
            if c.issuer().as_raw() != parent.subject().as_raw() {
                return Err(ChainRefusal::IssuerMismatch(layer));
            }
            let pkey = *keys.get(i - 1).ok_or(ChainRefusal::Malformed(layer))?;
            signed_by(c, alg, pkey, layer)?;
            if aki(c) != Some(key_id(pkey)) {
                return Err(ChainRefusal::AuthorityKeyId(layer));
            }
        }
        if ski(c) != Some(key_id(key)) {
            return Err(ChainRefusal::SubjectKeyId(layer));
        }
        valid_at(c, now, layer)?;
        check_profile(c, i, layer)?;
        let u = ext_value(c, OID_UEID)
            .and_then(parse_ueid)
            .ok_or(ChainRefusal::Ueid(layer))?;
        match ueid {
            None => ueid = Some(u),
            Some(first) if first != u => return Err(ChainRefusal::UeidMismatch(layer)),
            Some(_) => {}
        }
    }
    let fmc = parsed
        .get(2)
        .ok_or(ChainRefusal::Malformed(Layer::FmcAlias))?;
    let rt = parsed
        .get(3)
        .ok_or(ChainRefusal::Malformed(Layer::RtAlias))?;
    let fmc_tcb = ext_value(fmc, OID_MULTI_TCB_INFO)
        .and_then(parse_multi_tcb_info)
        .filter(|v| v.len() == 3)
        .ok_or(ChainRefusal::TcbInfo(Layer::FmcAlias))?;
    let rt_tcb = ext_value(rt, OID_TCB_INFO)
        .and_then(parse_tcb_info)
        .filter(|t| t.fwids.len() == 2)
        .ok_or(ChainRefusal::TcbInfo(Layer::RtAlias))?;
    Ok(VerifiedChain {
        alg,
        ueid: ueid.ok_or(ChainRefusal::Ueid(Layer::IdevId))?,
        fmc_tcb,
        rt_tcb,
        fmc_alias_key: keys.get(2).map(|k| k.to_vec()).unwrap_or_default(),
        rt_alias_key: keys.get(3).map(|k| k.to_vec()).unwrap_or_default(),
        rt_alias_subject: rt.subject().as_raw().to_vec(),
        rt_alias_ski: key_id(keys.get(3).copied().unwrap_or_default()),
    })
}

/// A partition identity certificate that the RT Alias issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionIdentity {
    /// The partition identity public key (SEC1 point or ML-DSA-87 key).
    pub key: Vec<u8>,
    /// The subject's common name (`ihsm partition NAME`).
    pub common_name: String,
}

/// Checks a partition identity certificate against the verified chain of the same
/// algorithm: issued and signed by the RT Alias, not a CA, digitalSignature, the
/// device's UEID, valid at `now`.
///
/// # Errors
/// A [`ChainRefusal`] naming [`Layer::Partition`].
pub fn verify_partition_cert(
    chain: &VerifiedChain,
    der_cert: &[u8],
    now: i64,
) -> Result<PartitionIdentity, ChainRefusal> {
    verify_rt_issued(chain, der_cert, now, Layer::Partition, |ku| {
        ku.digital_signature() && !ku.key_cert_sign()
    })
}

/// The name of a transfer key certificate's subject.
pub const TRANSFER_CN: &str = "ihsm device transfer";

/// Checks the device's fleet transfer key certificate (docs/fleet.md) against
/// the verified ECC chain: issued and signed by the RT Alias, not a CA,
/// keyAgreement only, `CN=ihsm device transfer`, the device's UEID, valid at
/// `now`. Returns the key (a SEC1 point).
///
/// # Errors
/// A [`ChainRefusal`] naming [`Layer::Transfer`].
pub fn verify_transfer_cert(
    chain: &VerifiedChain,
    der_cert: &[u8],
    now: i64,
) -> Result<Vec<u8>, ChainRefusal> {
    if chain.alg != Alg::Ecc384 {
        return Err(ChainRefusal::PublicKey(Layer::Transfer));
    }
    let id = verify_rt_issued(chain, der_cert, now, Layer::Transfer, |ku| {
        ku.key_agreement() && !ku.digital_signature() && !ku.key_cert_sign()
    })?;
    if id.common_name != TRANSFER_CN {
        return Err(ChainRefusal::Malformed(Layer::Transfer));
    }
    Ok(id.key)
}

fn verify_rt_issued(
    chain: &VerifiedChain,
    der_cert: &[u8],
    now: i64,
    layer: Layer,
    usage: fn(&x509_parser::extensions::KeyUsage) -> bool,
) -> Result<PartitionIdentity, ChainRefusal> {
    let c = parse(der_cert, layer)?;
    let key = spki_raw(&c, chain.alg, layer)?.to_vec();
    if c.issuer().as_raw() != chain.rt_alias_subject.as_slice() {
        return Err(ChainRefusal::IssuerMismatch(layer));
    }
    signed_by(&c, chain.alg, &chain.rt_alias_key, layer)?;
    if aki(&c) != Some(chain.rt_alias_ski.clone()) {
        return Err(ChainRefusal::AuthorityKeyId(layer));
    }
    valid_at(&c, now, layer)?;
    let mut ku_ok = false;
    for e in c.extensions() {
        match e.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) if bc.ca => {
                return Err(ChainRefusal::BasicConstraints(layer));
            }
            ParsedExtension::KeyUsage(ku) => {
                ku_ok = usage(ku);
            }
            ParsedExtension::BasicConstraints(_) => {}
            _ if e.critical => return Err(ChainRefusal::UnknownCriticalExtension(layer)),
            _ => {}
        }
    }
    if !ku_ok {
        return Err(ChainRefusal::KeyUsage(layer));
    }
    let u = ext_value(&c, OID_UEID)
        .and_then(parse_ueid)
        .ok_or(ChainRefusal::Ueid(layer))?;
    if u != chain.ueid {
        return Err(ChainRefusal::UeidMismatch(layer));
    }
    let common_name = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok(PartitionIdentity { key, common_name })
}
