//! The typed calls: one method per request, each checking the reply is the
//! kind the request expects.

use ihsm_proto::attr::{AttrResult, AttrType, Attribute};
use ihsm_proto::mech::{Mechanism, MechanismInfo};
use ihsm_proto::msg::{DeviceStatus, PartitionSpec, SecretBytes};
use ihsm_proto::types::{AuditReport, PartitionInfo, Principal, SessionState, UserType};
use ihsm_proto::{Reply, Request};

use crate::connection::Client;
use crate::error::Result;

impl Client {
    // ---- both endpoints -----------------------------------------------------------

    /// A secret naming this connection's application, for [`Client::join_app`] on
    /// another connection (protocol revision 2).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn app_token(&mut self) -> Result<SecretBytes> {
        self.secret(&Request::AppToken)
    }

    /// Makes this connection act for the application `token` names: its sessions
    /// and login (protocol revision 2). This connection's own sessions end.
    ///
    /// # Errors
    /// [`ErrorCode::AppTokenInvalid`] when the application has ended; as
    /// [`Client::call`].
    ///
    /// [`ErrorCode::AppTokenInvalid`]: ihsm_proto::ErrorCode::AppTokenInvalid
    pub fn join_app(&mut self, token: &SecretBytes) -> Result<()> {
        self.done(&Request::JoinApp {
            token: token.duplicate(),
        })
    }

    /// A round trip that does nothing.
    ///
    /// # Errors
    /// Connection errors.
    pub fn ping(&mut self) -> Result<()> {
        self.expect(&Request::Ping, |r| matches!(r, Reply::Pong).then_some(()))
    }

    // ---- admin ---------------------------------------------------------------------

    /// The device's status.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn status(&mut self) -> Result<DeviceStatus> {
        self.expect(&Request::Status, |r| match r {
            Reply::Status(s) => Some(*s),
            _ => None,
        })
    }

    /// The fleet as the daemon's host sees it: every host registered in etcd,
    /// each appraised against this host's fleet policy (admin socket).
    ///
    /// # Errors
    /// As [`Client::call`]; `NotInFleet` when the host is in none,
    /// `FleetUnavailable` when etcd cannot be reached.
    pub fn fleet_hosts(&mut self) -> Result<ihsm_proto::msg::FleetView> {
        self.expect(&Request::FleetHosts, |r| match r {
            Reply::Fleet(v) => Some(*v),
            _ => None,
        })
    }

    /// The fleet masking domain as the daemon's host holds it, and the epoch
    /// etcd names (admin socket; docs/fleet.md, "The masking domain").
    ///
    /// # Errors
    /// As [`Client::call`]; `NotInFleet`.
    pub fn fleet_domain(&mut self) -> Result<ihsm_proto::msg::DomainView> {
        self.expect(&Request::FleetDomain, |r| match r {
            Reply::Domain(v) => Some(*v),
            _ => None,
        })
    }

    /// Evicts fleet host `host` from the masking domain (admin socket): a new
    /// epoch, sealed to every other host the daemon's policy accepts; new masked
    /// blobs use it, so the evicted host cannot import them.
    ///
    /// # Errors
    /// As [`Client::call`]; `DomainRefused` saying why (nothing changed),
    /// `NotInFleet`, `FleetUnavailable`.
    pub fn fleet_evict(&mut self, host: &str) -> Result<ihsm_proto::msg::DomainView> {
        self.expect(
            &Request::FleetEvict {
                host: host.to_owned(),
            },
            |r| match r {
                Reply::Domain(v) => Some(*v),
                _ => None,
            },
        )
    }

    /// Moves partition `name` from the daemon's host to fleet host `to`
    /// (admin socket): the destination proves itself by fresh evidence, the
    /// partition is sealed to its attested transfer key, and the placement flips
    /// in etcd (docs/fleet.md, "Moves").
    ///
    /// # Errors
    /// As [`Client::call`]; `MoveRefused` saying why (the partition stays
    /// here), `NotInFleet`, `FleetUnavailable`.
    pub fn move_partition(&mut self, name: &str, to: &str) -> Result<ihsm_proto::msg::MoveReport> {
        self.expect(
            &Request::MovePartition {
                name: name.to_owned(),
                to: to.to_owned(),
            },
            |r| match r {
                Reply::Moved(v) => Some(*v),
                _ => None,
            },
        )
    }

    /// Creates a partition.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_partition(&mut self, spec: PartitionSpec) -> Result<PartitionInfo> {
        self.expect(&Request::CreatePartition(spec), |r| match r {
            Reply::Partition(p) => Some(p),
            _ => None,
        })
    }

    /// Every partition.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn list_partitions(&mut self) -> Result<Vec<PartitionInfo>> {
        self.expect(&Request::ListPartitions, |r| match r {
            Reply::Partitions(p) => Some(p),
            _ => None,
        })
    }

    /// One partition.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn describe_partition(&mut self, name: &str) -> Result<PartitionInfo> {
        self.expect(
            &Request::DescribePartition { name: name.into() },
            |r| match r {
                Reply::Partition(p) => Some(p),
                _ => None,
            },
        )
    }

    /// Deletes a partition (and zeroizes everything in it).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn delete_partition(&mut self, name: &str) -> Result<()> {
        self.done(&Request::DeletePartition { name: name.into() })
    }

    /// Admits `principal` to partition `name` besides its owner: whether that
    /// changed anything (`false`: it already was admitted), and the partition
    /// as it is now (protocol revision 4).
    ///
    /// # Errors
    /// As [`Client::call`]; [`ihsm_proto::ErrorCode::PrincipalLimit`],
    /// [`ihsm_proto::ErrorCode::PrincipalInvalid`].
    pub fn allow_principal(
        &mut self,
        name: &str,
        principal: Principal,
    ) -> Result<(bool, PartitionInfo)> {
        self.expect(
            &Request::AllowPrincipal {
                name: name.into(),
                principal,
            },
            admission,
        )
    }

    /// Stops admitting `principal` to partition `name`; the daemon closes the
    /// connections it alone admitted. Whether that changed anything (`false`: it
    /// was not admitted), and the partition as it is now (protocol revision 4).
    ///
    /// # Errors
    /// As [`Client::call`]; [`ihsm_proto::ErrorCode::PrincipalInvalid`] for the
    /// owner.
    pub fn revoke_principal(
        &mut self,
        name: &str,
        principal: Principal,
    ) -> Result<(bool, PartitionInfo)> {
        self.expect(
            &Request::RevokePrincipal {
                name: name.into(),
                principal,
            },
            admission,
        )
    }

    /// A partition identity certificate (DER).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn partition_certificate(&mut self, name: &str) -> Result<Vec<u8>> {
        self.bytes(&Request::PartitionCertificate { name: name.into() })
    }

    /// The certificate (DER) of the key that signs the device log's checkpoints.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn device_audit_certificate(&mut self) -> Result<Vec<u8>> {
        self.bytes(&Request::DeviceAuditCertificate)
    }

    /// A whole audit log, its stored entries in order from `since`: a partition's
    /// (`Some(name)`) or the device's (`None`), read a page at a time.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn audit_log(&mut self, partition: Option<&str>, since: u64) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut from = since.max(1);
        loop {
            let page = self.expect(
                &Request::AuditLog {
                    partition: partition.map(str::to_owned),
                    since: from,
                },
                |r| match r {
                    Reply::AuditEntries(e) => Some(e),
                    _ => None,
                },
            )?;
            let n = page.len();
            out.extend(page.into_iter().map(serde_bytes::ByteBuf::into_vec));
            if n < ihsm_proto::msg::AUDIT_PAGE {
                return Ok(out);
            }
            from = from.saturating_add(n as u64);
        }
    }

    /// A partition's ML-DSA-87 identity certificate (DER), issued by the RT Alias
    /// ML-DSA-87 key.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn partition_mldsa_certificate(&mut self, name: &str) -> Result<Vec<u8>> {
        self.bytes(&Request::PartitionMlDsaCertificate { name: name.into() })
    }

    /// A root-of-trust mailbox command; the raw response.
    ///
    /// # Errors
    /// As [`Client::call`]; [`ErrorCode::MailboxFailed`] with the mailbox's code.
    ///
    /// [`ErrorCode::MailboxFailed`]: ihsm_proto::ErrorCode::MailboxFailed
    pub fn mailbox(&mut self, command: u32, payload: Vec<u8>) -> Result<Vec<u8>> {
        self.bytes(&Request::Mailbox { command, payload })
    }

    /// Fires a tamper sensor: lid, thermal or voltage.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn tamper(&mut self, sensor: &str) -> Result<()> {
        self.done(&Request::Tamper {
            sensor: sensor.into(),
        })
    }

    // ---- partition: token, sessions, login --------------------------------------------

    /// This partition's description.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn info(&mut self) -> Result<PartitionInfo> {
        self.expect(&Request::Info, |r| match r {
            Reply::Partition(p) => Some(p),
            _ => None,
        })
    }

    /// The mechanisms the HSM implements.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn mechanisms(&mut self) -> Result<Vec<MechanismInfo>> {
        self.expect(&Request::Mechanisms, |r| match r {
            Reply::Mechanisms(m) => Some(m),
            _ => None,
        })
    }

    /// C_InitToken.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn init_token(&mut self, so_pin: &[u8]) -> Result<()> {
        self.done(&Request::InitToken {
            so_pin: SecretBytes::new(so_pin),
        })
    }

    /// Verifies this partition's audit log.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn audit_verify(&mut self) -> Result<AuditReport> {
        self.expect(&Request::AuditVerify, |r| match r {
            Reply::Audit(a) => Some(a),
            _ => None,
        })
    }

    /// C_OpenSession.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn open_session(&mut self, rw: bool) -> Result<u64> {
        self.handle(&Request::OpenSession { rw })
    }

    /// C_CloseSession.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn close_session(&mut self, session: u64) -> Result<()> {
        self.done(&Request::CloseSession { session })
    }

    /// C_CloseAllSessions.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn close_all_sessions(&mut self) -> Result<()> {
        self.done(&Request::CloseAllSessions)
    }

    /// C_GetSessionInfo's state.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn session_state(&mut self, session: u64) -> Result<SessionState> {
        self.expect(&Request::SessionState { session }, |r| match r {
            Reply::SessionState(s) => Some(s),
            _ => None,
        })
    }

    /// C_Login.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn login(&mut self, session: u64, user: UserType, pin: &[u8]) -> Result<()> {
        self.done(&Request::Login {
            session,
            user,
            pin: SecretBytes::new(pin),
        })
    }

    /// C_Logout.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn logout(&mut self, session: u64) -> Result<()> {
        self.done(&Request::Logout { session })
    }

    /// C_InitPIN.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn init_pin(&mut self, session: u64, pin: &[u8]) -> Result<()> {
        self.done(&Request::InitPin {
            session,
            pin: SecretBytes::new(pin),
        })
    }

    /// C_SetPIN.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn set_pin(&mut self, session: u64, old: &[u8], new: &[u8]) -> Result<()> {
        self.done(&Request::SetPin {
            session,
            old: SecretBytes::new(old),
            new: SecretBytes::new(new),
        })
    }

    // ---- objects -------------------------------------------------------------------------

    /// C_CreateObject.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_object(&mut self, session: u64, template: Vec<Attribute>) -> Result<u64> {
        self.handle(&Request::CreateObject { session, template })
    }

    /// Many objects in one durable transaction.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_objects(
        &mut self,
        session: u64,
        templates: Vec<Vec<Attribute>>,
    ) -> Result<Vec<u64>> {
        self.expect(
            &Request::CreateObjects { session, templates },
            |r| match r {
                Reply::Handles(h) => Some(h),
                _ => None,
            },
        )
    }

    /// C_DestroyObject.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn destroy_object(&mut self, session: u64, handle: u64) -> Result<()> {
        self.done(&Request::DestroyObject { session, handle })
    }

    /// C_GetAttributeValue.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn get_attributes(
        &mut self,
        session: u64,
        handle: u64,
        types: Vec<AttrType>,
    ) -> Result<Vec<AttrResult>> {
        self.expect(
            &Request::GetAttributes {
                session,
                handle,
                types,
            },
            |r| match r {
                Reply::Attributes(a) => Some(a),
                _ => None,
            },
        )
    }

    /// C_SetAttributeValue.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn set_attributes(
        &mut self,
        session: u64,
        handle: u64,
        template: Vec<Attribute>,
    ) -> Result<()> {
        self.done(&Request::SetAttributes {
            session,
            handle,
            template,
        })
    }

    /// C_CopyObject.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn copy_object(
        &mut self,
        session: u64,
        handle: u64,
        template: Vec<Attribute>,
    ) -> Result<u64> {
        self.handle(&Request::CopyObject {
            session,
            handle,
            template,
        })
    }

    /// C_FindObjects: every match.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn find(&mut self, session: u64, template: Vec<Attribute>) -> Result<Vec<u64>> {
        self.expect(&Request::Find { session, template }, |r| match r {
            Reply::Handles(h) => Some(h),
            _ => None,
        })
    }

    // ---- keys --------------------------------------------------------------------------------

    /// C_GenerateKey.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn generate_key(
        &mut self,
        session: u64,
        mech: Mechanism,
        template: Vec<Attribute>,
    ) -> Result<u64> {
        self.handle(&Request::GenerateKey {
            session,
            mech,
            template,
        })
    }

    /// C_GenerateKeyPair: (public, private).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn generate_key_pair(
        &mut self,
        session: u64,
        mech: Mechanism,
        public: Vec<Attribute>,
        private: Vec<Attribute>,
    ) -> Result<(u64, u64)> {
        self.expect(
            &Request::GenerateKeyPair {
                session,
                mech,
                public,
                private,
            },
            |r| match r {
                Reply::KeyPair(a, b) => Some((a, b)),
                _ => None,
            },
        )
    }

    /// C_WrapKey.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn wrap_key(
        &mut self,
        session: u64,
        mech: Mechanism,
        wrapping: u64,
        key: u64,
    ) -> Result<Vec<u8>> {
        self.bytes(&Request::WrapKey {
            session,
            mech,
            wrapping,
            key,
        })
    }

    /// C_UnwrapKey.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn unwrap_key(
        &mut self,
        session: u64,
        mech: Mechanism,
        unwrapping: u64,
        wrapped: Vec<u8>,
        template: Vec<Attribute>,
    ) -> Result<u64> {
        self.handle(&Request::UnwrapKey {
            session,
            mech,
            unwrapping,
            wrapped,
            template,
        })
    }

    /// C_DeriveKey.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn derive_key(
        &mut self,
        session: u64,
        mech: Mechanism,
        base: u64,
        template: Vec<Attribute>,
    ) -> Result<u64> {
        self.handle(&Request::DeriveKey {
            session,
            mech,
            base,
            template,
        })
    }

    /// C_EncapsulateKey: (ciphertext, secret handle).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn encapsulate(
        &mut self,
        session: u64,
        mech: Mechanism,
        public: u64,
        template: Vec<Attribute>,
    ) -> Result<(Vec<u8>, u64)> {
        self.expect(
            &Request::Encapsulate {
                session,
                mech,
                public,
                template,
            },
            |r| match r {
                Reply::Encapsulated { ciphertext, handle } => Some((ciphertext, handle)),
                _ => None,
            },
        )
    }

    /// C_DecapsulateKey.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn decapsulate(
        &mut self,
        session: u64,
        mech: Mechanism,
        private: u64,
        ciphertext: Vec<u8>,
        template: Vec<Attribute>,
    ) -> Result<u64> {
        self.handle(&Request::Decapsulate {
            session,
            mech,
            private,
            ciphertext,
            template,
        })
    }

    /// A masked blob of a key (this device and partition only).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn export_masked(&mut self, session: u64, handle: u64) -> Result<Vec<u8>> {
        self.bytes(&Request::ExportMasked { session, handle })
    }

    /// Imports a masked blob.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn import_masked(&mut self, session: u64, blob: Vec<u8>) -> Result<u64> {
        self.handle(&Request::ImportMasked { session, blob })
    }

    // ---- signatures -------------------------------------------------------------------------

    /// C_SignInit (or C_VerifyInit).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn sign_init(
        &mut self,
        session: u64,
        mech: Mechanism,
        key: u64,
        verify: bool,
    ) -> Result<()> {
        self.done(&Request::SignInit {
            session,
            mech,
            key,
            verify,
        })
    }

    /// C_Sign.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn sign(&mut self, session: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        self.bytes(&Request::Sign { session, data })
    }

    /// C_SignInit + C_Sign in one round trip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn sign_once(
        &mut self,
        session: u64,
        mech: Mechanism,
        key: u64,
        data: Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.bytes(&Request::SignOnce {
            session,
            mech,
            key,
            data,
        })
    }

    /// C_SignUpdate (or C_VerifyUpdate).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn sign_update(&mut self, session: u64, data: Vec<u8>, verify: bool) -> Result<()> {
        self.done(&Request::SignUpdate {
            session,
            data,
            verify,
        })
    }

    /// C_SignFinal.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn sign_final(&mut self, session: u64) -> Result<Vec<u8>> {
        self.bytes(&Request::SignFinal { session })
    }

    /// C_Verify.
    ///
    /// # Errors
    /// [`ErrorCode::SignatureInvalid`] and the rest.
    ///
    /// [`ErrorCode::SignatureInvalid`]: ihsm_proto::ErrorCode::SignatureInvalid
    pub fn verify(&mut self, session: u64, data: Vec<u8>, signature: Vec<u8>) -> Result<()> {
        self.done(&Request::Verify {
            session,
            data,
            signature,
        })
    }

    /// C_VerifyFinal.
    ///
    /// # Errors
    /// As [`Client::verify`].
    pub fn verify_final(&mut self, session: u64, signature: Vec<u8>) -> Result<()> {
        self.done(&Request::VerifyFinal { session, signature })
    }

    // ---- encryption ---------------------------------------------------------------------------

    /// C_EncryptInit (or C_DecryptInit).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn crypt_init(
        &mut self,
        session: u64,
        mech: Mechanism,
        key: u64,
        encrypt: bool,
    ) -> Result<()> {
        self.done(&Request::CryptInit {
            session,
            mech,
            key,
            encrypt,
        })
    }

    fn encrypted(&mut self, req: &Request) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        self.expect(req, |r| match r {
            Reply::Encrypted { data, iv } => Some((data, iv.map(serde_bytes::ByteBuf::into_vec))),
            _ => None,
        })
    }

    /// C_Encrypt: the ciphertext and, if the HSM drew it, the IV.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn encrypt(&mut self, session: u64, data: &[u8]) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        self.encrypted(&Request::Encrypt {
            session,
            data: SecretBytes::new(data),
        })
    }

    /// C_EncryptInit + C_Encrypt in one round trip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn encrypt_once(
        &mut self,
        session: u64,
        mech: Mechanism,
        key: u64,
        data: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        self.encrypted(&Request::EncryptOnce {
            session,
            mech,
            key,
            data: SecretBytes::new(data),
        })
    }

    /// C_Decrypt: the plaintext.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn decrypt(&mut self, session: u64, data: Vec<u8>) -> Result<SecretBytes> {
        self.secret(&Request::Decrypt { session, data })
    }

    /// C_EncryptUpdate (ciphertext) or C_DecryptUpdate (plaintext).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn crypt_update(
        &mut self,
        session: u64,
        data: &[u8],
        encrypt: bool,
    ) -> Result<SecretBytes> {
        let req = Request::CryptUpdate {
            session,
            data: SecretBytes::new(data),
            encrypt,
        };
        self.expect(&req, |r| match r {
            Reply::Secret(b) => Some(b),
            Reply::Bytes(b) => Some(SecretBytes::new(b)),
            _ => None,
        })
    }

    /// C_EncryptFinal.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn encrypt_final(&mut self, session: u64) -> Result<Vec<u8>> {
        self.bytes(&Request::EncryptFinal { session })
    }

    /// C_DecryptFinal.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn decrypt_final(&mut self, session: u64) -> Result<SecretBytes> {
        self.secret(&Request::DecryptFinal { session })
    }

    // ---- digest and random ---------------------------------------------------------------------

    /// C_DigestInit.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn digest_init(&mut self, session: u64, mech: Mechanism) -> Result<()> {
        self.done(&Request::DigestInit { session, mech })
    }

    /// C_DigestUpdate.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn digest_update(&mut self, session: u64, data: Vec<u8>) -> Result<()> {
        self.done(&Request::DigestUpdate { session, data })
    }

    /// C_DigestFinal.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn digest_final(&mut self, session: u64) -> Result<Vec<u8>> {
        self.bytes(&Request::DigestFinal { session })
    }

    /// C_GenerateRandom.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn random(&mut self, session: u64, len: u32) -> Result<SecretBytes> {
        self.secret(&Request::Random { session, len })
    }

    /// The Security Officer replaces the release policy of the one token key
    /// `selector` (`CKA_LABEL` and/or `CKA_ID`) names; the key's handle.
    ///
    /// # Errors
    /// As [`Client::call`]: no SO login, no key or several, a policy that does not
    /// parse.
    pub fn replace_release_policy(
        &mut self,
        session: u64,
        selector: Vec<ihsm_proto::attr::Attribute>,
        policy: Vec<u8>,
    ) -> Result<u64> {
        self.handle(&Request::ReplaceReleasePolicy {
            session,
            selector,
            policy,
        })
    }

    /// A key attestation report for `key` (docs/attestation.md §2): the
    /// ES384 COSE_Sign1 followed by the ML-DSA-87 one. `report_data` is at most
    /// 128 bytes (a nonce, or the hash of one), zero-padded.
    ///
    /// # Errors
    /// As [`Client::call`]; `DataLenRange` for longer report_data,
    /// `KeyTypeInconsistent` for an object a report cannot describe.
    pub fn key_report(&mut self, session: u64, key: u64, report_data: &[u8]) -> Result<Vec<u8>> {
        self.bytes(&Request::KeyReport {
            session,
            key,
            report_data: report_data.to_vec(),
        })
    }
}

fn admission(r: Reply) -> Option<(bool, PartitionInfo)> {
    match r {
        Reply::Admission { changed, partition } => Some((changed, partition)),
        _ => None,
    }
}
