//! What each request does: a direct translation to the core. No policy lives here;
//! the core decides. The only thing added is the connection's application id (its
//! PKCS#11 application) and the running firmware's SVN for masked keys.

use ihsm_core::CoreError;
use ihsm_core::partition::Partition;
use ihsm_crypto::ExposeSecret;
use ihsm_proto::msg::{Reply, Request, SecretBytes};

/// Zeroizes a template's values (a key's, when one is imported) before its
/// buffers are freed: a freed buffer keeps its bytes until reused, and on a
/// thread that allocates little (the slow pool's) that can be long.
fn wipe(template: &mut [ihsm_proto::attr::Attribute]) {
    for a in template {
        zeroize::Zeroize::zeroize(&mut a.value);
    }
}

fn secret(v: &impl ExposeSecret<[u8]>) -> Reply {
    Reply::Secret(SecretBytes::new(v.expose_secret().to_vec()))
}

/// Whether a request may take long: a heavy request leaves the async worker's
/// thread, and on a partition's socket it first waits for one of the
/// partition's turns for slow requests (`[daemon]
/// max_slow_requests_per_partition`), so that one tenant cannot occupy every
/// CPU or the disk. A quick request is answered where it was read.
///
/// The rule, by what a request does:
///
/// - **heavy** when it writes durably (a store transaction, which waits for
///   the disk: a token object made, changed or destroyed, a PIN, a partition
///   or the principals it admits,
///   or an audit entry, which a login, a key wrap and a masked export write
///   though they change no object), hashes a PIN (PBKDF2 at the configured
///   count), generates a key (an RSA key pair is a search for primes), reads
///   the whole audit log back to check it, may run the power-on self-tests
///   (a mailbox command may be `SELF_TEST_START`), or zeroizes the device and
///   destroys its fuses (a tamper). A request that makes an object is heavy
///   even when the object is a session object: its template says which, and
///   the rule looks at what a request may do, not at its arguments;
/// - **quick** otherwise: session and application bookkeeping in memory,
///   reads (attributes, finds, the partition list, the status), and
///   cryptographic operations with a key that exists (its certificate, for a
///   partition's identity key), whose cost is bounded by the bytes the request
///   brought.
///
/// The match names every request, so a new one must be classified here.
#[must_use]
pub(crate) fn is_heavy(req: &Request) -> bool {
    use Request as R;
    match req {
        // Durable writes, and PIN hashing with them.
        R::ReplaceReleasePolicy { .. }
        | R::CreatePartition(_)
        | R::DeletePartition { .. }
        | R::AllowPrincipal { .. }
        | R::RevokePrincipal { .. }
        | R::InitToken { .. }
        | R::Login { .. }
        | R::InitPin { .. }
        | R::SetPin { .. }
        | R::CreateObject { .. }
        | R::CreateObjects { .. }
        | R::DestroyObject { .. }
        | R::SetAttributes { .. }
        | R::CopyObject { .. }
        | R::WrapKey { .. }
        | R::ExportMasked { .. }
        | R::ImportMasked { .. } => true,
        // A durable audit entry (the report's counter), then two signatures; also
        // as the PKCS#11 module asks for it (C_SignInit + C_Sign, one call).
        R::KeyReport { .. }
        | R::SignOnce {
            mech: ihsm_proto::mech::Mechanism::KeyReport,
            ..
        } => true,
        // Key generation, and requests that make a key from another's.
        R::GenerateKey { .. }
        | R::GenerateKeyPair { .. }
        | R::UnwrapKey { .. }
        | R::DeriveKey { .. }
        | R::Encapsulate { .. }
        | R::Decapsulate { .. } => true,
        // Long reads, the self-tests, the tamper response.
        R::AuditVerify
        | R::AuditLog { .. }
        | R::Mailbox { .. }
        | R::Tamper { .. }
        | R::FleetHosts
        | R::MovePartition { .. }
        | R::FleetDomain
        | R::FleetEvict { .. } => true,
        // In memory.
        R::Ping
        | R::Status
        | R::ListPartitions
        | R::DescribePartition { .. }
        | R::Info
        | R::Mechanisms
        | R::OpenSession { .. }
        | R::CloseSession { .. }
        | R::CloseAllSessions
        | R::SessionState { .. }
        | R::Logout { .. }
        | R::AppToken
        | R::JoinApp { .. }
        | R::OpenRing => false,
        // Reads of the store.
        R::GetAttributes { .. } | R::Find { .. } => false,
        // Cryptography with keys that exist, and random bytes.
        R::PartitionCertificate { .. }
        | R::PartitionMlDsaCertificate { .. }
        | R::DeviceAuditCertificate
        | R::SignInit { .. }
        | R::Sign { .. }
        | R::SignOnce { .. }
        | R::SignUpdate { .. }
        | R::SignFinal { .. }
        | R::Verify { .. }
        | R::VerifyFinal { .. }
        | R::CryptInit { .. }
        | R::Encrypt { .. }
        | R::EncryptOnce { .. }
        | R::Decrypt { .. }
        | R::CryptUpdate { .. }
        | R::EncryptFinal { .. }
        | R::DecryptFinal { .. }
        | R::DigestInit { .. }
        | R::DigestUpdate { .. }
        | R::DigestFinal { .. }
        | R::Random { .. } => false,
    }
}

