//! What can go wrong, with the daemon's stable code and message.

use std::io;

use ihsm_proto::frame::FrameError;
use ihsm_proto::{ErrorCode, WireError};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The HSM answered with an error.
    #[error("{0}")]
    Hsm(WireError),
    /// The daemon could not be reached.
    #[error("cannot connect to {target}: {source}{hint}")]
    Connect {
        /// Socket path or address.
        target: String,
        /// Why.
        source: io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// The connection failed or broke.
    #[error("connection to the HSM failed: {0}")]
    Io(#[from] io::Error),
    /// The daemon said something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// TLS set-up.
    #[error("TLS: {0}")]
    Tls(String),
}

impl ClientError {
    /// The stable code of this error.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Hsm(e) => e.kind().unwrap_or(ErrorCode::Internal),
            Self::Connect { .. } | Self::Io(_) | Self::Tls(_) => ErrorCode::Connection,
            Self::Protocol(_) => ErrorCode::UnexpectedReply,
        }
    }

    /// The `CKR_*` for this error.
    #[must_use]
    pub fn ckr(&self) -> u64 {
        match self {
            Self::Hsm(e) => e.ckr(),
            other => other.code().ckr(),
        }
    }
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(io) => Self::Io(io),
            FrameError::Closed => Self::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection",
            )),
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// Result of the client.
pub type Result<T, E = ClientError> = core::result::Result<T, E>;
