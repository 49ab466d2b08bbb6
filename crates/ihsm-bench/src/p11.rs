//! A PKCS#11 module under test, loaded with `cryptoki`: keys made once per
//! workload, then one session per thread doing the operation.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::dsa::{HedgeType, SignAdditionalContext};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, KeyType, MlDsaParameterSetType, MlKemParameterSetType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::measure::{Bench, Op};
use crate::workload::Workload;
use crate::{Error, Result};

/// DER of the P-256, P-384 and Ed25519 curve OIDs (`CKA_EC_PARAMS`).
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// A loaded, initialized module and the slot it is benchmarked on.
pub struct Module {
    pub name: String,
    ctx: Pkcs11,
    slot: Slot,
    pin: String,
    /// A session open for as long as the module is: closing an application's last
    /// session logs it out, and some modules (SoftHSM2) then forget the handles
    /// of its private objects.
    anchor: std::sync::Mutex<Option<Session>>,
    /// Whether the token goes when the harness ends.
    disposable: bool,
    /// How many find keys the token holds, and their handles where this
    /// process made them one by one.
    find_keys: std::sync::Mutex<usize>,
    find_handles: std::sync::Mutex<Vec<ObjectHandle>>,
    /// Distinguishes this run's keys from any other's in the token.
    run: String,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn ck(what: &str) -> impl FnOnce(CkError) -> Error + '_ {
    move |e| Error::Pkcs11(format!("{what}: {e}"))
}

