//! Objects: the cache of token objects, session objects, and C_CreateObject,
//! C_DestroyObject, C_GetAttributeValue, C_SetAttributeValue, C_CopyObject and
//! C_FindObjects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use cryptoki_sys as ck;
use ihsm_crypto::ExposeSecret;
use zeroize::Zeroizing;

use super::template::{Provenance, build, map_template, separated};
use super::{CACHE_LIMIT, Caller, IndexEntries, Need, Partition, Rate, UNAVAILABLE};
use crate::attr::{self, AttrResult, AttrType, AttrValue, Attribute, Phase, class};
use crate::audit::{AuditEvent, Origin};
use crate::error::{CoreError, Result};
use crate::key::{self, Material};
use crate::object::{self, INDEXED, Object};
use crate::session::UserType;

impl Partition {
    pub(super) fn index_entries(&self, o: &Object) -> Result<IndexEntries> {
        self.with_secrets(|s| {
            INDEXED
                .iter()
                .filter_map(|(t, ty)| o.attrs.get(ty).map(|v| (*t, v)))
                .map(|(t, v)| Ok((t, object::index_mac(&s.index_key, t, v)?)))
                .collect()
        })
    }

    /// Loads a token object from the cache or the store.
    pub(super) fn load_token(&self, h: u64) -> Result<Arc<Object>> {
        if let Some(o) = self
            .cache
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .get(&h)
        {
            return Ok(Arc::clone(o));
        }
        let (_, oid, _) = object::split_handle(h);
        let found = self.with_secrets(|s| Ok(self.store()?.object(self.id, oid, &s.master)?));
        let (digest, bytes) = self.watch(found)?.ok_or(CoreError::ObjectHandleInvalid)?;
        let o = Arc::new(Object::decode(h, bytes.expose_secret(), &digest)?);
        let mut c = self
            .cache
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        if c.len() >= CACHE_LIMIT
            && let Some(k) = c.keys().next().copied()
        {
            c.remove(&k);
        }
        c.insert(h, Arc::clone(&o));
        Ok(o)
    }

    /// The object behind `h`, if this session's login may see it.
    pub(super) fn object(&self, login: Option<UserType>, h: u64) -> Result<Arc<Object>> {
        let (pid, _, session) = object::split_handle(h);
        if pid != self.id {
            return Err(CoreError::ObjectHandleInvalid);
        }
        let o = if session {
            self.session_objects
                .read()
                .map_err(|_| CoreError::Internal("lock poisoned"))?
                .get(&h)
                .cloned()
                .ok_or(CoreError::ObjectHandleInvalid)?
        } else {
            self.load_token(h)?
        };
        if o.is_private() && login != Some(UserType::User) {
            return Err(CoreError::ObjectHandleInvalid);
        }
        Ok(o)
    }

    pub(super) fn key(&self, login: Option<UserType>, h: u64) -> Result<Arc<Object>> {
        self.object(login, h).map_err(|e| match e {
            CoreError::ObjectHandleInvalid => CoreError::KeyHandleInvalid,
            other => other,
        })
    }

    fn count_objects(&self) -> Result<u64> {
        let sess = self
            .session_objects
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .len() as u64;
        Ok(self.token_objects.load(Ordering::Relaxed) + sess)
    }

    /// Stores a new object (token or session) and returns its handle.
    pub(super) fn insert(&self, session: u64, mut o: Object, origin: Origin) -> Result<u64> {
        let max = self.quotas.max_objects;
        if self.count_objects()? >= max {
            return Err(CoreError::QuotaExceeded("objects"));
        }
        stamp_unique_id(&mut o)?;
        if !o.is_token() {
            let n = self.next_session_object.fetch_add(1, Ordering::Relaxed);
            let h = object::handle(self.id, n, true);
            o.handle = h;
            o.session = Some(session);
            self.session_objects
                .write()
                .map_err(|_| CoreError::Internal("lock poisoned"))?
                .insert(h, Arc::new(o));
            return Ok(h);
        }
        let prepared = self.prepare_token(&o)?;
        let h = self
            .store_new(std::slice::from_ref(&prepared), origin)?
            .into_iter()
            .next()
            .ok_or(CoreError::Internal("no handle for a stored object"))?;
        o.handle = h;
        if let Ok(mut c) = self.cache.write()
            && c.len() < CACHE_LIMIT
        {
            c.insert(h, Arc::new(o));
        }
        Ok(h)
    }

