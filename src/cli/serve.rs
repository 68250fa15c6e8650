//! `mfa serve`: the self-service daemon. Ordinary users reach it over a Unix
//! socket; it learns who they are from the socket's peer credentials, checks
//! what they may do, asks for a step-up code where needed, then runs the
//! requested command as a child `mfa` on the database, so its output is
//! exactly what root would see.
#![forbid(unsafe_code)]

use super::{AddCmd, AdminCmd, Args, BypassCmd, Command, DeviceCmd};
use clap::Parser;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use pam_mfa::attempt::{self, AttemptResult, Context};
use pam_mfa::config::{Config, DEFAULT_PATH, DEFAULT_SOCKET};
use pam_mfa::error::{exit, Error, Result};
use pam_mfa::protocol::{self, Request, Response, MAX_REQUEST_BYTES};
use pam_mfa::store::{OpenMode, SqliteStore, Store};
use pam_mfa::users::{self, UserInfo};
use pam_mfa::{audit, lockout, Clock, SystemClock};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Clients served at once; more are told the daemon is busy.
const MAX_CLIENTS: usize = 16;
/// A client has this long to send its whole request (half-sent requests are dropped).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a command may run (an SMS gateway has its own, shorter, limit).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

pub fn serve(config_path: &Path, socket: &Path) -> Result<()> {
    // Check the config now so a broken one fails the start, not each request.
    Config::load(config_path)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot find the mfa program itself: {e}")))?;
    let listener = match listenfd::ListenFd::from_env().take_unix_listener(0) {
        Ok(Some(l)) => l,
        Ok(None) => bind(socket)?,
        Err(e) => return Err(Error::Failed(format!("socket activation failed: {e}"))),
    };
    audit::syslog(audit::Level::Info, "self-service daemon started");
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::SeqCst);
            let busy = Response::refused(
                exit::UNAVAILABLE,
                "busy",
                "the daemon is busy; try again in a moment",
            );
            let _ = reply(&stream, &busy);
            continue;
        }
        let active = Arc::clone(&active);
        let exe = exe.clone();
        let config_path = config_path.to_owned();
        std::thread::spawn(move || {
            let response = handle(&stream, &config_path, &exe);
            if let Some(response) = response {
                let _ = reply(&stream, &response);
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn bind(socket: &Path) -> Result<UnixListener> {
    let dir = socket
        .parent()
        .ok_or_else(|| Error::Usage(format!("{} is not a socket path", socket.display())))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::Failed(format!("cannot create {}: {e}", dir.display())))?;
    // A socket left by a previous run would make bind fail; anything else
    // at that path is not ours to remove.
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(socket);
        }
    }
    let listener = UnixListener::bind(socket)
        .map_err(|e| Error::Failed(format!("cannot listen on {}: {e}", socket.display())))?;
    // Everyone may connect: the peer credentials decide what they may do.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| Error::Failed(format!("cannot set the mode of {}: {e}", socket.display())))?;
    Ok(listener)
}

fn reply(mut stream: &UnixStream, response: &Response) -> std::io::Result<()> {
    // The command's output may hold a new secret or bypass codes: encode
    // into a buffer that is wiped, sized so that it need not grow.
    let size = response.stdout.len() + response.stderr.len() + 256;
    let mut line = Zeroizing::new(Vec::with_capacity(size * 2));
    serde_json::to_writer(&mut *line, response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

/// The client's side of the connection, every read bounded by what is left
/// of the request's time. A read timeout alone starts afresh with each
/// byte, so a client sending a byte every few seconds would keep its place
/// for hours, and sixteen such clients would shut everyone else out.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// One connection. None when the client gave up (nothing to answer).
fn handle(stream: &UnixStream, config_path: &Path, exe: &Path) -> Option<Response> {
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let peer = match getsockopt(stream, PeerCredentials) {
        Ok(c) => c,
        Err(e) => {
            return Some(Response::refused(
                exit::FAILED,
                "peer",
                &format!("cannot tell who is calling: {e}"),
            ))
        }
    };
    // The request may carry a code; wipe the raw bytes after parsing.
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_REQUEST_BYTES + 1));
    let client = Deadline {
        stream,
        until: Instant::now() + READ_TIMEOUT,
    };
    let mut reader = BufReader::new(client).take(MAX_REQUEST_BYTES as u64 + 1);
    match reader.read_until(b'\n', &mut line) {
        Ok(_) if line.last() == Some(&b'\n') => {
            line.pop();
        }
        Ok(n) if n > MAX_REQUEST_BYTES => {
            return Some(Response::refused(
                exit::USAGE,
                "protocol",
                &protocol::ProtocolError::TooLarge.to_string(),
            ))
        }
        // EOF or timeout before a whole line: a half-sent request is dropped.
        _ => return None,
    }
    let request = match protocol::parse_request(&line) {
        Ok(r) => r,
        Err(e) => return Some(Response::refused(exit::USAGE, "protocol", &e.to_string())),
    };
    let Some(caller) = users::lookup_uid(peer.uid()) else {
        return Some(Response::refused(
            exit::PERMISSION,
            "permission",
            "your user id has no name in the user database",
        ));
    };
    Some(
        match decide(&request, &caller, peer.uid() == 0, config_path) {
            Ok(plan) => run_child(exe, config_path, &plan, &caller.name),
            Err(e) => Response::refused(e.exit_code(), refusal_kind(&e), &e.to_string()),
        },
    )
}

