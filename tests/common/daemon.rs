//! The daemon's test world: throwaway real accounts and groups, a
//! root-only config and database, `mfa serve` (as root) on a socket
//! everyone can reach with its syslog captured, and clients run as the
//! accounts through `setpriv` or over raw sockets speaking the protocol.

use super::pty;
use super::{is_root, mfa_bin, module_path, now, totp_at, write_file, Cli, TempDir};
use pam_mfa::internals::commands::Command as MfaCommand;
use pam_mfa::internals::error::exit;
use pam_mfa::internals::protocol::{
    self, ClientReply, CommandRequest, Envelope, LoginRequest, Mode, Request, Response,
    ServerMessage, Verdict,
};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// Marks the accounts these tests create.
pub const GECOS: &str = "pam_mfa daemon test (temporary)";
/// Account and group names: prefix, the test process's pid, `x`, a counter.
pub const USER_PREFIX: &str = "mfad";
pub const GROUP_PREFIX: &str = "mfag";

/// False (with the reason printed) when this run cannot add accounts.
pub fn can_run() -> bool {
    if is_root() {
        return true;
    }
    // CI runs as root; there a skip would hide a broken test.
    assert!(
        std::env::var_os("CI").is_none(),
        "the daemon tests need root, and CI must run them"
    );
    // Straight to stderr: the test harness swallows eprintln! of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: the daemon tests need root (they add users and groups and run clients as them)"
    );
    false
}

/// Runs useradd, userdel, groupadd or groupdel. They give up at once when
/// another process (another test binary) holds the lock on /etc/passwd, so
/// that failure is tried again for a while.
fn account_tool(cmd: &mut Command) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.contains("lock") || Instant::now() > deadline {
            return Err(format!("{cmd:?} failed: {stderr}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(cmd: &mut Command) {
    account_tool(cmd).unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------- accounts

/// One useradd (or userdel, ...) at a time in this process: they lock
/// /etc/passwd and /etc/group and fail rather than wait.
fn accounts_lock() -> MutexGuard<'static, ()> {
    static ACCOUNTS: Mutex<()> = Mutex::new(());
    static SWEPT: Once = Once::new();
    let guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    SWEPT.call_once(sweep_stale_accounts);
    guard
}

/// Removes accounts and groups left by a test process that was killed
/// before its guards ran: their names carry its pid.
fn sweep_stale_accounts() {
    let dead = |name: &str, prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('x'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for fields in passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
        if fields.len() > 4 && fields[4] == GECOS && dead(fields[0], USER_PREFIX) {
            let _ = account_tool(Command::new("userdel").args(["-f", fields[0]]));
        }
    }
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    for name in group.lines().filter_map(|l| l.split(':').next()) {
        if dead(name, GROUP_PREFIX) {
            let _ = account_tool(Command::new("groupdel").arg(name));
        }
    }
}

fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}{}x{}{:04x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        nanos & 0xffff
    )
}

/// A group in /etc/group, removed on drop.
pub struct TestGroup {
    pub name: String,
}

impl TestGroup {
    pub fn create() -> TestGroup {
        let name = unique_name(GROUP_PREFIX);
        let _lock = accounts_lock();
        run(Command::new("groupadd").arg(&name));
        TestGroup { name }
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _lock = accounts_lock();
        let _ = account_tool(Command::new("groupdel").arg(&self.name));
    }
}

/// A real account without a home, removed on drop.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    pub fn create(groups: &[&TestGroup]) -> TestUser {
        let name = unique_name(USER_PREFIX);
        let lock = accounts_lock();
        let mut cmd = Command::new("useradd");
        cmd.args([
            "-M",
            "-d",
            "/nonexistent",
            "-s",
            "/usr/sbin/nologin",
            "-c",
            GECOS,
        ]);
        if !groups.is_empty() {
            let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            cmd.arg("-G").arg(names.join(","));
        }
        run(cmd.arg(&name));
        // Guarded before anything can fail, so the account is removed.
        let mut user = TestUser {
            name,
            uid: 0,
            gid: 0,
        };
        drop(lock);
        let entry = nix::unistd::User::from_name(&user.name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("NSS does not know the new user {}", user.name));
        user.uid = entry.uid.as_raw();
        user.gid = entry.gid.as_raw();
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _lock = accounts_lock();
        // -f: a client of this user may still be exiting.
        let _ = account_tool(Command::new("userdel").args(["-f", &self.name]));
    }
}

// ------------------------------------------------------------------ daemon

