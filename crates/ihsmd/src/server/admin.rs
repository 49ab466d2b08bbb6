//! The admin socket's requests: partitions, the root of trust's mailbox, tamper,
//! and the device's status.

use std::sync::Arc;

use ihsm_core::{CoreError, DeviceState};
use ihsm_proto::msg::{DeviceStatus, Reply, Request, SecretBytes};
use ihsm_proto::{ErrorCode, WireError};

use super::Daemon;

impl Daemon {
    pub(super) fn admin(self: &Arc<Self>, req: Request) -> Result<Reply, WireError> {
        let core = |e: CoreError| e.to_wire();
        match req {
            Request::Status => Ok(Reply::Status(Box::new(self.status()))),
            Request::CreatePartition(spec) => {
                let info = self
                    .device
                    .create_partition(ihsm_core::PartitionSpec {
                        name: spec.name,
                        owner_uid: spec.owner_uid,
                        owner_gid: spec.owner_gid,
                        so_pin: spec.so_pin.into_zeroizing(),
                        user_pin: spec.user_pin.map(SecretBytes::into_zeroizing),
                        quotas: spec.quotas.unwrap_or_else(|| self.config.quotas.quotas()),
                        policy: spec.policy,
                    })
                    .map_err(core)?;
                tracing::info!(partition = %info.name, id = info.id, owner_uid = info.owner_uid, owner_gid = info.owner_gid, allow_sha1_signatures = info.policy.allow_sha1_signatures, "partition created");
                self.listen_partition(&info).map_err(|e| {
                    WireError::new(
                        ErrorCode::DaemonFailed,
                        format!(
                            "partition {} was created but its socket could not be bound: {e}",
                            info.name
                        ),
                    )
                })?;
                Ok(Reply::Partition(info))
            }
            Request::ListPartitions => {
                Ok(Reply::Partitions(self.device.partitions().map_err(core)?))
            }
            Request::DescribePartition { name } => Ok(Reply::Partition(
                self.device
                    .partition_by_name(&name)
                    .map_err(core)?
                    .info()
                    .map_err(core)?,
            )),
            Request::DeletePartition { name } => {
                let p = self.device.partition_by_name(&name).map_err(core)?;
                let id = p.id();
                drop(p);
                self.unlisten_partition(id);
                self.device.delete_partition(id).map_err(core)?;
                tracing::info!(partition = %name, id, "partition deleted and zeroized");
                Ok(Reply::Done)
            }
            Request::AllowPrincipal { name, principal } => {
                let p = self.device.partition_by_name(&name).map_err(core)?;
                let changed = p.allow(principal).map_err(core)?;
                let info = p.info().map_err(core)?;
                if changed {
                    tracing::info!(partition = %name, %principal, admits = %ihsm_proto::types::list(&info.admitted()), "principal allowed");
                }
                Ok(Reply::Admission {
                    changed,
                    partition: info,
                })
            }
            Request::RevokePrincipal { name, principal } => {
                let p = self.device.partition_by_name(&name).map_err(core)?;
                let changed = p.revoke(principal).map_err(core)?;
                let info = p.info().map_err(core)?;
                if changed {
                    let cut = self.cut_refused(&p);
                    tracing::info!(partition = %name, %principal, admits = %ihsm_proto::types::list(&info.admitted()), connections_closed = cut, "principal revoked");
                }
                Ok(Reply::Admission {
                    changed,
                    partition: info,
                })
            }
            Request::PartitionCertificate { name } => {
                let id = self.device.partition_by_name(&name).map_err(core)?.id();
                Ok(Reply::Bytes(
                    self.device.partition_certificate(id, false).map_err(core)?,
                ))
            }
            Request::DeviceAuditCertificate => Ok(Reply::Bytes(
                self.device.device_audit_certificate().map_err(core)?,
            )),
            Request::AuditLog { partition, since } => {
                let pid = match partition {
                    Some(name) => self.device.partition_by_name(&name).map_err(core)?.id(),
                    None => 0,
                };
                let page = self
                    .device
                    .audit_page(pid, since, ihsm_proto::msg::AUDIT_PAGE)
                    .map_err(core)?;
                Ok(Reply::AuditEntries(
                    page.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                ))
            }
            Request::PartitionMlDsaCertificate { name } => {
                let id = self.device.partition_by_name(&name).map_err(core)?.id();
                Ok(Reply::Bytes(
                    self.device.partition_certificate(id, true).map_err(core)?,
                ))
            }
            Request::FleetHosts => Ok(Reply::Fleet(Box::new(self.fleet_view()?))),
            Request::MovePartition { name, to } => {
                Ok(Reply::Moved(Box::new(self.move_partition(&name, &to)?)))
            }
            Request::FleetDomain => Ok(Reply::Domain(Box::new(self.fleet_domain_view()?))),
            Request::FleetEvict { host } => Ok(Reply::Domain(Box::new(self.fleet_evict(&host)?))),
            Request::Mailbox { command, payload } => {
                match self.device.mailbox(command, &payload).map_err(core)? {
                    Ok(resp) => Ok(Reply::Bytes(resp)),
                    Err(e) => Err(WireError::new(
                        ErrorCode::MailboxFailed,
                        format!(
                            "mailbox command 0x{command:08x} failed: {} (0x{:08x})",
                            e.name(),
                            e.0
                        ),
                    )),
                }
            }
            Request::Tamper { sensor } => {
                if !matches!(sensor.as_str(), "lid" | "thermal" | "voltage") {
                    return Err(WireError::new(
                        ErrorCode::Malformed,
                        format!("unknown sensor {sensor:?}: lid, thermal or voltage"),
                    ));
                }
                let reason = format!("{sensor} sensor");
                tracing::error!(sensor = %sensor, "TAMPER: sensor input; zeroizing");
                self.device.tamper(&reason);
                Ok(Reply::Done)
            }
            _ => Err(WireError::new(
                ErrorCode::Internal,
                "partition request routed to the admin socket",
            )),
        }
    }

    /// The device's status.
    pub(crate) fn status(&self) -> DeviceStatus {
        DeviceStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            state: self.device.state(),
            development: self.development,
            boot_report: self.boot_report.clone(),
            partitions: self.device.partitions().unwrap_or_default(),
            uptime_secs: self.started.elapsed().as_secs(),
            state_dir: self.state_dir.display().to_string(),
            admin_socket: self.admin_socket.display().to_string(),
            partition_dir: self.partition_dir.display().to_string(),
            network: self.network.clone(),
            metrics: self.config.metrics.listen.clone(),
        }
    }

    /// Whether the device is tampered (for metrics and logs).
    pub(crate) fn tampered(&self) -> bool {
        matches!(self.device.state(), DeviceState::Tampered(_))
    }
}
