//! DICE derivations, following Caliptra 2.x's reference model (caliptra-sw
//! `test/src/derive.rs`): the SP 800-108 HMAC-SHA-512 counter KDF with Caliptra's
//! labels, P-384 private keys from HMAC_DRBG(SHA-384) seeded with the first 48
//! bytes of a CDI-derived block (and an all-zero nonce), and ML-DSA-87 keys from a
//! 32-byte seed (the first 32 bytes of a CDI-derived block, byte-reversed, which is
//! how Caliptra's hardware word order lands in its reference model).
//!
//! Every intermediate value is a [`Secret`]; nothing here prints or persists.

use ihsm_crypto::ec::EccP384PrivateKey;
use ihsm_crypto::mldsa::MlDsa87PrivateKey;
use ihsm_crypto::{ExposeSecret, Secret, drbg, hmac, kdf};

use crate::error::Result;

/// A compound device identifier.
pub(crate) type Cdi = Secret<64>;

/// The labels of one DICE layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Labels {
    pub(crate) ecc: &'static [u8],
    pub(crate) mldsa: &'static [u8],
}

pub(crate) const IDEVID: Labels = Labels {
    ecc: b"idevid_ecc_key",
    mldsa: b"idevid_mldsa_key",
};
pub(crate) const LDEVID: Labels = Labels {
    ecc: b"ldevid_ecc_key",
    mldsa: b"ldevid_mldsa_key",
};
pub(crate) const FMC_ALIAS: Labels = Labels {
    ecc: b"alias_fmc_ecc_key",
    mldsa: b"alias_fmc_mldsa_key",
};
pub(crate) const RT_ALIAS: Labels = Labels {
    ecc: b"alias_rt_ecc_key",
    mldsa: b"alias_rt_mldsa_key",
};

/// The highest firmware SVN of the key ladder (Caliptra's `MAX_FIRMWARE_SVN`).
pub(crate) const LADDER_MAX_SVN: u32 = 128;

/// IDevID CDI = KDF(UDS, "idevid_cdi").
pub(crate) fn idevid_cdi(uds: &Secret<64>) -> Result<Cdi> {
    Ok(kdf::kdf_hmac512(uds.expose_secret(), b"idevid_cdi", None)?)
}

/// LDevID CDI = HMAC(HMAC(IDevID CDI, "ldevid_cdi"), field entropy).
pub(crate) fn ldevid_cdi(idevid: &Cdi, field_entropy: &Secret<32>) -> Result<Cdi> {
    let seed = hmac::hmac512(idevid.expose_secret(), b"ldevid_cdi")?;
    Ok(hmac::hmac512(
        seed.expose_secret(),
        field_entropy.expose_secret(),
    )?)
}

/// FMC Alias CDI = KDF(LDevID CDI, "alias_fmc_cdi", PCR0).
pub(crate) fn fmc_alias_cdi(ldevid: &Cdi, pcr0: &[u8; 48]) -> Result<Cdi> {
    Ok(kdf::kdf_hmac512(
        ldevid.expose_secret(),
        b"alias_fmc_cdi",
        Some(pcr0),
    )?)
}

/// RT Alias CDI = KDF(FMC Alias CDI, "alias_rt_cdi", RT TCI || SHA-384(manifest)).
pub(crate) fn rt_alias_cdi(
    fmc: &Cdi,
    rt_tci: &[u8; 48],
    manifest_digest: &[u8; 48],
) -> Result<Cdi> {
    let mut ctx = [0u8; 96];
    ctx[..48].copy_from_slice(rt_tci);
    ctx[48..].copy_from_slice(manifest_digest);
    Ok(kdf::kdf_hmac512(
        fmc.expose_secret(),
        b"alias_rt_cdi",
        Some(&ctx),
    )?)
}

/// The P-384 private scalar of a layer: HMAC_DRBG(KDF(CDI, label)[..48], 0^48).
pub(crate) fn ecc_scalar(cdi: &Cdi, label: &[u8]) -> Result<Secret<48>> {
    let seed = kdf::kdf_hmac512(cdi.expose_secret(), label, None)?;
    let seed48 = seed.expose_secret().get(..48).unwrap_or_default();
    Ok(drbg::p384_scalar_from_seed(seed48, &[0u8; 48])?)
}

/// The ML-DSA-87 seed of a layer: reverse(KDF(CDI, label)[..32]).
pub(crate) fn mldsa_seed(cdi: &Cdi, label: &[u8]) -> Result<Secret<32>> {
    let block = kdf::kdf_hmac512(cdi.expose_secret(), label, None)?;
    Ok(Secret::try_from_fn(|seed: &mut [u8; 32]| {
        for (dst, src) in seed
            .iter_mut()
            .zip(block.expose_secret().iter().take(32).rev())
        {
            *dst = *src;
        }
        Ok::<(), ihsm_crypto::CryptoError>(())
    })?)
}

/// A layer's two key pairs.
#[derive(Debug)]
pub(crate) struct LayerKeys {
    /// ECC P-384.
    pub(crate) ecc: EccP384PrivateKey,
    /// ML-DSA-87.
    pub(crate) mldsa: MlDsa87PrivateKey,
}

