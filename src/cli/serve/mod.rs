//! `mfa serve`: the daemon. Every login (through pam_mfa.so) and every
//! command of a user who is not root comes here over one Unix socket; the
//! daemon learns who is calling from the socket's peer credentials, keeps
//! the config and the store warm, and runs logins and commands in its own
//! process, one thread per connection.

mod command;
mod login;
mod slots;
mod state;

use crate::audit;
use crate::cli::error::{exit, CliError, Result};
use crate::config::Config;
use crate::protocol::{self, LineReader, Request, Response};
use crate::trust;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use slots::Slots;
use state::Shared;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A client has this long, from its connection, to send its whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Open files the daemon wants at least: a connection, a store and an SMS
/// gateway's pipes per client, with room to spare.
const MIN_OPEN_FILES: u64 = 65_536;

/// Lifts the file-size and open-file limits inherited from whoever started
/// the daemon (an admin's shell with `ulimit -f`, say): a write refused with
/// EFBIG or an open refused with EMFILE would fail logins for everyone, and
/// such a failure always denies. Root may raise the hard limits; a private
/// instance gets as far as its hard limits allow. What remains is logged.
fn raise_limits() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    let want = [
        (Resource::RLIMIT_FSIZE, RLIM_INFINITY),
        (Resource::RLIMIT_NOFILE, MIN_OPEN_FILES),
    ];
    for (resource, wanted) in want {
        let Ok((soft, hard)) = getrlimit(resource) else {
            continue;
        };
        if soft >= wanted {
            continue;
        }
        if setrlimit(resource, wanted, hard.max(wanted)).is_ok() {
            continue;
        }
        // Not root (or above the kernel's nr_open): as far as the hard limit.
        let reached = if setrlimit(resource, hard.min(wanted), hard).is_ok() {
            hard.min(wanted)
        } else {
            soft
        };
        audit::syslog(
            audit::Level::Warning,
            &format!("could not raise {resource:?} to {wanted}; it stays at {reached}"),
        );
    }
}

/// Who is at the other end of a connection, from SO_PEERCRED.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
}

impl Peer {
    /// Root, or the daemon's own user (a private instance, as in the tests):
    /// may check any account.
    pub fn privileged(&self) -> bool {
        self.uid == 0 || self.uid == nix::unistd::geteuid().as_raw()
    }
}

pub fn serve(config_path: &Path, socket: &Path) -> Result<()> {
    raise_limits();
    // A broken config fails the start, not each request.
    Config::load(config_path)?;
    let listener = match listenfd::ListenFd::from_env().take_unix_listener(0) {
        Ok(Some(l)) => l,
        Ok(None) => bind(socket)?,
        Err(e) => return Err(CliError::Failed(format!("socket activation failed: {e}"))),
    };
    let shared = Arc::new(Shared::new(config_path));
    let slots = Arc::new(Slots::default());
    let purger = Arc::clone(&shared);
    let _ = std::thread::Builder::new()
        .name("audit-purge".into())
        .spawn(move || loop {
            purge_old_audit(&purger);
            std::thread::sleep(std::time::Duration::from_secs(3600));
        });
    audit::syslog(audit::Level::Info, "daemon started");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let peer = match getsockopt(&stream, PeerCredentials) {
            Ok(c) => Peer {
                uid: c.uid(),
                pid: c.pid(),
            },
            Err(_) => continue,
        };
        let Some(slot) = slots.take(peer.uid, peer.privileged()) else {
            refuse_busy(&stream, peer);
            continue;
        };
        let shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("client-{}", peer.pid))
            .spawn(move || {
                // The slot is given back when this closure ends, panic or not.
                let _slot = slot;
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handle(&stream, peer, &shared)
                }));
                if outcome.is_err() {
                    audit::syslog(
                        audit::Level::Error,
                        &format!(
                            "internal error (panic) serving uid={} pid={}; connection closed",
                            peer.uid, peer.pid
                        ),
                    );
                }
            });
        if let Err(e) = spawned {
            audit::syslog(
                audit::Level::Error,
                &format!("cannot start a thread for a client: {e}"),
            );
        }
    }
    Ok(())
}

