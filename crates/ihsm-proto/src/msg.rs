//! The messages. A connection opens with [`Hello`] and [`HelloReply`]; then each
//! [`Request`] gets exactly one [`Response`]. One `Request` type serves both kinds
//! of socket: the daemon answers [`ErrorCode::WrongEndpoint`] to a partition
//! request on the admin socket and the other way round, so a confused client gets a
//! clear error and never a misread request.
//!
//! Sessions and handles are the core's: a connection is one PKCS#11 application;
//! closing it closes its sessions and logs it out.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::attr::{AttrResult, AttrType, Attribute};
use crate::error::{ErrorCode, WireError};
use crate::mech::{Mechanism, MechanismInfo};
use crate::types::{
    AuditReport, DeviceState, PartitionInfo, PartitionPolicy, Principal, Quotas, SessionState,
    UserType,
};

/// The first four bytes of every [`Hello`].
pub const MAGIC: [u8; 4] = *b"IHSM";
/// The newest protocol revision this build speaks. Revision 2 added
/// [`Request::AppToken`] and [`Request::JoinApp`]; revision 3 changed the layout
/// of [`PartitionInfo`] (PIN failure counts); revision 4 changed the layouts of
/// [`PartitionInfo`] (principals, policy) and [`PartitionSpec`] (policy) and
/// added [`Request::AllowPrincipal`], [`Request::RevokePrincipal`] and
/// [`Reply::Admission`], so earlier ones are no longer spoken; revision 5 added
/// [`Request::PartitionMlDsaCertificate`], [`Request::KeyReport`],
/// [`Request::AuditLog`], [`Request::DeviceAuditCertificate`] and
/// [`Reply::AuditEntries`]; revision 6 added [`Request::OpenRing`] and
/// [`Reply::Ring`] (shared-memory rings on a local socket),
/// [`Request::FleetHosts`], [`Reply::Fleet`] and
/// [`Request::ReplaceReleasePolicy`]; revision 7 added [`Request::MovePartition`]
/// and [`Reply::Moved`]; revision 8 added [`Request::FleetDomain`],
/// [`Request::FleetEvict`] and [`Reply::Domain`].
pub const REVISION: u16 = 8;
/// The oldest protocol revision this build speaks: a peer of an older one is
/// refused at its hello with both ranges named, not misread later.
pub const MIN_REVISION: u16 = 4;
/// Longest client name a [`Hello`] may carry.
pub const MAX_CLIENT_NAME: usize = 64;

/// Bytes that may be secret (PINs, key values): wiped when dropped (their whole
/// buffer), shown by length only, compared in constant time, and not `Clone`: a
/// copy is made only by [`SecretBytes::duplicate`], by name.
///
/// ```compile_fail
/// fn copy(s: &ihsm_proto::SecretBytes) -> ihsm_proto::SecretBytes {
///     s.clone() // no Clone: `duplicate` says what it does
/// }
/// ```
#[derive(Default)]
pub struct SecretBytes(Vec<u8>);

impl Drop for SecretBytes {
    fn drop(&mut self) {
        crate::wipe_vec(&mut self.0);
    }
}

/// Constant time in the contents (the length is not secret).
impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        crate::ct_eq(&self.0, &other.0)
    }
}

impl Eq for SecretBytes {}

impl SecretBytes {
    /// Wraps bytes.
    #[must_use]
    pub fn new(v: impl Into<Vec<u8>>) -> Self {
        Self(v.into())
    }

    /// The bytes, moved into a buffer that zeroizes itself.
    #[must_use]
    pub fn into_zeroizing(mut self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(core::mem::take(&mut self.0))
    }

    /// The bytes.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// A second copy of the secret, wiped on drop like the first. The one way to
    /// copy one: each call is a place where a secret is doubled, to be read as such.
    #[must_use]
    pub fn duplicate(&self) -> Self {
        Self(self.0.clone())
    }
}

impl core::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SecretBytes(<{} bytes>)", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = serde_bytes::ByteBuf::deserialize(d)?;
        Ok(Self(b.into_vec()))
    }
}