pub(crate) fn layer_keys(cdi: &Cdi, labels: Labels) -> Result<LayerKeys> {
    Ok(LayerKeys {
        ecc: EccP384PrivateKey::from_scalar(&ecc_scalar(cdi, labels.ecc)?)?,
        mldsa: MlDsa87PrivateKey::from_seed(&mldsa_seed(cdi, labels.mldsa)?)?,
    })
}

/// Caliptra's firmware-SVN key ladder root: KDF(LDevID CDI, "si_init",
/// [lifecycle, debug_locked]), extended `128 - svn` times with "si_extend".
pub(crate) fn key_ladder(
    ldevid: &Cdi,
    lifecycle: u8,
    debug_locked: bool,
    svn: u32,
) -> Result<Secret<64>> {
    let mut l = kdf::kdf_hmac512(
        ldevid.expose_secret(),
        b"si_init",
        Some(&[lifecycle, u8::from(debug_locked)]),
    )?;
    for _ in svn.min(LADDER_MAX_SVN)..LADDER_MAX_SVN {
        l = kdf::kdf_hmac512(l.expose_secret(), b"si_extend", None)?;
    }
    Ok(l)
}

/// Walks the ladder from `from_svn` down to `target_svn` and derives
/// KDF(L_target, "chain_output", context). Caller checks `target_svn <= from_svn`.
pub(crate) fn ladder_output(
    ladder: &Secret<64>,
    from_svn: u32,
    target_svn: u32,
    context: &[u8],
) -> Result<Secret<64>> {
    let mut l = Secret::<64>::from_slice(ladder.expose_secret())?;
    for _ in target_svn..from_svn {
        l = kdf::kdf_hmac512(l.expose_secret(), b"si_extend", None)?;
    }
    Ok(kdf::kdf_hmac512(
        l.expose_secret(),
        b"chain_output",
        Some(context),
    )?)
}

#[cfg(test)]
pub(crate) mod tests {
    //! Golden values from Caliptra's independent reference model, caliptra-sw
    //! `test/src/derive.rs` (`test_idevid`, `test_ldevid`, `test_derive_fmc_alias_key`)
    //! and `test/src/crypto.rs`. Caliptra writes values as big-endian u32 words;
    //! `words` turns them into the byte strings this module works on.
    use super::*;
    use ihsm_crypto::ExposeSecret;

