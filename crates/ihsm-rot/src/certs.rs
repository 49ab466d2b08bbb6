//! X.509 certificates and CSRs of the DICE chain, in Caliptra 2.x's certificate
//! profile (the 2.1 variant): subject `CN=ihsm <Alg> <Layer>, serialNumber=<hex of
//! SHA-256(raw public key)>`, serial and key identifiers from SHA-256 of the raw
//! public key, critical basicConstraints with path lengths 7/6/5/4 and keyUsage, the
//! TCG DICE key purposes, UEID on every certificate, MultiTcbInfo on the FMC Alias
//! and TcbInfo on the RT Alias certificate. See `docs/certificates.md`.

use ihsm_crypto::ec::{EccP384PrivateKey, EccP384PublicKey};
use ihsm_crypto::hash::sha256;
use ihsm_crypto::mldsa::{MlDsa87PrivateKey, MlDsa87PublicKey};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose, PublicKeyData,
    SerialNumber, SignatureAlgorithm, SigningKey,
};
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Alg, Result, RotError};
use crate::tcg;

/// A layer of the DICE chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Layer {
    /// Initial device identity (from the UDS).
    IdevId,
    /// Local device identity (with the field entropy).
    LdevId,
    /// First mutable code: the firmware image.
    FmcAlias,
    /// Runtime: the image with its configuration.
    RtAlias,
}

impl Layer {
    /// All layers, root first.
    pub const ALL: [Layer; 4] = [Self::IdevId, Self::LdevId, Self::FmcAlias, Self::RtAlias];

    /// The layer's name as certificates spell it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::IdevId => "IDevID",
            Self::LdevId => "LDevID",
            Self::FmcAlias => "FMC Alias",
            Self::RtAlias => "Rt Alias",
        }
    }

    /// File stem used by `ihsm rot certs`.
    #[must_use]
    pub fn file_stem(self) -> &'static str {
        match self {
            Self::IdevId => "idevid",
            Self::LdevId => "ldevid",
            Self::FmcAlias => "fmc-alias",
            Self::RtAlias => "rt-alias",
        }
    }

    fn path_len(self) -> u8 {
        match self {
            Self::IdevId => 7,
            Self::LdevId => 6,
            Self::FmcAlias => 5,
            Self::RtAlias => 4,
        }
    }

    fn purposes(self) -> &'static [&'static [u64]] {
        const INIT: &[u64] = &[2, 23, 133, 5, 4, 100, 6];
        const LOC: &[u64] = &[2, 23, 133, 5, 4, 100, 7];
        const ATTEST_LOC: &[u64] = &[2, 23, 133, 5, 4, 100, 9];
        const ECA: &[u64] = &[2, 23, 133, 5, 4, 100, 12];
        match self {
            Self::IdevId => &[INIT, ECA],
            Self::LdevId => &[LOC, ECA],
            Self::FmcAlias => &[ECA, ATTEST_LOC],
            Self::RtAlias => &[ECA],
        }
    }
}

impl Alg {
    fn cn(self) -> &'static str {
        match self {
            Self::Ecc384 => "Ecc384",
            Self::MlDsa87 => "MlDsa87",
        }
    }

    /// File suffix used by `ihsm rot certs`.
    #[must_use]
    pub fn file_suffix(self) -> &'static str {
        match self {
            Self::Ecc384 => "ecc384",
            Self::MlDsa87 => "mldsa87",
        }
    }
}

/// A public key of the chain, as rcgen sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DicePublic<'a> {
    Ecc(&'a EccP384PublicKey),
    MlDsa(&'a MlDsa87PublicKey),
}

impl DicePublic<'_> {
    pub(crate) fn raw(&self) -> &[u8] {
        match self {
            Self::Ecc(k) => k.as_bytes().as_slice(),
            Self::MlDsa(k) => k.as_bytes().as_slice(),
        }
    }

    fn alg(&self) -> Alg {
        match self {
            Self::Ecc(_) => Alg::Ecc384,
            Self::MlDsa(_) => Alg::MlDsa87,
        }
    }
}

