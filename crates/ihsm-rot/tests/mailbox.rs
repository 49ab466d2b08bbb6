//! The mailbox and quotes through Caliptra's command set: every command, every
//! malformed request with Caliptra's error, and garbage that must never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Device;
use ihsm_rot::Alg;
use ihsm_rot::certs::Layer;
use ihsm_rot::mailbox::{self, FrameError, MailboxError, cmd, request, var_data};
use ihsm_rot::quote::{QUOTE_ECC384_LEN, QUOTE_MLDSA87_LEN, Quote};
use ihsm_rot::runtime::Runtime;
use proptest::prelude::*;
use x509_parser::prelude::*;

fn call(rt: &mut Runtime, command: u32, args: &[u8]) -> Result<Vec<u8>, MailboxError> {
    rt.mailbox(command, &request(command, args))
}

fn fmc_alias_keys(
    rt: &Runtime,
) -> (
    ihsm_crypto::ec::EccP384PublicKey,
    ihsm_crypto::mldsa::MlDsa87PublicKey,
) {
    let raw = |alg| {
        let (_, c) = X509Certificate::from_der(rt.cert(Layer::FmcAlias, alg)).unwrap();
        c.public_key().subject_public_key.data.to_vec()
    };
    (
        ihsm_crypto::ec::EccP384PublicKey::from_sec1(&raw(Alg::Ecc384)).unwrap(),
        ihsm_crypto::mldsa::MlDsa87PublicKey::from_bytes(&raw(Alg::MlDsa87)).unwrap(),
    )
}

#[test]
fn certificate_commands_return_the_chain() {
    let mut rt = Device::new().boot();
    for (c, layer, alg) in [
        (cmd::GET_IDEV_ECC384_CERT, Layer::IdevId, Alg::Ecc384),
        (cmd::GET_IDEV_MLDSA87_CERT, Layer::IdevId, Alg::MlDsa87),
        (cmd::GET_LDEV_ECC384_CERT, Layer::LdevId, Alg::Ecc384),
        (cmd::GET_LDEV_MLDSA87_CERT, Layer::LdevId, Alg::MlDsa87),
        (cmd::GET_FMC_ALIAS_ECC384_CERT, Layer::FmcAlias, Alg::Ecc384),
        (
            cmd::GET_FMC_ALIAS_MLDSA87_CERT,
            Layer::FmcAlias,
            Alg::MlDsa87,
        ),
        (cmd::GET_RT_ALIAS_ECC384_CERT, Layer::RtAlias, Alg::Ecc384),
        (cmd::GET_RT_ALIAS_MLDSA87_CERT, Layer::RtAlias, Alg::MlDsa87),
    ] {
        let resp = call(&mut rt, c, &[]).unwrap();
        assert_eq!(var_data(&resp).unwrap(), rt.cert(layer, alg));
        assert_eq!(&resp[4..8], &[0; 4], "FIPS status approved");
    }
    // Caliptra's manufacturing form (TBS and signature) is refused, not misread.
    assert_eq!(
        call(&mut rt, cmd::GET_IDEV_ECC384_CERT, &[0; 100]).unwrap_err(),
        MailboxError::INVALID_PARAMS
    );
    let csr = call(&mut rt, cmd::GET_IDEV_ECC384_CSR, &[]).unwrap();
    assert_eq!(
        var_data(&csr).unwrap(),
        rt.chains().ecc.idevid_csr.as_slice()
    );
    let csr = call(&mut rt, cmd::GET_IDEV_MLDSA87_CSR, &[]).unwrap();
    assert_eq!(
        var_data(&csr).unwrap(),
        rt.chains().mldsa.idevid_csr.as_slice()
    );
    let info = call(&mut rt, cmd::GET_IDEV_ECC384_INFO, &[]).unwrap();
    assert_eq!(info.len(), 8 + 96);
    let info = call(&mut rt, cmd::GET_IDEV_MLDSA87_INFO, &[]).unwrap();
    assert_eq!(info.len(), 8 + 2592);
}