/// The client's opening message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// Oldest revision the client speaks.
    pub min_revision: u16,
    /// Newest revision the client speaks.
    pub max_revision: u16,
    /// Who is calling ("ihsm-pkcs11 0.1.0"), for the daemon's log; at most
    /// [`MAX_CLIENT_NAME`] bytes.
    pub client: String,
}

impl Hello {
    /// This build's hello.
    #[must_use]
    pub fn new(client: &str) -> Self {
        let mut name = client.to_owned();
        while name.len() > MAX_CLIENT_NAME {
            name.pop();
        }
        Self {
            magic: MAGIC,
            min_revision: MIN_REVISION,
            max_revision: REVISION,
            client: name,
        }
    }

    /// The daemon's side: the revision both speak, or why there is none.
    ///
    /// # Errors
    /// [`ErrorCode::Malformed`] for a wrong magic or an overlong name;
    /// [`ErrorCode::VersionUnsupported`] when the ranges do not overlap.
    pub fn negotiate(&self) -> Result<u16, WireError> {
        if self.magic != MAGIC {
            return Err(WireError::new(
                ErrorCode::Malformed,
                "not an ihsm client (bad magic in the hello)",
            ));
        }
        if self.client.len() > MAX_CLIENT_NAME {
            return Err(WireError::new(
                ErrorCode::Malformed,
                format!("client name longer than {MAX_CLIENT_NAME} bytes"),
            ));
        }
        let hi = self.max_revision.min(REVISION);
        let lo = self.min_revision.max(MIN_REVISION);
        if self.min_revision > self.max_revision || lo > hi {
            return Err(WireError::new(
                ErrorCode::VersionUnsupported,
                format!(
                    "protocol revision mismatch: the client speaks {}..={}, this daemon {MIN_REVISION}..={REVISION}; upgrade the older side",
                    self.min_revision, self.max_revision
                ),
            ));
        }
        Ok(hi)
    }
}

/// The daemon's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Connected.
    Accepted {
        /// The agreed revision.
        revision: u16,
        /// The daemon's version.
        daemon: String,
        /// What this connection reaches.
        endpoint: Endpoint,
    },
    /// Refused; the daemon closes the connection.
    Refused(WireError),
}

/// What a connection reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    /// Device administration and the root of trust's mailbox.
    Admin,
    /// One partition.
    Partition {
        /// Its id.
        id: u32,
        /// Its name.
        name: String,
    },
}

/// A new partition.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSpec {
    /// Name: 1 to 32 of a-z, 0-9, '-', '_'.
    pub name: String,
    /// Owner uid: the only uid (with [`Self::owner_gid`]) its socket accepts.
    pub owner_uid: u32,
    /// A group whose members may also connect; `u32::MAX` (a gid no process has)
    /// for none.
    pub owner_gid: u32,
    /// Security Officer PIN.
    pub so_pin: SecretBytes,
    /// User PIN, if set now.
    pub user_pin: Option<SecretBytes>,
    /// Quotas; the daemon's configured defaults if absent.
    pub quotas: Option<Quotas>,
    /// Policy (revision 4).
    pub policy: PartitionPolicy,
}

/// The device, as `ihsm status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// The daemon's version.
    pub version: String,
    /// The device state.
    pub state: DeviceState,
    /// Whether this is a development device (development keys in its state).
    pub development: bool,
    /// The root of trust's boot report, as JSON (ihsm-rot's `BootReport`).
    pub boot_report: String,
    /// Partitions.
    pub partitions: Vec<PartitionInfo>,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// The state directory.
    pub state_dir: String,
    /// The admin socket.
    pub admin_socket: String,
    /// The directory of partition sockets.
    pub partition_dir: String,
    /// The network listener, if network mode is on.
    pub network: Option<String>,
    /// The metrics listener, if on.
    pub metrics: Option<String>,
}

