//! Object management: creating, copying, destroying objects, their attributes,
//! and finding them.

use cryptoki_sys::*;

use crate::R;
use crate::convert::{count, fill, items, out, put, template};

use super::{ctx, sess};

pub(crate) unsafe fn create_object(
    h: CK_SESSION_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    obj: *mut CK_OBJECT_HANDLE,
) -> R {
    let m = ctx()?;
    out(obj)?;
    let s = sess(&m, h)?;
    // SAFETY: `tmpl` and `n` are C_CreateObject's template: null only with a count of
    // 0, else `n` attributes each with a value readable for its ulValueLen:
    // `template`'s contract. It copies every value out.
    let t = unsafe { template(tmpl, n) }?;
    let handle = m.call(&s, |c, r| c.create_object(r, t.clone()))?;
    // SAFETY: `obj` is C_CreateObject's CK_OBJECT_HANDLE out-pointer, checked non-null
    // by `out` above; PKCS#11 makes it writable for one.
    unsafe { put(obj, handle) }
}

pub(crate) unsafe fn copy_object(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    new: *mut CK_OBJECT_HANDLE,
) -> R {
    let m = ctx()?;
    out(new)?;
    let s = sess(&m, h)?;
    // SAFETY: `tmpl` and `n` are C_CopyObject's template, as `template` requires (null
    // only with a count of 0, each value readable for its length); it copies the values
    // out.
    let t = unsafe { template(tmpl, n) }?;
    let handle = m.call(&s, |c, r| c.copy_object(r, obj, t.clone()))?;
    // SAFETY: `new` is C_CopyObject's CK_OBJECT_HANDLE out-pointer, checked non-null by
    // `out` above; PKCS#11 makes it writable for one.
    unsafe { put(new, handle) }
}

pub(crate) unsafe fn destroy_object(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    m.slot(s.slot)?.forget(Some(obj));
    m.call(&s, |c, r| c.destroy_object(r, obj))
}

pub(crate) unsafe fn get_object_size(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    size: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    out(size)?;
    let s = sess(&m, h)?;
    // The handle must name an object; its size in the store is not meaningful.
    m.call(&s, |c, r| c.get_attributes(r, obj, vec![CKA_CLASS]))?;
    // SAFETY: `size` is C_GetObjectSize's CK_ULONG out-pointer, checked non-null by
    // `out` above; PKCS#11 makes it writable for one.
    unsafe { put(size, CK_UNAVAILABLE_INFORMATION) }
}

pub(crate) unsafe fn get_attribute_value(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    let n = count(n)?;
    if n > 0 && tmpl.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: `tmpl` is non-null when `n` > 0 (checked above) and C_GetAttributeValue's
    // template then holds `n` readable attributes; only their types are read, and the
    // slice ends with this statement, before `fill` writes the template.
    let types: Vec<CK_ATTRIBUTE_TYPE> = unsafe { items(tmpl, n as CK_ULONG) }?
        .iter()
        .map(|a| a.type_)
        .collect();
    let results = m.call(&s, |c, r| c.get_attributes(r, obj, types.clone()))?;
    if results.len() != n {
        return Err(CKR_GENERAL_ERROR);
    }
    // SAFETY: `tmpl` holds `n` attributes (as above), writable, each pValue null or
    // holding ulValueLen writable bytes, as C_GetAttributeValue's template does;
    // `results` has exactly `n` entries (checked above): `fill`'s contract.
    unsafe { fill(tmpl, &results) }
}

pub(crate) unsafe fn set_attribute_value(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: `tmpl` and `n` are C_SetAttributeValue's template, as `template` requires
    // (null only with a count of 0, each value readable for its length).
    let t = unsafe { template(tmpl, n) }?;
    m.slot(s.slot)?.forget(Some(obj));
    m.call(&s, |c, r| c.set_attributes(r, obj, t.clone()))
}

pub(crate) unsafe fn find_objects_init(
    h: CK_SESSION_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: `tmpl` and `n` are C_FindObjectsInit's template, as `template` requires
    // (null only with a count of 0, each value readable for its length).
    let t = unsafe { template(tmpl, n) }?;
    if s.state()?.find.is_some() {
        return Err(CKR_OPERATION_ACTIVE);
    }
    let found = m.call(&s, |c, r| c.find(r, t.clone()))?;
    s.state()?.find = Some((found, 0));
    Ok(())
}

pub(crate) unsafe fn find_objects(
    h: CK_SESSION_HANDLE,
    objs: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    n: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    out(n)?;
    let s = sess(&m, h)?;
    let max = count(max)?;
    if max > 0 && objs.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let mut st = s.state()?;
    let (found, at) = st.find.as_mut().ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
    let take = (found.len() - *at).min(max);
    // SAFETY: `take` <= `max`, and C_FindObjects's phObject holds `max` writable
    // handles: non-null when `max` > 0 (checked above); with `max` 0 the copy is of
    // zero bytes, defined even for a null pointer. The source is this module's own
    // list, `take` <= its remaining `len - at` handles, and cannot overlap the
    // application's array.
    unsafe { core::ptr::copy_nonoverlapping(found[*at..].as_ptr(), objs, take) };
    *at += take;
    // SAFETY: `n` is C_FindObjects's CK_ULONG out-pointer, checked non-null by `out`
    // above; PKCS#11 makes it writable for one.
    unsafe { put(n, take as CK_ULONG) }
}

pub(crate) unsafe fn find_objects_final(h: CK_SESSION_HANDLE) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    s.state()?
        .find
        .take()
        .map(|_| ())
        .ok_or(CKR_OPERATION_NOT_INITIALIZED)
}