#[test]
fn quotes_verify_with_the_fmc_alias_keys_and_bind_the_nonce() {
    let mut rt = Device::new().boot();
    let (ecc, mldsa) = fmc_alias_keys(&rt);
    let nonce = [0x5a; 32];
    let resp = rt.quote_pcrs(Alg::Ecc384, &nonce).unwrap();
    assert_eq!(resp.len(), QUOTE_ECC384_LEN);
    let q = Quote::parse(&resp, Alg::Ecc384).unwrap();
    assert_eq!(q.nonce, nonce);
    assert_eq!(q.pcrs.as_slice(), rt.pcrs().all().as_slice());
    q.verify_ecc(&ecc).unwrap();
    assert!(q.verify_mldsa(&mldsa).is_err());

    let resp = rt.quote_pcrs(Alg::MlDsa87, &nonce).unwrap();
    assert_eq!(resp.len(), QUOTE_MLDSA87_LEN);
    let q = Quote::parse(&resp, Alg::MlDsa87).unwrap();
    q.verify_mldsa(&mldsa).unwrap();

    // Independent check of the ML-DSA quote: RustCrypto over the response bytes.
    {
        use ml_dsa::signature::Verifier;
        let vk = ml_dsa::VerifyingKey::<ml_dsa::MlDsa87>::decode(
            mldsa.as_bytes().as_slice().try_into().unwrap(),
        );
        let sig = ml_dsa::Signature::<ml_dsa::MlDsa87>::decode(
            resp[1768..1768 + 4627].try_into().unwrap(),
        )
        .unwrap();
        vk.verify(&resp[1704..1768], &sig).unwrap();
    }
    // And of the ECC quote: RustCrypto p384 with the digest as a prehash.
    {
        use p384::ecdsa::signature::hazmat::PrehashVerifier;
        let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(ecc.as_bytes()).unwrap();
        let ecc_resp = rt.quote_pcrs(Alg::Ecc384, &nonce).unwrap();
        let sig = p384::ecdsa::Signature::from_slice(&ecc_resp[1752..1848]).unwrap();
        vk.verify_prehash(&ecc_resp[1704..1752], &sig).unwrap();
    }

    // Tampering with a PCR in the response breaks the digest check.
    let mut bad = rt.quote_pcrs(Alg::Ecc384, &nonce).unwrap();
    bad[8] ^= 1;
    let chk = mailbox::calc_checksum(0, &bad[4..]);
    bad[..4].copy_from_slice(&chk.to_le_bytes());
    assert!(Quote::parse(&bad, Alg::Ecc384).is_err());
}

#[test]
fn extend_pcr_rules_and_quote_reflects_them() {
    let mut rt = Device::new().boot();
    let mut args = 7u32.to_le_bytes().to_vec();
    args.extend_from_slice(&[9u8; 48]);
    let before = *rt.pcrs().read(7).unwrap();
    call(&mut rt, cmd::EXTEND_PCR, &args).unwrap();
    let mut expect = before.to_vec();
    expect.extend_from_slice(&[9u8; 48]);
    assert_eq!(
        rt.pcrs().read(7).unwrap(),
        &ihsm_crypto::hash::sha384(&expect)
    );
    let q = Quote::parse(&rt.quote_pcrs(Alg::Ecc384, &[1; 32]).unwrap(), Alg::Ecc384).unwrap();
    assert_eq!(q.pcrs[7], *rt.pcrs().read(7).unwrap());

    for (idx, err) in [
        (0, MailboxError::PCR_RESERVED),
        (3, MailboxError::PCR_RESERVED),
        (32, MailboxError::PCR_INVALID_INDEX),
        (255, MailboxError::PCR_INVALID_INDEX),
        (256, MailboxError::INVALID_PARAMS),
    ] {
        let mut a = u32::to_le_bytes(idx).to_vec();
        a.extend_from_slice(&[0; 48]);
        assert_eq!(call(&mut rt, cmd::EXTEND_PCR, &a), Err(err), "pcr {idx}");
    }
    assert_eq!(
        call(&mut rt, cmd::EXTEND_PCR, &args[..51]),
        Err(MailboxError::INSUFFICIENT_MEMORY)
    );
    call(&mut rt, cmd::EXTEND_PCR, &{
        let mut a = 31u32.to_le_bytes().to_vec();
        a.extend_from_slice(&[0; 48]);
        a
    })
    .unwrap();
}

