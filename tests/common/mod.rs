//! Test harness: a private world for one test — nss_wrapper users, a
//! pam_matrix password file, PAM service files read through pam_wrapper, a
//! config and a database in a temp dir — plus drivers for pamtester, the
//! `mfa` command and oathtool.
//!
//! Each test binary uses a different part of this file.
#![allow(dead_code)]

pub mod daemon;
pub mod postgres;
pub mod pty;
pub mod syslog;

use pty::Pty;
use serde_json::Value;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

pub const CODE_PROMPT: &str = "Verification code: ";
pub const ENROLL_PROMPT: &str = "Code shown by the app: ";
pub const PASSWORD_PROMPT: &str = "Password: ";
/// Every prompt a login can show; the driver answers them in order.
pub const OFFER_PROMPT: &str = "Set up a second factor for this account now? [y/N]: ";
pub const PROMPTS: [&str; 4] = [PASSWORD_PROMPT, CODE_PROMPT, ENROLL_PROMPT, OFFER_PROMPT];
pub const SERVICE: &str = "mfa-test";
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// pam_wrapper's modules (pam_matrix), under the multiarch library dir.
pub fn wrapper_dir() -> PathBuf {
    library_subdir("pam_wrapper", "pam_matrix.so")
        .expect("pam_matrix.so not found: apt-get install libpam-wrapper")
}

/// Where the distribution's own PAM modules live.
pub fn security_dir() -> String {
    library_subdir("security", "pam_permit.so")
        .or_else(|| {
            Some(PathBuf::from("/usr/lib64/security")).filter(|d| d.join("pam_permit.so").is_file())
        })
        .expect("pam_permit.so not found: apt-get install libpam-modules")
        .display()
        .to_string()
}

/// /usr/lib/<multiarch>/<name>, found by a file it must hold.
fn library_subdir(name: &str, holds: &str) -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(name))
        .find(|d| d.join(holds).is_file())
}

/// The passwords pam_matrix knows (and the users NSS knows, but for `dave`).
pub const PASSWORDS: [(&str, &str); 5] = [
    ("root", "root-pw"),
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
    // Known to the password module but not to NSS: an "unknown user".
    ("dave", "dave-pw"),
];

pub fn password(user: &str) -> &'static str {
    PASSWORDS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .unwrap_or("no-such-password")
}

/// Where cargo put the binaries of this tree (target/<profile>).
pub fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_mfa"))
        .parent()
        .expect("mfa has a directory")
        .to_owned()
}

/// The module built from this tree. `cargo test` rebuilds the copy in
/// deps/ but only `cargo build` refreshes the one beside `mfa`, so take the
/// newer: a test must never load a stale module.
pub fn module_path() -> PathBuf {
    let dir = build_dir();
    [
        dir.join("libpam_mfa.so"),
        dir.join("deps").join("libpam_mfa.so"),
    ]
    .into_iter()
    .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
    .max()
    .map(|(_, p)| p)
    .unwrap_or_else(|| {
        panic!(
            "no libpam_mfa.so in {}: build it first (cargo build --release)",
            dir.display()
        )
    })
}

pub fn mfa_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mfa")
}

/// A 0700 directory removed on drop (kept when PAM_MFA_KEEP_TEST_DIRS is set).
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let mut dir = tempfile::Builder::new()
            .prefix(&format!("pam_mfa_{tag}_"))
            .tempdir()
            .unwrap_or_else(|e| panic!("a temporary directory for {tag}: {e}"));
        if std::env::var_os("PAM_MFA_KEEP_TEST_DIRS").is_some() {
            dir.disable_cleanup(true);
        }
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

pub fn write_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The outcome of one pamtester run.
#[derive(Debug)]
pub struct Login {
    /// pamtester's exit code: 0 when every operation succeeded.
    pub code: i32,
    /// The prompts shown, in order.
    pub prompts: Vec<String>,
    pub transcript: String,
}