    /// A new token object's stored form: its encoded record and index entries.
    fn prepare_token(&self, o: &Object) -> Result<Prepared> {
        let (bytes, digest) = o.encode()?;
        Ok(Prepared {
            class: o.class(),
            key_type: o.key_type(),
            bytes,
            digest,
            macs: self.index_entries(o)?,
        })
    }

    /// Writes new token objects, with their index entries and audit events, in one
    /// durable transaction; returns their handles, in order.
    fn store_new(&self, prepared: &[Prepared], origin: Origin) -> Result<Vec<u64>> {
        let pid = self.id;
        let handles = self.with_secrets(|s| {
            self.audited(|tx| {
                let mut handles = Vec::with_capacity(prepared.len());
                let mut events = Vec::with_capacity(prepared.len());
                for p in prepared {
                    let oid = tx.next_object_id(pid)?;
                    tx.put_object(pid, oid, &s.master, &p.digest, &p.bytes)?;
                    for (t, mac) in &p.macs {
                        tx.index_add(pid, *t, mac, oid)?;
                    }
                    let h = object::handle(pid, oid, false);
                    handles.push(h);
                    events.push(AuditEvent::ObjectCreated {
                        handle: h,
                        class: p.class,
                        key_type: p.key_type,
                        origin,
                    });
                }
                Ok((handles, events))
            })
        })?;
        self.token_objects
            .fetch_add(handles.len() as u64, Ordering::Relaxed);
        Ok(handles)
    }

    /// Common checks before creating an object: a RW session for token objects and
    /// a user login for private ones.
    pub(super) fn may_create(
        &self,
        login: Option<UserType>,
        rw: bool,
        m: &BTreeMap<AttrType, AttrValue>,
        class_bit: u8,
    ) -> Result<()> {
        let token = attr::get_bool(m, ck::CKA_TOKEN, false)?;
        let private = attr::get_bool(
            m,
            ck::CKA_PRIVATE,
            class_bit & (class::SECRET | class::PRIV) != 0,
        )?;
        if token && !rw {
            return Err(CoreError::SessionReadOnly);
        }
        if private && login != Some(UserType::User) {
            return Err(CoreError::UserNotLoggedIn);
        }
        Ok(())
    }

    /// C_CreateObject: data objects, certificates, and key import.
    ///
    /// # Errors
    /// Template, session and login errors.
    pub fn create_object(&self, app: u64, session: u64, template: &[Attribute]) -> Result<u64> {
        let caller = self.enter(app, session, Need::Session, Rate::Free)?;
        let o = self.object_from_template(caller, map_template(template)?)?;
        self.insert(session, o, Origin::Created)
    }

    /// The object a C_CreateObject template makes, with every check of the
    /// template, the login and the session that creation makes: the single and
    /// the bulk path both come through here.
    fn object_from_template(
        &self,
        caller: Caller,
        m: BTreeMap<AttrType, AttrValue>,
    ) -> Result<Object> {
        let class = attr::get_ulong(&m, ck::CKA_CLASS)?
            .ok_or(CoreError::TemplateIncomplete(ck::CKA_CLASS))?;
        let class_bit =
            attr::class_bit(class).ok_or(CoreError::AttributeValueInvalid(ck::CKA_CLASS))?;
        self.may_create(caller.login, caller.rw, &m, class_bit)?;
        let (key_type, material) = if class_bit & class::KEY != 0 {
            let kt = attr::get_ulong(&m, ck::CKA_KEY_TYPE)?
                .ok_or(CoreError::TemplateIncomplete(ck::CKA_KEY_TYPE))?;
            (Some(kt), Some(key::import(class, kt, &m)?))
        } else {
            if class_bit == class::CERT {
                match attr::get_ulong(&m, ck::CKA_CERTIFICATE_TYPE)? {
                    Some(ck::CKC_X_509) => {}
                    Some(_) => {
                        return Err(CoreError::AttributeValueInvalid(ck::CKA_CERTIFICATE_TYPE));
                    }
                    None => return Err(CoreError::TemplateIncomplete(ck::CKA_CERTIFICATE_TYPE)),
                }
                if attr::get_bytes(&m, ck::CKA_VALUE)?.is_none() {
                    return Err(CoreError::TemplateIncomplete(ck::CKA_VALUE));
                }
            }
            (None, None)
        };
        let prov = Provenance {
            local: false,
            gen_mech: UNAVAILABLE,
            inherited: Some((false, false)),
        };
        build(
            class,
            key_type,
            m,
            material,
            Phase::Create,
            caller.so(),
            prov,
        )
    }