#[test]
fn stash_measurement_extends_pcr31_and_logs() {
    let mut rt = Device::new().boot();
    let mut args = vec![0u8; 104];
    args[4..52].copy_from_slice(&[0x77; 48]);
    let resp = call(&mut rt, cmd::STASH_MEASUREMENT, &args).unwrap();
    assert_eq!(resp.len(), 12);
    assert_eq!(&resp[8..12], &[0; 4]);
    let log = var_data(&call(&mut rt, cmd::GET_PCR_LOG, &[]).unwrap())
        .unwrap()
        .to_vec();
    assert_eq!(log.len() % 56, 0);
    let last = &log[log.len() - 56..];
    assert_eq!(&last[..8], &[5, 0, 0, 0, 0, 0, 0, 0x80]);
    assert_eq!(&last[8..], &[0x77; 48]);
    assert_eq!(
        call(&mut rt, cmd::STASH_MEASUREMENT, &args[..103]),
        Err(MailboxError::INSUFFICIENT_MEMORY)
    );
}

#[test]
fn the_boot_log_records_rom_and_fmc_measurements() {
    let mut rt = Device::new().boot();
    let log = var_data(&call(&mut rt, cmd::GET_PCR_LOG, &[]).unwrap())
        .unwrap()
        .to_vec();
    let ids: Vec<(u16, u32)> = log
        .chunks(56)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    assert_eq!(ids, [(1, 3), (2, 3), (3, 3), (4, 3), (6, 12), (7, 12)]);
}

#[test]
fn info_commands() {
    let mut rt = Device::new().boot();
    let caps = call(&mut rt, cmd::CAPABILITIES, &[]).unwrap();
    assert_eq!(caps.len(), 24);
    assert_eq!(caps[8 + 7], 0x01, "RT_BASE");
    let info = call(&mut rt, cmd::FW_INFO, &[]).unwrap();
    assert_eq!(info.len(), 316);
    assert_eq!(
        u32::from_le_bytes(info[12..16].try_into().unwrap()),
        3,
        "fw_svn"
    );
    let v = call(&mut rt, cmd::VERSION, &[]).unwrap();
    assert_eq!(v.len(), 36);
    assert_eq!(&v[8..12], &0x4649_5053u32.to_le_bytes());
    // Trailing bytes are accepted when the checksum covers them (as in Caliptra).
    call(&mut rt, cmd::VERSION, &[1, 2, 3]).unwrap();
}

#[test]
fn self_test_commands() {
    let mut rt = Device::new().boot();
    assert_eq!(
        call(&mut rt, cmd::SELF_TEST_GET_RESULTS, &[]),
        Err(MailboxError::SELF_TEST_NOT_STARTED)
    );
    call(&mut rt, cmd::SELF_TEST_START, &[]).unwrap();
    assert_eq!(
        call(&mut rt, cmd::SELF_TEST_START, &[]),
        Err(MailboxError::SELF_TEST_IN_PROGRESS)
    );
    call(&mut rt, cmd::SELF_TEST_GET_RESULTS, &[]).unwrap();
    call(&mut rt, cmd::SELF_TEST_START, &[]).unwrap();
}

#[test]
fn malformed_requests_get_caliptras_errors() {
    let mut rt = Device::new().boot();
    // Short payload: no room for the checksum.
    for n in 0..4 {
        assert_eq!(
            rt.mailbox(cmd::VERSION, &[0; 4][..n]),
            Err(MailboxError::INVALID_PARAMS)
        );
    }
    // Bad checksum, checked before dispatch: even an unknown command reports it.
    let mut req = request(cmd::VERSION, &[]);
    req[0] ^= 1;
    assert_eq!(
        rt.mailbox(cmd::VERSION, &req),
        Err(MailboxError::INVALID_CHECKSUM)
    );
    assert_eq!(
        rt.mailbox(0xAABB_CCDD, &req),
        Err(MailboxError::INVALID_CHECKSUM)
    );
    // Unknown command with a good checksum.
    assert_eq!(
        call(&mut rt, 0xAABB_CCDD, &[]),
        Err(MailboxError::UNIMPLEMENTED_COMMAND)
    );
    // Quotes take exactly a 32-byte nonce.
    assert_eq!(
        call(&mut rt, cmd::QUOTE_PCRS_ECC384, &[0; 31]),
        Err(MailboxError::INVALID_PARAMS)
    );
    assert_eq!(
        call(&mut rt, cmd::QUOTE_PCRS_MLDSA87, &[0; 33]),
        Err(MailboxError::INVALID_PARAMS)
    );
    // Oversized.
    let big = vec![0u8; mailbox::MAX_PAYLOAD + 1];
    assert_eq!(
        rt.mailbox(cmd::VERSION, &big),
        Err(MailboxError::REQUEST_TOO_LARGE)
    );
    // The runtime is unharmed.
    call(&mut rt, cmd::VERSION, &[]).unwrap();
}

