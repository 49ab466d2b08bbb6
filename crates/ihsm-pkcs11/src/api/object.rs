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
    // SAFETY: the caller's promise.
    let t = unsafe { template(tmpl, n) }?;
    let handle = m.call(&s, |c, r| c.create_object(r, t))?;
    // SAFETY: checked above.
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
    // SAFETY: the caller's promise.
    let t = unsafe { template(tmpl, n) }?;
    let handle = m.call(&s, |c, r| c.copy_object(r, obj, t))?;
    // SAFETY: checked above.
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
    // SAFETY: checked above.
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
    // SAFETY: the caller's promise.
    let types: Vec<CK_ATTRIBUTE_TYPE> = unsafe { items(tmpl, n as CK_ULONG) }?
        .iter()
        .map(|a| a.type_)
        .collect();
    let results = m.call(&s, |c, r| c.get_attributes(r, obj, types))?;
    if results.len() != n {
        return Err(CKR_GENERAL_ERROR);
    }
    // SAFETY: `n` attributes the caller passed, writable (the spec).
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
    // SAFETY: the caller's promise.
    let t = unsafe { template(tmpl, n) }?;
    m.slot(s.slot)?.forget(Some(obj));
    m.call(&s, |c, r| c.set_attributes(r, obj, t))
}

pub(crate) unsafe fn find_objects_init(
    h: CK_SESSION_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let t = unsafe { template(tmpl, n) }?;
    if s.state()?.find.is_some() {
        return Err(CKR_OPERATION_ACTIVE);
    }
    let found = m.call(&s, |c, r| c.find(r, t))?;
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
    // SAFETY: `objs` holds `max` >= `take` handles (the caller).
    unsafe { core::ptr::copy_nonoverlapping(found[*at..].as_ptr(), objs, take) };
    *at += take;
    // SAFETY: checked above.
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
