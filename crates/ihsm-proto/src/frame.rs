//! Framing: every message is a little-endian `u32` length, then that many bytes of
//! postcard. A frame is bounded ([`MAX_FRAME`]); a zero, oversized or truncated
//! frame, or one whose bytes do not decode exactly, is an error and the reader
//! closes the connection.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest frame: the core's largest input (64 MiB) with room for the request
/// around it.
pub const MAX_FRAME: usize = (64 << 20) + (64 << 10);

/// Bytes of the length prefix.
pub const PREFIX: usize = 4;

/// Reads grow the buffer by at most this much at a time, so a peer that announces a
/// large frame and sends little costs little memory.
const READ_CHUNK: usize = 64 << 10;

/// What can go wrong with a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The connection ended inside a frame.
    #[error("connection closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced.
        want: usize,
    },
    /// A frame of length zero.
    #[error("empty frame")]
    Empty,
    /// A frame longer than [`MAX_FRAME`].
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced or attempted length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not the message expected.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Encodes `msg` as one frame (prefix included).
///
/// # Errors
/// [`FrameError::TooLarge`] if it would exceed [`MAX_FRAME`];
/// [`FrameError::Malformed`] if it does not serialize.
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&[0; PREFIX]);
    let mut out =
        postcard::to_extend(msg, out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = out.len() - PREFIX;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len,
        max: MAX_FRAME,
    })?;
    out[..PREFIX].copy_from_slice(&prefix.to_le_bytes());
    Ok(out)
}

/// The body length a prefix announces, checked.
///
/// # Errors
/// [`FrameError::Empty`], [`FrameError::TooLarge`].
pub fn body_len(prefix: [u8; PREFIX]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    match len {
        0 => Err(FrameError::Empty),
        l if l > MAX_FRAME => Err(FrameError::TooLarge {
            len: l,
            max: MAX_FRAME,
        }),
        l => Ok(l),
    }
}

/// Decodes one message from a frame body; every byte must be used.
///
/// # Errors
/// [`FrameError::Malformed`].
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if rest.is_empty() {
        Ok(msg)
    } else {
        Err(FrameError::Malformed(format!(
            "{} bytes after the end of the message",
            rest.len()
        )))
    }
}

/// Writes `msg` as one frame.
///
/// # Errors
/// Encoding and I/O errors.
pub fn write<W: Write, T: Serialize + ?Sized>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    Ok(())
}

/// Reads one frame's body into `buf` (cleared first), growing it only as bytes
/// arrive.
///
/// # Errors
/// [`FrameError::Closed`] at a clean end between frames, and the rest.
pub fn read_body<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut prefix = [0u8; PREFIX];
    let mut got = 0;
    while got < PREFIX {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated { got, want: PREFIX }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let want = body_len(prefix)?;
    buf.clear();
    while buf.len() < want {
        let start = buf.len();
        let step = (want - start).min(READ_CHUNK);
        buf.resize(start + step, 0);
        let mut filled = start;
        while filled < start + step {
            match r.read(&mut buf[filled..start + step]) {
                Ok(0) => {
                    buf.truncate(filled);
                    return Err(FrameError::Truncated { got: filled, want });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    buf.truncate(filled);
                    return Err(e.into());
                }
            }
        }
    }
    Ok(())
}

/// A buffered frame reader: it reads whatever has arrived (a whole small frame is
/// one system call) and keeps bytes past the frame for the next one. The buffer
/// grows only as bytes arrive, never to a length merely announced.
#[derive(Debug, Default)]
pub struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// What [`Inbox::need`] says is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A whole frame body is in `start..end` of [`Inbox::bytes`].
    Frame {
        /// First byte of the body.
        start: usize,
        /// One past its last byte.
        end: usize,
    },
    /// More bytes must be read into [`Inbox::spare`].
    More,
}

impl Inbox {
    /// The buffered bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Whether a frame is complete; room for more is made when not.
    ///
    /// # Errors
    /// [`FrameError::Empty`], [`FrameError::TooLarge`].
    pub fn need(&mut self) -> Result<Need, FrameError> {
        let avail = self.end - self.start;
        let mut want = PREFIX;
        if avail >= PREFIX {
            let mut prefix = [0u8; PREFIX];
            prefix.copy_from_slice(&self.buf[self.start..self.start + PREFIX]);
            let len = body_len(prefix)?;
            if avail >= PREFIX + len {
                return Ok(Need::Frame {
                    start: self.start + PREFIX,
                    end: self.start + PREFIX + len,
                });
            }
            want = PREFIX + len;
        }
        // Room for at most one more chunk of the frame.
        if self.start > 0 && self.buf.len() - self.end < READ_CHUNK {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let target = (self.start + want)
            .min(self.end + READ_CHUNK)
            .max(self.end + 4096);
        if self.buf.len() < target {
            self.buf.resize(target, 0);
        }
        Ok(Need::More)
    }

    /// Where to read more bytes into; then call [`Inbox::filled`].
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    /// Records `n` bytes read into [`Inbox::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Whether bytes of an unfinished frame are buffered.
    #[must_use]
    pub fn partial(&self) -> usize {
        self.end - self.start
    }

    /// Drops the frame that ended at `end` (from [`Need::Frame`]), zeroing its
    /// bytes (requests carry PINs and key values); lets go of a buffer a large
    /// frame grew.
    pub fn consume(&mut self, end: usize) {
        let end = end.min(self.end);
        crate::wipe(&mut self.buf[self.start..end]);
        self.start = end;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 1 << 20 {
                self.buf = Vec::new();
            }
        }
    }