/// Carries out a partition request for application `app`.
///
/// # Errors
/// The core's.
pub(crate) fn partition(
    p: &Partition,
    app: u64,
    svn: u32,
    req: Request,
) -> Result<Reply, CoreError> {
    use Request as R;
    Ok(match req {
        R::Ping => Reply::Pong,
        R::Info => Reply::Partition(p.info()?),
        R::Mechanisms => Reply::Mechanisms(p.mechanisms()),
        R::InitToken { so_pin } => {
            p.init_token(so_pin.expose())?;
            Reply::Done
        }
        R::AuditVerify => Reply::Audit(p.audit_verify()?),
        R::OpenSession { rw } => Reply::Handle(p.open_session(app, rw)?),
        R::CloseSession { session } => {
            p.close_session(app, session)?;
            Reply::Done
        }
        R::CloseAllSessions => {
            p.close_all_sessions(app)?;
            Reply::Done
        }
        R::SessionState { session } => Reply::SessionState(p.session_state(app, session)?),
        R::Login { session, user, pin } => {
            p.login(app, session, user, pin.expose())?;
            Reply::Done
        }
        R::Logout { session } => {
            p.logout(app, session)?;
            Reply::Done
        }
        R::InitPin { session, pin } => {
            p.init_pin(app, session, pin.expose())?;
            Reply::Done
        }
        R::SetPin { session, old, new } => {
            p.set_pin(app, session, old.expose(), new.expose())?;
            Reply::Done
        }
        R::CreateObject {
            session,
            mut template,
        } => {
            let made = p.create_object(app, session, &template);
            wipe(&mut template);
            Reply::Handle(made?)
        }
        R::CreateObjects {
            session,
            mut templates,
        } => {
            let made = p.create_objects(app, session, &templates);
            for t in &mut templates {
                wipe(t);
            }
            Reply::Handles(made?)
        }
        R::DestroyObject { session, handle } => {
            p.destroy_object(app, session, handle)?;
            Reply::Done
        }
        R::GetAttributes {
            session,
            handle,
            types,
        } => Reply::Attributes(p.get_attributes(app, session, handle, &types)?),
        R::SetAttributes {
            session,
            handle,
            template,
        } => {
            p.set_attributes(app, session, handle, &template)?;
            Reply::Done
        }
        R::CopyObject {
            session,
            handle,
            template,
        } => Reply::Handle(p.copy_object(app, session, handle, &template)?),
        R::Find { session, template } => Reply::Handles(p.find(app, session, &template)?),
        R::GenerateKey {
            session,
            mech,
            template,
        } => Reply::Handle(p.generate_key(app, session, &mech, &template)?),
        R::GenerateKeyPair {
            session,
            mech,
            public,
            private,
        } => {
            let (pk, sk) = p.generate_key_pair(app, session, &mech, &public, &private)?;
            Reply::KeyPair(pk, sk)
        }
        R::WrapKey {
            session,
            mech,
            wrapping,
            key,
        } => Reply::Bytes(p.wrap_key(app, session, &mech, wrapping, key)?),
        R::UnwrapKey {
            session,
            mech,
            unwrapping,
            wrapped,
            template,
        } => Reply::Handle(p.unwrap_key(app, session, &mech, unwrapping, &wrapped, &template)?),
        R::DeriveKey {
            session,
            mech,
            base,
            template,
        } => Reply::Handle(p.derive_key(app, session, &mech, base, &template)?),
        R::Encapsulate {
            session,
            mech,
            public,
            template,
        } => {
            let (ciphertext, handle) = p.encapsulate(app, session, &mech, public, &template)?;
            Reply::Encapsulated { ciphertext, handle }
        }
        R::Decapsulate {
            session,
            mech,
            private,
            ciphertext,
            template,
        } => Reply::Handle(p.decapsulate(app, session, &mech, private, &ciphertext, &template)?),
        R::ExportMasked { session, handle } => {
            Reply::Bytes(p.export_masked(app, session, handle, svn)?)
        }
        R::ImportMasked { session, blob } => {
            Reply::Handle(p.import_masked(app, session, &blob, svn)?)
        }
        R::SignInit {
            session,
            mech,
            key,
            verify,
        } => {
            p.sign_init(app, session, &mech, key, verify)?;
            Reply::Done
        }
        R::Sign { session, data } => Reply::Bytes(p.sign(app, session, &data)?),
        R::SignOnce {
            session,
            mech,
            key,
            data,
        } => Reply::Bytes(p.sign_once(app, session, &mech, key, &data)?),
        R::SignUpdate {
            session,
            data,
            verify,
        } => {
            p.sign_update(app, session, &data, verify)?;
            Reply::Done
        }
        R::SignFinal { session } => Reply::Bytes(p.sign_final(app, session)?),
        R::Verify {
            session,
            data,
            signature,
        } => {
            p.verify(app, session, &data, &signature)?;
            Reply::Done
        }
        R::VerifyFinal { session, signature } => {
            p.verify_final(app, session, &signature)?;
            Reply::Done
        }
        R::CryptInit {
            session,
            mech,
            key,
            encrypt,
        } => {
            p.crypt_init(app, session, &mech, key, encrypt)?;
            Reply::Done
        }
        R::Encrypt { session, data } => {
            let (data, iv) = p.encrypt(app, session, data.expose())?;
            Reply::Encrypted {
                data,
                iv: iv.map(serde_bytes::ByteBuf::from),
            }
        }
        R::EncryptOnce {
            session,
            mech,
            key,
            data,
        } => {
            let (data, iv) = p.encrypt_once(app, session, &mech, key, data.expose())?;
            Reply::Encrypted {
                data,
                iv: iv.map(serde_bytes::ByteBuf::from),
            }
        }
        R::Decrypt { session, data } => secret(&p.decrypt(app, session, &data)?),
        R::CryptUpdate {
            session,
            data,
            encrypt: true,
        } => Reply::Bytes(p.crypt_update(app, session, data.expose(), true)?),
        R::CryptUpdate {
            session,
            data,
            encrypt: false,
        } => Reply::Secret(SecretBytes::new(p.crypt_update(
            app,
            session,
            data.expose(),
            false,
        )?)),
        R::EncryptFinal { session } => Reply::Bytes(p.encrypt_final(app, session)?),
        R::DecryptFinal { session } => secret(&p.decrypt_final(app, session)?),
        R::DigestInit { session, mech } => {
            p.digest_init(app, session, &mech)?;
            Reply::Done
        }
        R::DigestUpdate { session, data } => {
            p.digest_update(app, session, &data)?;
            Reply::Done
        }
        R::DigestFinal { session } => Reply::Bytes(p.digest_final(app, session)?),
        R::Random { session, len } => {
            Reply::Secret(SecretBytes::new(p.random(app, session, len as usize)?))
        }
        R::KeyReport {
            session,
            key,
            report_data,
        } => Reply::Bytes(p.key_report(app, session, key, &report_data)?),
        R::ReplaceReleasePolicy {
            session,
            selector,
            policy,
        } => Reply::Handle(p.replace_release_policy(app, session, &selector, &policy)?),
        R::Status
        | R::CreatePartition(_)
        | R::ListPartitions
        | R::DescribePartition { .. }
        | R::DeletePartition { .. }
        | R::PartitionCertificate { .. }
        | R::PartitionMlDsaCertificate { .. }
        | R::AuditLog { .. }
        | R::FleetHosts
        | R::MovePartition { .. }
        | R::FleetDomain
        | R::FleetEvict { .. }
        | R::DeviceAuditCertificate
        | R::Mailbox { .. }
        | R::Tamper { .. }
        | R::AllowPrincipal { .. }
        | R::RevokePrincipal { .. } => {
            return Err(CoreError::Internal("admin request routed to a partition"));
        }
        R::AppToken | R::JoinApp { .. } | R::OpenRing => {
            return Err(CoreError::Internal("connection request routed to the core"));
        }
    })
}

#[cfg(test)]
mod tests;