impl Module {
    /// Loads `path`, initializes it for a multi-threaded application and picks the
    /// first slot with a token (or the one labelled `token`).
    ///
    /// # Errors
    /// [`Error::Pkcs11`] when it does not load or has no such token.
    /// `disposable`: the token is the harness's own and goes when it ends, with
    /// the find keys made in it.
    pub fn load(
        name: &str,
        path: &Path,
        pin: &str,
        token: Option<&str>,
        disposable: bool,
    ) -> Result<Self> {
        let ctx = Pkcs11::new(path).map_err(ck("cannot load the module"))?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(ck("C_Initialize"))?;
        let mut chosen = None;
        for slot in ctx.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
            let label = ctx
                .get_token_info(slot)
                .map_err(ck("C_GetTokenInfo"))?
                .label()
                .trim()
                .to_owned();
            if token.is_none_or(|t| t == label) {
                chosen = Some(slot);
                break;
            }
        }
        let slot = chosen.ok_or_else(|| {
            Error::Pkcs11(format!(
                "{}: no token{} (is the HSM running, and the module configured?)",
                path.display(),
                token
                    .map(|t| format!(" labelled {t:?}"))
                    .unwrap_or_default()
            ))
        })?;
        let m = Self {
            name: name.to_owned(),
            ctx,
            slot,
            pin: pin.to_owned(),
            anchor: std::sync::Mutex::new(None),
            disposable,
            find_keys: std::sync::Mutex::new(0),
            find_handles: std::sync::Mutex::new(Vec::new()),
            run: format!("ihsm-bench-{}", std::process::id()),
        };
        let anchor = m.session()?;
        *m.anchor
            .lock()
            .map_err(|_| Error::Pkcs11("lock poisoned".into()))? = Some(anchor);
        Ok(m)
    }

    /// A read-write session, logged in as the user (once per application: a
    /// second login answers `CKR_USER_ALREADY_LOGGED_IN`, which is fine).
    ///
    /// # Errors
    /// [`Error::Pkcs11`] if the session cannot be opened or the PIN is refused.
    pub fn session(&self) -> Result<Session> {
        let s = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(ck("C_OpenSession"))?;
        match s.login(UserType::User, Some(&AuthPin::new(self.pin.clone().into()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(s),
            Err(e) => Err(ck("C_Login")(e)),
        }
    }

    /// The label of the token benchmarked.
    ///
    /// # Errors
    /// [`Error::Pkcs11`] if the module cannot say.
    pub fn token_label(&self) -> Result<String> {
        Ok(self
            .ctx
            .get_token_info(self.slot)
            .map_err(ck("C_GetTokenInfo"))?
            .label()
            .trim()
            .to_owned())
    }

    fn supports(&self, m: MechanismType) -> Result<bool> {
        Ok(self
            .ctx
            .get_mechanism_list(self.slot)
            .map_err(ck("C_GetMechanismList"))?
            .contains(&m))
    }

    fn label(&self, what: &str) -> Attribute {
        Attribute::Label(format!("{}-{what}", self.run).into_bytes())
    }

    /// Makes the keys `w` needs, or says the module cannot do `w`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the module lacks the mechanism; [`Error::Pkcs11`]
    /// when making a key fails.
    pub fn prepare(&self, w: Workload) -> Result<Prepared<'_>> {
        let needs = match w {
            Workload::EcdsaP256 | Workload::EcdsaP384 => MechanismType::ECDSA,
            Workload::Ed25519 => MechanismType::EDDSA,
            Workload::RsaPkcs1 => MechanismType::SHA256_RSA_PKCS,
            Workload::RsaPss => MechanismType::SHA256_RSA_PKCS_PSS,
            Workload::RsaOaepDecrypt => MechanismType::RSA_PKCS_OAEP,
            Workload::AesGcm(_) => MechanismType::AES_GCM,
            Workload::HmacSha256 => MechanismType::SHA256_HMAC,
            Workload::MlDsa65 => MechanismType::ML_DSA,
            Workload::MlKem768Decap => MechanismType::ML_KEM,
            Workload::Random32 | Workload::Find(_) => MechanismType::AES_KEY_GEN,
            Workload::GenAes256 => MechanismType::AES_KEY_GEN,
            Workload::GenEcP256 => MechanismType::ECC_KEY_PAIR_GEN,
        };
        if !self.supports(needs)? {
            return Err(Error::Unsupported(format!("{} has no {needs}", self.name)));
        }
        let s = self.session()?;
        let mut p = Prepared {
            module: self,
            workload: w,
            key: None,
            made: Vec::new(),
            ciphertext: Vec::new(),
        };
        let token = Attribute::Token(true);
        let pair = |p: &mut Prepared<'_>, keygen: Mechanism, public: Vec<Attribute>, private| {
            let (pk, sk) = s
                .generate_key_pair(&keygen, &public, private)
                .map_err(ck("C_GenerateKeyPair"))?;
            p.made.extend([pk, sk]);
            p.key = Some(sk);
            Ok::<_, Error>(pk)
        };
        let signing = [
            token.clone(),
            Attribute::Sign(true),
            self.label(&w.to_string()),
        ];
        match w {
            Workload::EcdsaP256 | Workload::EcdsaP384 | Workload::Ed25519 => {
                let (keygen, curve) = match w {
                    Workload::EcdsaP256 => (Mechanism::EccKeyPairGen, P256),
                    Workload::EcdsaP384 => (Mechanism::EccKeyPairGen, P384),
                    _ => (Mechanism::EccEdwardsKeyPairGen, ED25519),
                };
                let public = vec![
                    token.clone(),
                    Attribute::EcParams(curve.to_vec()),
                    Attribute::Verify(true),
                ];
                pair(&mut p, keygen, public, &signing)?;
            }
            Workload::RsaPkcs1 | Workload::RsaPss | Workload::RsaOaepDecrypt => {
                let oaep = w == Workload::RsaOaepDecrypt;
                let public = vec![
                    token.clone(),
                    Attribute::ModulusBits(2048.into()),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                    if oaep {
                        Attribute::Encrypt(true)
                    } else {
                        Attribute::Verify(true)
                    },
                ];
                let decrypting = [token.clone(), Attribute::Decrypt(true), self.label("oaep")];
                let private: &[Attribute] = if oaep { &decrypting } else { &signing };
                let pk = pair(&mut p, Mechanism::RsaPkcsKeyPairGen, public, private)?;
                if oaep {
                    p.ciphertext = match s.encrypt(&oaep_mechanism(), pk, &w.input()) {
                        Ok(c) => c,
                        // SoftHSM2 2.6 knows OAEP with SHA-1 only.
                        Err(CkError::Pkcs11(
                            rv @ (RvError::ArgumentsBad | RvError::MechanismParamInvalid),
                            _,
                        )) => {
                            p.finish()?;
                            return Err(Error::Unsupported(format!(
                                "{} refuses OAEP with SHA-256 ({rv})",
                                self.name
                            )));
                        }
                        Err(e) => return Err(ck("C_Encrypt (OAEP, while preparing)")(e)),
                    };
                }
            }
            Workload::MlDsa65 => {
                let public = vec![
                    token.clone(),
                    Attribute::ParameterSet(MlDsaParameterSetType::ML_DSA_65.into()),
                    Attribute::Verify(true),
                ];
                pair(&mut p, Mechanism::MlDsaKeyPairGen, public, &signing)?;
            }
            Workload::MlKem768Decap => {
                let public = vec![
                    token.clone(),
                    Attribute::ParameterSet(MlKemParameterSetType::ML_KEM_768.into()),
                    Attribute::Encapsulate(true),
                ];
                let private = [token.clone(), Attribute::Decapsulate(true)];
                let pk = pair(&mut p, Mechanism::MlKemKeyPairGen, public, &private)?;
                let (ct, secret) = s
                    .encapsulate_key(&Mechanism::MlKem, pk, &shared_secret())
                    .map_err(ck("C_EncapsulateKey (while preparing)"))?;
                s.destroy_object(secret).map_err(ck("C_DestroyObject"))?;
                p.ciphertext = ct;
            }
            Workload::AesGcm(_) | Workload::HmacSha256 => {
                let (keygen, usage) = if let Workload::AesGcm(_) = w {
                    (Mechanism::AesKeyGen, Attribute::Encrypt(true))
                } else {
                    (Mechanism::GenericSecretKeyGen, Attribute::Sign(true))
                };
                let t = [
                    token,
                    Attribute::ValueLen(32.into()),
                    usage,
                    self.label("secret"),
                ];
                let key = s.generate_key(&keygen, &t).map_err(ck("C_GenerateKey"))?;
                p.made.push(key);
                p.key = Some(key);
            }
            Workload::Find(n) => self.populate(n)?,
            Workload::Random32 | Workload::GenAes256 | Workload::GenEcP256 => {}
        }
        Ok(p)
    }

    /// Brings the token to `n` find keys, AES keys labelled `<run>-find-<i>`
    /// (token objects, values supplied so the cost is the store's, not the
    /// generator's). The keys accumulate: finds run in ascending order of `n`,
    /// each among exactly its `n` keys, and go at [`Module::cleanup`] (emptying
    /// and refilling a token would take SoftHSM2 hours at 10,000 keys: it
    /// rescans its token directory for every object it deletes).
    fn populate(&self, n: usize) -> Result<()> {
        let mut have = self
            .find_keys
            .lock()
            .map_err(|_| Error::Pkcs11("lock poisoned".into()))?;
        if *have >= n {
            return Ok(());
        }
        let (from, to) = (*have, n);
        match own_state() {
            // The harness's own daemon: in batches over ihsm's own protocol (a
            // million keys one C_CreateObject at a time, each a durable write,
            // take most of an hour).
            Some(state) if self.name == "ihsm" => self.populate_batched(&state, from, to)?,
            _ => {
                let made = self.populate_each(from, to)?;
                self.find_handles
                    .lock()
                    .map_err(|_| Error::Pkcs11("lock poisoned".into()))?
                    .extend(made);
            }
        }
        *have = n;
        Ok(())
    }

    /// Makes find keys `from..to` one `C_CreateObject` at a time, on every core.
    fn populate_each(&self, from: usize, to: usize) -> Result<Vec<ObjectHandle>> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let next = AtomicU64::new(from as u64);
        let n = to;
        let progress = crate::measure::bar(
            (to - from) as u64,
            &format!("{}: making keys up to {n}", self.name),
        );
        let made = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> Result<Vec<ObjectHandle>> {
                        let s = self.session()?;
                        let mut made = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= to as u64 {
                                return Ok(made);
                            }
                            let h = s
                                .create_object(&[
                                    Attribute::Class(ObjectClass::SECRET_KEY),
                                    Attribute::KeyType(KeyType::AES),
                                    Attribute::Value([7u8; 32].to_vec()),
                                    Attribute::Token(true),
                                    Attribute::Encrypt(true),
                                    self.label(&format!("find-{i}")),
                                ])
                                .map_err(ck("C_CreateObject"))?;
                            made.push(h);
                            progress.inc(1);
                        }
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(to - from);
            for w in workers {
                all.extend(
                    w.join()
                        .map_err(|_| Error::Pkcs11("a worker panicked".into()))??,
                );
            }
            Ok::<_, Error>(all)
        });
        progress.finish_and_clear();
        made
    }
}