/// A config and database only root can reach, and a directory everyone
/// can: for the socket and a copy of `mfa` (the build tree may sit under a
/// home directory the test accounts cannot enter).
pub struct World {
    /// Root's `mfa`, directly on the database.
    pub cli: Cli,
    pub client_bin: PathBuf,
    pub public: TempDir,
    pub dir: TempDir,
}

impl World {
    pub fn new(body: &str) -> World {
        let dir = TempDir::new("daemon");
        let config = dir.path().join("pam_mfa.toml");
        let cli = Cli {
            config,
            nss_wrapper: None,
        };
        let public = TempDir::new("daemon_public");
        std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let client_bin = public.path().join("mfa");
        std::fs::copy(mfa_bin(), &client_bin).expect("copy mfa");
        std::fs::set_permissions(&client_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let world = World {
            cli,
            client_bin,
            public,
            dir,
        };
        world.write_config(body);
        // Only `mfa admin init` creates the database.
        world.cli.mfa_json(None, &["admin", "init"]);
        world
    }

    /// The config (read again by the daemon for every request): the
    /// database path, then `body`.
    pub fn write_config(&self, body: &str) {
        let db = self.dir.path().join("db").join("mfa.sqlite3");
        write_file(
            &self.cli.config,
            &format!("database = \"{}\"\n{body}", db.display()),
            0o600,
        );
    }

    /// `mfa --socket SOCKET ARGS` as `user`, on the default config (which
    /// the user cannot use, so the command goes through the daemon).
    pub fn client_command(&self, socket: &Path, user: &TestUser, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", &user.uid.to_string()])
            .args(["--regid", &user.gid.to_string()])
            .args(["--clear-groups", "--"])
            .arg(&self.client_bin)
            .arg("--socket")
            .arg(socket)
            .args(args)
            .current_dir("/")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C.UTF-8");
        cmd
    }

    /// A copy of the module the test accounts can load (the build tree may
    /// be out of their reach), made at the first call.
    pub fn public_module(&self) -> PathBuf {
        let module = self.public.path().join("pam_mfa.so");
        if !module.exists() {
            std::fs::copy(module_path(), &module).expect("copy the module");
            std::fs::set_permissions(&module, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        module
    }
}

/// `mfa serve` on a socket in `World::public`, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// What the daemon sent to syslog (daemons started by [`Daemon::start`]).
    pub syslog: Option<Syslog>,
    pub world: World,
}

impl std::ops::Deref for Daemon {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// A daemon listening on a socket it binds itself.
    pub fn start(body: &str) -> Daemon {
        let world = World::new(body);
        let socket = world.public.path().join("mfa.sock");
        let log = world.dir.path().join("serve.log");
        let syslog = Syslog::new(world.dir.path());
        let mut cmd = Command::new(mfa_bin());
        cmd.arg("--config")
            .arg(&world.cli.config)
            .arg("serve")
            .arg("--socket")
            .arg(&socket);
        let cmd = syslog.wrap(cmd);
        Daemon::spawn(world, cmd, socket, log, Some(syslog))
    }

    pub fn spawn(
        world: World,
        mut cmd: Command,
        socket: PathBuf,
        log: PathBuf,
        syslog: Option<Syslog>,
    ) -> Daemon {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let mut daemon = Daemon {
            child,
            socket,
            log,
            syslog,
            world,
        };
        daemon.wait_ready();
        daemon
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("mfa serve ended ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "mfa serve did not listen on {}:\n{}",
                self.socket.display(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("mfa serve died ({status}):\n{}", self.log_text());
        }
    }

    /// `mfa --socket SOCKET` and the words of `line` (none holds a space),
    /// as `user`.
    pub fn command(&self, user: &TestUser, line: &str) -> Command {
        let args: Vec<&str> = line.split_whitespace().collect();
        self.world.client_command(&self.socket, user, &args)
    }

    /// `command`'s outcome, with stdin not a terminal.
    pub fn client(&self, user: &TestUser, line: &str) -> Ran {
        let out = self
            .command(user, line)
            .stdin(Stdio::null())
            .output()
            .expect("run mfa as a test user");
        Ran::from(out, user, line)
    }

    /// `client` with `--json`, which must succeed; the parsed output.
    pub fn client_json(&self, user: &TestUser, line: &str) -> Value {
        let ran = self.client(user, &format!("--json {line}"));
        ran.assert_exit(exit::OK);
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {ran}"))
    }

    /// (name, kind, verified) of each device, as root sees them.
    pub fn devices(&self, user: &str) -> Vec<(String, String, bool)> {
        device_tuples(&self.cli.mfa_json(Some(user), &["device", "list"]))
    }

    /// Adds and verifies a TOTP device through the socket. Returns the
    /// secret and the time whose code verified it (that step is spent).
    pub fn enroll(&self, user: &TestUser, name: &str) -> (String, i64) {
        let added = self.client_json(user, &format!("device add totp --name {name} --no-verify"));
        let secret = added["secret"].as_str().expect("secret").to_owned();
        let at = now();
        let code = totp_at(&secret, at);
        self.client(user, &format!("device verify {name} {code}"))
            .assert_exit(exit::OK);
        (secret, at)
    }

    /// A connection made with `user`'s credentials.
    pub fn connect_as(&self, user: &TestUser) -> UnixStream {
        connect_as(&self.socket, user.uid, user.gid)
    }

    /// Sends `bytes` as `user` on a new connection; the daemon's reply, or
    /// None when it closed the connection without one.
    pub fn raw(&self, user: &TestUser, bytes: &[u8]) -> Option<Response> {
        exchange(self.connect_as(user), bytes)
    }

    /// A connection made as root (this test process), as sshd's would be.
    pub fn connect_as_root(&self) -> UnixStream {
        UnixStream::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.socket.display()))
    }

    /// The syslog line holding every one of `words` (waiting a little for it).
    pub fn logged(&self, words: &[&str]) -> String {
        self.syslog
            .as_ref()
            .expect("this daemon's syslog is not captured")
            .expect(words)
    }

    /// Every syslog line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.syslog.as_ref().map(Syslog::lines).unwrap_or_default()
    }

