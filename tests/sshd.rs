//! Real logins through a real sshd and the OpenSSH client.
//!
//! Needs root: it runs sshd, writes /etc/pam.d/sshd-mfatest and creates a
//! throwaway user, and removes all three afterwards. Debian 12's sshd takes
//! its PAM service name from its program name, so it runs through a symlink
//! called `sshd-mfatest`.

mod common;

use common::pty::{self, Pty};
use common::*;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SERVICE_NAME: &str = "sshd-mfatest";
const SSHD: &str = "/usr/sbin/sshd";
/// The remote command; only a shell on the far side prints "login-42".
const REMOTE: &str = "echo login-$((6*7))";
const REMOTE_OUTPUT: &str = "login-42";

/// Marks the accounts these tests create (see `exclusive`).
const GECOS: &str = "pam_mfa test (temporary)";

/// One sshd, one PAM file and one useradd at a time, across threads and
/// across test processes (two worktrees testing at once would otherwise
/// overwrite each other's /etc/pam.d/sshd-mfatest).
struct Exclusive {
    _thread: MutexGuard<'static, ()>,
    _process: File,
}

fn exclusive() -> Exclusive {
    static SERIAL: Mutex<()> = Mutex::new(());
    let thread = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all("/run/lock").expect("mkdir /run/lock");
    let lock = File::create("/run/lock/pam_mfa-sshd-tests.lock").expect("create lock file");
    // SAFETY: flock on a descriptor we own; the lock is released when the
    // file is closed.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    // Whoever holds the lock owns every marked account, so any marked
    // account seen now was left by a test process that was killed.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 4 && fields[0].starts_with("mfatest") && fields[4] == GECOS {
            let _ = Command::new("userdel")
                .args(["-f", "-r", fields[0]])
                .status();
        }
    }
    Exclusive {
        _thread: thread,
        _process: lock,
    }
}

/// False (with the reason printed) when this run cannot start sshd.
fn can_run() -> bool {
    if is_root() {
        return true;
    }
    // CI runs as root; there a skip would hide a broken test.
    assert!(
        std::env::var_os("CI").is_none(),
        "the sshd tests need root, and CI must run them"
    );
    // Straight to stderr: the test harness swallows eprintln! of passing tests.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: the sshd tests need root (they start sshd, write /etc/pam.d/{SERVICE_NAME} and add a user)"
    );
    false
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:08x}",
        (nanos as u32) ^ std::process::id().rotate_left(16)
    )
}

/// A real account, removed (with its home) on drop.
struct TestUser {
    name: String,
    password: String,
    home: PathBuf,
}

