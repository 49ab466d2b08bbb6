//! The TCG DICE certificate extensions (TCG DICE Attestation Architecture v1.1):
//! UEID (2.23.133.5.4.4), DiceTcbInfo (2.23.133.5.4.1) and DiceTcbInfoSeq, called
//! MultiTcbInfo (2.23.133.5.4.5), encoded with the `der` crate.

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Encode, Sequence};

use crate::error::{Result, RotError};

/// tcg-dice-Ueid.
pub const OID_UEID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.4");
/// tcg-dice-TcbInfo.
pub const OID_TCB_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.1");
/// tcg-dice-MultiTcbInfo.
pub const OID_MULTI_TCB_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.5");
/// tcg-dice-kp-identityInit.
pub const OID_KP_IDENTITY_INIT: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.23.133.5.4.100.6");
/// tcg-dice-kp-identityLoc.
pub const OID_KP_IDENTITY_LOC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.23.133.5.4.100.7");
/// tcg-dice-kp-attestLoc.
pub const OID_KP_ATTEST_LOC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.100.9");
/// tcg-dice-kp-eca.
pub const OID_KP_ECA: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.100.12");
/// id-sha384.
pub const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");

/// `TcgUeid ::= SEQUENCE { ueid OCTET STRING }`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct TcgUeid {
    /// The UEID bytes.
    pub ueid: OctetString,
}

/// `FWID ::= SEQUENCE { hashAlg OBJECT IDENTIFIER, digest OCTET STRING }`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct Fwid {
    /// The hash algorithm (SHA-384 here).
    pub hash_alg: ObjectIdentifier,
    /// The digest.
    pub digest: OctetString,
}

/// `DiceTcbInfo`, with the fields ihsm fills (all are OPTIONAL in the TCG schema).
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct DiceTcbInfo {
    /// `svn [3] IMPLICIT INTEGER`.
    #[asn1(context_specific = "3", tag_mode = "IMPLICIT", optional = "true")]
    pub svn: Option<u32>,
    /// `fwids [6] IMPLICIT SEQUENCE OF FWID`.
    #[asn1(
        context_specific = "6",
        tag_mode = "IMPLICIT",
        optional = "true",
        constructed = "true"
    )]
    pub fwids: Option<Vec<Fwid>>,
    /// `type [9] IMPLICIT OCTET STRING`.
    #[asn1(context_specific = "9", tag_mode = "IMPLICIT", optional = "true")]
    pub tcb_type: Option<OctetString>,
}

fn der_err(e: der::Error) -> RotError {
    RotError::Certificate(format!("DER encoding: {e}"))
}

impl DiceTcbInfo {
    /// A TcbInfo of `tcb_type` with SHA-384 FWIDs and an optional SVN.
    ///
    /// # Errors
    /// [`RotError::Certificate`] if DER encoding fails.
    pub fn new(tcb_type: &str, svn: Option<u32>, digests: &[&[u8; 48]]) -> Result<Self> {
        let fwids = digests
            .iter()
            .map(|d| {
                Ok(Fwid {
                    hash_alg: OID_SHA384,
                    digest: OctetString::new(d.to_vec()).map_err(der_err)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            svn,
            fwids: Some(fwids),
            tcb_type: Some(OctetString::new(tcb_type.as_bytes().to_vec()).map_err(der_err)?),
        })
    }
}

/// DER of the UEID extension value.
///
/// # Errors
/// [`RotError::Certificate`] if DER encoding fails.
pub fn ueid_der(ueid: &[u8; 17]) -> Result<Vec<u8>> {
    TcgUeid {
        ueid: OctetString::new(ueid.to_vec()).map_err(der_err)?,
    }
    .to_der()
    .map_err(der_err)
}

/// DER of a TcbInfo extension value.
///
/// # Errors
/// [`RotError::Certificate`] if DER encoding fails.
pub fn tcb_info_der(info: &DiceTcbInfo) -> Result<Vec<u8>> {
    info.to_der().map_err(der_err)
}

/// DER of a MultiTcbInfo extension value (`SEQUENCE OF DiceTcbInfo`).
///
/// # Errors
/// [`RotError::Certificate`] if DER encoding fails.
pub fn multi_tcb_info_der(infos: &[DiceTcbInfo]) -> Result<Vec<u8>> {
    infos.to_vec().to_der().map_err(der_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;

    #[test]
    fn ueid_layout_matches_caliptra() {
        let der = ueid_der(&[0xab; 17]).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x13, 0x04, 0x11]);
        assert_eq!(&der[4..], &[0xab; 17]);
    }

    #[test]
    fn fwid_and_type_tags_match_the_tcg_schema() {
        let d = [0x11u8; 48];
        let info = DiceTcbInfo::new("IHSM_RT_FIRMWARE_INFO", Some(9), &[&d]).unwrap();
        let der = tcb_info_der(&info).unwrap();
        // svn [3] IMPLICIT INTEGER 9
        assert_eq!(&der[2..5], &[0x83, 0x01, 0x09]);
        // fwids [6] constructed, one SHA-384 FWID: A6 3F 30 3D 06 09 <sha384> 04 30 <48>
        assert_eq!(
            &der[5..22],
            &[
                0xa6, 0x3f, 0x30, 0x3d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x04, 0x30
            ]
        );
        assert_eq!(&der[22..70], &d);
        assert_eq!(der[70], 0x89);
        assert_eq!(DiceTcbInfo::from_der(&der).unwrap(), info);
    }

    #[test]
    fn multi_tcb_info_is_a_sequence_of() {
        let d = [0u8; 48];
        let a = DiceTcbInfo::new("A", None, &[&d]).unwrap();
        let b = DiceTcbInfo::new("B", Some(1), &[&d, &d]).unwrap();
        let der = multi_tcb_info_der(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(Vec::<DiceTcbInfo>::from_der(&der).unwrap(), vec![a, b]);
    }
}
