//! Caliptra's runtime mailbox: 4-ASCII-byte command codes, the checksum of
//! caliptra-sw `api/src/checksum.rs`, little-endian structures with a checksum
//! header on every request and a checksum + FIPS-status header on every response,
//! and Caliptra's error codes.
//!
//! A hardware mailbox reports failure through a status register (CMD_FAILURE) and
//! the error through `CPTRA_FW_ERROR_NON_FATAL`, with no response body. Over a socket
//! ihsm frames the same facts:
//!
//! - request frame: `cmd u32 | dlen u32 | payload[dlen]`
//! - response frame: `status u32 | fw_error u32 | dlen u32 | payload[dlen]`, where
//!   status is 1 (DATA_READY, fw_error 0) or 3 (CMD_FAILURE, dlen 0).
//!
//! All integers little-endian; `dlen` is at most [`MAX_PAYLOAD`].

use crate::codec::{Reader, Writer};

/// The mailbox holds at most 256 KiB, as Caliptra 2.x's mailbox SRAM.
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Largest variable-size response data (Caliptra's `MAX_RESP_DATA_SIZE`).
pub const MAX_RESP_DATA: usize = 9216;

/// Command codes: the u32 whose big-endian bytes spell the mnemonic.
pub mod cmd {
    /// "IDCR": the IDevID ECC P-384 CSR.
    pub const GET_IDEV_ECC384_CSR: u32 = 0x4944_4352;
    /// "IDMR": the IDevID ML-DSA-87 CSR.
    pub const GET_IDEV_MLDSA87_CSR: u32 = 0x4944_4D52;
    /// "IDEC": the IDevID ECC P-384 certificate. Caliptra builds it from a TBS and
    /// signature the manufacturer supplies; with no arguments, ihsm returns the
    /// certificate the device holds (self-signed until a manufacturer issues one).
    pub const GET_IDEV_ECC384_CERT: u32 = 0x4944_4543;
    /// "IDMC": the IDevID ML-DSA-87 certificate (as `GET_IDEV_ECC384_CERT`).
    pub const GET_IDEV_MLDSA87_CERT: u32 = 0x4944_4D43;
    /// "IDEI": the IDevID ECC P-384 public key.
    pub const GET_IDEV_ECC384_INFO: u32 = 0x4944_4549;
    /// "IDMI": the IDevID ML-DSA-87 public key.
    pub const GET_IDEV_MLDSA87_INFO: u32 = 0x4944_4D49;
    /// "LDEV": the LDevID ECC P-384 certificate.
    pub const GET_LDEV_ECC384_CERT: u32 = 0x4C44_4556;
    /// "LDMC": the LDevID ML-DSA-87 certificate.
    pub const GET_LDEV_MLDSA87_CERT: u32 = 0x4C44_4D43;
    /// "CERF": the FMC Alias ECC P-384 certificate.
    pub const GET_FMC_ALIAS_ECC384_CERT: u32 = 0x4345_5246;
    /// "CMCF": the FMC Alias ML-DSA-87 certificate.
    pub const GET_FMC_ALIAS_MLDSA87_CERT: u32 = 0x434D_4346;
    /// "CERR": the RT Alias ECC P-384 certificate.
    pub const GET_RT_ALIAS_ECC384_CERT: u32 = 0x4345_5252;
    /// "CMCR": the RT Alias ML-DSA-87 certificate.
    pub const GET_RT_ALIAS_MLDSA87_CERT: u32 = 0x434D_4352;
    /// "MEAS": stash a measurement into PCR31.
    pub const STASH_MEASUREMENT: u32 = 0x4D45_4153;
    /// "PCRE": extend PCR4..=31.
    pub const EXTEND_PCR: u32 = 0x5043_5245;
    /// "PCRR": increment a PCR reset counter.
    pub const INCREMENT_PCR_RESET_COUNTER: u32 = 0x5043_5252;
    /// "PCRQ": quote all PCRs, signed with the FMC Alias ECC P-384 key.
    pub const QUOTE_PCRS_ECC384: u32 = 0x5043_5251;
    /// "PCRM": quote all PCRs, signed with the FMC Alias ML-DSA-87 key.
    pub const QUOTE_PCRS_MLDSA87: u32 = 0x5043_524D;
    /// "PLOG": the PCR log.
    pub const GET_PCR_LOG: u32 = 0x504C_4F47;
    /// "CAPS": capabilities.
    pub const CAPABILITIES: u32 = 0x4341_5053;
    /// "INFO": firmware information.
    pub const FW_INFO: u32 = 0x494E_464F;
    /// "FPVR": FIPS version.
    pub const VERSION: u32 = 0x4650_5652;
    /// Self-test start (0x46504C54).
    pub const SELF_TEST_START: u32 = 0x4650_4C54;
    /// Self-test results (0x46504C67).
    pub const SELF_TEST_GET_RESULTS: u32 = 0x4650_4C67;
}

/// A mailbox failure: the value of `CPTRA_FW_ERROR_NON_FATAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxError(pub u32);

impl MailboxError {
    /// RUNTIME_INTERNAL.
    pub const INTERNAL: Self = Self(0x000E_0001);
    /// RUNTIME_UNIMPLEMENTED_COMMAND.
    pub const UNIMPLEMENTED_COMMAND: Self = Self(0x000E_0002);
    /// RUNTIME_INSUFFICIENT_MEMORY (a request of the wrong size, for some commands).
    pub const INSUFFICIENT_MEMORY: Self = Self(0x000E_0003);
    /// RUNTIME_INVALID_CHECKSUM.
    pub const INVALID_CHECKSUM: Self = Self(0x000E_0005);
    /// RUNTIME_MAILBOX_INVALID_PARAMS.
    pub const INVALID_PARAMS: Self = Self(0x000E_0009);
    /// RUNTIME_SELF_TEST_IN_PROGRESS.
    pub const SELF_TEST_IN_PROGRESS: Self = Self(0x000E_0011);
    /// RUNTIME_SELF_TEST_NOT_STARTED.
    pub const SELF_TEST_NOT_STARTED: Self = Self(0x000E_0012);
    /// RUNTIME_MAILBOX_API_REQUEST_DATA_LEN_TOO_LARGE.
    pub const REQUEST_TOO_LARGE: Self = Self(0x000E_0023);
    /// RUNTIME_INCREMENT_PCR_RESET_MAX_REACHED.
    pub const PCR_RESET_MAX_REACHED: Self = Self(0x000E_0036);
    /// RUNTIME_PCR_RESERVED (PCR0..=3).
    pub const PCR_RESERVED: Self = Self(0x000E_003C);
    /// RUNTIME_PCR_INVALID_INDEX (32..=255).
    pub const PCR_INVALID_INDEX: Self = Self(0x000E_003D);
    /// ihsm: the RoT is in fatal state and has zeroized its secrets (vendor range).
    pub const FATAL: Self = Self(0x000E_F001);

    /// Every code, for uniqueness checks.
    pub const ALL: [Self; 12] = [
        Self::INTERNAL,
        Self::UNIMPLEMENTED_COMMAND,
        Self::INSUFFICIENT_MEMORY,
        Self::INVALID_CHECKSUM,
        Self::INVALID_PARAMS,
        Self::SELF_TEST_IN_PROGRESS,
        Self::SELF_TEST_NOT_STARTED,
        Self::REQUEST_TOO_LARGE,
        Self::PCR_RESET_MAX_REACHED,
        Self::PCR_RESERVED,
        Self::PCR_INVALID_INDEX,
        Self::FATAL,
    ];

    /// A name for people.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::INTERNAL => "RUNTIME_INTERNAL",
            Self::UNIMPLEMENTED_COMMAND => "RUNTIME_UNIMPLEMENTED_COMMAND",
            Self::INSUFFICIENT_MEMORY => "RUNTIME_INSUFFICIENT_MEMORY",
            Self::INVALID_CHECKSUM => "RUNTIME_INVALID_CHECKSUM",
            Self::INVALID_PARAMS => "RUNTIME_MAILBOX_INVALID_PARAMS",
            Self::SELF_TEST_IN_PROGRESS => "RUNTIME_SELF_TEST_IN_PROGRESS",
            Self::SELF_TEST_NOT_STARTED => "RUNTIME_SELF_TEST_NOT_STARTED",
            Self::REQUEST_TOO_LARGE => "RUNTIME_MAILBOX_API_REQUEST_DATA_LEN_TOO_LARGE",
            Self::PCR_RESET_MAX_REACHED => "RUNTIME_INCREMENT_PCR_RESET_MAX_REACHED",
            Self::PCR_RESERVED => "RUNTIME_PCR_RESERVED",
            Self::PCR_INVALID_INDEX => "RUNTIME_PCR_INVALID_INDEX",
            Self::FATAL => "IHSM_RT_FATAL",
            _ => "unknown",
        }
    }
}