/// The state directory of an ihsmd the harness started itself, if it did.
fn own_state() -> Option<std::path::PathBuf> {
    std::env::var_os(crate::OWN_STATE).map(Into::into)
}

impl Module {
    /// Find keys `from..to` through ihsm's own protocol in batches of 1,000: the
    /// same keys, labels and attributes. They go with the state directory.
    fn populate_batched(&self, state: &Path, from: usize, to: usize) -> Result<()> {
        use cryptoki_sys as ck;
        use ihsm_proto::attr::Attribute as A;
        let client = |what: &'static str| {
            move |e: ihsm_client::ClientError| Error::Client(format!("{what}: {e}"))
        };
        let socket = ihsm_proto::layout::partition_socket(state, crate::setup::TOKEN);
        let mut c = ihsm_client::Client::connect(&socket).map_err(client("partition socket"))?;
        let s = c.open_session(true).map_err(client("open session"))?;
        c.login(s, ihsm_proto::types::UserType::User, self.pin.as_bytes())
            .map_err(client("login"))?;
        let progress = crate::measure::bar(
            (to - from) as u64,
            &format!("{}: making keys up to {to}", self.name),
        );
        for chunk in (from..to).collect::<Vec<_>>().chunks(1000) {
            let templates = chunk
                .iter()
                .map(|i| {
                    vec![
                        A::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                        A::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
                        A::bytes(ck::CKA_VALUE, [7u8; 32].to_vec()),
                        A::bool(ck::CKA_TOKEN, true),
                        A::bool(ck::CKA_ENCRYPT, true),
                        A::bytes(ck::CKA_LABEL, format!("{}-find-{i}", self.run).into_bytes()),
                    ]
                })
                .collect();
            c.create_objects(s, templates)
                .map_err(client("create objects"))?;
            progress.inc(chunk.len() as u64);
        }
        progress.finish_and_clear();
        Ok(())
    }
}