impl Login {
    pub fn authenticated(&self) -> bool {
        self.transcript
            .contains("pamtester: successfully authenticated")
    }
    pub fn account_ok(&self) -> bool {
        self.transcript
            .contains("pamtester: account management done.")
    }
    /// Authenticated and passed the account phase.
    pub fn succeeded(&self) -> bool {
        self.code == 0 && self.authenticated() && self.account_ok()
    }
    pub fn said_locked(&self) -> bool {
        self.transcript.contains("locked") && self.transcript.contains("administrator")
    }
    pub fn assert_prompts(&self, expected: &[&str]) {
        assert_eq!(self.prompts, expected, "transcript:\n{}", self.transcript);
    }
}

/// An answer to a prompt: fixed, or computed from what was printed so far
/// (in-login setup shows the secret before asking for a code).
pub enum Answer {
    Text(String),
    FromTranscript(Box<dyn FnOnce(&str) -> String + Send>),
}

pub fn text(s: impl Into<String>) -> Answer {
    Answer::Text(s.into())
}

/// The `mfa` command on one config, with NSS either real or nss_wrapper's.
pub struct Cli {
    pub config: PathBuf,
    /// (passwd, group) files for nss_wrapper; None = the system's users.
    pub nss_wrapper: Option<(PathBuf, PathBuf)>,
}

impl Cli {
    /// Runs `mfa --config C [--user U] ARGS`.
    pub fn mfa(&self, user: Option<&str>, args: &[&str]) -> Output {
        use std::ffi::OsStr;
        let mut all: Vec<&OsStr> = Vec::new();
        if let Some(u) = user {
            all.push(OsStr::new("--user"));
            all.push(OsStr::new(u));
        }
        all.extend(args.iter().map(OsStr::new));
        self.mfa_os(&all)
    }

    /// Runs `mfa --config C ARGS` with arguments that need not be UTF-8.
    pub fn mfa_os(&self, args: &[&std::ffi::OsStr]) -> Output {
        let mut cmd = Command::new(mfa_bin());
        cmd.arg("--config").arg(&self.config);
        cmd.args(args).env("LC_ALL", "C");
        if let Some((passwd, group)) = &self.nss_wrapper {
            cmd.env("LD_PRELOAD", "libnss_wrapper.so")
                .env("NSS_WRAPPER_PASSWD", passwd)
                .env("NSS_WRAPPER_GROUP", group);
        }
        cmd.output().expect("run mfa")
    }