#[test]
fn reset_counters() {
    let mut rt = Device::new().boot();
    call(
        &mut rt,
        cmd::INCREMENT_PCR_RESET_COUNTER,
        &7u32.to_le_bytes(),
    )
    .unwrap();
    let q = Quote::parse(&rt.quote_pcrs(Alg::Ecc384, &[0; 32]).unwrap(), Alg::Ecc384).unwrap();
    assert_eq!(q.reset_counters[7], 1);
    assert_eq!(
        call(
            &mut rt,
            cmd::INCREMENT_PCR_RESET_COUNTER,
            &32u32.to_le_bytes()
        ),
        Err(MailboxError::INVALID_PARAMS)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the command and bytes, the mailbox answers (never panics), and a
    /// request with a bad checksum is always refused as such.
    #[test]
    fn garbage_never_panics(command in prop_oneof![
        Just(cmd::EXTEND_PCR), Just(cmd::STASH_MEASUREMENT), Just(cmd::QUOTE_PCRS_ECC384),
        Just(cmd::GET_PCR_LOG), Just(cmd::INCREMENT_PCR_RESET_COUNTER), any::<u32>()],
        body in proptest::collection::vec(any::<u8>(), 0..200),
        fix_checksum in any::<bool>())
    {
        static DEVICE: std::sync::OnceLock<std::sync::Mutex<Runtime>> = std::sync::OnceLock::new();
        let rt = DEVICE.get_or_init(|| std::sync::Mutex::new(Device::new().boot()));
        let mut rt = rt.lock().unwrap();
        let payload = if fix_checksum { request(command, &body) } else { body.clone() };
        let result = rt.mailbox(command, &payload);
        if payload.len() >= 4 {
            let chk = u32::from_le_bytes(payload[..4].try_into().unwrap());
            if !mailbox::verify_checksum(chk, command, &payload[4..]) {
                prop_assert_eq!(result, Err(MailboxError::INVALID_CHECKSUM));
            }
        }
        // Frames: garbage is refused for what is wrong with its framing, and what
        // decodes re-encodes to the same bytes.
        let le = |at: usize| body.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
        match (mailbox::decode_request_frame(&body), framing(&body, 4)) {
            (Ok((cmd, payload)), None) => {
                prop_assert_eq!(mailbox::encode_request_frame(cmd, payload), body.clone());
            }
            (Err(e), Some(expected)) => prop_assert_eq!(e, expected),
            (got, expected) => prop_assert!(false, "{:?}, framing {:?}", got, expected),
        }
        match (mailbox::decode_response_frame(&body), framing(&body, 8)) {
            (Ok(Ok(data)), None) => {
                prop_assert_eq!(mailbox::encode_response_frame(&Ok(data)), body.clone());
            }
            (Ok(Err(e)), None) => prop_assert!(le(0) == Some(3) && le(4) == Some(e.0)),
            (Err(FrameError::BadStatus(s)), None) => prop_assert!(le(0) == Some(s) && s != 1 && s != 3),
            (Err(e), Some(expected)) => prop_assert_eq!(e, expected),
            (got, expected) => prop_assert!(false, "{:?}, framing {:?}", got, expected),
        }
        // A well-formed frame around the same bytes decodes to them.
        let frame = mailbox::encode_request_frame(command, &body);
        prop_assert_eq!(mailbox::decode_request_frame(&frame), Ok((command, body.as_slice())));
        let frame = mailbox::encode_response_frame(&Ok(body.clone()));
        prop_assert_eq!(mailbox::decode_response_frame(&frame), Ok(Ok(body.clone())));
    }
}

/// What a frame decoder must say about `body`, whose little-endian payload length
/// is at `at` with the payload after it: `None` when the framing is whole.
fn framing(body: &[u8], at: usize) -> Option<FrameError> {
    let Some(n) = body.get(at..at + 4) else {
        return Some(FrameError::Truncated);
    };
    let n = u32::from_le_bytes(n.try_into().unwrap());
    if n as usize > mailbox::MAX_PAYLOAD {
        return Some(FrameError::TooLarge(n));
    }
    match body.len().cmp(&(at + 4 + n as usize)) {
        std::cmp::Ordering::Less => Some(FrameError::Truncated),
        std::cmp::Ordering::Greater => Some(FrameError::Trailing),
        std::cmp::Ordering::Equal => None,
    }
}