    /// Creates many token objects in one durable transaction (bulk import, restore,
    /// benchmarks): all are created or none. Each template is as for
    /// [`Partition::create_object`], goes through the same checks, and must ask
    /// for a token object.
    ///
    /// # Errors
    /// The first template error; quota; session and login errors.
    pub fn create_objects(
        &self,
        app: u64,
        session: u64,
        templates: &[Vec<Attribute>],
    ) -> Result<Vec<u64>> {
        let caller = self.enter(app, session, Need::ReadWrite, Rate::Free)?;
        let max = self.quotas.max_objects;
        if self.count_objects()?.saturating_add(templates.len() as u64) > max {
            return Err(CoreError::QuotaExceeded("objects"));
        }
        let mut prepared = Vec::with_capacity(templates.len());
        for template in templates {
            let m = map_template(template)?;
            if !attr::get_bool(&m, ck::CKA_TOKEN, false)? {
                return Err(CoreError::TemplateInconsistent(
                    "bulk creation makes token objects only",
                ));
            }
            let mut o = self.object_from_template(caller, m)?;
            stamp_unique_id(&mut o)?;
            prepared.push(self.prepare_token(&o)?);
        }
        self.store_new(&prepared, Origin::Created)
    }

    /// C_DestroyObject.
    ///
    /// # Errors
    /// Handle, session and "not destroyable" errors.
    pub fn destroy_object(&self, app: u64, session: u64, h: u64) -> Result<()> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Free)?;
        let o = self.object(login, h)?;
        if matches!(
            o.attrs.get(&ck::CKA_DESTROYABLE),
            Some(AttrValue::Bool(false))
        ) {
            return Err(CoreError::ActionProhibited("destroyable"));
        }
        if !o.is_token() {
            self.session_objects
                .write()
                .map_err(|_| CoreError::Internal("lock poisoned"))?
                .remove(&h);
            return Ok(());
        }
        if !rw {
            return Err(CoreError::SessionReadOnly);
        }
        let macs = self.index_entries(&o)?;
        let (pid, oid, _) = object::split_handle(h);
        self.audited(|tx| {
            for (t, mac) in &macs {
                tx.index_remove(pid, *t, mac, oid)?;
            }
            tx.delete_object(pid, oid)?;
            Ok(((), vec![AuditEvent::ObjectDestroyed { handle: h }]))
        })?;
        self.cache
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .remove(&h);
        self.token_objects.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    /// C_GetAttributeValue: one result per requested type.
    ///
    /// # Errors
    /// Handle and session errors (per-attribute outcomes are in the results).
    pub fn get_attributes(
        &self,
        app: u64,
        session: u64,
        h: u64,
        types: &[AttrType],
    ) -> Result<Vec<AttrResult>> {
        let Caller { login, .. } = self.enter(app, session, Need::Session, Rate::Free)?;
        let o = self.object(login, h)?;
        types.iter().map(|t| o.get(*t)).collect()
    }

    /// Replaces an object (token or session) with `new`, keeping its handle.
    fn replace(&self, old: &Object, new: Object, event: AuditEvent) -> Result<()> {
        let h = old.handle;
        if !old.is_token() {
            self.session_objects
                .write()
                .map_err(|_| CoreError::Internal("lock poisoned"))?
                .insert(h, Arc::new(new));
            return Ok(());
        }
        let (pid, oid, _) = object::split_handle(h);
        let old_macs = self.index_entries(old)?;
        let new_macs = self.index_entries(&new)?;
        let (bytes, digest) = new.encode()?;
        self.with_secrets(|s| {
            self.audited(|tx| {
                for (t, mac) in &old_macs {
                    tx.index_remove(pid, *t, mac, oid)?;
                }
                tx.put_object(pid, oid, &s.master, &digest, &bytes)?;
                for (t, mac) in &new_macs {
                    tx.index_add(pid, *t, mac, oid)?;
                }
                Ok(((), vec![event]))
            })
        })?;
        self.cache
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .insert(h, Arc::new(new));
        Ok(())
    }

    fn clone_material(o: &Object) -> Result<Option<Material>> {
        o.material
            .as_ref()
            .map(|m| {
                let rec = m.to_record()?;
                Material::from_record(&rec)
            })
            .transpose()
    }

    /// C_SetAttributeValue, with the table's rules (one-way attributes, read-only
    /// ones, SO-only ones).
    ///
    /// # Errors
    /// Attribute, handle, session errors.
    pub fn set_attributes(
        &self,
        app: u64,
        session: u64,
        h: u64,
        template: &[Attribute],
    ) -> Result<()> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Free)?;
        let o = self.object(login, h)?;
        if o.is_token() && !rw {
            return Err(CoreError::SessionReadOnly);
        }
        if !o.flag(ck::CKA_MODIFIABLE) {
            return Err(CoreError::ActionProhibited("modifiable"));
        }
        let so = login == Some(UserType::SecurityOfficer);
        let mut attrs = o.attrs.clone();
        for a in template {
            attr::check_settable(
                o.class_bit,
                o.key_type(),
                a.ty,
                &a.value,
                Phase::Modify,
                o.attrs.get(&a.ty),
                so,
            )?;
            attrs.insert(a.ty, a.value.clone());
        }
        separated(o.class_bit, &attrs)?;
        // Turning sensitive on or extractable off keeps the history attributes true
        // to the key's past: they only ever become false.
        let new = Object {
            handle: h,
            class_bit: o.class_bit,
            attrs,
            material: Self::clone_material(&o)?,
            session: o.session,
        };
        self.replace(&o, new, AuditEvent::AttributesChanged { handle: h })
    }

    /// The Security Officer replaces a key's release policy (docs/attestation.md
    /// §5): a user may only tighten one. The SO cannot see private keys, so the
    /// key is named by `selector` (its `CKA_LABEL` and/or `CKA_ID`) among the
    /// partition's token keys that carry a release policy, and exactly one must
    /// match; nothing else of the key is revealed. The new policy must parse. The
    /// change is the audit entry `ReleasePolicyReplaced` (with the policy's
    /// SHA-384), durable before this returns.
    ///
    /// # Errors
    /// [`CoreError::UserNotLoggedIn`] without an SO login,
    /// [`CoreError::SessionReadOnly`], [`CoreError::TemplateInconsistent`] for a
    /// selector of other attributes or none, [`CoreError::ObjectHandleInvalid`]
    /// when no key or more than one matches, attribute errors for the policy.
    pub fn replace_release_policy(
        &self,
        app: u64,
        session: u64,
        selector: &[Attribute],
        policy: &[u8],
    ) -> Result<u64> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Free)?;
        if login != Some(UserType::SecurityOfficer) {
            return Err(CoreError::UserNotLoggedIn);
        }
        if !rw {
            return Err(CoreError::SessionReadOnly);
        }
        let m = map_template(selector)?;
        if m.is_empty() || m.keys().any(|t| *t != ck::CKA_LABEL && *t != ck::CKA_ID) {
            return Err(CoreError::TemplateInconsistent(
                "name the key by CKA_LABEL and/or CKA_ID only",
            ));
        }
        let want: Vec<(AttrType, AttrValue)> = m.iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut found = Vec::new();
        for oid in self.store()?.object_ids(self.id)? {
            let o = self.load_token(object::handle(self.id, oid, false))?;
            if o.attrs.contains_key(&attr::CKA_IHSM_RELEASE_POLICY) && o.matches(&want)? {
                found.push(o);
            }
        }
        let o = match found.as_slice() {
            [one] => Arc::clone(one),
            _ => return Err(CoreError::ObjectHandleInvalid),
        };
        if !o.flag(ck::CKA_MODIFIABLE) {
            return Err(CoreError::ActionProhibited("modifiable"));
        }
        let value = AttrValue::Bytes(policy.to_vec());
        attr::check_settable(
            o.class_bit,
            o.key_type(),
            attr::CKA_IHSM_RELEASE_POLICY,
            &value,
            Phase::Modify,
            o.attrs.get(&attr::CKA_IHSM_RELEASE_POLICY),
            true,
        )?;
        let mut attrs = o.attrs.clone();
        attrs.insert(attr::CKA_IHSM_RELEASE_POLICY, value);
        let h = o.handle;
        let new = Object {
            handle: h,
            class_bit: o.class_bit,
            attrs,
            material: Self::clone_material(&o)?,
            session: o.session,
        };
        self.replace(
            &o,
            new,
            AuditEvent::ReleasePolicyReplaced {
                handle: h,
                policy_sha384: ihsm_crypto::hash::sha384(policy),
            },
        )?;
        Ok(h)
    }

    /// C_CopyObject.
    ///
    /// # Errors
    /// "not copyable", attribute, session errors.
    pub fn copy_object(
        &self,
        app: u64,
        session: u64,
        h: u64,
        template: &[Attribute],
    ) -> Result<u64> {
        let Caller { login, rw } = self.enter(app, session, Need::Session, Rate::Free)?;
        let o = self.object(login, h)?;
        if !o.flag(ck::CKA_COPYABLE) {
            return Err(CoreError::ActionProhibited("copyable"));
        }
        let so = login == Some(UserType::SecurityOfficer);
        let mut attrs = o.attrs.clone();
        for a in template {
            attr::check_settable(
                o.class_bit,
                o.key_type(),
                a.ty,
                &a.value,
                Phase::Copy,
                o.attrs.get(&a.ty),
                so,
            )?;
            attrs.insert(a.ty, a.value.clone());
        }
        separated(o.class_bit, &attrs)?;
        self.may_create(login, rw, &attrs, o.class_bit)?;
        attrs.remove(&ck::CKA_UNIQUE_ID);
        let new = Object {
            handle: 0,
            class_bit: o.class_bit,
            attrs,
            material: Self::clone_material(&o)?,
            session: None,
        };
        self.insert(session, new, Origin::Copied)
    }

    /// C_FindObjects: every visible object matching `template` (indexed on label,
    /// id, key type and class; the rest filtered).
    ///
    /// # Errors
    /// Session errors.
    pub fn find(&self, app: u64, session: u64, template: &[Attribute]) -> Result<Vec<u64>> {
        let Caller { login, .. } = self.enter(app, session, Need::Session, Rate::Free)?;
        let m = map_template(template)?;
        let want: Vec<(AttrType, AttrValue)> = m.iter().map(|(k, v)| (*k, v.clone())).collect();
        let token_wanted = !matches!(m.get(&ck::CKA_TOKEN), Some(AttrValue::Bool(false)));
        let session_wanted = !matches!(m.get(&ck::CKA_TOKEN), Some(AttrValue::Bool(true)));
        let mut out = Vec::new();
        if token_wanted {
            let indexed = INDEXED
                .iter()
                .find_map(|(t, ty)| m.get(ty).map(|v| (*t, v)));
            let oids = match indexed {
                Some((t, v)) => {
                    let mac = self.with_secrets(|s| object::index_mac(&s.index_key, t, v))?;
                    self.store()?.find(self.id, t, &mac)?
                }
                None => self.store()?.object_ids(self.id)?,
            };
            for oid in oids {
                let h = object::handle(self.id, oid, false);
                match self.object(login, h) {
                    Ok(o) if o.matches(&want)? => out.push(h),
                    Ok(_) | Err(CoreError::ObjectHandleInvalid) => {}
                    Err(e) => return self.watch(Err(e)),
                }
            }
        }
        if session_wanted {
            let objs: Vec<Arc<Object>> = self
                .session_objects
                .read()
                .map_err(|_| CoreError::Internal("lock poisoned"))?
                .values()
                .cloned()
                .collect();
            for o in objs {
                if (!o.is_private() || login == Some(UserType::User)) && o.matches(&want)? {
                    out.push(o.handle);
                }
            }
        }
        Ok(out)
    }

    /// Index tag of an attribute type, if indexed (for tests and tooling).
    #[must_use]
    pub fn is_indexed(ty: AttrType) -> bool {
        INDEXED.iter().any(|(_, t)| *t == ty)
    }
}

/// A new token object, encoded for the store.
struct Prepared {
    class: u64,
    key_type: Option<u64>,
    bytes: Zeroizing<Vec<u8>>,
    digest: [u8; 32],
    macs: IndexEntries,
}

/// Gives a new object its `CKA_UNIQUE_ID`.
fn stamp_unique_id(o: &mut Object) -> Result<()> {
    let unique: [u8; 16] = ihsm_crypto::rand::array()?;
    o.attrs.insert(
        ck::CKA_UNIQUE_ID,
        AttrValue::Bytes(hex::encode(unique).into_bytes()),
    );
    Ok(())
}
