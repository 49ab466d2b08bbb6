//! A minimal DER reader for the TCG extensions (definite lengths only, as DER
//! requires). Never panics: every read is bounds-checked.

/// One tag-length-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// Reads consecutive TLVs out of a buffer.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next TLV, or `None` when the bytes are not well-formed DER.
    pub(crate) fn next(&mut self) -> Option<Tlv<'a>> {
        let (&tag, rest) = self.rest.split_first()?;
        // Multi-byte tags are not used by anything we read.
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
            // DER: the shortest form.
            if len < 0x80 || bytes.first() == Some(&0) {
                return None;
            }
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Tlv { tag, value })
    }

    /// The next TLV if it has `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let t = self.next()?;
        (t.tag == tag).then_some(t.value)
    }
}

/// A whole buffer that is exactly one TLV with `tag`.
pub(crate) fn single(buf: &[u8], tag: u8) -> Option<&[u8]> {
    let mut r = Reader::new(buf);
    let v = r.expect(tag)?;
    r.is_empty().then_some(v)
}

/// A non-negative DER INTEGER's value as u32.
pub(crate) fn uint(content: &[u8]) -> Option<u32> {
    if content.is_empty() || content.len() > 5 || content.first().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    let v = content.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
    u32::try_from(v).ok()
}

/// DER encoding of the SHA-384 OID 2.16.840.1.101.3.4.2.2 (content bytes).
pub(crate) const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths_and_refuses_bad_ones() {
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(single(&long, 0x04).map(<[u8]>::len), Some(0x80));
        assert_eq!(single(&[0x04, 0x01, 9], 0x04), Some(&[9u8][..]));
        // Non-minimal length, truncated value, trailing bytes, wrong tag.
        assert_eq!(single(&[0x04, 0x81, 0x01, 9], 0x04), None);
        assert_eq!(single(&[0x04, 0x02, 9], 0x04), None);
        assert_eq!(single(&[0x04, 0x01, 9, 0], 0x04), None);
        assert_eq!(single(&[0x30, 0x00], 0x04), None);
        assert_eq!(uint(&[0x00, 0x80]), Some(0x80));
        assert_eq!(uint(&[0x80]), None);
        assert_eq!(uint(&[]), None);
    }
}
