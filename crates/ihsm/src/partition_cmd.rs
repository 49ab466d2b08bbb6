//! `ihsm partition ...`: the tenants of the HSM, on the admin socket.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use ihsm_proto::msg::{PartitionSpec, SecretBytes};
use ihsm_proto::types::{PartitionInfo, PartitionPolicy, Principal, Quotas};
use ihsm_rot::state::StateDir;

use crate::{CliResult, Failure, admin, output, partition_socket, read_pin};

/// "No group": a gid no process has.
const NO_GROUP: u32 = u32::MAX;

#[derive(Debug, Subcommand)]
pub(crate) enum PartitionCommand {
    /// Create a partition and its socket (owned by the owner uid/gid).
    Create {
        /// Name: 1 to 32 of a-z, 0-9, '-', '_'.
        name: String,
        /// The uid that owns the partition: it (and --owner-gid, and whom
        /// `ihsm partition allow` adds) may connect.
        #[arg(long)]
        owner_uid: u32,
        /// A gid whose members may also connect (default: none).
        #[arg(long)]
        owner_gid: Option<u32>,
        /// File holding the Security Officer PIN (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        so_pin_file: PathBuf,
        /// File holding the user PIN (else the SO sets it later with C_InitPIN).
        #[arg(long, value_name = "FILE")]
        pin_file: Option<PathBuf>,
        /// Most objects (default: the daemon's configured quota).
        #[arg(long)]
        max_objects: Option<u64>,
        /// Most open sessions.
        #[arg(long)]
        max_sessions: Option<u32>,
        /// Most cryptographic operations per second (0: unlimited).
        #[arg(long)]
        max_ops: Option<u32>,
        /// Let the partition make SHA-1 signatures (CKM_SHA1_RSA_PKCS,
        /// CKM_SHA1_RSA_PKCS_PSS, CKM_ECDSA_SHA1) for legacy clients. Off by
        /// default: NIST SP 800-131A disallows SHA-1 for signing.
        #[arg(long)]
        allow_sha1_signatures: bool,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Admit a user or a group to a partition besides its owner (nginx's
    /// workers, say, when its master is the owner); at most 64 of them.
    Allow {
        /// The partition.
        name: String,
        #[command(flatten)]
        who: Who,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop admitting a user or a group: its new connections are refused and
    /// its open ones closed (the owner cannot be revoked).
    Revoke {
        /// The partition.
        name: String,
        #[command(flatten)]
        who: Who,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every partition.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// One partition.
    Show {
        /// Its name.
        name: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a partition: every object in it is destroyed and zeroized.
    Delete {
        /// Its name.
        name: String,
        /// Do not ask (required when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Move a partition to another host of the fleet: the destination proves by
    /// fresh evidence that it is a genuine ihsm, the partition is sealed to its
    /// attested transfer key, and the placement flips in etcd; this host then
    /// refuses it, naming where it went (docs/fleet.md).
    Move {
        /// Its name.
        name: String,
        /// The destination host's fleet name.
        #[arg(long = "to", value_name = "HOST")]
        to: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// A partition identity key's certificate (PEM), issued by the RT Alias key of
    /// the same algorithm.
    Cert {
        /// Its name.
        name: String,
        /// Which identity key: ECC P-384 (the key reports' ES384 signature and the
        /// audit checkpoints) or ML-DSA-87 (the reports' second signature).
        #[arg(long, value_enum, default_value = "ecc384")]
        alg: crate::rot_cmd::AlgArg,
        /// Where to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// A user or a group, by number or by name.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Who {
    /// A user: a uid, or a name in /etc/passwd.
    #[arg(long, value_name = "UID")]
    uid: Option<String>,
    /// A group (a process's effective gid, as SO_PEERCRED reports it): a gid,
    /// or a name in /etc/group.
    #[arg(long, value_name = "GID")]
    gid: Option<String>,
}

impl Who {
    fn principal(&self) -> Result<Principal, Failure> {
        match (&self.uid, &self.gid) {
            (Some(u), None) => Ok(Principal::Uid(id(u, "/etc/passwd", "user")?)),
            (None, Some(g)) => Ok(Principal::Gid(id(g, "/etc/group", "group")?)),
            _ => Err(Failure("give one of --uid or --gid".into())),
        }
    }
}

/// A numeric id, or the id of the name in `db` (the third field of its
/// `name:password:id:...` line).
fn id(s: &str, db: &str, what: &str) -> Result<u32, Failure> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string(db).map_err(|e| {
        Failure(format!(
            "cannot read {db} to look up {what} {s:?}: {e}; give the number instead"
        ))
    })?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse::<u32>().ok()?;
            (name == s).then_some(id)
        })
        .next()
        .ok_or_else(|| {
            Failure(format!(
                "no {what} named {s:?} in {db}; give the number instead (a {what} known only to NSS, LDAP say, is not looked up)"
            ))
        })
}

fn gid(g: u32) -> String {
    if g == NO_GROUP {
        "-".into()
    } else {
        g.to_string()
    }
}

pub(crate) fn print_partitions(parts: &[PartitionInfo]) {
    let rows: Vec<Vec<String>> = parts
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.name.clone(),
                p.owner_uid.to_string(),
                gid(p.owner_gid),
                p.token_objects.to_string(),
                p.sessions.to_string(),
                if p.user_pin_locked || p.so_pin_locked {
                    "locked".into()
                } else if p.user_pin_initialized {
                    "set".into()
                } else {
                    "not set".into()
                },
            ]
        })
        .collect();
    output::table(
        &[
            "ID", "NAME", "UID", "GID", "OBJECTS", "SESSIONS", "USER PIN",
        ],
        &rows,
    );
}

fn print_one(p: &PartitionInfo, state: &StateDir) {
    println!("partition {} (id {})", p.name, p.id);
    println!(
        "  socket       {}",
        partition_socket(state, &p.name).display()
    );
    println!(
        "  owner        uid {}, gid {}",
        p.owner_uid,
        gid(p.owner_gid)
    );
    println!("  admits       {}", ihsm_proto::types::list(&p.admitted()));
    println!(
        "  policy       SHA-1 signatures {}",
        if p.policy.allow_sha1_signatures {
            "allowed (--allow-sha1-signatures)"
        } else {
            "refused"
        }
    );
    println!(
        "  objects      {} token, {} session (quota {})",
        p.token_objects, p.session_objects, p.quotas.max_objects
    );
    println!(
        "  sessions     {} (quota {})",
        p.sessions, p.quotas.max_sessions
    );
    println!(
        "  rate         {}",
        if p.quotas.ops_per_second == 0 {
            "unlimited".to_owned()
        } else {
            format!("{} operations per second", p.quotas.ops_per_second)
        }
    );
    println!(
        "  PINs         user {}{}, SO {}",
        if p.user_pin_initialized {
            "set"
        } else {
            "not set"
        },
        if p.user_pin_locked { " (LOCKED)" } else { "" },
        if p.so_pin_locked { "LOCKED" } else { "ok" }
    );
    println!("  created      {} (Unix seconds)", p.created);
}

pub(crate) fn run(state: &StateDir, cmd: PartitionCommand) -> CliResult {
    match cmd {
        PartitionCommand::Create {
            name,
            owner_uid,
            owner_gid,
            so_pin_file,
            pin_file,
            max_objects,
            max_sessions,
            max_ops,
            allow_sha1_signatures,
            json,
        } => {
            let so_pin = read_pin(&so_pin_file)?;
            let user_pin = pin_file.as_deref().map(read_pin).transpose()?;
            let quotas = (max_objects.is_some() || max_sessions.is_some() || max_ops.is_some())
                .then(|| {
                    let d = Quotas::default();
                    Quotas {
                        max_objects: max_objects.unwrap_or(d.max_objects),
                        max_sessions: max_sessions.unwrap_or(d.max_sessions),
                        ops_per_second: max_ops.unwrap_or(d.ops_per_second),
                    }
                });
            let info = admin(state)?.create_partition(PartitionSpec {
                name,
                owner_uid,
                owner_gid: owner_gid.unwrap_or(NO_GROUP),
                so_pin: SecretBytes::new(so_pin.to_vec()),
                user_pin: user_pin.map(|p| SecretBytes::new(p.to_vec())),
                quotas,
                policy: PartitionPolicy {
                    allow_sha1_signatures,
                },
            })?;
            if json {
                return output::print_json(&info);
            }
            println!(
                "created partition {} (id {}), socket {}",
                info.name,
                info.id,
                partition_socket(state, &info.name).display()
            );
            Ok(())
        }
        PartitionCommand::Allow { name, who, json } => {
            let principal = who.principal()?;
            let (changed, info) = admin(state)?.allow_principal(&name, principal)?;
            if json {
                return output::print_json(&info);
            }
            let admits = ihsm_proto::types::list(&info.admitted());
            if changed {
                println!("partition {name} now admits {principal} (it admits {admits})");
            } else {
                println!(
                    "partition {name} already admits {principal}; nothing changed (it admits {admits})"
                );
            }
            Ok(())
        }
        PartitionCommand::Revoke { name, who, json } => {
            let principal = who.principal()?;
            let (changed, info) = admin(state)?.revoke_principal(&name, principal)?;
            if json {
                return output::print_json(&info);
            }
            let admits = ihsm_proto::types::list(&info.admitted());
            if changed {
                println!(
                    "partition {name} no longer admits {principal}; its connections that only it admitted were closed (it admits {admits})"
                );
            } else {
                println!(
                    "partition {name} did not admit {principal}; nothing changed (it admits {admits})"
                );
            }
            Ok(())
        }
        PartitionCommand::List { json } => {
            let parts = admin(state)?.list_partitions()?;
            if json {
                return output::print_json(&parts);
            }
            if parts.is_empty() {
                println!(
                    "no partitions; create one with `ihsm partition create NAME --owner-uid UID --so-pin-file F`"
                );
            } else {
                print_partitions(&parts);
            }
            Ok(())
        }
        PartitionCommand::Show { name, json } => {
            let p = admin(state)?.describe_partition(&name)?;
            if json {
                return output::print_json(&p);
            }
            print_one(&p, state);
            Ok(())
        }
        PartitionCommand::Delete { name, yes } => {
            let mut a = admin(state)?;
            let info = a.describe_partition(&name)?;
            if !yes {
                use std::io::IsTerminal;
                if !std::io::stdin().is_terminal() {
                    return Err(Failure(format!(
                        "deleting {name} destroys its {} objects; pass --yes to confirm",
                        info.token_objects
                    )));
                }
                eprint!(
                    "delete partition {name} and zeroize its {} objects? type its name to confirm: ",
                    info.token_objects
                );
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| Failure(format!("cannot read the confirmation: {e}")))?;
                if line.trim() != name {
                    return Err(Failure("not confirmed; nothing deleted".into()));
                }
            }
            let spinner = indicatif::ProgressBar::new_spinner();
            spinner.set_message(format!(
                "deleting {name} and zeroizing {} objects",
                info.token_objects
            ));
            spinner.enable_steady_tick(Duration::from_millis(100));
            let done = a.delete_partition(&name);
            spinner.finish_and_clear();
            done?;
            println!(
                "deleted partition {name}: {} objects destroyed, its keys zeroized",
                info.token_objects
            );
            Ok(())
        }
        PartitionCommand::Move { name, to, json } => {
            let mut a = admin(state)?;
            let spinner = indicatif::ProgressBar::new_spinner();
            spinner.set_message(format!("moving {name} to {to}"));
            spinner.enable_steady_tick(Duration::from_millis(100));
            let done = a.move_partition(&name, &to);
            spinner.finish_and_clear();
            let r = done?;
            if json {
                return output::print_json(&r);
            }
            println!(
                "moved partition {} from {} to {} (epoch {} -> {}, {} bytes sealed to {}'s attested transfer key, {} ms)",
                r.partition, r.from, r.to, r.epoch, r.new_epoch, r.bundle_bytes, r.to, r.millis
            );
            Ok(())
        }
        PartitionCommand::Cert { name, alg, out } => {
            let der = match alg {
                crate::rot_cmd::AlgArg::Ecc384 => admin(state)?.partition_certificate(&name)?,
                crate::rot_cmd::AlgArg::Mldsa87 => {
                    admin(state)?.partition_mldsa_certificate(&name)?
                }
            };
            let pem = ihsm_rot::certs::cert_pem(&der);
            std::fs::write(&out, pem.as_bytes())
                .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
            println!("{}", out.display());
            Ok(())
        }
    }
}
