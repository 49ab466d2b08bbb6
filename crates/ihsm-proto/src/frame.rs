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
    fn encoding_refuses_oversized_messages() {
        let big = serde_bytes::ByteBuf::from(vec![0u8; MAX_FRAME + 1]);
        assert!(matches!(encode(&big), Err(FrameError::TooLarge { .. })));
    }
}