    /// `mfa --json ...`, which must succeed; returns the parsed output.
    pub fn mfa_json(&self, user: Option<&str>, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.mfa(user, &all);
        assert!(
            out.status.success(),
            "mfa {all:?} (user {user:?}) failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "mfa {all:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Adds a TOTP device and verifies it with a current code; returns the
    /// secret. The step used to verify is spent (replay guard), so log in
    /// with `totp(&secret, 1)`.
    pub fn enroll_totp(&self, user: &str, name: &str) -> String {
        let added = self.mfa_json(
            Some(user),
            &["device", "add", "totp", "--name", name, "--no-verify"],
        );
        let secret = added["secret"].as_str().expect("secret in JSON").to_owned();
        let uri = added["otpauth_uri"].as_str().expect("otpauth_uri in JSON");
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        let out = self.mfa(Some(user), &["device", "verify", name, &totp(&secret, 0)]);
        assert!(
            out.status.success(),
            "device verify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        secret
    }

    pub fn bypass_codes(&self, user: &str, count: u32) -> Vec<String> {
        let v = self.mfa_json(
            Some(user),
            &["bypass", "generate", "--count", &count.to_string()],
        );
        v["codes"]
            .as_array()
            .expect("codes in JSON")
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    }

    /// (failures, locked) as `mfa admin show --json` reports them.
    pub fn lock_state(&self, user: &str) -> (u64, bool) {
        let v = self.mfa_json(None, &["admin", "show", user]);
        (
            v["failures"]
                .as_u64()
                .unwrap_or_else(|| panic!("failures in {v}")),
            v["locked"]
                .as_bool()
                .unwrap_or_else(|| panic!("locked in {v}")),
        )
    }

    pub fn set_policy(&self, policy: &str) {
        self.mfa_json(None, &["admin", "policy", policy]);
    }

    /// Starts `mfa --config C --socket SOCKET serve` on this config (as the
    /// test's own user, with this CLI's NSS), its stderr appended to `log`,
    /// and waits until it listens. Killed when the result is dropped.
    pub fn serve(&self, socket: &Path, log: &Path) -> DaemonProcess {
        self.serve_under(socket, log, |cmd| cmd)
    }

    /// As [`Cli::serve`], the command first passed through `wrap` (e.g. to
    /// run it in a private mount namespace); `wrap` must exec the daemon in
    /// the process it starts, so that the child's pid is the daemon's.
    pub fn serve_under(
        &self,
        socket: &Path,
        log: &Path,
        wrap: impl FnOnce(Command) -> Command,
    ) -> DaemonProcess {
        let mut cmd = Command::new(mfa_bin());
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(socket)
            .arg("serve")
            .env("LC_ALL", "C");
        if let Some((passwd, group)) = &self.nss_wrapper {
            cmd.env("LD_PRELOAD", "libnss_wrapper.so")
                .env("NSS_WRAPPER_PASSWD", passwd)
                .env("NSS_WRAPPER_GROUP", group);
        }
        let mut cmd = wrap(cmd);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap_or_else(|e| panic!("open {}: {e}", log.display())),
            );
        let mut child = cmd.spawn().expect("start mfa serve");
        wait_for_socket(socket, &mut child, log);
        DaemonProcess { child }
    }
}

/// A running pamtester.
pub struct Session {
    pub pty: Pty,
    prompts: Vec<String>,
}

impl Session {
    /// Waits for the next prompt; None once pamtester has ended.
    pub fn next_prompt(&mut self) -> Option<&'static str> {
        let prompt = PROMPTS[self.pty.expect_any(&PROMPTS, TIMEOUT)?];
        self.prompts.push(prompt.to_owned());
        Some(prompt)
    }

    pub fn answer(&mut self, text: &str) {
        self.pty.send_line(text);
    }

    /// Answers with raw bytes (non-UTF-8, control characters).
    pub fn answer_bytes(&mut self, bytes: &[u8]) {
        self.pty.send_bytes_line(bytes);
    }

    /// Answers each prompt with the next of `answers` (an empty line once
    /// they run out) and waits for the end.
    pub fn answer_in_order(mut self, answers: &[&str]) -> Login {
        let mut answers = answers.iter();
        while self.next_prompt().is_some() {
            self.answer(answers.next().copied().unwrap_or(""));
        }
        self.finish()
    }

    /// Answers any further prompt with an empty line and waits for the end.
    pub fn finish(mut self) -> Login {
        while self.next_prompt().is_some() {
            self.answer("");
        }
        let (status, transcript) = self.pty.finish(TIMEOUT);
        assert!(
            !transcript.contains("pam_wrapper config dir"),
            "pam_wrapper could not set up its own directory; this run may have used \
             another test's PAM files:\n{transcript}"
        );
        Login {
            code: pty::code(status),
            prompts: self.prompts,
            transcript,
        }
    }
}

/// `mfa serve` for one test world, stopped (SIGKILL) when dropped.
pub struct DaemonProcess {
    pub child: std::process::Child,
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts connections at `socket`.
pub fn wait_for_socket(socket: &Path, child: &mut std::process::Child, log: &Path) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "mfa serve exited ({status}) before listening on {}:\n{}",
                socket.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mfa serve did not listen on {} in time",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub struct Harness {
    pub dir: TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
    pub services: PathBuf,
    pub module: PathBuf,
    /// Where this world's `mfa serve` listens (`socket=` on every module line).
    pub socket: PathBuf,
    daemon: Mutex<Option<DaemonProcess>>,
    passwd: PathBuf,
    group: PathBuf,
    passdb: PathBuf,
    pub cli: Cli,
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Before the directory goes: the daemon has its files open.
        self.stop_daemon();
    }
}

/// Tests call the CLI helpers on the harness directly: `h.enroll_totp(..)`.
impl std::ops::Deref for Harness {
    type Target = Cli;
    fn deref(&self) -> &Cli {
        &self.cli
    }
}

impl Harness {
    /// A world with policy `optional` and an existing, empty database.
    pub fn new() -> Harness {
        let h = Harness::without_database("policy = \"optional\"\n");
        h.create_database();
        h
    }

