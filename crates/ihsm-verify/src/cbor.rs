//! Small helpers over `ciborium::Value` for the strict decoders.

use ciborium::Value;

/// Most bytes a decoder reads into a `Value`.
pub(crate) const MAX_PAYLOAD_LEN: usize = 32 * 1024;

/// Decodes exactly one CBOR item filling `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Option<Value> {
    if bytes.len() > MAX_PAYLOAD_LEN {
        return None;
    }
    let mut rest = bytes;
    let v: Value = ciborium::de::from_reader(&mut rest).ok()?;
    rest.is_empty().then_some(v)
}

/// Encodes a value.
pub(crate) fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = ciborium::ser::into_writer(v, &mut out);
    out
}

pub(crate) fn int(n: i64) -> Value {
    Value::Integer(n.into())
}

pub(crate) fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

/// The entries of a map whose keys are integers, in order, each key once.
pub(crate) fn int_map(v: &Value) -> Option<Vec<(i64, &Value)>> {
    let Value::Map(m) = v else { return None };
    let mut out: Vec<(i64, &Value)> = Vec::with_capacity(m.len());
    for (k, val) in m {
        let k = as_i64(k)?;
        if out.iter().any(|(o, _)| *o == k) {
            return None;
        }
        out.push((k, val));
    }
    Some(out)
}

pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => i64::try_from(*i).ok(),
        _ => None,
    }
}

pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

pub(crate) fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

pub(crate) fn as_array<const N: usize>(v: &Value) -> Option<[u8; N]> {
    as_bytes(v)?.try_into().ok()
}

pub(crate) fn get<'a>(m: &[(i64, &'a Value)], k: i64) -> Option<&'a Value> {
    m.iter().find(|(x, _)| *x == k).map(|(_, v)| *v)
}