    /// Reads one frame from a blocking reader; returns its body's range in
    /// [`Inbox::bytes`]. Call [`Inbox::consume`] with the range's end afterwards.
    ///
    /// # Errors
    /// [`FrameError::Closed`] at a clean end between frames, and the rest.
    pub fn read<R: Read>(&mut self, r: &mut R) -> Result<core::ops::Range<usize>, FrameError> {
        loop {
            if let Need::Frame { start, end } = self.need()? {
                return Ok(start..end);
            }
            match r.read(self.spare()) {
                Ok(0) if self.partial() == 0 => return Err(FrameError::Closed),
                Ok(0) => {
                    return Err(FrameError::Truncated {
                        got: self.partial(),
                        want: self.announced(),
                    });
                }
                Ok(n) => self.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The length of the frame being read, prefix included (or the prefix's).
    #[must_use]
    pub fn announced(&self) -> usize {
        if self.end - self.start < PREFIX {
            return PREFIX;
        }
        let mut prefix = [0u8; PREFIX];
        prefix.copy_from_slice(&self.buf[self.start..self.start + PREFIX]);
        PREFIX + u32::from_le_bytes(prefix) as usize
    }
}

/// Reads and decodes one message.
///
/// # Errors
/// As [`read_body`] and [`decode`].
pub fn read<R: Read, T: DeserializeOwned>(r: &mut R, buf: &mut Vec<u8>) -> Result<T, FrameError> {
    read_body(r, buf)?;
    decode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_exact_length() {
        let msg = (7u32, "hello".to_owned(), vec![1u8, 2, 3]);
        let f = encode(&msg).unwrap();
        assert_eq!(body_len(f[..4].try_into().unwrap()).unwrap(), f.len() - 4);
        let mut buf = Vec::new();
        let back: (u32, String, Vec<u8>) = read(&mut &f[..], &mut buf).unwrap();
        assert_eq!(back, msg);
        // Trailing bytes inside the frame are refused.
        let mut body = f[4..].to_vec();
        body.push(0);
        assert!(matches!(
            decode::<(u32, String, Vec<u8>)>(&body),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn empty_oversized_truncated_and_closed() {
        let mut buf = Vec::new();
        assert!(matches!(
            read_body(&mut &[][..], &mut buf),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_body(&mut &[1u8, 0][..], &mut buf),
            Err(FrameError::Truncated { got: 2, want: 4 })
        ));
        assert!(matches!(
            read_body(&mut &[0u8, 0, 0, 0][..], &mut buf),
            Err(FrameError::Empty)
        ));
        let huge = u32::try_from(MAX_FRAME + 1).unwrap().to_le_bytes();
        assert!(matches!(
            read_body(&mut &huge[..], &mut buf),
            Err(FrameError::TooLarge { .. })
        ));
        // Announces 1 MiB, sends 10 bytes: truncated, and the buffer holds only what came.
        let mut f = (1u32 << 20).to_le_bytes().to_vec();
        f.extend_from_slice(&[9; 10]);
        assert!(matches!(
            read_body(&mut &f[..], &mut buf),
            Err(FrameError::Truncated {
                got: 10,
                want: 1_048_576
            })
        ));
        assert_eq!(buf.len(), 10);
        // Garbage that is not the message.
        let mut g = 3u32.to_le_bytes().to_vec();
        g.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(
            read::<_, (u64, String)>(&mut &g[..], &mut buf),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn the_inbox_reads_frames_whole_and_keeps_what_follows() {
        let mut stream = encode(&(1u8, "one".to_owned())).unwrap();
        stream.extend(encode(&(2u8, "two".to_owned())).unwrap());
        // A reader that hands out 3 bytes at a time.
        struct Drip<'a>(&'a [u8]);
        impl Read for Drip<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(3).min(b.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for whole in [true, false] {
            let mut inbox = Inbox::default();
            let mut all = &stream[..];
            let mut drip = Drip(&stream);
            let mut next = |inbox: &mut Inbox| {
                if whole {
                    inbox.read(&mut all)
                } else {
                    inbox.read(&mut drip)
                }
            };
            for want in [(1u8, "one"), (2, "two")] {
                let r = next(&mut inbox).unwrap();
                let got: (u8, String) = decode(&inbox.bytes()[r.clone()]).unwrap();
                assert_eq!((got.0, got.1.as_str()), want);
                inbox.consume(r.end);
            }
            assert!(matches!(next(&mut inbox), Err(FrameError::Closed)));
        }
        // Truncated, empty, oversized.
        let mut inbox = Inbox::default();
        assert!(matches!(
            inbox.read(&mut &stream[..6]),
            Err(FrameError::Truncated { .. })
        ));
        let mut inbox = Inbox::default();
        assert!(matches!(
            inbox.read(&mut &[0u8; 4][..]),
            Err(FrameError::Empty)
        ));
        let mut inbox = Inbox::default();
        let huge = u32::MAX.to_le_bytes();
        assert!(matches!(
            inbox.read(&mut &huge[..]),
            Err(FrameError::TooLarge { .. })
        ));
        // An announced 32 MiB with 10 bytes sent does not allocate 32 MiB.
        let mut inbox = Inbox::default();
        let mut f = (32u32 << 20).to_le_bytes().to_vec();
        f.extend_from_slice(&[1; 10]);
        assert!(matches!(
            inbox.read(&mut &f[..]),
            Err(FrameError::Truncated { got: 14, .. })
        ));
        assert!(inbox.bytes().len() <= READ_CHUNK + 4096);
    }

    #[test]
    fn encoding_refuses_oversized_messages() {
        let big = serde_bytes::ByteBuf::from(vec![0u8; MAX_FRAME + 1]);
        assert!(matches!(encode(&big), Err(FrameError::TooLarge { .. })));
    }
}