impl core::fmt::Display for MailboxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} (0x{:08x})", self.name(), self.0)
    }
}

impl std::error::Error for MailboxError {}

/// `0 - (sum of the command's 4 LE bytes + sum of data bytes)`, wrapping.
#[must_use]
pub fn calc_checksum(cmd: u32, data: &[u8]) -> u32 {
    let mut sum = 0u32;
    for b in cmd.to_le_bytes().iter().chain(data) {
        sum = sum.wrapping_add(u32::from(*b));
    }
    0u32.wrapping_sub(sum)
}

/// True when `checksum` is right for `cmd` and `data`.
#[must_use]
pub fn verify_checksum(checksum: u32, cmd: u32, data: &[u8]) -> bool {
    calc_checksum(cmd, data) == checksum
}

/// The GET_*_CERT command of a layer's certificate in one algorithm.
#[must_use]
pub fn cert_command(layer: crate::certs::Layer, alg: crate::Alg) -> u32 {
    use crate::Alg;
    use crate::certs::Layer;
    match (layer, alg) {
        (Layer::IdevId, Alg::Ecc384) => cmd::GET_IDEV_ECC384_CERT,
        (Layer::IdevId, Alg::MlDsa87) => cmd::GET_IDEV_MLDSA87_CERT,
        (Layer::LdevId, Alg::Ecc384) => cmd::GET_LDEV_ECC384_CERT,
        (Layer::LdevId, Alg::MlDsa87) => cmd::GET_LDEV_MLDSA87_CERT,
        (Layer::FmcAlias, Alg::Ecc384) => cmd::GET_FMC_ALIAS_ECC384_CERT,
        (Layer::FmcAlias, Alg::MlDsa87) => cmd::GET_FMC_ALIAS_MLDSA87_CERT,
        (Layer::RtAlias, Alg::Ecc384) => cmd::GET_RT_ALIAS_ECC384_CERT,
        (Layer::RtAlias, Alg::MlDsa87) => cmd::GET_RT_ALIAS_MLDSA87_CERT,
    }
}