/// A request.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Does nothing; answers [`Reply::Pong`] (both endpoints).
    Ping,

    // ---- admin socket ------------------------------------------------------------
    /// The device's status.
    Status,
    /// Create a partition.
    CreatePartition(PartitionSpec),
    /// Every partition.
    ListPartitions,
    /// One partition.
    DescribePartition {
        /// Its name.
        name: String,
    },
    /// Delete a partition and zeroize everything in it.
    DeletePartition {
        /// Its name.
        name: String,
    },
    /// The partition identity key's certificate (DER), issued by the RT Alias.
    PartitionCertificate {
        /// Its name.
        name: String,
    },
    /// A root-of-trust mailbox command (Caliptra's command codes and checksummed
    /// payload); the reply is the raw mailbox response.
    Mailbox {
        /// The 4-ASCII-byte command code.
        command: u32,
        /// Checksum and arguments, as Caliptra frames them.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A tamper sensor fires (lid, thermal, voltage).
    Tamper {
        /// Which sensor.
        sensor: String,
    },

    // ---- partition socket: the token -----------------------------------------------
    /// This partition's description.
    Info,
    /// The mechanisms the HSM implements.
    Mechanisms,
    /// C_InitToken: re-initialize the partition (SO PIN), destroying its objects.
    InitToken {
        /// The SO PIN.
        so_pin: SecretBytes,
    },
    /// Verify this partition's audit log.
    AuditVerify,

    // ---- sessions and login -------------------------------------------------------------
    /// C_OpenSession.
    OpenSession {
        /// Read-write.
        rw: bool,
    },
    /// C_CloseSession.
    CloseSession {
        /// Session.
        session: u64,
    },
    /// C_CloseAllSessions (this connection's).
    CloseAllSessions,
    /// C_GetSessionInfo.
    SessionState {
        /// Session.
        session: u64,
    },
    /// C_Login.
    Login {
        /// Session.
        session: u64,
        /// Who.
        user: UserType,
        /// PIN.
        pin: SecretBytes,
    },
    /// C_Logout.
    Logout {
        /// Session.
        session: u64,
    },
    /// C_InitPIN (SO).
    InitPin {
        /// Session.
        session: u64,
        /// New user PIN.
        pin: SecretBytes,
    },
    /// C_SetPIN.
    SetPin {
        /// Session.
        session: u64,
        /// Old PIN.
        old: SecretBytes,
        /// New PIN.
        new: SecretBytes,
    },

    // ---- objects ----------------------------------------------------------------------
    /// C_CreateObject.
    CreateObject {
        /// Session.
        session: u64,
        /// Template (may hold key material).
        template: Vec<Attribute>,
    },
    /// Many C_CreateObject in one durable transaction.
    CreateObjects {
        /// Session.
        session: u64,
        /// Templates.
        templates: Vec<Vec<Attribute>>,
    },
    /// C_DestroyObject.
    DestroyObject {
        /// Session.
        session: u64,
        /// Object.
        handle: u64,
    },
    /// C_GetAttributeValue.
    GetAttributes {
        /// Session.
        session: u64,
        /// Object.
        handle: u64,
        /// Types wanted.
        types: Vec<AttrType>,
    },
    /// C_SetAttributeValue.
    SetAttributes {
        /// Session.
        session: u64,
        /// Object.
        handle: u64,
        /// New values.
        template: Vec<Attribute>,
    },
    /// C_CopyObject.
    CopyObject {
        /// Session.
        session: u64,
        /// Object.
        handle: u64,
        /// Changes.
        template: Vec<Attribute>,
    },
    /// C_FindObjects (all at once; the module pages them).
    Find {
        /// Session.
        session: u64,
        /// Template to match.
        template: Vec<Attribute>,
    },

    // ---- keys --------------------------------------------------------------------------
    /// C_GenerateKey.
    GenerateKey {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Template.
        template: Vec<Attribute>,
    },
    /// C_GenerateKeyPair.
    GenerateKeyPair {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Public key template.
        public: Vec<Attribute>,
        /// Private key template.
        private: Vec<Attribute>,
    },
    /// C_WrapKey.
    WrapKey {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Wrapping key.
        wrapping: u64,
        /// Key to wrap.
        key: u64,
    },
    /// C_UnwrapKey.
    UnwrapKey {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Unwrapping key.
        unwrapping: u64,
        /// Wrapped key.
        #[serde(with = "serde_bytes")]
        wrapped: Vec<u8>,
        /// Template of the new key.
        template: Vec<Attribute>,
    },
    /// C_DeriveKey.
    DeriveKey {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Base key.
        base: u64,
        /// Template of the new key.
        template: Vec<Attribute>,
    },
    /// C_EncapsulateKey.
    Encapsulate {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Public key.
        public: u64,
        /// Template of the shared secret.
        template: Vec<Attribute>,
    },
    /// C_DecapsulateKey.
    Decapsulate {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Private key.
        private: u64,
        /// Ciphertext.
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
        /// Template of the shared secret.
        template: Vec<Attribute>,
    },
    /// Export a key as a masked blob (this device and partition only).
    ExportMasked {
        /// Session.
        session: u64,
        /// Key.
        handle: u64,
    },
    /// Import a masked blob.
    ImportMasked {
        /// Session.
        session: u64,
        /// The blob.
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
    },

    // ---- signatures ------------------------------------------------------------------------
    /// C_SignInit / C_VerifyInit.
    SignInit {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Key.
        key: u64,
        /// Verify rather than sign.
        verify: bool,
    },
    /// C_Sign.
    Sign {
        /// Session.
        session: u64,
        /// Data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// C_SignInit + C_Sign in one round trip.
    SignOnce {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Key.
        key: u64,
        /// Data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// C_SignUpdate / C_VerifyUpdate.
    SignUpdate {
        /// Session.
        session: u64,
        /// Data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// The verify operation rather than the sign one.
        verify: bool,
    },
    /// C_SignFinal.
    SignFinal {
        /// Session.
        session: u64,
    },
    /// C_Verify.
    Verify {
        /// Session.
        session: u64,
        /// Data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Signature.
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    /// C_VerifyFinal.
    VerifyFinal {
        /// Session.
        session: u64,
        /// Signature.
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },

    // ---- encryption ------------------------------------------------------------------------
    /// C_EncryptInit / C_DecryptInit.
    CryptInit {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Key.
        key: u64,
        /// Encrypt rather than decrypt.
        encrypt: bool,
    },
    /// C_Encrypt.
    Encrypt {
        /// Session.
        session: u64,
        /// Plaintext.
        data: SecretBytes,
    },
    /// C_EncryptInit + C_Encrypt in one round trip.
    EncryptOnce {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
        /// Key.
        key: u64,
        /// Plaintext.
        data: SecretBytes,
    },
    /// C_Decrypt.
    Decrypt {
        /// Session.
        session: u64,
        /// Ciphertext.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// C_EncryptUpdate / C_DecryptUpdate.
    CryptUpdate {
        /// Session.
        session: u64,
        /// Data.
        data: SecretBytes,
        /// The encrypt operation rather than the decrypt one.
        encrypt: bool,
    },
    /// C_EncryptFinal.
    EncryptFinal {
        /// Session.
        session: u64,
    },
    /// C_DecryptFinal.
    DecryptFinal {
        /// Session.
        session: u64,
    },

    // ---- digest and random ---------------------------------------------------------------------
    /// C_DigestInit.
    DigestInit {
        /// Session.
        session: u64,
        /// Mechanism.
        mech: Mechanism,
    },
    /// C_DigestUpdate.
    DigestUpdate {
        /// Session.
        session: u64,
        /// Data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// C_DigestFinal.
    DigestFinal {
        /// Session.
        session: u64,
    },
    /// C_GenerateRandom.
    Random {
        /// Session.
        session: u64,
        /// Bytes wanted.
        len: u32,
    },
    /// A secret naming this connection's application (its sessions and login),
    /// which another connection of the same user to the same partition presents
    /// in [`Request::JoinApp`] to act for the same application: how a
    /// multi-threaded client keeps one PKCS#11 application over several
    /// connections. Answers [`Reply::Secret`] (revision 2).
    AppToken,
    /// Makes this connection part of the application `token` names (from
    /// [`Request::AppToken`] on another connection). The connection's own
    /// application, and any sessions it had, end. An application lasts until its
    /// last connection closes (revision 2).
    JoinApp {
        /// The token.
        token: SecretBytes,
    },

    // ---- admin socket, revision 4 ---------------------------------------------------------
    /// Admit a principal to a partition besides its owner (at most
    /// [`crate::types::MAX_PRINCIPALS`]); answers [`Reply::Admission`]. Allowing
    /// one already admitted changes nothing and says so.
    AllowPrincipal {
        /// The partition's name.
        name: String,
        /// Whom.
        principal: Principal,
    },
    /// Stop admitting a principal: new connections are refused, and the
    /// partition's open connections that it alone admitted are closed (their
    /// sessions with them). Answers [`Reply::Admission`]; the owner cannot be
    /// revoked.
    RevokePrincipal {
        /// The partition's name.
        name: String,
        /// Whom.
        principal: Principal,
    },

    // ---- revision 5 -----------------------------------------------------------------
    /// The partition's ML-DSA-87 identity key's certificate (DER), issued by the RT
    /// Alias ML-DSA-87 key (admin socket).
    PartitionMlDsaCertificate {
        /// Its name.
        name: String,
    },
    /// A key attestation report for `key` (docs/attestation.md §2): answers
    /// [`Reply::Bytes`], the two-COSE_Sign1 envelope.
    KeyReport {
        /// Session.
        session: u64,
        /// The key.
        key: u64,
        /// At most 128 bytes, zero-padded into the report.
        #[serde(with = "serde_bytes")]
        report_data: Vec<u8>,
    },
    /// Stored entries of an audit log, in order, from sequence number `since`
    /// (admin socket): at most [`AUDIT_PAGE`] per request; answers
    /// [`Reply::AuditEntries`], empty past the end.
    AuditLog {
        /// The partition's name, or `None` for the device's own log.
        partition: Option<String>,
        /// The first sequence number wanted (entries start at 1).
        since: u64,
    },
    /// The certificate (DER) of the key that signs the device log's checkpoints,
    /// issued by the RT Alias (admin socket).
    DeviceAuditCertificate,
    /// The fleet as this host sees it: every host registered in etcd, each
    /// appraised against this host's fleet policy (admin socket; revision 6).
    /// Answers [`Reply::Fleet`].
    FleetHosts,
    /// The Security Officer replaces the release policy of the one token key
    /// with a policy that `selector` (`CKA_LABEL` and/or `CKA_ID`) names; the SO
    /// cannot see private keys, so it names them (revision 6). Answers
    /// [`Reply::Handle`], the key's handle.
    ReplaceReleasePolicy {
        /// Session, logged in as the SO.
        session: u64,
        /// `CKA_LABEL` and/or `CKA_ID`.
        selector: Vec<Attribute>,
        /// The new policy (JSON).
        #[serde(with = "serde_bytes")]
        policy: Vec<u8>,
    },

    // ---- revision 6 -----------------------------------------------------------------
    /// Asks for shared-memory rings on this local connection (both sockets;
    /// refused in network mode): answers [`Reply::Ring`], whose frame carries
    /// the region's memfd and the daemon's doorbell eventfd (`SCM_RIGHTS`,
    /// in that order). docs/protocol.md, "Rings".
    OpenRing,

    // ---- revision 7 -----------------------------------------------------------------
    /// Moves partition `name` from this host to fleet host `to` (admin socket):
    /// the destination's fresh evidence is appraised, the partition sealed to its
    /// attested transfer key, and the placement flipped in etcd. Answers
    /// [`Reply::Moved`]; docs/fleet.md, "Moves".
    MovePartition {
        /// The partition.
        name: String,
        /// The destination host's fleet name.
        to: String,
    },

    // ---- revision 8 -----------------------------------------------------------------
    /// The fleet masking domain as this host holds it and etcd shows it (admin
    /// socket). Answers [`Reply::Domain`]; docs/fleet.md, "The masking domain".
    FleetDomain,
    /// Evicts fleet host `host` from the masking domain (admin socket): a new
    /// epoch, sealed to every accepted host but it. Answers [`Reply::Domain`].
    FleetEvict {
        /// The host's fleet name (it need not be in the fleet now).
        host: String,
    },
}

/// One host of the fleet, as [`Request::FleetHosts`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetHost {
    /// Its name (its etcd key's).
    pub host: String,
    /// Its peer address, as its record says (empty when unreadable).
    pub peer: String,
    /// Whether its record and evidence were accepted.
    pub affirmed: bool,
    /// Why not, when not.
    pub refusal: Option<String>,
    /// Its device's UEID (hex), when its chain verified.
    pub ueid: Option<String>,
    /// Its firmware SVN, when its chain verified.
    pub svn: Option<u32>,
    /// The partitions it serves, as its record says.
    pub partitions: Vec<String>,
    /// Connections open to its partitions when its record was made.
    pub connections: u32,
    /// When its record was made (Unix seconds).
    pub issued_at: u64,
    /// Each verifier check and whether it affirmed.
    pub checks: Vec<(String, bool)>,
    /// SHA-256 (hex) of its transfer key (the SEC1 point its RT Alias
    /// certified), when it was accepted: what partitions moving to it are sealed
    /// to.
    pub transfer_key_sha256: Option<String>,
}

/// The answer to [`Request::FleetHosts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetView {
    /// This host's name.
    pub this_host: String,
    /// Where this host stands: `joined`, `joining` or `cut off: <why>`.
    pub membership: String,
    /// Every host found, sorted by name.
    pub hosts: Vec<FleetHost>,
}

/// Most entries one [`Request::AuditLog`] returns.
pub const AUDIT_PAGE: usize = 1024;

/// Which socket serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The admin socket only.
    Admin,
    /// Partition sockets only.
    Partition,
    /// Both.
    Both,
}

impl Request {
    /// Which socket serves this request.
    #[must_use]
    pub fn serves(&self) -> Serves {
        match self {
            Self::Ping | Self::OpenRing => Serves::Both,
            Self::Status
            | Self::CreatePartition(_)
            | Self::ListPartitions
            | Self::DescribePartition { .. }
            | Self::DeletePartition { .. }
            | Self::PartitionCertificate { .. }
            | Self::Mailbox { .. }
            | Self::Tamper { .. }
            | Self::AllowPrincipal { .. }
            | Self::RevokePrincipal { .. }
            | Self::PartitionMlDsaCertificate { .. }
            | Self::AuditLog { .. }
            | Self::DeviceAuditCertificate
            | Self::FleetHosts
            | Self::MovePartition { .. }
            | Self::FleetDomain
            | Self::FleetEvict { .. } => Serves::Admin,
            _ => Serves::Partition,
        }
    }

    /// A short name for logs and metrics (never the contents).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Status => "status",
            Self::CreatePartition(_) => "create_partition",
            Self::ListPartitions => "list_partitions",
            Self::DescribePartition { .. } => "describe_partition",
            Self::DeletePartition { .. } => "delete_partition",
            Self::PartitionCertificate { .. } => "partition_certificate",
            Self::Mailbox { .. } => "mailbox",
            Self::Tamper { .. } => "tamper",
            Self::Info => "info",
            Self::Mechanisms => "mechanisms",
            Self::InitToken { .. } => "init_token",
            Self::AuditVerify => "audit_verify",
            Self::OpenSession { .. } => "open_session",
            Self::CloseSession { .. } => "close_session",
            Self::CloseAllSessions => "close_all_sessions",
            Self::SessionState { .. } => "session_state",
            Self::Login { .. } => "login",
            Self::Logout { .. } => "logout",
            Self::InitPin { .. } => "init_pin",
            Self::SetPin { .. } => "set_pin",
            Self::CreateObject { .. } => "create_object",
            Self::CreateObjects { .. } => "create_objects",
            Self::DestroyObject { .. } => "destroy_object",
            Self::GetAttributes { .. } => "get_attributes",
            Self::SetAttributes { .. } => "set_attributes",
            Self::CopyObject { .. } => "copy_object",
            Self::Find { .. } => "find",
            Self::GenerateKey { .. } => "generate_key",
            Self::GenerateKeyPair { .. } => "generate_key_pair",
            Self::WrapKey { .. } => "wrap_key",
            Self::UnwrapKey { .. } => "unwrap_key",
            Self::DeriveKey { .. } => "derive_key",
            Self::Encapsulate { .. } => "encapsulate",
            Self::Decapsulate { .. } => "decapsulate",
            Self::ExportMasked { .. } => "export_masked",
            Self::ImportMasked { .. } => "import_masked",
            Self::SignInit { verify: false, .. } => "sign_init",
            Self::SignInit { verify: true, .. } => "verify_init",
            Self::Sign { .. } => "sign",
            Self::SignOnce { .. } => "sign_once",
            Self::SignUpdate { verify: false, .. } => "sign_update",
            Self::SignUpdate { verify: true, .. } => "verify_update",
            Self::SignFinal { .. } => "sign_final",
            Self::Verify { .. } => "verify",
            Self::VerifyFinal { .. } => "verify_final",
            Self::CryptInit { encrypt: true, .. } => "encrypt_init",
            Self::CryptInit { encrypt: false, .. } => "decrypt_init",
            Self::Encrypt { .. } => "encrypt",
            Self::EncryptOnce { .. } => "encrypt_once",
            Self::Decrypt { .. } => "decrypt",
            Self::CryptUpdate { encrypt: true, .. } => "encrypt_update",
            Self::CryptUpdate { encrypt: false, .. } => "decrypt_update",
            Self::EncryptFinal { .. } => "encrypt_final",
            Self::DecryptFinal { .. } => "decrypt_final",
            Self::DigestInit { .. } => "digest_init",
            Self::DigestUpdate { .. } => "digest_update",
            Self::DigestFinal { .. } => "digest_final",
            Self::Random { .. } => "random",
            Self::AppToken => "app_token",
            Self::JoinApp { .. } => "join_app",
            Self::AllowPrincipal { .. } => "allow_principal",
            Self::RevokePrincipal { .. } => "revoke_principal",
            Self::PartitionMlDsaCertificate { .. } => "partition_mldsa_certificate",
            Self::KeyReport { .. } => "key_report",
            Self::AuditLog { .. } => "audit_log",
            Self::DeviceAuditCertificate => "device_audit_certificate",
            Self::FleetHosts => "fleet_hosts",
            Self::ReplaceReleasePolicy { .. } => "replace_release_policy",
            Self::OpenRing => "open_ring",
            Self::MovePartition { .. } => "move_partition",
            Self::FleetDomain => "fleet_domain",
            Self::FleetEvict { .. } => "fleet_evict",
        }
    }

    /// The mechanism the request names, if any (for metrics).
    #[must_use]
    pub fn mechanism(&self) -> Option<&Mechanism> {
        match self {
            Self::GenerateKey { mech, .. }
            | Self::GenerateKeyPair { mech, .. }
            | Self::WrapKey { mech, .. }
            | Self::UnwrapKey { mech, .. }
            | Self::DeriveKey { mech, .. }
            | Self::Encapsulate { mech, .. }
            | Self::Decapsulate { mech, .. }
            | Self::SignInit { mech, .. }
            | Self::SignOnce { mech, .. }
            | Self::CryptInit { mech, .. }
            | Self::EncryptOnce { mech, .. }
            | Self::DigestInit { mech, .. } => Some(mech),
            _ => None,
        }
    }
}