    /// No connection's thread panicked so far: nothing in syslog (which
    /// must be captured: it holds the start line) nor on stderr, where the
    /// panic hook writes.
    pub fn assert_no_panic(&self) {
        self.logged(&["daemon started"]);
        let lines = self.log_lines();
        assert!(
            !lines.iter().any(|l| l.contains("panic")),
            "the daemon logged a panic:\n{}",
            lines.join("\n")
        );
        let stderr = self.log_text();
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

// ---------------------------------------------------------------- protocol

/// A command request's line, as the `mfa` client sends it.
pub fn command_line(command: MfaCommand, user: Option<&str>, json: bool) -> Vec<u8> {
    let request = CommandRequest {
        command,
        user: user.map(str::to_owned),
        json,
        code: None,
    };
    protocol::encode_command(&request).to_vec()
}

/// `mfa --json status` as a request line.
pub fn status_request() -> Vec<u8> {
    command_line(MfaCommand::Status, None, true)
}

/// A login request's line, as the module sends it.
pub fn login_line(mode: Mode, user: &str) -> Vec<u8> {
    protocol::encode_line(&Envelope {
        version: protocol::VERSION,
        request: Request::Login(LoginRequest {
            mode,
            user: user.to_owned(),
            service: "mfa-daemon-test".to_owned(),
            rhost: String::new(),
            debug: false,
        }),
    })
    .to_vec()
}

/// What the daemon said in one login conversation.
#[derive(Debug, Default)]
pub struct Conversation {
    /// Lines shown and questions asked, in order.
    pub messages: Vec<ServerMessage>,
    /// None when the daemon closed the connection without one.
    pub verdict: Option<Verdict>,
    /// The daemon's answer when it refused the request itself (malformed,
    /// busy) instead of holding a conversation.
    pub refusal: Option<Response>,
}

impl Conversation {
    pub fn asked(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Ask { prompt, .. } => Some(prompt.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn said(&self, text: &str) -> bool {
        self.messages.iter().any(|m| match m {
            ServerMessage::Info(t) | ServerMessage::Error(t) => t.contains(text),
            _ => false,
        })
    }
}

/// Holds a login conversation on `stream` as the module would: sends
/// `opening`, answers each question with the next of `answers` (then
/// `no_answer`), and reads until the verdict or the end of the stream.
pub fn converse(stream: UnixStream, opening: &[u8], answers: &[&str]) -> Conversation {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    writer.write_all(opening).expect("send the login request");
    let mut reader = BufReader::new(stream);
    let mut answers = answers.iter();
    let mut said = Conversation::default();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return said,
            Ok(_) => {}
        }
        let message: ServerMessage = match serde_json::from_str(line.trim_end()) {
            Ok(m) => m,
            Err(e) => match serde_json::from_str::<Response>(line.trim_end()) {
                Ok(refusal) if said.messages.is_empty() => {
                    said.refusal = Some(refusal);
                    return said;
                }
                _ => panic!("not a server message ({e}): {line}\nafter {said:?}"),
            },
        };
        match message {
            ServerMessage::Verdict(v) => {
                said.verdict = Some(v);
                return said;
            }
            ServerMessage::Ask { .. } => {
                let reply = match answers.next() {
                    Some(text) => ClientReply::Answer((*text).to_owned()),
                    None => ClientReply::NoAnswer,
                };
                said.messages.push(message);
                if writer.write_all(&protocol::encode_line(&reply)).is_err() {
                    return said;
                }
            }
            other => said.messages.push(other),
        }
    }
}

pub use super::syslog::Syslog;

/// The kernel records a Unix socket's peer credentials at connect(), from
/// the connecting thread. A thread of our own that drops to `uid` therefore
/// speaks to the daemon as that user, without another program (python is
/// not on a fresh Debian).
pub fn connect_as(socket: &Path, uid: u32, gid: u32) -> UnixStream {
    let socket = socket.to_owned();
    std::thread::spawn(move || {
        // SAFETY: raw system calls, unlike glibc's wrappers (which switch
        // every thread of the process), change only this thread's
        // credentials. The thread does nothing else but connect, and ends.
        unsafe {
            let none: *const libc::gid_t = std::ptr::null();
            assert_eq!(libc::syscall(libc::SYS_setgroups, 0, none), 0);
            assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
        }
        UnixStream::connect(&socket)
    })
    .join()
    .expect("connecting thread")
    .unwrap_or_else(|e| panic!("connect as uid {uid}: {e}"))
}

/// Writes `bytes`, reads until the daemon closes; its reply, if any.
pub fn exchange(mut stream: UnixStream, bytes: &[u8]) -> Option<Response> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The daemon stops reading an oversized request and answers it, so the
    // rest of a large write may fail; the answer is still there to read.
    let _ = stream.write_all(bytes);
    read_reply(stream)
}

pub fn read_reply(mut stream: UnixStream) -> Option<Response> {
    let mut answer = Vec::new();
    // A reset after the answer (we left data unread) ends the read; what
    // came before it is in `answer`.
    let _ = stream.read_to_end(&mut answer);
    if answer.is_empty() {
        return None;
    }
    let line = answer.split(|b| *b == b'\n').next().unwrap();
    Some(serde_json::from_slice(line).unwrap_or_else(|e| {
        panic!(
            "the daemon's answer is not a response ({e}): {}",
            String::from_utf8_lossy(&answer)
        )
    }))
}

pub fn device_tuples(list: &Value) -> Vec<(String, String, bool)> {
    list.as_array()
        .unwrap_or_else(|| panic!("device list is not a list: {list}"))
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["kind"].as_str().unwrap().to_owned(),
                d["verified"].as_bool().unwrap(),
            )
        })
        .collect()
}

