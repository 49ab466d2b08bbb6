//! What hosts say to each other on their peer address when a partition moves.
//!
//! Every message that matters carries its own proof, so the link needs none:
//! the destination's evidence is quoted over the source's fresh challenge and
//! its transfer certificate; the partition is sealed (HPKE Auth) to that
//! transfer key and authenticated by the source's attested one, with both hosts,
//! both keys, the partition and the epoch in HPKE's `info`; and a request to
//! settle a move is only a prompt to read the signed placement in etcd. The link
//! is plain TCP: the mutual-TLS listener DESIGN.md names for peers is not built
//! yet (docs/fleet.md says what that leaves).
//!
//! Frames are a 4-byte big-endian length and a postcard message, at most
//! [`MAX_FRAME`] bytes, each read and written within a timeout.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::record::Evidence;

/// The largest frame (a partition of a million small objects fits).
pub const MAX_FRAME: usize = 256 << 20;
/// The domain label of the destination's evidence nonce.
pub const EVIDENCE_DOMAIN: &[u8] = b"ihsm fleet move evidence v1\0";
/// The domain label of HPKE's `info` for a move.
pub const INFO_DOMAIN: &[u8] = b"ihsm partition move v1\0";

/// A request from one host to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Prove what you are, now: evidence over this nonce and your transfer
    /// certificate.
    Challenge {
        /// The source's fresh random nonce.
        nonce: [u8; 32],
    },
    /// Take this partition (sealed to the transfer key you just proved).
    Offer {
        /// The source host.
        from: String,
        /// The partition.
        partition: String,
        /// The placement epoch the move replaces.
        epoch: u64,
        /// HPKE's encapsulated key.
        enc: ByteBuf,
        /// The sealed bundle.
        ciphertext: ByteBuf,
    },
    /// Read the partition's placement and settle its move by it.
    Settle {
        /// The partition.
        partition: String,
    },
    /// Complete the partition offered (staged) before: what changed since,
    /// sealed once the source stopped it.
    Delta {
        /// The source host.
        from: String,
        /// The partition.
        partition: String,
        /// The placement epoch the move replaces.
        epoch: u64,
        /// HPKE's encapsulated key.
        enc: ByteBuf,
        /// The sealed delta.
        ciphertext: ByteBuf,
    },
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerReply {
    /// The evidence the challenge asked for.
    Evidence {
        /// The transfer key's certificate (DER).
        transfer_cert: ByteBuf,
        /// Chains, quotes over [`evidence_nonce`], PCR log.
        evidence: Box<Evidence>,
    },
    /// The partition is stored here, not serving until its placement flips.
    Imported,
    /// Where the move stands here after reading the placement.
    Settled {
        /// Whether the partition serves here now.
        serving: bool,
    },
    /// The request was refused.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Why a frame could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The connection failed.
    #[error("peer link: {0}")]
    Io(#[from] std::io::Error),
    /// The other side took too long.
    #[error("peer link: no answer within {0:?}")]
    Timeout(Duration),
    /// A frame over [`MAX_FRAME`] or that does not parse.
    #[error("peer link: {0}")]
    Malformed(&'static str),
}

/// The nonce the destination's quotes carry: SHA-256 of [`EVIDENCE_DOMAIN`], the
/// source's challenge and the transfer certificate.
#[must_use]
pub fn evidence_nonce(challenge: &[u8; 32], transfer_cert: &[u8]) -> [u8; 32] {
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    c.update(EVIDENCE_DOMAIN);
    c.update(challenge);
    c.update(transfer_cert);
    let mut out = [0u8; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// HPKE's `info` for a move: both hosts with their transfer keys, the partition
/// and the epoch, each length-prefixed.
#[must_use]
pub fn move_info(
    from: &str,
    from_key: &[u8],
    to: &str,
    to_key: &[u8],
    partition: &str,
    epoch: u64,
) -> Vec<u8> {
    let mut out = INFO_DOMAIN.to_vec();
    for part in [
        from.as_bytes(),
        from_key,
        to.as_bytes(),
        to_key,
        partition.as_bytes(),
    ] {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&epoch.to_be_bytes());
    out
}

async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, PeerError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| PeerError::Timeout(limit))?
        .map_err(PeerError::Io)
}

/// Writes one message.
///
/// # Errors
/// [`PeerError`].
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
    limit: Duration,
) -> Result<(), PeerError> {
    // The length and the message in one write: two would meet Nagle's
    // algorithm and the peer's delayed acknowledgement (40 ms a message).
    let mut bytes =
        postcard::to_extend(msg, vec![0u8; 4]).map_err(|_| PeerError::Malformed("unencodable"))?;
    let body = bytes.len() - 4;
    if body > MAX_FRAME {
        return Err(PeerError::Malformed("message over the frame limit"));
    }
    let len = u32::try_from(body).map_err(|_| PeerError::Malformed("too long"))?;
    bytes[..4].copy_from_slice(&len.to_be_bytes());
    bounded(limit, async {
        w.write_all(&bytes).await?;
        w.flush().await
    })
    .await
}

/// Reads one message; `Ok(None)` when the other side closed before a frame.
///
/// # Errors
/// [`PeerError`].
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
    limit: Duration,
) -> Result<Option<T>, PeerError> {
    let mut len = [0u8; 4];
    match bounded(limit, r.read_exact(&mut len)).await {
        Ok(_) => {}
        Err(PeerError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(PeerError::Malformed("frame over the limit"));
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| PeerError::Malformed("no memory for the frame"))?;
    buf.resize(len, 0);
    bounded(limit, r.read_exact(&mut buf)).await?;
    let (msg, rest) = postcard::take_from_bytes(&buf)
        .map_err(|_| PeerError::Malformed("frame does not parse"))?;
    if !rest.is_empty() {
        return Err(PeerError::Malformed("bytes after the message"));
    }
    Ok(Some(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_refused() {
        let req = PeerRequest::Offer {
            from: "a".into(),
            partition: "p".into(),
            epoch: 3,
            enc: ByteBuf::from(vec![4; 97]),
            ciphertext: ByteBuf::from(vec![5; 100]),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req, T).await.unwrap();
        let back: PeerRequest = read_frame(&mut buf.as_slice(), T).await.unwrap().unwrap();
        assert_eq!(back, req);
        // Every truncation fails or reads nothing; never a panic.
        for n in 0..buf.len() {
            let r: Result<Option<PeerRequest>, _> = read_frame(&mut &buf[..n], T).await;
            assert!(matches!(r, Ok(None) | Err(_)));
            if n >= 4 {
                assert!(r.is_err());
            }
        }
        // A length over the limit is refused before anything is allocated.
        let huge = (u32::MAX).to_be_bytes();
        let r: Result<Option<PeerRequest>, _> = read_frame(&mut &huge[..], T).await;
        assert!(matches!(r, Err(PeerError::Malformed(_))));
        // Garbage, and trailing bytes.
        let mut g = 5u32.to_be_bytes().to_vec();
        g.extend_from_slice(&[0xff; 5]);
        let r: Result<Option<PeerRequest>, _> = read_frame(&mut g.as_slice(), T).await;
        assert!(r.is_err());
        let mut t = buf.clone();
        let n = u32::from_be_bytes(t[..4].try_into().unwrap()) + 1;
        t[..4].copy_from_slice(&n.to_be_bytes());
        t.push(0);
        let r: Result<Option<PeerRequest>, _> = read_frame(&mut t.as_slice(), T).await;
        assert!(r.is_err());
    }

    /// A writer that records each write it is given.
    #[derive(Default)]
    struct Writes(Vec<usize>);

    impl tokio::io::AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.push(buf.len());
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Regression: the length and the message went in two writes, and on TCP
    /// the second waited for the peer's delayed acknowledgement (Nagle's
    /// algorithm), 40 ms a message, inside every move's blackout.
    #[tokio::test]
    async fn a_frame_is_one_write() {
        let mut w = Writes::default();
        let req = PeerRequest::Settle {
            partition: "p".into(),
        };
        write_frame(&mut w, &req, T).await.unwrap();
        let mut whole = Vec::new();
        write_frame(&mut whole, &req, T).await.unwrap();
        assert_eq!(w.0, [whole.len()]);
    }

    #[test]
    fn info_and_nonce_bind_every_field() {
        let base = move_info("a", b"ka", "b", b"kb", "p", 1);
        for other in [
            move_info("b", b"ka", "b", b"kb", "p", 1),
            move_info("a", b"kx", "b", b"kb", "p", 1),
            move_info("a", b"ka", "c", b"kb", "p", 1),
            move_info("a", b"ka", "b", b"kx", "p", 1),
            move_info("a", b"ka", "b", b"kb", "q", 1),
            move_info("a", b"ka", "b", b"kb", "p", 2),
            move_info("ab", b"a", "b", b"kb", "p", 1),
        ] {
            assert_ne!(base, other);
        }
        assert_ne!(
            evidence_nonce(&[0; 32], b"c"),
            evidence_nonce(&[1; 32], b"c")
        );
        assert_ne!(
            evidence_nonce(&[0; 32], b"c"),
            evidence_nonce(&[0; 32], b"d")
        );
    }
}