impl TestUser {
    fn create() -> TestUser {
        let name = format!("mfatest{}", unique());
        let password = format!("Pw-{}-{}", unique(), unique());
        run(Command::new("useradd").args(["-m", "-s", "/bin/bash", "-c", GECOS, &name]));
        let home = std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 5 && f[0] == name)
            .map(|f| PathBuf::from(f[5]))
            .expect("the new user is in /etc/passwd");
        let user = TestUser {
            home,
            name,
            password,
        };
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("run chpasswd");
        use std::io::Write;
        writeln!(
            chpasswd.stdin.take().unwrap(),
            "{}:{}",
            user.name,
            user.password
        )
        .unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        user
    }

    /// Installs `public_key` as the user's only authorized key.
    fn authorize(&self, public_key: &Path) {
        let ssh = self.home.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::copy(public_key, ssh.join("authorized_keys")).unwrap();
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{0}:{0}", self.name))
            .arg(&ssh));
        run(Command::new("chmod").arg("-R").arg("go-rwx").arg(&ssh));
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // -f: an sshd session process may still be exiting.
        let _ = Command::new("userdel")
            .args(["-f", "-r", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// /etc/pam.d/sshd-mfatest, removed on drop.
struct PamFile(PathBuf);

impl PamFile {
    fn write(stack: &str) -> PamFile {
        let path = PathBuf::from("/etc/pam.d").join(SERVICE_NAME);
        write_file(&path, stack, 0o644);
        PamFile(path)
    }
}

impl Drop for PamFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A throwaway sshd on 127.0.0.1, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Sshd {
    fn start(dir: &Path, authentication_methods: &str) -> Sshd {
        // sshd refuses to start without its privilege separation directory,
        // which only the service's start-up script normally creates.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host_key = dir.join("host_key");
        if !host_key.exists() {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&host_key));
        }
        let config = dir.join("sshd_config");
        write_file(
            &config,
            &format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {}\n\
                 PidFile {}\n\
                 UsePAM yes\n\
                 KbdInteractiveAuthentication yes\n\
                 PasswordAuthentication no\n\
                 PubkeyAuthentication yes\n\
                 AuthenticationMethods {authentication_methods}\n\
                 PermitRootLogin no\n\
                 StrictModes no\n\
                 UseDNS no\n\
                 PrintMotd no\n\
                 PrintLastLog no\n\
                 LogLevel VERBOSE\n",
                host_key.display(),
                dir.join("sshd.pid").display()
            ),
            0o600,
        );
        let program = dir.join(SERVICE_NAME);
        if !program.exists() {
            std::os::unix::fs::symlink(SSHD, &program).unwrap();
        }
        let log = dir.join("sshd.log");
        let child = Command::new(&program)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {SSHD}: {e}"));
        let sshd = Sshd { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sshd.log_text().contains("Server listening on") {
            assert!(
                Instant::now() < deadline,
                "sshd did not start:\n{}",
                sshd.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The OpenSSH client logging in as `user`, on its own terminal.
    fn client(&self, user: &str, extra: &[&str]) -> Pty {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-p", &self.port.to_string()])
            // First: for an option given twice, ssh takes the first value.
            .args(extra)
            .args(["-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "LogLevel=ERROR"])
            .args(["-o", "ConnectTimeout=20"])
            // One round of prompts: a refusal ends the client.
            .args(["-o", "NumberOfPasswordPrompts=1"])
            .arg(format!("{user}@127.0.0.1"))
            .arg(REMOTE)
            .env_remove("SSH_AUTH_SOCK")
            // ssh escapes non-ASCII text (the QR code) unless the locale is UTF-8.
            .env("LC_ALL", "C.UTF-8");
        Pty::spawn(cmd)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test's pam_mfa: the `mfa` command on its config, and `mfa serve`
/// (as root, on the system's own users) on a socket in the test's dir,
/// which every module line names. The daemon is killed on drop.
struct Mfa {
    cli: Cli,
    socket: PathBuf,
    daemon: Option<DaemonProcess>,
}

impl Mfa {
    /// Kills the daemon (SIGKILL), as a crash would.
    fn stop_daemon(&mut self) {
        self.daemon.take();
    }
}

impl std::ops::Deref for Mfa {
    type Target = Cli;
    fn deref(&self) -> &Cli {
        &self.cli
    }
}

/// A config (the database path, then `body`) and its database, made with
/// the `mfa` command as root on the system's own users, and its daemon.
fn config(dir: &Path, body: &str) -> Mfa {
    let config = dir.join("pam_mfa.toml");
    write_file(
        &config,
        &format!(
            "database = \"{}\"\n{body}",
            dir.join("db").join("mfa.sqlite3").display()
        ),
        0o600,
    );
    let cli = Cli {
        config,
        nss_wrapper: None,
    };
    cli.mfa_json(None, &["admin", "init"]);
    let socket = dir.join("mfa.sock");
    let daemon = cli.serve(&socket, &dir.join("daemon.log"));
    Mfa {
        cli,
        socket,
        daemon: Some(daemon),
    }
}

/// Policy optional and a verified TOTP device; returns pam_mfa and the secret.
fn enrolled(dir: &Path, user: &str, body: &str) -> (Mfa, String) {
    let mfa = config(dir, &format!("policy = \"optional\"\n{body}"));
    let secret = mfa.enroll_totp(user, "phone");
    (mfa, secret)
}

/// DESIGN.md's stack with pam_unix for the password.
fn password_stack(mfa: &Mfa) -> String {
    let m = module_path();
    let c = format!("{} socket={}", mfa.config.display(), mfa.socket.display());
    format!(
        "auth    requisite                  {m} preauth config={c}\n\
         auth    [success=1 default=ignore] pam_unix.so\n\
         auth    [default=die]              {m} authfail config={c}\n\
         auth    required                   {m} config={c}\n\
         account required                   {m} config={c}\n\
         account required                   pam_unix.so\n\
         session required                   pam_unix.so\n",
        m = m.display()
    )
}

/// For key logins: the key is the first factor, the auth stack holds only
/// the code.
fn key_stack(mfa: &Mfa) -> String {
    let m = module_path();
    let c = format!("{} socket={}", mfa.config.display(), mfa.socket.display());
    format!(
        "auth    required {m} config={c}\n\
         account required {m} config={c}\n\
         account required pam_unix.so\n\
         session required pam_unix.so\n",
        m = m.display()
    )
}

const KBD_ONLY: [&str; 4] = [
    "-o",
    "PreferredAuthentications=keyboard-interactive",
    "-o",
    "PubkeyAuthentication=no",
];

/// As [`key_args`], with the client's default 3 keyboard-interactive
/// tries spelt out and its informational lines shown, to count messages.
fn retrying_key_args(key: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["-o", "NumberOfPasswordPrompts=3", "-o", "LogLevel=INFO"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(key_args(key));
    args
}

fn key_args(key: &Path) -> Vec<String> {
    [
        "-i",
        &key.display().to_string(),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "PreferredAuthentications=publickey,keyboard-interactive",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A client key pair in `dir`, authorized for `user`.
fn client_key(dir: &Path, user: &TestUser) -> PathBuf {
    let key = dir.join("client_key");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key));
    user.authorize(&key.with_extension("pub"));
    key
}

fn finish(pty: Pty, sshd: &Sshd) -> (i32, String) {
    let (status, transcript) = pty.finish(TIMEOUT);
    let code = pty::code(status);
    let daemon_log = sshd.log.with_file_name("daemon.log");
    eprintln!(
        "ssh exit {code}; client:\n{transcript}\nsshd log:\n{}\nmfa serve log:\n{}",
        sshd.log_text(),
        std::fs::read_to_string(daemon_log).unwrap_or_default()
    );
    (code, transcript)
}

/// What most tests here set up, in this order: the lock, a scratch
/// directory, a throwaway user (for key logins with an authorized client
/// key), pam_mfa with a TOTP device enrolled for the user and its daemon,
/// the PAM stack, and sshd. Fields drop in declaration order, so sshd stops
/// first and the lock goes last, as the locals this replaces did.
struct Login {
    sshd: Option<Sshd>,
    _pam: PamFile,
    mfa: Mfa,
    secret: String,
    key: Option<PathBuf>,
    user: TestUser,
    dir: TempDir,
    _exclusive: Exclusive,
}

impl Login {
    /// Password, then code: pam_unix and pam_mfa in the auth stack, and
    /// sshd asking keyboard-interactive only. `body` is added to the config.
    fn password(body: &str) -> Login {
        Login::new(body, false, "keyboard-interactive")
    }

    /// Key, then code: the auth stack holds only pam_mfa; sshd asks for
    /// `methods` (its AuthenticationMethods).
    fn key(body: &str, methods: &str) -> Login {
        Login::new(body, true, methods)
    }

    fn new(body: &str, with_key: bool, methods: &str) -> Login {
        let exclusive = exclusive();
        let dir = TempDir::new("sshd");
        let user = TestUser::create();
        let key = with_key.then(|| client_key(dir.path(), &user));
        let (mfa, secret) = enrolled(dir.path(), &user.name, body);
        let stack = if with_key {
            key_stack(&mfa)
        } else {
            password_stack(&mfa)
        };
        let pam = PamFile::write(&stack);
        let sshd = Sshd::start(dir.path(), methods);
        Login {
            sshd: Some(sshd),
            _pam: pam,
            mfa,
            secret,
            key,
            user,
            dir,
            _exclusive: exclusive,
        }
    }

    fn sshd(&self) -> &Sshd {
        self.sshd.as_ref().expect("sshd is running")
    }

    /// Stops sshd, then starts it again asking for `methods`.
    fn restart_sshd(&mut self, methods: &str) {
        self.sshd = None;
        self.sshd = Some(Sshd::start(self.dir.path(), methods));
    }

    fn key_path(&self) -> &Path {
        self.key.as_deref().expect("a key login")
    }

    /// A connection as the user with the client's `extra` arguments.
    fn client<S: AsRef<str>>(&self, extra: &[S]) -> Pty {
        let extra: Vec<&str> = extra.iter().map(AsRef::as_ref).collect();
        self.sshd().client(&self.user.name, &extra)
    }

    fn finish(&self, pty: Pty) -> (i32, String) {
        finish(pty, self.sshd())
    }
}

#[test]
fn keyboard_interactive_password_then_code() {
    if !can_run() {
        return;
    }
    let login = Login::password("");
    let user = &login.user;

    let mut ssh = login.client(&KBD_ONLY);
    ssh.expect(PASSWORD_PROMPT, TIMEOUT);
    ssh.send_line(&user.password);
    ssh.expect(CODE_PROMPT, TIMEOUT);
    ssh.send_line(&totp(&login.secret, 1));
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 0, "{transcript}");
    assert!(transcript.contains(REMOTE_OUTPUT), "{transcript}");
    assert_eq!(login.mfa.lock_state(&user.name), (0, false));

    let mut ssh = login.client(&KBD_ONLY);
    ssh.expect(PASSWORD_PROMPT, TIMEOUT);
    ssh.send_line(&user.password);
    ssh.expect(CODE_PROMPT, TIMEOUT);
    ssh.send_line(&wrong_code(&login.secret));
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 255, "{transcript}");
    assert!(transcript.contains("Permission denied"), "{transcript}");
    assert!(!transcript.contains(REMOTE_OUTPUT), "{transcript}");
    assert_eq!(login.mfa.lock_state(&user.name), (1, false));
}

#[test]
fn required_policy_sets_up_the_app_inside_the_ssh_login() {
    if !can_run() {
        return;
    }
    let _exclusive = exclusive();
    let dir = TempDir::new("sshd");
    let user = TestUser::create();
    let mfa = config(
        dir.path(),
        "policy = \"required\"\nenroll_at_login = true\n",
    );
    let _pam = PamFile::write(&password_stack(&mfa));
    let sshd = Sshd::start(dir.path(), "keyboard-interactive");

    let mut ssh = sshd.client(&user.name, &KBD_ONLY);
    ssh.expect(PASSWORD_PROMPT, TIMEOUT);
    ssh.send_line(&user.password);
    ssh.expect(ENROLL_PROMPT, TIMEOUT);
    let secret = secret_from(&ssh.transcript());
    ssh.send_line(&totp(&secret, 0));
    let (code, transcript) = finish(ssh, &sshd);
    assert_eq!(code, 0, "{transcript}");
    assert!(transcript.contains(REMOTE_OUTPUT), "{transcript}");
    assert!(transcript.contains("URI: otpauth://totp/"), "{transcript}");
    assert!(
        transcript.contains("\u{2588}"),
        "the QR code arrives intact: {transcript}"
    );

    // The next login asks for a code from the new device.
    let mut ssh = sshd.client(&user.name, &KBD_ONLY);
    ssh.expect(PASSWORD_PROMPT, TIMEOUT);
    ssh.send_line(&user.password);
    ssh.expect(CODE_PROMPT, TIMEOUT);
    ssh.send_line(&totp(&secret, 1));
    let (code, transcript) = finish(ssh, &sshd);
    assert_eq!(code, 0, "{transcript}");
    assert!(transcript.contains(REMOTE_OUTPUT), "{transcript}");
}

#[test]
fn publickey_then_code() {
    if !can_run() {
        return;
    }
    let login = Login::key("", "publickey,keyboard-interactive");
    let (user, secret, sshd) = (&login.user, &login.secret, login.sshd());
    let args = key_args(login.key_path());

    let mut ssh = login.client(&args);
    // No password prompt: the code is the only question.
    assert_eq!(
        ssh.expect_any(&[PASSWORD_PROMPT, CODE_PROMPT], TIMEOUT),
        Some(1),
        "{}",
        ssh.transcript()
    );
    ssh.send_line(&totp(secret, 1));
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 0, "{transcript}");
    assert!(transcript.contains(REMOTE_OUTPUT), "{transcript}");
    let partial = format!("Partial publickey for {} ", user.name);
    assert!(
        sshd.log_text().contains(&partial),
        "the key was the first factor"
    );

    let mut ssh = login.client(&args);
    ssh.expect(CODE_PROMPT, TIMEOUT);
    ssh.send_line(&wrong_code(secret));
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 255, "{transcript}");
    assert!(!transcript.contains(REMOTE_OUTPUT), "{transcript}");
    assert_eq!(login.mfa.lock_state(&user.name), (1, false));
}

/// A key alone never meets the auth stack: only the account phase can stop
/// a locked account there.
#[test]
fn a_locked_account_cannot_log_in_with_a_key_alone() {
    if !can_run() {
        return;
    }
    // One failure locks, to keep the test short; sshd takes a key alone.
    let mut login = Login::key("[lockout]\ndeny = 1\n", "publickey");
    let args = key_args(login.key_path());

    let ssh = login.client(&args);
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 0, "a key alone works while unlocked: {transcript}");
    assert!(transcript.contains(REMOTE_OUTPUT), "{transcript}");

    login.restart_sshd("publickey,keyboard-interactive");
    let mut ssh = login.client(&args);
    ssh.expect(CODE_PROMPT, TIMEOUT);
    ssh.send_line(&wrong_code(&login.secret));
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 255, "{transcript}");
    assert_eq!(login.mfa.lock_state(&login.user.name), (1, true));

    login.restart_sshd("publickey");
    let ssh = login.client(&args);
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 255, "{transcript}");
    assert!(!transcript.contains(REMOTE_OUTPUT), "{transcript}");
    let refused = format!(
        "Access denied for user {} by PAM account configuration",
        login.user.name
    );
    let sshd_log = login.sshd().log_text();
    assert!(
        sshd_log.contains(&refused),
        "refused by the account phase:\n{sshd_log}"
    );
}

/// With the daemon down, sshd refuses before the password and the user is
/// told why; with `on_unavailable = "allow"` the password decides. (sshd
/// sends the module's line as the instruction of an empty question round,
/// which the ssh client shows at its default LogLevel, INFO.)
#[test]
fn a_login_while_the_daemon_is_down_is_refused_with_the_reason() {
    if !can_run() {
        return;
    }
    let mut login = Login::password("");
    login.mfa.stop_daemon();
    let mut args = vec!["-o", "LogLevel=INFO"];
    args.extend(KBD_ONLY);

    let ssh = login.client(&args);
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 255, "{transcript}");
    assert!(
        transcript.contains(pam_mfa::internals::login::MSG_UNAVAILABLE),
        "{transcript}"
    );
    assert!(transcript.contains("Permission denied"), "{transcript}");
    assert!(
        !transcript.contains(PASSWORD_PROMPT),
        "refused before the password: {transcript}"
    );
    assert!(!transcript.contains(REMOTE_OUTPUT), "{transcript}");

    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&login.mfa.config)
        .and_then(|mut f| f.write_all(b"on_unavailable = \"allow\"\n"))
        .unwrap();
    let mut ssh = login.client(&args);
    ssh.expect(PASSWORD_PROMPT, TIMEOUT);
    ssh.send_line(&login.user.password);
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 0, "allow: the password decides: {transcript}");
    assert!(transcript.contains(REMOTE_OUTPUT), "{transcript}");
    assert!(!transcript.contains(CODE_PROMPT), "{transcript}");
}