    /// Caliptra's big-endian u32 words as bytes.
    pub(crate) fn words<const N: usize>(w: &[u32]) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, word) in w.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    const FE: [u32; 8] = [
        0xdbca1cfa, 0x149c0355, 0x7ee48ddb, 0xb022238b, 0x057c9b49, 0x6c9e5b66, 0x119bcff5,
        0xe82d50e0,
    ];

    fn check_layer(cdi: &Cdi, labels: Labels, scalar_words: &[u32; 12], seed: &[u8; 32]) {
        assert_eq!(
            ecc_scalar(cdi, labels.ecc).unwrap().expose_secret(),
            &words::<48>(scalar_words)
        );
        assert_eq!(mldsa_seed(cdi, labels.mldsa).unwrap().expose_secret(), seed);
        // And the key pairs build from them.
        layer_keys(cdi, labels).unwrap();
    }

    #[test]
    fn caliptra_golden_idevid() {
        let uds = Secret::from_slice(&words::<64>(&[
            0x92121902, 0xbefa4497, 0x3d36f1db, 0x485a3ed6, 0x2d7b2eb3, 0x53929c34, 0x879e64ef,
            0x6b25eaee, 0x0029fa17, 0x92f7f8da, 0x3b2ac8db, 0x21411551, 0xed0e3d62, 0x05e51aed,
            0x14199450, 0x45b540a1,
        ]))
        .unwrap();
        let cdi = idevid_cdi(&uds).unwrap();
        assert_eq!(
            cdi.expose_secret(),
            &words::<64>(&[
                0xe047693d, 0x5038cf58, 0xbafff529, 0x4308aced, 0xd356fd37, 0x620386b3, 0xb2cfdd97,
                0x602e5b26, 0x29ff1601, 0xe3196949, 0xe04109ab, 0x9b6bcab1, 0xef5dc70d, 0xbd2d0875,
                0xf17a7559, 0x2328baa2,
            ])
        );
        check_layer(
            &cdi,
            IDEVID,
            &[
                0x034d9279, 0x2e58660b, 0xcfa3e026, 0x90ac31dc, 0xb97a6b6c, 0xf259f7d4, 0xaa3b7a0d,
                0x565232ff, 0x38560790, 0x73ff1c04, 0x34501150, 0x48641108,
            ],
            &[
                192, 145, 213, 14, 122, 253, 72, 90, 56, 247, 119, 131, 20, 126, 203, 11, 216, 201,
                246, 85, 219, 174, 204, 136, 180, 203, 152, 163, 112, 65, 29, 62,
            ],
        );
    }

    #[test]
    fn caliptra_golden_ldevid() {
        let uds = Secret::from_slice(&words::<64>(&[
            0x92121902, 0xbefa4497, 0x3d36f1db, 0x485a3ed6, 0x2d7b2eb3, 0x53929c34, 0x879e64ef,
            0x6b25eaee, 0x0029fa17, 0x92f7f8da, 0x3b2ac8db, 0x21411551, 0x057d115c, 0x00fade7a,
            0xb8cca563, 0xe1f504a2,
        ]))
        .unwrap();
        let fe = Secret::from_slice(&words::<32>(&FE)).unwrap();
        let cdi = ldevid_cdi(&idevid_cdi(&uds).unwrap(), &fe).unwrap();
        assert_eq!(
            cdi.expose_secret(),
            &words::<64>(&[
                0x5c705f09, 0x63f7edfb, 0x9cf0cb89, 0x7306da3f, 0xff1acde2, 0xf1f0b333, 0xafb85fa3,
                0x8783a424, 0x6c6aa9db, 0x43ce3297, 0x02568332, 0x53670f99, 0x9e4fff07, 0xdc1911f7,
                0xd7af58ed, 0xab20aff0,
            ])
        );
        check_layer(
            &cdi,
            LDEVID,
            &[
                0x15e65daa, 0x3e7dedbb, 0x60eb7ea6, 0xd7e9e441, 0xf2adaa7a, 0x35ca904c, 0x9076d1a1,
                0x69972589, 0x274a2869, 0x48eb0fb4, 0xee749db1, 0x15cbe26e,
            ],
            &[
                215, 71, 232, 245, 17, 199, 101, 142, 50, 162, 109, 154, 217, 87, 34, 196, 205, 74,
                87, 124, 231, 161, 155, 171, 224, 35, 214, 114, 21, 175, 170, 67,
            ],
        );
    }

    #[test]
    fn caliptra_golden_fmc_alias() {
        let pcr0 = words::<48>(&[
            0x0d8f3fd4, 0x4698aaae, 0x7bacaf67, 0x714a8035, 0x9a8d3a51, 0x3fcde890, 0x8039f4c1,
            0x77f9d5a9, 0x77b8ecd5, 0xf29b3fa9, 0x30e25097, 0xe1d82b14,
        ]);
        let ldevid = Secret::from_slice(&words::<64>(&[
            0x0e7b8a15, 0x0cc1476b, 0x28d395d9, 0x233f9f05, 0x670bd435, 0x96758224, 0xd3dd5081,
            0x3da916e5, 0x94f2b09e, 0x257f151d, 0x261ade90, 0x73a9b3fb, 0xf35c0619, 0x0856f1e3,
            0x7d560cf2, 0xaa227256,
        ]))
        .unwrap();
        let cdi = fmc_alias_cdi(&ldevid, &pcr0).unwrap();
        assert_eq!(
            cdi.expose_secret(),
            &words::<64>(&[
                0x41529a09, 0xe976d227, 0x456a211c, 0x86187b33, 0x15c88587, 0x60c51cb8, 0xfbcbb695,
                0xf67988dc, 0x14f6ae96, 0xc3dbdaa2, 0xad287006, 0x33a7f284, 0x81d964ce, 0x45af6c6b,
                0xdd8b95fd, 0x5cbcbc4b,
            ])
        );
        check_layer(
            &cdi,
            FMC_ALIAS,
            &[
                0xfcd8c50e, 0x45ddf47b, 0xe272c12c, 0x2a49576f, 0xb57f994d, 0x723de453, 0x14229ac9,
                0x714b2a8a, 0x6f1ce75f, 0x788cf75c, 0xdbe9da02, 0x51a22e82,
            ],
            &[
                163, 117, 67, 78, 222, 82, 68, 243, 158, 242, 24, 40, 127, 39, 156, 161, 226, 203,
                189, 13, 13, 191, 228, 58, 7, 166, 34, 186, 152, 21, 78, 195,
            ],
        );
    }

    #[test]
    fn ladder_walks_down_but_never_up() {
        let ldev = Secret::<64>::from_slice(&[9; 64]).unwrap();
        let at5 = key_ladder(&ldev, 3, true, 5).unwrap();
        let at7 = key_ladder(&ldev, 3, true, 7).unwrap();
        // Firmware at SVN 7 can reach what SVN 5 sealed ...
        let sealed_by_5 = ladder_output(&at5, 5, 5, b"ctx").unwrap();
        let reached_by_7 = ladder_output(&at7, 7, 5, b"ctx").unwrap();
        assert!(sealed_by_5.ct_eq(&reached_by_7));
        // ... and outputs differ by SVN, context, lifecycle and debug state.
        assert!(
            !ladder_output(&at7, 7, 7, b"ctx")
                .unwrap()
                .ct_eq(&sealed_by_5)
        );
        assert!(
            !ladder_output(&at5, 5, 5, b"other")
                .unwrap()
                .ct_eq(&sealed_by_5)
        );
        let prod_unlocked = key_ladder(&ldev, 3, false, 5).unwrap();
        assert!(
            !ladder_output(&prod_unlocked, 5, 5, b"ctx")
                .unwrap()
                .ct_eq(&sealed_by_5)
        );
    }
}