impl Module {
    /// Destroys the find keys, unless the token goes with the harness.
    ///
    /// # Errors
    /// When the module refuses.
    pub fn cleanup(&self) -> Result<()> {
        if self.disposable {
            return Ok(());
        }
        let handles = std::mem::take(
            &mut *self
                .find_handles
                .lock()
                .map_err(|_| Error::Pkcs11("lock poisoned".into()))?,
        );
        let s = self.session()?;
        for h in handles {
            s.destroy_object(h).map_err(ck("C_DestroyObject"))?;
        }
        Ok(())
    }
}

fn oaep_mechanism() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    ))
}

/// The template of a decapsulated (or encapsulated) shared secret.
fn shared_secret() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::ValueLen(32.into()),
    ]
}

/// A workload's keys in one module.
#[derive(Debug)]
pub struct Prepared<'m> {
    module: &'m Module,
    workload: Workload,
    /// The key the operation uses, if it uses one.
    key: Option<ObjectHandle>,
    /// Every object made for the workload, destroyed at the end.
    made: Vec<ObjectHandle>,
    /// What OAEP decryption and ML-KEM decapsulation take.
    ciphertext: Vec<u8>,
}

impl Bench for Prepared<'_> {
    fn name(&self) -> &str {
        &self.module.name
    }

    fn worker(&self, index: usize) -> Result<Box<dyn Op + Send + '_>> {
        Ok(Box::new(Worker {
            p: self,
            s: self.module.session()?,
            data: self.workload.input(),
            counter: 0,
            seed: 0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1),
            index: index as u32,
            leftover: Vec::new(),
        }))
    }

    fn finish(&self) -> Result<()> {
        let s = self.module.session()?;
        for h in &self.made {
            s.destroy_object(*h).map_err(ck("C_DestroyObject"))?;
        }
        Ok(())
    }
}