pub fn totp_device(name: &str, verified: bool) -> (String, String, bool) {
    (name.to_owned(), "totp".to_owned(), verified)
}

/// One run of the client.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Ran {
    pub fn from(out: Output, user: &TestUser, line: &str) -> Ran {
        Ran {
            code: pty::code(out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what: format!("mfa {line} (as {})", user.name),
        }
    }

    pub fn assert_exit(&self, code: i32) -> &Ran {
        assert_eq!(self.code, code, "{self}");
        self
    }

    pub fn assert_stderr(&self, text: &str) -> &Ran {
        assert!(
            self.stderr.contains(text),
            "expected {text:?} in stderr: {self}"
        );
        self
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} exited {}\nstdout: {}\nstderr: {}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

/// The `error` of the JSON error object a failed `--json` command prints.
pub fn json_error(ran: &Ran) -> String {
    let value: Value =
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("no JSON error ({e}): {ran}"));
    let kind = value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error kind: {ran}"));
    assert!(
        value["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{ran}"
    );
    kind.to_owned()
}

/// The secret from `device add totp`'s setup text ("Or type this secret: ...").
pub fn typed_secret(transcript: &str) -> String {
    transcript
        .lines()
        .find_map(|l| l.trim().strip_prefix("Or type this secret: "))
        .unwrap_or_else(|| panic!("no secret shown in:\n{transcript}"))
        .split_whitespace()
        .collect()
}

pub fn has_qr(text: &str) -> bool {
    text.contains("Scan this QR code") && text.contains(['\u{2580}', '\u{2584}', '\u{2588}'])
}