    /// A world whose config holds `database = ...` followed by `config_body`,
    /// and no database yet.
    pub fn without_database(config_body: &str) -> Harness {
        let dir = TempDir::new("pam");
        let root = dir.path().to_owned();
        let h = Harness {
            config: root.join("pam_mfa.toml"),
            db: root.join("db").join("mfa.sqlite3"),
            services: root.join("services"),
            module: root.join("pam_mfa.so"),
            socket: root.join("mfa.sock"),
            daemon: Mutex::new(None),
            passwd: root.join("passwd"),
            group: root.join("group"),
            passdb: root.join("passdb"),
            cli: Cli {
                config: root.join("pam_mfa.toml"),
                nss_wrapper: Some((root.join("passwd"), root.join("group"))),
            },
            dir,
        };
        std::os::unix::fs::symlink(module_path(), &h.module).unwrap();
        write_file(
            &h.passwd,
            "root:x:0:0:root:/root:/bin/sh\n\
             alice:x:1001:1001:Alice:/home/alice:/bin/sh\n\
             bob:x:1002:1002:Bob:/home/bob:/bin/sh\n\
             carol:x:1003:1003:Carol:/home/carol:/bin/sh\n",
            0o644,
        );
        write_file(
            &h.group,
            "root:x:0:\n\
             alice:x:1001:\n\
             bob:x:1002:\n\
             carol:x:1003:\n\
             breakglass:x:2000:carol\n",
            0o644,
        );
        let passdb: String = PASSWORDS
            .iter()
            .map(|(u, p)| format!("{u}:{p}:{SERVICE}\n"))
            .collect();
        write_file(&h.passdb, &passdb, 0o600);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&h.services)
            .unwrap();
        h.write_service(SERVICE, &h.design_stack(""));
        h.write_config(config_body);
        h.start_daemon();
        h
    }

    /// Starts this world's `mfa serve` (as the test's own user: a private
    /// instance) with the world's users, and waits until it listens.
    pub fn start_daemon(&self) {
        self.start_daemon_under(|cmd| cmd);
    }

    /// Starts this world's daemon through `wrap` (see [`Cli::serve_under`]),
    /// e.g. where syslog leads to a test's own socket. A daemon already
    /// running is stopped first.
    pub fn start_daemon_under(&self, wrap: impl FnOnce(Command) -> Command) {
        self.stop_daemon();
        let log = self.dir.path().join("daemon.log");
        let daemon = self.cli.serve_under(&self.socket, &log, wrap);
        *self.daemon.lock().unwrap() = Some(daemon);
    }

    /// Stops this world's daemon (SIGKILL) and waits for it.
    pub fn stop_daemon(&self) {
        self.daemon.lock().unwrap().take();
    }