/// A request payload for `cmd`: the checksum header, then `args`.
#[must_use]
pub fn request(cmd: u32, args: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + args.len());
    v.extend_from_slice(&calc_checksum(cmd, args).to_le_bytes());
    v.extend_from_slice(args);
    v
}

/// FIPS status: approved.
pub const FIPS_APPROVED: u32 = 0;

/// A response under construction: header placeholder, then fields.
pub(crate) fn response() -> Writer {
    let mut w = Writer::with_capacity(64);
    w.u32(0).u32(FIPS_APPROVED);
    w
}

/// Fills in the response checksum (command 0, over everything after the checksum).
pub(crate) fn seal_response(mut w: Writer) -> Vec<u8> {
    if w.buf.len() < 8 {
        w.buf.resize(8, 0);
    }
    let sum = calc_checksum(0, w.buf.get(4..).unwrap_or_default());
    if let Some(head) = w.buf.get_mut(..4) {
        head.copy_from_slice(&sum.to_le_bytes());
    }
    w.buf
}

/// Checks a response's checksum and splits off the header: `(fips_status, body)`.
///
/// # Errors
/// [`MailboxError::INVALID_CHECKSUM`] or [`MailboxError::INVALID_PARAMS`] when short.
pub fn open_response(resp: &[u8]) -> Result<(u32, &[u8]), MailboxError> {
    let mut r = Reader::new(resp);
    let chksum = r.u32().map_err(|_| MailboxError::INVALID_PARAMS)?;
    let fips = r.u32().map_err(|_| MailboxError::INVALID_PARAMS)?;
    if !verify_checksum(chksum, 0, resp.get(4..).unwrap_or_default()) {
        return Err(MailboxError::INVALID_CHECKSUM);
    }
    Ok((fips, resp.get(8..).unwrap_or_default()))
}