impl PublicKeyData for DicePublic<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.raw()
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            Self::Ecc(_) => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::MlDsa(_) => &rcgen::PKCS_ML_DSA_87,
        }
    }
}

/// A signing key of the chain, as rcgen sees it. Signing stays inside our types.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DiceKey<'a> {
    Ecc(&'a EccP384PrivateKey),
    MlDsa(&'a MlDsa87PrivateKey),
}

impl<'a> DiceKey<'a> {
    fn public(&self) -> DicePublic<'a> {
        match *self {
            Self::Ecc(k) => DicePublic::Ecc(k.public_key()),
            Self::MlDsa(k) => DicePublic::MlDsa(k.public_key()),
        }
    }
}

impl PublicKeyData for DiceKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        match self {
            Self::Ecc(k) => k.public_key().as_bytes().as_slice(),
            Self::MlDsa(k) => k.public_key().as_bytes().as_slice(),
        }
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.public().algorithm()
    }
}

impl SigningKey for DiceKey<'_> {
    fn sign(&self, msg: &[u8]) -> core::result::Result<Vec<u8>, rcgen::Error> {
        let sig = match self {
            Self::Ecc(k) => k.sign(msg).and_then(|s| s.to_der()),
            Self::MlDsa(k) => k.sign(msg).map(|s| s.as_bytes().to_vec()),
        };
        sig.map_err(|_| rcgen::Error::RingUnspecified)
    }
}

/// First 20 bytes of SHA-256 of the raw public key (subject/authority key id).
#[must_use]
pub fn key_id(raw_public_key: &[u8]) -> [u8; 20] {
    let mut id = [0u8; 20];
    id.copy_from_slice(&sha256(raw_public_key)[..20]);
    id
}

/// The certificate serial: the key id, made positive with a non-zero first octet.
#[must_use]
pub fn cert_serial(raw_public_key: &[u8]) -> [u8; 20] {
    let mut s = key_id(raw_public_key);
    s[0] &= !0x80;
    s[0] |= 0x04;
    s
}

/// Upper-case hex of SHA-256 of the raw public key (the subject serialNumber).
#[must_use]
pub fn subject_serial(raw_public_key: &[u8]) -> String {
    hex::encode_upper(sha256(raw_public_key))
}

fn cert_err(e: impl core::fmt::Display) -> RotError {
    RotError::Certificate(e.to_string())
}

/// The subject name of a layer's key.
fn name(layer: Layer, key: DicePublic<'_>) -> Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("ihsm {} {}", key.alg().cn(), layer.name()),
    );
    let serial =
        rcgen::string::PrintableString::try_from(subject_serial(key.raw())).map_err(cert_err)?;
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::PrintableString(serial),
    );
    Ok(dn)
}

/// Validity of every certificate unless the manifest sets one: Caliptra's defaults,
/// 2023-01-01T00:00:00Z to 9999-12-31T23:59:59Z ("no well-defined expiration").
const DEFAULT_NOT_BEFORE: i64 = 1_672_531_200;
const DEFAULT_NOT_AFTER: i64 = 253_402_300_799;

