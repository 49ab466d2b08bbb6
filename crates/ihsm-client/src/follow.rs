//! A client that follows its partition across the fleet.
//!
//! A partition that moves (`ihsm partition move`, docs/fleet.md) keeps its id, so
//! its object handles are the same on every host; what ends at the source is the
//! connection, with its sessions and login. A [`Follower`] hides that from an
//! application: it holds the routes to the fleet's hosts (their partition
//! sockets), the partition's name and the user PIN (in memory wiped on drop), and
//! runs each call on a logged-in session. When a call is refused because the
//! partition is moving (`PartitionMoving`) it waits; when it moved
//! (`PartitionMoved`, naming the host) it connects there, opens a session, logs
//! in, and runs the call again. Both refusals mean the call did nothing, so
//! running it again is safe. It never talks to etcd: where the partition went
//! is what the hosts answer.
//!
//! The partition's delta carries the application (its token, sessions, login
//! and session objects): at the new host the follower joins it by its token
//! and carries on with the same session, without logging in again. Only when
//! that fails (the destination restarted, or it is an older one) does it open a
//! session and log in again. Operations that have taken data do not follow.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ihsm_proto::ErrorCode;
use ihsm_proto::msg::SecretBytes;
use ihsm_proto::types::UserType;
use zeroize::Zeroizing;

use crate::{Client, ClientError, Result};

/// One host of the fleet and its socket for the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The host's fleet name (what `PartitionMoved` names).
    pub host: String,
    /// Its partition socket.
    pub socket: PathBuf,
}

/// A logged-in session on whichever host serves the partition.
pub struct Follower {
    routes: Vec<Route>,
    pin: Zeroizing<Vec<u8>>,
    rw: bool,
    patience: Duration,
    current: Option<(usize, Client, u64)>,
    /// The application's token and session, for joining it where it went.
    resume: Option<(SecretBytes, u64)>,
    last: Option<usize>,
    moves: u64,
    resumed: u64,
}

impl core::fmt::Debug for Follower {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Follower")
            .field("routes", &self.routes)
            .field("host", &self.host())
            .field("moves", &self.moves)
            .finish_non_exhaustive()
    }
}

/// The longest wait between attempts: a call on a stopped partition costs its
/// host a few microseconds.
const STEP: Duration = Duration::from_millis(10);
/// The first wait: a move's blackout is tens of milliseconds.
const FIRST_STEP: Duration = Duration::from_millis(1);

/// The waits between attempts while a partition settles somewhere: 1 ms at
/// first, doubling up to 10 ms, so that a short blackout costs little more than
/// itself and a long one few attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_STEP }
    }
}

impl Backoff {
    /// Sleeps for the next wait.
    pub fn wait(&mut self) {
        std::thread::sleep(self.next);
        self.next = (self.next * 2).min(STEP);
    }
}

/// The host a `PartitionMoved` error names ("... moved to host NAME; ..."), if
/// `e` is one.
#[must_use]
pub fn moved_to(e: &ClientError) -> Option<String> {
    let ClientError::Hsm(w) = e else { return None };
    if w.kind() != Some(ErrorCode::PartitionMoved) {
        return None;
    }
    let rest = w.message.split("moved to host ").nth(1)?;
    Some(rest.split(';').next()?.trim().to_owned())
}

/// Whether the call was refused without effect because of where the partition
/// is, so that it may run again elsewhere or later.
fn displaced(e: &ClientError) -> bool {
    match e {
        ClientError::Hsm(w) => matches!(
            w.kind(),
            Some(
                ErrorCode::PartitionMoved
                    | ErrorCode::PartitionMoving
                    | ErrorCode::PartitionNotFound
            )
        ),
        ClientError::Connect { .. } => true,
        _ => false,
    }
}