/// A successful answer.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Request::Ping`].
    Pong,
    /// Done, nothing to return.
    Done,
    /// A session or object handle.
    Handle(u64),
    /// Handles.
    Handles(Vec<u64>),
    /// A key pair: public, private.
    KeyPair(u64, u64),
    /// Bytes that are not secret (signatures, ciphertexts, wrapped keys, digests).
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Bytes that may be secret (plaintexts, random).
    Secret(SecretBytes),
    /// A ciphertext and, when the HSM drew it, the IV.
    Encrypted {
        /// Ciphertext (with tag for AES-GCM).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// The IV the HSM generated.
        iv: Option<serde_bytes::ByteBuf>,
    },
    /// An encapsulation: ciphertext and the new secret's handle.
    Encapsulated {
        /// Ciphertext for the peer.
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
        /// The shared secret object.
        handle: u64,
    },
    /// Attribute values.
    Attributes(Vec<AttrResult>),
    /// A session state.
    SessionState(SessionState),
    /// A partition.
    Partition(PartitionInfo),
    /// Partitions.
    Partitions(Vec<PartitionInfo>),
    /// Mechanisms.
    Mechanisms(Vec<MechanismInfo>),
    /// An audit verification.
    Audit(AuditReport),
    /// The device's status.
    Status(Box<DeviceStatus>),
    /// To [`Request::AllowPrincipal`] and [`Request::RevokePrincipal`]: whether
    /// the set changed, and the partition as it is now (revision 4).
    Admission {
        /// Whether the principal was added (or removed); `false` when it already
        /// was (or was not) admitted.
        changed: bool,
        /// The partition.
        partition: PartitionInfo,
    },
    /// To [`Request::AuditLog`]: stored entries as the store holds them (their
    /// encoding is docs/audit.md's), in order (revision 5).
    AuditEntries(Vec<serde_bytes::ByteBuf>),
    /// To [`Request::FleetHosts`] (revision 6).
    Fleet(Box<FleetView>),
    /// To [`Request::OpenRing`]: the rings' geometry; the frame carries the
    /// region and the doorbell (revision 6).
    Ring {
        /// Slots per ring.
        slots: u32,
        /// Bytes per slot, its 16-byte header included.
        slot_bytes: u32,
    },
    /// To [`Request::MovePartition`] (revision 7).
    Moved(Box<MoveReport>),
    /// To [`Request::FleetDomain`] and [`Request::FleetEvict`] (revision 8).
    Domain(Box<DomainView>),
}