fn refusal_kind(e: &Error) -> &'static str {
    match e {
        Error::WrongCode(m) if m.starts_with(STEP_UP) => "step-up",
        e => e.kind(),
    }
}

pub const STEP_UP: &str = "this needs a current verification code";

/// What the daemon will run, once the request is allowed.
pub struct Plan {
    /// `--user` for the child (None for admin commands, which name accounts).
    pub user: Option<String>,
    pub json: bool,
    pub args: Vec<String>,
}

/// Whether a command changes what can log in as the account.
fn needs_step_up(command: &Command) -> bool {
    matches!(
        command,
        Command::Device(DeviceCmd::Add(_) | DeviceCmd::Delete { .. } | DeviceCmd::RemoveAll)
            | Command::Bypass(BypassCmd::Generate { .. })
    )
}

/// Commands an ordinary user may run on their own account.
fn self_service(command: &Command) -> bool {
    matches!(
        command,
        Command::Status | Command::Device(_) | Command::Bypass(_)
    )
}

/// Global flags may not hide among the command's words: the daemon sets
/// `--config` and `--user` itself, and clap lets a repeated flag win.
fn has_global_flag(args: &[String]) -> bool {
    args.iter().take_while(|a| *a != "--").any(|a| {
        ["--config", "--user", "--socket", "--json", "--code"]
            .iter()
            .any(|g| a == g || a.starts_with(&format!("{g}=")))
    })
}

fn decide(request: &Request, caller: &UserInfo, root: bool, config_path: &Path) -> Result<Plan> {
    if has_global_flag(&request.args) {
        return Err(Error::Usage(
            "global flags (--config, --socket, --user, --json, --code) go in the request's own fields".into(),
        ));
    }
    let parsed =
        Args::try_parse_from(std::iter::once("mfa".to_owned()).chain(request.args.iter().cloned()))
            .map_err(|e| {
                Error::Usage(
                    e.render()
                        .to_string()
                        .trim()
                        .trim_start_matches("error: ")
                        .to_owned(),
                )
            })?;
    debug_assert!(
        parsed.config == Path::new(DEFAULT_PATH) && parsed.socket == Path::new(DEFAULT_SOCKET)
    );
    let config = Config::load(config_path)?;
    let admin =
        root || (!config.admin_group.is_empty() && caller.groups.contains(&config.admin_group));
    let target = request.user.clone().unwrap_or_else(|| caller.name.clone());
    let mut args = request.args.clone();
    match &parsed.command {
        Command::Serve | Command::Doctor { .. } => {
            return Err(Error::Permission(
                "run this command as root on the host, not through the daemon".into(),
            ))
        }
        Command::Admin(_) | Command::Audit { .. } if !admin => {
            return Err(Error::Permission(format!(
                "administrative commands need root{}",
                if config.admin_group.is_empty() {
                    String::new()
                } else {
                    format!(" or membership of the group {}", config.admin_group)
                }
            )))
        }
        // It reads a file as root: through the daemon an admin_group member
        // could read root-only files with it.
        Command::Admin(AdminCmd::ImportGoogleAuthenticator { .. }) if !root => {
            return Err(Error::Permission(
                "import-google-authenticator reads files as root: run it as root on the host"
                    .into(),
            ))
        }
        Command::Admin(_) | Command::Audit { .. } => {
            return Ok(Plan {
                user: request
                    .user
                    .clone()
                    .filter(|_| matches!(parsed.command, Command::Audit { .. })),
                json: request.json,
                args,
            })
        }
        command if !self_service(command) => {
            return Err(Error::Permission(
                "this command is not available through the daemon".into(),
            ))
        }
        _ => {}
    }
    if target != caller.name && !admin {
        return Err(Error::Permission(format!(
            "you may manage only your own account ({}), not {target}",
            caller.name
        )));
    }
    match &parsed.command {
        Command::Device(DeviceCmd::Add(
            AddCmd::Totp {
                no_verify: false, ..
            }
            | AddCmd::Sms {
                no_verify: false, ..
            },
        )) => {
            // The daemon cannot ask for the first code or PIN; the client
            // does, then sends `device verify`.
            args.push("--no-verify".into());
        }
        Command::Device(DeviceCmd::Verify { code: None, .. }) => {
            return Err(Error::Usage(
                "give the code: mfa device verify NICK CODE".into(),
            ))
        }
        _ => {}
    }
    if !admin || target == caller.name {
        check_own_account(request, &parsed.command, &target, &config)?;
    }
    Ok(Plan {
        user: Some(target),
        json: request.json,
        args,
    })
}

