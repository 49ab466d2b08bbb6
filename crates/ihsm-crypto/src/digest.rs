//! SHA-2 digests.

use aws_lc_rs::digest;

/// Length of a SHA-384 digest.
pub const SHA384_LEN: usize = 48;
/// Length of a SHA-512 digest.
pub const SHA512_LEN: usize = 64;

fn fixed<const N: usize>(d: &digest::Digest) -> [u8; N] {
    let mut out = [0u8; N];
    let bytes = d.as_ref();
    let n = bytes.len().min(N);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// SHA-256 of `data`.
#[must_use]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    fixed(&digest::digest(&digest::SHA256, data))
}

/// SHA-384 of `data`.
#[must_use]
pub fn sha384(data: &[u8]) -> [u8; SHA384_LEN] {
    fixed(&digest::digest(&digest::SHA384, data))
}

/// SHA-512 of `data`.
#[must_use]
pub fn sha512(data: &[u8]) -> [u8; SHA512_LEN] {
    fixed(&digest::digest(&digest::SHA512, data))
}

/// SHA-384 over the concatenation of `parts`, without concatenating them.
#[must_use]
pub fn sha384_parts(parts: &[&[u8]]) -> [u8; SHA384_LEN] {
    let mut ctx = Sha384::new();
    for p in parts {
        ctx.update(p);
    }
    ctx.finish()
}

/// SHA-512 over the concatenation of `parts`.
#[must_use]
pub fn sha512_parts(parts: &[&[u8]]) -> [u8; SHA512_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA512);
    for p in parts {
        ctx.update(p);
    }
    fixed(&ctx.finish())
}

/// Streaming SHA-384, for hashing files.
#[derive(Clone)]
pub struct Sha384(digest::Context);

impl core::fmt::Debug for Sha384 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sha384")
    }
}

impl Default for Sha384 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha384 {
    /// A fresh context.
    #[must_use]
    pub fn new() -> Self {
        Self(digest::Context::new(&digest::SHA384))
    }

    /// Absorbs `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything absorbed.
    #[must_use]
    pub fn finish(self) -> [u8; SHA384_LEN] {
        fixed(&self.0.finish())
    }
}

/// SHA-384 of everything `reader` yields.
///
/// # Errors
/// Any I/O error from `reader`.
pub fn sha384_reader(mut reader: impl std::io::Read) -> std::io::Result<[u8; SHA384_LEN]> {
    let mut ctx = Sha384::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(ctx.finish());
        }
        ctx.update(buf.get(..n).unwrap_or_default());
    }
}