/// How often `needle` occurs in `haystack`.
fn occurrences(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Issue 14 #7: a locked account with a key and keyboard-interactive is
/// told so once per connection: the client's retries of
/// keyboard-interactive (three by default) are not each told again.
#[test]
fn a_locked_account_is_told_once_per_connection() {
    if !can_run() {
        return;
    }
    let login = Login::key("[lockout]\ndeny = 1\n", "publickey,keyboard-interactive");
    let args = retrying_key_args(login.key_path());

    let mut ssh = login.client(&args);
    ssh.expect(CODE_PROMPT, TIMEOUT);
    ssh.send_line(&wrong_code(&login.secret));
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 255, "{transcript}");
    assert_eq!(login.mfa.lock_state(&login.user.name), (1, true));
    assert_eq!(
        occurrences(&transcript, pam_mfa::internals::login::MSG_LOCKED),
        1,
        "the locking attempt says so once: {transcript}"
    );

    let ssh = login.client(&args);
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 255, "{transcript}");
    assert!(!transcript.contains(REMOTE_OUTPUT), "{transcript}");
    assert_eq!(
        occurrences(&transcript, pam_mfa::internals::login::MSG_LOCKED),
        1,
        "{transcript}"
    );
}

#[test]
fn mfa_unavailable_is_told_once_per_connection() {
    if !can_run() {
        return;
    }
    let mut login = Login::key("", "publickey,keyboard-interactive");
    login.mfa.stop_daemon();
    let args = retrying_key_args(login.key_path());

    let ssh = login.client(&args);
    let (code, transcript) = login.finish(ssh);
    assert_eq!(code, 255, "{transcript}");
    assert!(!transcript.contains(REMOTE_OUTPUT), "{transcript}");
    assert_eq!(
        occurrences(&transcript, pam_mfa::internals::login::MSG_UNAVAILABLE),
        1,
        "each keyboard-interactive retry must not repeat it: {transcript}"
    );
}