/// The fleet masking domain as one host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainView {
    /// This host's name.
    pub this_host: String,
    /// The epoch this host holds now, if it holds the domain.
    pub epoch: Option<u32>,
    /// Every epoch it holds (older ones open older blobs), oldest first.
    pub held: Vec<u32>,
    /// The host that drew the current epoch.
    pub issuer: String,
    /// The hosts evicted so far.
    pub evicted: Vec<String>,
    /// The current epoch as etcd's record says (trusted for nothing), when etcd
    /// answered.
    pub fleet_epoch: Option<u32>,
    /// To [`Request::FleetEvict`]: the hosts the new epoch was sealed to.
    pub sealed_to: Vec<String>,
}

/// What [`Request::MovePartition`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveReport {
    /// The partition.
    pub partition: String,
    /// The source host (this one).
    pub from: String,
    /// The destination host.
    pub to: String,
    /// The placement epoch the move replaced.
    pub epoch: u64,
    /// The new placement's epoch.
    pub new_epoch: u64,
    /// The sealed bundle's size.
    pub bundle_bytes: u64,
    /// The destination's UEID (hex), as its evidence proved it.
    pub to_ueid: String,
    /// How long the move took, in milliseconds.
    pub millis: u64,
}

impl Reply {
    /// The variant's name, for messages: never its content, which may be secret
    /// (decrypted data, say) or large.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pong => "pong",
            Self::Done => "done",
            Self::Handle(_) => "handle",
            Self::Handles(_) => "handles",
            Self::KeyPair(..) => "key pair",
            Self::Bytes(_) => "bytes",
            Self::Secret(_) => "secret",
            Self::Encrypted { .. } => "encrypted",
            Self::Encapsulated { .. } => "encapsulated",
            Self::Attributes(_) => "attributes",
            Self::SessionState(_) => "session state",
            Self::Partition(_) => "partition",
            Self::Partitions(_) => "partitions",
            Self::Mechanisms(_) => "mechanisms",
            Self::Audit(_) => "audit",
            Self::Status(_) => "status",
            Self::Admission { .. } => "admission",
            Self::AuditEntries(_) => "audit entries",
            Self::Fleet(_) => "fleet",
            Self::Ring { .. } => "ring",
            Self::Moved(_) => "moved",
            Self::Domain(_) => "domain",
        }
    }
}

/// The answer to a request.
pub type Response = Result<Reply, WireError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_compare_by_content_print_by_length_and_copy_only_by_name() {
        let a = SecretBytes::new(b"user-pin-1234".to_vec());
        let b = a.duplicate();
        assert_eq!(a, b);
        assert_ne!(a, SecretBytes::new(b"user-pin-1235".to_vec()));
        assert_ne!(a, SecretBytes::new(b"user-pin-123".to_vec()));
        assert_eq!(format!("{a:?}"), "SecretBytes(<13 bytes>)");
        // The wire form is that of plain bytes, both ways.
        let wire = postcard::to_allocvec(&a).unwrap();
        assert_eq!(
            wire,
            postcard::to_allocvec(&serde_bytes::Bytes::new(b"user-pin-1234")).unwrap()
        );
        assert_eq!(postcard::from_bytes::<SecretBytes>(&wire).unwrap(), a);
        assert_eq!(&*b.into_zeroizing(), b"user-pin-1234");
    }
}