/// One thread's session doing the operation.
struct Worker<'p> {
    p: &'p Prepared<'p>,
    s: Session,
    data: Vec<u8>,
    /// Makes each GCM IV unique: thread index, then a counter.
    counter: u64,
    index: u32,
    /// xorshift state choosing which key a find looks for.
    seed: u64,
    /// Objects the timed operation made, destroyed outside the timing.
    leftover: Vec<ObjectHandle>,
}

impl Op for Worker<'_> {
    fn once(&mut self) -> Result<()> {
        let s = &self.s;
        let pk = self.p.key;
        let key = || pk.ok_or_else(|| Error::Pkcs11("no key prepared".into()));
        let sign = |m: &Mechanism| -> Result<()> {
            s.sign(m, key()?, &self.data)
                .map(drop)
                .map_err(ck("C_Sign"))
        };
        match self.p.workload {
            Workload::EcdsaP256 | Workload::EcdsaP384 => sign(&Mechanism::Ecdsa),
            Workload::Ed25519 => sign(&Mechanism::Eddsa(EddsaParams::new(
                EddsaSignatureScheme::Pure,
            ))),
            Workload::RsaPkcs1 => sign(&Mechanism::Sha256RsaPkcs),
            Workload::RsaPss => sign(&Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                s_len: 32.into(),
            })),
            Workload::HmacSha256 => sign(&Mechanism::Sha256Hmac),
            Workload::MlDsa65 => sign(&Mechanism::MlDsa(SignAdditionalContext::new(
                HedgeType::Preferred,
                None,
            ))),
            Workload::RsaOaepDecrypt => s
                .decrypt(&oaep_mechanism(), key()?, &self.p.ciphertext)
                .map(drop)
                .map_err(ck("C_Decrypt")),
            Workload::AesGcm(_) => {
                self.counter += 1;
                let mut iv = [0u8; 12];
                iv[..4].copy_from_slice(&self.index.to_be_bytes());
                iv[4..].copy_from_slice(&self.counter.to_be_bytes());
                let params = GcmParams::new(&mut iv, &[], 128.into()).map_err(ck("GCM"))?;
                let m = Mechanism::AesGcm(params);
                s.encrypt(&m, key()?, &self.data)
                    .map(drop)
                    .map_err(ck("C_Encrypt"))
            }
            Workload::MlKem768Decap => {
                let h = s
                    .decapsulate_key(
                        &Mechanism::MlKem,
                        key()?,
                        &shared_secret(),
                        &self.p.ciphertext,
                    )
                    .map_err(ck("C_DecapsulateKey"))?;
                self.leftover.push(h);
                Ok(())
            }
            Workload::Random32 => {
                let mut b = [0u8; 32];
                s.generate_random_slice(&mut b)
                    .map_err(ck("C_GenerateRandom"))
            }
            Workload::Find(n) => {
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                let i = self.seed % n as u64;
                let label = self.p.module.label(&format!("find-{i}"));
                let found = s.find_objects(&[label]).map_err(ck("C_FindObjects"))?;
                if found.len() == 1 {
                    Ok(())
                } else {
                    Err(Error::Pkcs11(format!(
                        "find-{n}: {} keys with label {i}",
                        found.len()
                    )))
                }
            }
            Workload::GenAes256 => {
                let t = [Attribute::Token(false), Attribute::ValueLen(32.into())];
                let h = s
                    .generate_key(&Mechanism::AesKeyGen, &t)
                    .map_err(ck("C_GenerateKey"))?;
                self.leftover.push(h);
                Ok(())
            }
            Workload::GenEcP256 => {
                let public = [Attribute::Token(false), Attribute::EcParams(P256.to_vec())];
                let private = [Attribute::Token(false), Attribute::Sign(true)];
                let (pk, sk) = s
                    .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                    .map_err(ck("C_GenerateKeyPair"))?;
                self.leftover.extend([pk, sk]);
                Ok(())
            }
        }
    }

    fn tidy(&mut self) -> Result<()> {
        for h in self.leftover.drain(..) {
            self.s.destroy_object(h).map_err(ck("C_DestroyObject"))?;
        }
        Ok(())
    }
}