/// Tells a client over its limit so, without ever blocking the accept loop.
fn refuse_busy(stream: &UnixStream, peer: Peer) {
    audit::syslog(
        audit::Level::Warning,
        &format!(
            "refused a connection from uid={} pid={}: too many connections",
            peer.uid, peer.pid
        ),
    );
    let busy = Response::refused(
        exit::UNAVAILABLE,
        "busy",
        "the daemon is busy; try again in a moment",
    );
    let _ = stream.set_nonblocking(true);
    let _ = protocol::send_line(stream, &protocol::encode_line(&busy));
}

fn bind(socket: &Path) -> Result<UnixListener> {
    let dir = socket
        .parent()
        .ok_or_else(|| CliError::Usage(format!("{} is not a socket path", socket.display())))?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dir.display())))?;
        // The umask (077 under many root shells) would leave it 0700, and
        // ordinary users and screen lockers could not reach the socket.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| {
            CliError::Failed(format!("cannot set the mode of {}: {e}", dir.display()))
        })?;
    }
    let expect = trust::Expect::dir(trust::OTHERS_WRITE).sticky_ok();
    match trust::check_path(dir, expect) {
        Ok(_) => {}
        Err(trust::Distrust::Stat(e)) => {
            return Err(CliError::Failed(format!("cannot use {}: {e}", dir.display())))
        }
        Err(_) => return Err(CliError::Failed(format!(
            "{} is writable by others or not ours: another user could replace the socket; use a directory only root can write (e.g. /run/pam_mfa)",
            dir.display()
        ))),
    }
    // A socket left by a previous run would make bind fail; anything else
    // at that path is not ours to remove.
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(socket);
        }
    }
    // Everyone may connect: the peer credentials decide what they may do.
    // The mode comes from the umask at bind, never from a chmod by path.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o111));
    let bound = UnixListener::bind(socket);
    nix::sys::stat::umask(old);
    bound.map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", socket.display())))
}

/// One connection: read the request, then serve it.
fn handle(stream: &UnixStream, peer: Peer, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let mut reader = LineReader::new(stream, Instant::now() + REQUEST_TIMEOUT);
    let line = match reader.read_line() {
        Ok(Some(line)) => line,
        // Gone, or too slow: a half-sent request is dropped.
        Ok(None) => return,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            let too_large = protocol::ProtocolError::TooLarge.to_string();
            reply(
                stream,
                &Response::refused(exit::USAGE, "protocol", &too_large),
            );
            return;
        }
        Err(_) => return,
    };
    let request = match protocol::parse_request(&line) {
        Ok(r) => r,
        Err(e) => {
            audit::syslog(
                audit::Level::Notice,
                &format!(
                    "refused a request from uid={} pid={}: {e}",
                    peer.uid, peer.pid
                ),
            );
            reply(
                stream,
                &Response::refused(exit::USAGE, "protocol", &e.to_string()),
            );
            return;
        }
    };
    drop(line);
    match request {
        Request::Login(login) => login::serve(stream, reader, peer, &login, shared),
        Request::Command(command) => {
            let response = command::serve(command, peer, shared);
            reply(stream, &response);
        }
    }
}

fn reply(stream: &UnixStream, response: &Response) {
    let _ = protocol::send_line(stream, &protocol::encode_line(response));
}

/// Audit rows older than `audit_days` go, at start and hourly; the purge is
/// itself a row of the trail. A store that is not there yet is no error.
fn purge_old_audit(shared: &Shared) {
    use crate::store::Store;
    use crate::Clock;
    let Ok(config) = shared.config() else { return };
    if config.audit_days == 0 {
        return;
    }
    let Ok(mut store) = shared.store(&config) else {
        return;
    };
    let now = store.clock().now();
    let purged = store.begin().and_then(|tx| {
        let n = audit::purge_old(&*tx, config.audit_days, now, "pam_mfa")?;
        tx.commit()?;
        Ok(n)
    });
    match purged {
        Ok(_) => shared.put_back(store, &config),
        Err(e) => audit::syslog(
            audit::Level::Error,
            &format!(
                "purging audit rows older than {} days failed: {e}",
                config.audit_days
            ),
        ),
    }
}