    /// The daemon's pid, to signal it.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon
            .lock()
            .unwrap()
            .as_ref()
            .expect("the daemon is running")
            .child
            .id()
    }

    /// What the daemon printed (its own errors; decisions go to syslog).
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// DESIGN.md's stack with pam_matrix as the password module.
    /// `extra` is appended to every pam_mfa line (e.g. "debug").
    pub fn design_stack(&self, extra: &str) -> String {
        let matrix = format!(
            "{}/pam_matrix.so passdb={}",
            wrapper_dir().display(),
            self.passdb.display()
        );
        self.stack_with_password_module(&matrix, extra)
    }

    /// DESIGN.md's stack around any password module line.
    pub fn stack_with_password_module(&self, password_module: &str, extra: &str) -> String {
        let m = self.module.display();
        let c = format!("{} socket={}", self.config.display(), self.socket.display());
        format!(
            "auth    requisite                  {m} preauth config={c} {extra}\n\
             auth    [success=1 default=ignore] {password_module}\n\
             auth    [default=die]              {m} authfail config={c} {extra}\n\
             auth    required                   {m} config={c} {extra}\n\
             account required                   {m} config={c} {extra}\n"
        )
    }

    /// A service whose password module leaves the password in PAM_AUTHTOK,
    /// as pam_unix does. pam_matrix wipes that item in place after checking
    /// it, so behind pam_matrix the module never sees the password.
    pub fn write_authtok_service(&self, name: &str) {
        let script = self.dir.path().join("check-password");
        write_file(
            &script,
            &format!(
                "#!/bin/sh\n\
                 # pam_exec expose_authtok: the password arrives on stdin, unterminated.\n\
                 IFS= read -r typed || true\n\
                 expected=$(grep \"^$PAM_USER:\" {} | cut -d: -f2)\n\
                 [ -n \"$expected\" ] && [ \"$typed\" = \"$expected\" ]\n",
                self.passdb.display()
            ),
            0o700,
        );
        let exec = format!(
            "{}/pam_exec.so expose_authtok quiet {}",
            security_dir(),
            script.display()
        );
        self.write_service(name, &self.stack_with_password_module(&exec, ""));
    }

    pub fn write_service(&self, name: &str, stack: &str) {
        write_file(&self.services.join(name), stack, 0o644);
    }

    /// Writes the config (mode 0600): the database path, then `body`.
    pub fn write_config(&self, body: &str) {
        self.write_raw_config(&format!("database = \"{}\"\n{body}", self.db.display()));
    }

    pub fn write_raw_config(&self, text: &str) {
        write_file(&self.config, text, 0o600);
    }

    /// Adds a user known to NSS and to the password module (with the same
    /// uid as group id). `set_password` forgets the password of such users.
    pub fn add_user(&self, name: &str, uid: u32, password: &str) {
        use std::io::Write;
        let append = |path: &Path, line: String| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
        };
        append(
            &self.passwd,
            format!("{name}:x:{uid}:{uid}::/home/{name}:/bin/sh\n"),
        );
        append(&self.group, format!("{name}:x:{uid}:\n"));
        append(&self.passdb, format!("{name}:{password}:{SERVICE}\n"));
    }

    pub fn set_password(&self, user: &str, new: &str) {
        let passdb: String = PASSWORDS
            .iter()
            .map(|(u, p)| format!("{u}:{}:{SERVICE}\n", if *u == user { new } else { p }))
            .collect();
        write_file(&self.passdb, &passdb, 0o600);
    }

    /// The database exists once an administrator ran `mfa admin init`.
    pub fn create_database(&self) {
        let init = self.mfa_json(None, &["admin", "init"]);
        assert!(
            self.db.is_file(),
            "mfa admin init did not create {}",
            self.db.display()
        );
        assert!(init.is_object(), "{init}");
    }

    fn nss_env(&self, cmd: &mut Command) {
        cmd.env("NSS_WRAPPER_PASSWD", &self.passwd)
            .env("NSS_WRAPPER_GROUP", &self.group)
            .env("LC_ALL", "C");
    }

    /// pamtester through pam_wrapper, in its own terminal.
    pub fn pamtester_command(&self, service: &str, user: &str, ops: &[&str]) -> Command {
        self.pamtester_command_os(service, user.as_ref(), ops)
    }

    /// pamtester with a user name that need not be UTF-8.
    pub fn pamtester_command_os(
        &self,
        service: &str,
        user: &std::ffi::OsStr,
        ops: &[&str],
    ) -> Command {
        let mut cmd = Command::new("pamtester");
        cmd.arg("-v").arg(service).arg(user).args(ops);
        self.nss_env(&mut cmd);
        cmd.env("LD_PRELOAD", "libpam_wrapper.so libnss_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", &self.services)
            .env("PAM_MATRIX_PASSWD", &self.passdb);
        cmd
    }

    /// Runs `pamtester -v SERVICE USER authenticate acct_mgmt`, answering
    /// each prompt with the next answer. A prompt beyond the answers gets an
    /// empty line and is still recorded, so a test sees unexpected prompts.
    pub fn login_with(&self, service: &str, user: &str, answers: Vec<Answer>) -> Login {
        self.run_pamtester(service, user, &["authenticate", "acct_mgmt"], answers)
    }

    pub fn run_pamtester(
        &self,
        service: &str,
        user: &str,
        ops: &[&str],
        answers: Vec<Answer>,
    ) -> Login {
        let mut session = self.start_pamtester(service, user, ops);
        let mut answers = answers.into_iter();
        while session.next_prompt().is_some() {
            let reply = match answers.next() {
                Some(Answer::Text(t)) => t,
                Some(Answer::FromTranscript(f)) => f(&session.pty.transcript()),
                None => String::new(),
            };
            session.answer(&reply);
        }
        session.finish()
    }

    /// Starts pamtester; the caller answers prompts through the session.
    pub fn start_pamtester(&self, service: &str, user: &str, ops: &[&str]) -> Session {
        start_session(self.pamtester_command(service, user, ops))
    }

    /// The usual login: the user's password, then `code` if asked.
    pub fn login(&self, user: &str, code: &str) -> Login {
        self.login_with(SERVICE, user, vec![text(password(user)), text(code)])
    }

    /// Only the account phase (as after an SSH key login).
    pub fn account(&self, user: &str) -> Login {
        self.run_pamtester(SERVICE, user, &["acct_mgmt"], Vec::new())
    }

    /// Every value stored in the database, as text, one row per line: lets
    /// a test say "nothing about this user was written" without knowing
    /// the schema.
    pub fn database_dump(&self) -> String {
        let conn = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open database");
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let mut dump = String::new();
        for t in tables {
            let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
            let n = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                dump.push_str(&t);
                for i in 0..n {
                    let v: rusqlite::types::Value = row.get(i).unwrap();
                    dump.push_str(&format!("|{v:?}"));
                }
                dump.push('\n');
            }
        }
        dump
    }
}