impl Follower {
    /// A follower over `routes` with the user PIN; `patience` bounds how long one
    /// call waits for its partition to settle somewhere.
    #[must_use]
    pub fn new(routes: Vec<Route>, pin: &[u8], rw: bool, patience: Duration) -> Self {
        Self {
            routes,
            pin: Zeroizing::new(pin.to_vec()),
            rw,
            patience,
            current: None,
            resume: None,
            last: None,
            moves: 0,
            resumed: 0,
        }
    }

    /// The host the session is on now.
    #[must_use]
    pub fn host(&self) -> Option<&str> {
        self.current
            .as_ref()
            .map(|(i, _, _)| self.routes[*i].host.as_str())
    }

    /// How many times the session followed the partition to another host.
    #[must_use]
    pub fn moves(&self) -> u64 {
        self.moves
    }

    /// How many of the moves followed resumed the application (the same
    /// session and login) rather than logging in again.
    #[must_use]
    pub fn resumed(&self) -> u64 {
        self.resumed
    }

    fn open(&mut self, i: usize) -> Result<(Client, u64)> {
        let mut c = Client::connect(&self.routes[i].socket)?;
        if let Some((t, s)) = &self.resume {
            match c.join_app(t) {
                Ok(()) => {
                    self.resumed += 1;
                    return Ok((c, *s));
                }
                Err(e) if displaced(&e) => return Err(e),
                Err(_) => self.resume = None,
            }
        }
        let s = c.open_session(self.rw)?;
        c.login(s, UserType::User, &self.pin)?;
        if c.revision() >= 2 {
            self.resume = Some((c.app_token()?, s));
        }
        Ok((c, s))
    }

    /// Runs `f` on the session, following the partition when it moves.
    ///
    /// # Errors
    /// What `f` returns for any other reason; the last refusal when the
    /// partition settles nowhere within the patience.
    pub fn run<T>(&mut self, mut f: impl FnMut(&mut Client, u64) -> Result<T>) -> Result<T> {
        let deadline = Instant::now() + self.patience;
        let mut prefer: Option<usize> = None;
        let mut backoff = Backoff::default();
        loop {
            let err = match self.current.as_mut() {
                Some((_, c, s)) => match f(c, *s) {
                    Ok(v) => return Ok(v),
                    Err(e) => e,
                },
                None => {
                    let order: Vec<usize> =
                        prefer.into_iter().chain(0..self.routes.len()).collect();
                    let mut last = None;
                    for i in order {
                        match self.open(i) {
                            Ok((c, s)) => {
                                if self.last.is_some_and(|l| l != i) {
                                    self.moves += 1;
                                }
                                self.last = Some(i);
                                self.current = Some((i, c, s));
                                last = None;
                                break;
                            }
                            Err(e) if displaced(&e) => {
                                if let Some(to) = moved_to(&e) {
                                    prefer = self.routes.iter().position(|r| r.host == to);
                                }
                                last = Some(e);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    match last {
                        None => continue,
                        Some(e) => e,
                    }
                }
            };
            if !displaced(&err) || Instant::now() >= deadline {
                return Err(err);
            }
            if let Some(to) = moved_to(&err) {
                let named = self.routes.iter().position(|r| r.host == to);
                self.current = None;
                // Told where it went: there at once, the first time.
                if named.is_some() && named != prefer {
                    prefer = named;
                    continue;
                }
            } else if !matches!(&err, ClientError::Hsm(w) if w.kind() == Some(ErrorCode::PartitionMoving))
            {
                self.current = None;
            }
            backoff.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ihsm_proto::WireError;

    #[test]
    fn the_moved_host_is_read_from_the_message() {
        let e = ClientError::Hsm(WireError::new(
            ErrorCode::PartitionMoved,
            "partition \"p\" moved to host host-1; connect there",
        ));
        assert_eq!(moved_to(&e).as_deref(), Some("host-1"));
        assert!(displaced(&e));
        let other = ClientError::Hsm(WireError::new(ErrorCode::PinIncorrect, "moved to host x;"));
        assert_eq!(moved_to(&other), None);
        assert!(!displaced(&other));
    }
}