/// The data of a variable-size response (`hdr, data_size u32, data[data_size]`).
///
/// # Errors
/// As [`open_response`], or [`MailboxError::INVALID_PARAMS`] for a bad size.
pub fn var_data(resp: &[u8]) -> Result<&[u8], MailboxError> {
    let (_, body) = open_response(resp)?;
    let mut r = Reader::new(body);
    let n = r.u32().map_err(|_| MailboxError::INVALID_PARAMS)?;
    let n = usize::try_from(n).map_err(|_| MailboxError::INVALID_PARAMS)?;
    if n > MAX_RESP_DATA {
        return Err(MailboxError::INVALID_PARAMS);
    }
    r.take(n).map_err(|_| MailboxError::INVALID_PARAMS)
}

/// Why a frame could not be decoded. The connection that sent it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the header or the declared length.
    Truncated,
    /// A declared length above [`MAX_PAYLOAD`].
    TooLarge(u32),
    /// Bytes after the declared payload.
    Trailing,
    /// A response status other than 1 or 3.
    BadStatus(u32),
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("mailbox frame truncated"),
            Self::TooLarge(n) => write!(
                f,
                "mailbox frame declares {n} bytes, above the {MAX_PAYLOAD}-byte mailbox"
            ),
            Self::Trailing => f.write_str("mailbox frame has bytes after its payload"),
            Self::BadStatus(s) => write!(f, "mailbox response has unknown status {s}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes a request frame.
#[must_use]
pub fn encode_request_frame(cmd: u32, payload: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(8 + payload.len());
    w.u32(cmd)
        .u32(u32::try_from(payload.len()).unwrap_or(u32::MAX))
        .bytes(payload);
    w.buf
}

/// Decodes a whole request frame into `(cmd, payload)`.
///
/// # Errors
/// [`FrameError`].
pub fn decode_request_frame(frame: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    let mut r = Reader::new(frame);
    let cmd = r.u32().map_err(|_| FrameError::Truncated)?;
    let n = r.u32().map_err(|_| FrameError::Truncated)?;
    let len = usize::try_from(n)
        .ok()
        .filter(|&l| l <= MAX_PAYLOAD)
        .ok_or(FrameError::TooLarge(n))?;
    let payload = r.take(len).map_err(|_| FrameError::Truncated)?;
    if r.remaining() != 0 {
        return Err(FrameError::Trailing);
    }
    Ok((cmd, payload))
}

/// Encodes a response frame.
#[must_use]
pub fn encode_response_frame(result: &Result<Vec<u8>, MailboxError>) -> Vec<u8> {
    let mut w = Writer::default();
    match result {
        Ok(data) => {
            w.u32(1)
                .u32(0)
                .u32(u32::try_from(data.len()).unwrap_or(u32::MAX))
                .bytes(data);
        }
        Err(e) => {
            w.u32(3).u32(e.0).u32(0);
        }
    }
    w.buf
}

/// Decodes a whole response frame.
///
/// # Errors
/// [`FrameError`].
pub fn decode_response_frame(frame: &[u8]) -> Result<Result<Vec<u8>, MailboxError>, FrameError> {
    let mut r = Reader::new(frame);
    let status = r.u32().map_err(|_| FrameError::Truncated)?;
    let err = r.u32().map_err(|_| FrameError::Truncated)?;
    let n = r.u32().map_err(|_| FrameError::Truncated)?;
    let len = usize::try_from(n)
        .ok()
        .filter(|&l| l <= MAX_PAYLOAD)
        .ok_or(FrameError::TooLarge(n))?;
    let payload = r.take(len).map_err(|_| FrameError::Truncated)?;
    if r.remaining() != 0 {
        return Err(FrameError::Trailing);
    }
    match status {
        1 => Ok(Ok(payload.to_vec())),
        3 => Ok(Err(MailboxError(err))),
        s => Err(FrameError::BadStatus(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // caliptra-sw api/src/checksum.rs tests, verbatim values.
    #[test]
    fn caliptra_checksum_vectors() {
        assert_eq!(calc_checksum(0xe8dc3994, &[0x83, 0xe7, 0x25]), 0xfffffbe0);
        assert!(verify_checksum(0xfffffbe0, 0xe8dc3994, &[0x83, 0xe7, 0x25]));
        assert!(!verify_checksum(
            0xfffffbdf,
            0xe8dc3994,
            &[0x83, 0xe7, 0x25]
        ));
        assert!(!verify_checksum(
            0xfffffbe1,
            0xe8dc3994,
            &[0x83, 0xe7, 0x25]
        ));
        assert!(!verify_checksum(
            0xffffffff,
            0xe8dc3994,
            &[0x83, 0xe7, 0x25]
        ));
        let cmd = 0x00000001u32;
        let data = 0u32.to_le_bytes();
        assert!(verify_checksum(calc_checksum(cmd, &data), cmd, &data));
    }

    #[test]
    fn caliptra_checksum_overflow_vector() {
        let data = vec![0xff; 16_843_007];
        assert_eq!(calc_checksum(0xe8dc3994, &data), 0xffffff6e);
        assert!(verify_checksum(0xffffff6e, 0xe8dc3994, &data));
    }

    // caliptra-sw api/src/mailbox.rs `test_populate_checksum_resp_header` and
    // `test_populate_checksum_capabilities`.
    #[test]
    fn caliptra_response_checksum_vectors() {
        let mut w = Writer::default();
        w.u32(0).u32(0x4242);
        assert_eq!(seal_response(w)[..4], 0u32.wrapping_sub(0x84).to_le_bytes());
        let mut w = response();
        w.bytes(&[
            0x42, 0x23, 0x43, 0x81, 0x45, 0x6c, 0x55, 0x75, 0x3d, 0x81, 0xd4, 0xcc, 0x3c, 0x28,
            0x29, 0xc9,
        ]);
        assert_eq!(seal_response(w)[..4], 0xfffff9a8u32.to_le_bytes());
    }

    // Header-only request checksums, from the rule (see docs/mailbox.md).
    #[test]
    fn header_only_request_checksums() {
        assert_eq!(
            request(cmd::GET_LDEV_ECC384_CERT, &[]),
            0xFFFFFED5u32.to_le_bytes()
        );
        assert_eq!(request(cmd::CAPABILITIES, &[]), 0xFFFFFED9u32.to_le_bytes());
        assert_eq!(request(cmd::VERSION, &[]), 0xFFFFFEC2u32.to_le_bytes());
        assert_eq!(request(cmd::GET_PCR_LOG, &[]), 0xFFFFFECEu32.to_le_bytes());
    }

    #[test]
    fn mnemonics_spell_their_names() {
        assert_eq!(&cmd::GET_LDEV_ECC384_CERT.to_be_bytes(), b"LDEV");
        assert_eq!(&cmd::QUOTE_PCRS_ECC384.to_be_bytes(), b"PCRQ");
        assert_eq!(&cmd::QUOTE_PCRS_MLDSA87.to_be_bytes(), b"PCRM");
        assert_eq!(&cmd::STASH_MEASUREMENT.to_be_bytes(), b"MEAS");
        assert_eq!(&cmd::GET_IDEV_ECC384_CSR.to_be_bytes(), b"IDCR");
    }

    #[test]
    fn error_codes_are_unique() {
        let mut v: Vec<u32> = MailboxError::ALL.iter().map(|e| e.0).collect();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), MailboxError::ALL.len());
        assert!(MailboxError::ALL.iter().all(|e| e.name() != "unknown"));
    }

    #[test]
    fn frames_roundtrip_and_reject_garbage() {
        let f = encode_request_frame(7, b"abc");
        assert_eq!(decode_request_frame(&f), Ok((7, &b"abc"[..])));
        for n in 0..f.len() {
            assert_eq!(decode_request_frame(&f[..n]), Err(FrameError::Truncated));
        }
        let mut long = f.clone();
        long.push(0);
        assert_eq!(decode_request_frame(&long), Err(FrameError::Trailing));
        let huge = encode_request_frame(7, &[]);
        let mut huge = huge;
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_request_frame(&huge),
            Err(FrameError::TooLarge(u32::MAX))
        );

        let ok = encode_response_frame(&Ok(vec![1, 2]));
        assert_eq!(decode_response_frame(&ok), Ok(Ok(vec![1, 2])));
        let err = encode_response_frame(&Err(MailboxError::INVALID_CHECKSUM));
        assert_eq!(
            decode_response_frame(&err),
            Ok(Err(MailboxError::INVALID_CHECKSUM))
        );
        let mut bad = ok;
        bad[0] = 2;
        assert_eq!(decode_response_frame(&bad), Err(FrameError::BadStatus(2)));
    }
}