/// A locked account cannot self-serve, and one with a verified device must
/// prove it holds it before changing what can log in.
fn check_own_account(
    request: &Request,
    command: &Command,
    user: &str,
    config: &Config,
) -> Result<()> {
    let now = SystemClock.now();
    let mut store = SqliteStore::open(&config.database, OpenMode::Create)?;
    let (locked, has_device) = {
        let tx = store.begin()?;
        let locked = lockout::is_locked(&tx.account(user)?, &config.lockout, now);
        (locked, tx.devices(user)?.iter().any(|d| d.verified))
    };
    if locked && !matches!(command, Command::Status) {
        return Err(Error::locked(user));
    }
    if !needs_step_up(command) || !has_device {
        return Ok(());
    }
    let Some(code) = request.code.as_deref() else {
        return Err(Error::WrongCode(format!(
            "{STEP_UP} from one of your devices (or a bypass code); pass --code or answer the prompt"
        )));
    };
    let info =
        users::lookup(user).ok_or_else(|| Error::NotFound(format!("there is no user {user}")))?;
    let ctx = Context {
        detail: "factor=step-up via=daemon",
    };
    match attempt::attempt_code(&mut store, config, &info, code.as_bytes(), None, now, &ctx)? {
        AttemptResult::Accepted(_) => Ok(()),
        AttemptResult::Wrong {
            locked_now: true, ..
        }
        | AttemptResult::Locked => Err(Error::locked(user)),
        AttemptResult::Wrong { .. } => Err(Error::WrongCode("wrong verification code".into())),
    }
}

fn run_child(exe: &Path, config_path: &Path, plan: &Plan, caller: &str) -> Response {
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config").arg(config_path);
    if let Some(user) = &plan.user {
        cmd.arg("--user").arg(user);
    }
    if plan.json {
        cmd.arg("--json");
    }
    cmd.args(&plan.args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env(super::context::DAEMON_CALLER_ENV, caller)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Response::refused(
                exit::FAILED,
                "failed",
                &format!("cannot run {}: {e}", exe.display()),
            )
        }
    };
    let stdout = child
        .stdout
        .take()
        .map(|s| std::thread::spawn(move || read_bounded(s)));
    let stderr = child
        .stderr
        .take()
        .map(|s| std::thread::spawn(move || read_bounded(s)));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let collect = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (out, err) = (collect(stdout), collect(stderr));
    match status {
        Some(status) => Response {
            exit: status.code().unwrap_or(exit::FAILED),
            stdout: out,
            stderr: err,
            error: None,
        },
        None => Response::refused(
            exit::FAILED,
            "timeout",
            "the command took too long and was stopped",
        ),
    }
}

fn read_bounded(stream: impl Read) -> String {
    let mut buf = Zeroizing::new(Vec::new());
    let _ = stream.take(MAX_OUTPUT_BYTES).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn global_flags_hidden_in_the_words_are_caught() {
        for bad in [
            &["device", "list", "--config", "/tmp/evil.toml"][..],
            &["device", "list", "--config=/etc/security/pam_mfa.toml"],
            &["--user", "root", "device", "list"],
            &["status", "--json"],
            &["bypass", "generate", "--code=123456"],
        ] {
            assert!(has_global_flag(&words(bad)), "{bad:?}");
        }
        assert!(!has_global_flag(&words(&[
            "device", "add", "totp", "--name", "x"
        ])));
        assert!(!has_global_flag(&words(&[
            "device", "verify", "--", "--config"
        ])));
    }

    #[test]
    fn step_up_guards_what_changes_logins() {
        let parse = |w: &[&str]| {
            Args::try_parse_from(std::iter::once("mfa").chain(w.iter().copied()))
                .unwrap()
                .command
        };
        for w in [
            &["device", "add", "totp"][..],
            &["device", "add", "sms", "5551234567"],
            &["device", "delete", "phone"],
            &["device", "remove-all"],
            &["bypass", "generate"],
        ] {
            assert!(needs_step_up(&parse(w)), "{w:?}");
        }
        for w in [
            &["status"][..],
            &["device", "list"],
            &["device", "verify", "phone", "1"],
        ] {
            assert!(!needs_step_up(&parse(w)), "{w:?}");
        }
        assert!(!self_service(&parse(&["admin", "unlock", "bob"])));
        assert!(!self_service(&parse(&["audit"])));
    }
}