/// Extensions beyond the standard ones for one certificate.
#[derive(Debug, Clone)]
pub(crate) struct DiceExtensions {
    pub(crate) ueid: [u8; 17],
    /// (OID arcs, DER value) of a TcbInfo or MultiTcbInfo extension.
    pub(crate) tcb: Option<(&'static [u64], Vec<u8>)>,
    /// Unix seconds (not before, not after).
    pub(crate) validity: Option<(u64, u64)>,
}

/// The certificate parameters of a layer's key.
fn params(
    layer: Layer,
    key: DicePublic<'_>,
    ext: &DiceExtensions,
    for_csr: bool,
) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(layer, key)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(layer.path_len()));
    p.key_usages = match layer {
        Layer::RtAlias => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ],
        _ => vec![KeyUsagePurpose::KeyCertSign],
    };
    p.extended_key_usages = layer
        .purposes()
        .iter()
        .map(|oid| ExtendedKeyUsagePurpose::Other(oid.to_vec()))
        .collect();
    p.key_identifier_method = KeyIdMethod::PreSpecified(key_id(key.raw()).to_vec());
    let mut ueid =
        CustomExtension::from_oid_content(&[2, 23, 133, 5, 4, 4], tcg::ueid_der(&ext.ueid)?);
    ueid.set_criticality(false);
    p.custom_extensions.push(ueid);
    if let Some((oid, der)) = &ext.tcb {
        let mut e = CustomExtension::from_oid_content(oid, der.clone());
        e.set_criticality(false);
        p.custom_extensions.push(e);
    }
    if !for_csr {
        p.serial_number = Some(SerialNumber::from_slice(&cert_serial(key.raw())));
        let (nb, na) = match ext.validity {
            Some((nb, na)) => (
                i64::try_from(nb).unwrap_or(DEFAULT_NOT_BEFORE),
                i64::try_from(na).unwrap_or(DEFAULT_NOT_AFTER),
            ),
            None => (DEFAULT_NOT_BEFORE, DEFAULT_NOT_AFTER),
        };
        p.not_before = OffsetDateTime::from_unix_timestamp(nb).map_err(cert_err)?;
        p.not_after = OffsetDateTime::from_unix_timestamp(na).map_err(cert_err)?;
    }
    Ok(p)
}

/// A self-signed certificate for a layer (the development IDevID).
pub(crate) fn self_signed(layer: Layer, key: DiceKey<'_>, ext: &DiceExtensions) -> Result<Vec<u8>> {
    let p = params(layer, key.public(), ext, false)?;
    Ok(p.self_signed(&key).map_err(cert_err)?.der().to_vec())
}

/// A certificate for `subject` at `layer`, issued by `issuer_key` of `issuer_layer`.
pub(crate) fn issue(
    layer: Layer,
    subject: DicePublic<'_>,
    ext: &DiceExtensions,
    issuer_layer: Layer,
    issuer_key: DiceKey<'_>,
) -> Result<Vec<u8>> {
    let mut p = params(layer, subject, ext, false)?;
    p.use_authority_key_identifier_extension = true;
    let ip = params(issuer_layer, issuer_key.public(), ext, false)?;
    let issuer = Issuer::from_params(&ip, issuer_key);
    Ok(p.signed_by(&subject, &issuer)
        .map_err(cert_err)?
        .der()
        .to_vec())
}

/// A leaf certificate for a partition identity key (ECC P-384 or ML-DSA-87),
/// issued by the RT Alias key of the same algorithm: `CN=ihsm partition <name>`,
/// the partition id as an organizationalUnitName, digitalSignature only, not a CA,
/// with the device UEID.
pub(crate) fn issue_partition(
    name: &str,
    pid: u32,
    public: DicePublic<'_>,
    ueid: &[u8; 17],
    issuer_key: DiceKey<'_>,
    validity: Option<(u64, u64)>,
) -> Result<Vec<u8>> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("ihsm partition {name}"));
    dn.push(DnType::OrganizationalUnitName, format!("partition {pid}"));
    leaf(
        dn,
        KeyUsagePurpose::DigitalSignature,
        public,
        ueid,
        issuer_key,
        validity,
    )
}

/// A leaf certificate for the device's transfer key (ECC P-384, for HPKE's
/// DHKEM between fleet hosts), issued by the RT Alias ECC key:
/// `CN=ihsm device transfer`, keyAgreement only, not a CA, with the device UEID.
pub(crate) fn issue_transfer(
    public: DicePublic<'_>,
    ueid: &[u8; 17],
    issuer_key: DiceKey<'_>,
    validity: Option<(u64, u64)>,
) -> Result<Vec<u8>> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ihsm device transfer");
    leaf(
        dn,
        KeyUsagePurpose::KeyAgreement,
        public,
        ueid,
        issuer_key,
        validity,
    )
}

