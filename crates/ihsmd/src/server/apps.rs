//! PKCS#11 applications: the connections that act for one application of a
//! partition's tenant, joined by the application's token.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use ihsm_proto::msg::{Reply, Request, SecretBytes};
use ihsm_proto::{ErrorCode, WireError};
use zeroize::Zeroizing;

use super::Daemon;
use super::connection::ConnCtx;

/// A PKCS#11 application: its connections, and the token that lets another
/// connection of the same user on the same partition join it.
pub(super) struct App {
    pub(super) connections: usize,
    pub(super) token: Option<Zeroizing<[u8; 32]>>,
    pub(super) partition: u32,
    pub(super) uid: u32,
}

/// How long an application that arrived with a partition waits for a
/// connection to join it (the module follows within a second or two; one that
/// never comes leaves nothing behind).
const PARKED: std::time::Duration = std::time::Duration::from_secs(60);

impl Daemon {
    /// The applications of partition `pid` that can resume at another host:
    /// those with a token (their id, token and uid).
    pub(super) fn leaving_apps(&self, pid: u32) -> Vec<(u64, Zeroizing<[u8; 32]>, u32)> {
        self.apps_lock()
            .iter()
            .filter(|(_, a)| a.partition == pid)
            .filter_map(|(id, a)| a.token.as_ref().map(|t| (*id, t.clone(), a.uid)))
            .collect()
    }

    /// Adopts the applications that arrived with partition `name`'s delta:
    /// each becomes an application of this daemon with no connection yet,
    /// which the first connection that presents its token (of the same uid)
    /// joins. One that nobody joins within [`PARKED`] is closed. Returns how
    /// many sessions were adopted.
    pub(super) fn adopt_apps(
        self: &std::sync::Arc<Self>,
        name: &str,
        pid: u32,
        arrived: Vec<ihsm_core::partition::Arrived>,
    ) -> usize {
        let mut sessions = 0;
        for a in arrived {
            let id = self.next_app.fetch_add(1, Ordering::Relaxed);
            let token = a.token.clone();
            let uid = a.uid;
            let n = a.sessions();
            if let Err(e) = self.device.adopt_app(name, id, a) {
                // The application starts again at the destination (its module
                // opens its sessions and logs in again): nothing is lost but time.
                tracing::warn!(partition = %name, error = %e, "an arrived application was not adopted");
                continue;
            }
            sessions += n;
            self.apps_lock().insert(
                id,
                App {
                    connections: 0,
                    token: Some(token),
                    partition: pid,
                    uid,
                },
            );
            let d = std::sync::Arc::clone(self);
            let name = name.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(PARKED).await;
                d.expire_parked(&name, id);
            });
        }
        sessions
    }

    /// Closes arrived application `id` if nobody joined it.
    fn expire_parked(&self, name: &str, id: u64) {
        let mut apps = self.apps_lock();
        if apps.get(&id).is_some_and(|a| a.connections == 0) {
            apps.remove(&id);
            drop(apps);
            if let Ok(p) = self.device.partition_by_name(name) {
                let _ = p.close_all_sessions(id);
            }
            tracing::debug!(partition = %name, app = id, "an arrived application nobody joined was closed");
        }
    }

    pub(super) fn apps_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, App>> {
        // The map stays consistent whatever a panicking holder did: each change
        // is one insert, update or remove.
        self.apps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One connection of `app` closed; whether it was the last.
    pub(super) fn leave_app(&self, app: u64) -> bool {
        let mut apps = self.apps_lock();
        match apps.get_mut(&app) {
            Some(a) if a.connections > 1 => {
                a.connections -= 1;
                false
            }
            _ => {
                apps.remove(&app);
                true
            }
        }
    }

    /// [`Request::AppToken`] and [`Request::JoinApp`]: several connections acting
    /// for one PKCS#11 application.
    pub(super) fn app_request(&self, req: Request, ctx: &ConnCtx) -> Result<Reply, WireError> {
        let Some(p) = ctx.partition.as_deref() else {
            return Err(WireError::new(
                ErrorCode::WrongEndpoint,
                format!(
                    "{} is served on a partition's socket, not on the admin socket",
                    req.name()
                ),
            ));
        };
        let own = ctx.app.load(Ordering::Relaxed);
        match req {
            Request::AppToken => {
                let mut apps = self.apps_lock();
                let a = apps.get_mut(&own).ok_or_else(|| {
                    WireError::new(ErrorCode::Internal, "connection has no application")
                })?;
                if a.token.is_none() {
                    let mut t = Zeroizing::new([0u8; 32]);
                    ihsm_crypto::rand::fill(&mut t[..])
                        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
                    a.token = Some(t);
                }
                let t = a.token.as_ref().map(|t| t.to_vec()).unwrap_or_default();
                Ok(Reply::Secret(SecretBytes::new(t)))
            }
            Request::JoinApp { token } => {
                let target = {
                    let mut apps = self.apps_lock();
                    let found = apps.iter().find_map(|(id, a)| {
                        let same = a.partition == p.id()
                            && a.uid == ctx.peer.uid
                            && a.token
                                .as_ref()
                                .is_some_and(|t| ihsm_crypto::ct_eq(&t[..], token.expose()));
                        same.then_some(*id)
                    });
                    let target = found.ok_or_else(|| {
                        WireError::new(
                            ErrorCode::AppTokenInvalid,
                            "no application of this user and partition has that token (its last connection may have closed)",
                        )
                    })?;
                    if target != own
                        && let Some(a) = apps.get_mut(&target)
                    {
                        a.connections += 1;
                    }
                    target
                };
                if target != own {
                    ctx.app.store(target, Ordering::Relaxed);
                    if self.leave_app(own) {
                        let _ = p.close_all_sessions(own);
                    }
                    tracing::debug!(endpoint = %ctx.label, app = target, left = own, "connection joined an application");
                }
                Ok(Reply::Done)
            }
            other => Err(WireError::new(
                ErrorCode::Internal,
                format!("{} is not an application request", other.name()),
            )),
        }
    }
}