/// Starts a pamtester command (possibly wrapped, e.g. by `unshare`) and
/// waits until pam_wrapper has set up its directory.
pub fn start_session(cmd: Command) -> Session {
    // pam_wrapper picks its working dir /tmp/pam.<letter> with an
    // lstat-then-mkdir race, and a loser silently shares (and later
    // deletes) another process's copy of the service files. Start one
    // pamtester at a time: it prints this line from main(), after
    // pam_wrapper's constructor has made its dir.
    static STARTING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let mut pty = Pty::spawn(cmd);
    pty.expect("pamtester: invoking pam_start", TIMEOUT);
    Session {
        pty,
        prompts: Vec::new(),
    }
}

/// A TOTP code for the step `offset` steps from now, by oathtool (an
/// implementation independent of ours).
pub fn totp(secret: &str, offset: i64) -> String {
    totp_at(secret, now() + offset * 30)
}

pub fn totp_at(secret: &str, time: i64) -> String {
    let secret: String = secret.chars().filter(|c| !c.is_whitespace()).collect();
    let out = Command::new("oathtool")
        .args(["--totp", "-b", &secret, "-N", &format!("@{time}")])
        .output()
        .expect("run oathtool (apt-get install oathtool)");
    assert!(
        out.status.success(),
        "oathtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A well-formed code that is not valid for `secret` at any step the
/// module might accept now.
pub fn wrong_code(secret: &str) -> String {
    let valid: Vec<String> = (-3..=3).map(|o| totp(secret, o)).collect();
    (0..)
        .map(|n: u32| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| !valid.contains(c))
        .unwrap()
}

/// Whether `needle` appears anywhere in `haystack` (a database file, a dump).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The secret from an in-login setup transcript ("Secret: ABCD EFGH ...").
pub fn secret_from(transcript: &str) -> String {
    let line = transcript
        .lines()
        .find_map(|l| l.trim().strip_prefix("Secret: "))
        .unwrap_or_else(|| panic!("no \"Secret: \" line in:\n{transcript}"));
    line.split_whitespace().collect()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `wrapper` followed by `cmd`'s program and arguments, with `cmd`'s
/// environment: runs `cmd` under a tool (unshare, strace).
pub fn run_under(mut wrapper: Command, cmd: &Command) -> Command {
    wrapper.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapper.env(k, v),
            None => wrapper.env_remove(k),
        };
    }
    wrapper
}