/// A leaf the RT Alias key issues: `dn` and the key's serial as the subject, one
/// key usage, not a CA, no extended key usage, the device UEID, the RT Alias's
/// authority key identifier.
fn leaf(
    mut dn: DistinguishedName,
    usage: KeyUsagePurpose,
    public: DicePublic<'_>,
    ueid: &[u8; 17],
    issuer_key: DiceKey<'_>,
    validity: Option<(u64, u64)>,
) -> Result<Vec<u8>> {
    let ext = DiceExtensions {
        ueid: *ueid,
        tcb: None,
        validity,
    };
    let mut p = params(Layer::RtAlias, public, &ext, false)?;
    let serial =
        rcgen::string::PrintableString::try_from(subject_serial(public.raw())).map_err(cert_err)?;
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::PrintableString(serial),
    );
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![usage];
    p.extended_key_usages = Vec::new();
    p.use_authority_key_identifier_extension = true;
    let ip = params(Layer::RtAlias, issuer_key.public(), &ext, false)?;
    let issuer = Issuer::from_params(&ip, issuer_key);
    Ok(p.signed_by(&public, &issuer)
        .map_err(cert_err)?
        .der()
        .to_vec())
}

/// A PKCS#10 request for a layer's key, signed by that key.
pub(crate) fn csr(layer: Layer, key: DiceKey<'_>, ext: &DiceExtensions) -> Result<Vec<u8>> {
    let p = params(layer, key.public(), ext, true)?;
    Ok(p.serialize_request(&key).map_err(cert_err)?.der().to_vec())
}

/// PEM of a DER certificate.
#[must_use]
pub fn cert_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// PEM of a DER CSR.
#[must_use]
pub fn csr_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // caliptra-sw test/src/derive.rs `test_key_id` / `test_cert_serial_number` /
    // `test_issuer_serial_number`.
    const RAW: [u8; 97] = [
        0x04, 0x84, 0x2c, 0x00, 0xaf, 0x05, 0xac, 0xcc, 0xeb, 0x14, 0x51, 0x4e, 0x2d, 0x37, 0xb0,
        0xc3, 0xaa, 0xa2, 0x18, 0xf1, 0x50, 0x57, 0xf1, 0xdc, 0xb8, 0x24, 0xa2, 0x14, 0x98, 0x0b,
        0x74, 0x46, 0x88, 0xa0, 0x88, 0x8a, 0x02, 0x97, 0xfa, 0x7d, 0xc5, 0xe1, 0xea, 0xd8, 0xca,
        0x12, 0x91, 0xdb, 0x22, 0x9c, 0x28, 0xeb, 0x86, 0x78, 0xbc, 0xe8, 0x00, 0x82, 0x2c, 0x07,
        0x22, 0x8f, 0x41, 0x6a, 0xe4, 0x9d, 0x21, 0x8e, 0x5d, 0xa2, 0xf2, 0xd1, 0xa8, 0xa2, 0x7d,
        0xc1, 0x9a, 0xdf, 0x66, 0x8a, 0x74, 0x62, 0x89, 0x99, 0xd2, 0x22, 0xb4, 0x01, 0x59, 0xd8,
        0x07, 0x6f, 0xaf, 0xbb, 0x8c, 0x5e, 0xdb,
    ];

    #[test]
    fn caliptra_key_id_serial_and_subject_serial() {
        assert_eq!(
            hex::encode(key_id(&RAW)),
            "21eeef9a4c61d4b9e3d94bea46f9a12ac6887ce2"
        );
        assert_eq!(
            hex::encode(cert_serial(&RAW)),
            "25eeef9a4c61d4b9e3d94bea46f9a12ac6887ce2"
        );
        assert_eq!(
            subject_serial(&RAW),
            "21EEEF9A4C61D4B9E3D94BEA46F9A12AC6887CE2188559F40FF95777E8014889"
        );
    }
}
