//! A panic inside the module denies the login and leaves the host process
//! alive and able to call the module again; a panic in one of the daemon's
//! connections denies that login, and the daemon serves the next.
//!
//! The panics are real and the binaries the shipped ones: a preloaded shim
//! makes one `clock_gettime` call made from pam_mfa's code fail (the
//! module's, or the daemon's on a connection thread), and Rust's standard
//! library panics when the clock fails. Failing the first, second, ... call
//! in turn puts the panic at every point of a login where that code reads
//! the clock: in the module, around each wait on the daemon; in the daemon,
//! inside transactions and while logging included.

use crate::common::*;
use crate::support::*;
use pam_mfa::internals::login::MSG_UNAVAILABLE;
use pam_mfa::internals::protocol::{self, Envelope, LoginRequest, Mode, Request};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

/* Counted: calls made from code in the file named PAM_MFA_CLOCK_FROM (by
   default the module), and with PAM_MFA_CLOCK_THREADS only those of
   threads whose name starts with it, PAM_MFA_CLOCK_SKIP_THREAD excepted.
   The PAM_MFA_FAIL_CLOCK_CALL-th counted call fails, and every call of such
   threads fails while the file PAM_MFA_FAIL_CLOCK_WHILE exists. The count
   so far is in PAM_MFA_CLOCK_CALLS_FILE after each counted call (a daemon
   is killed, not ended). */
static long calls, fail_at = -1;
static const char *from, *calls_file, *fail_while, *threads, *skip_thread;
static int (*real)(clockid_t, struct timespec *);

__attribute__((constructor)) static void init(void) {
    const char *n = getenv("PAM_MFA_FAIL_CLOCK_CALL");
    if (n) fail_at = atol(n);
    from = getenv("PAM_MFA_CLOCK_FROM");
    calls_file = getenv("PAM_MFA_CLOCK_CALLS_FILE");
    fail_while = getenv("PAM_MFA_FAIL_CLOCK_WHILE");
    threads = getenv("PAM_MFA_CLOCK_THREADS");
    skip_thread = getenv("PAM_MFA_CLOCK_SKIP_THREAD");
    real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
}

/* 1: this thread's calls may fail; 2: and they are counted. */
static int thread_kind(void) {
    char name[17] = "";
    if (!threads) return 2;
    prctl(PR_GET_NAME, name, 0, 0, 0);
    if (strncmp(name, threads, strlen(threads)) != 0) return 0;
    return skip_thread && strcmp(name, skip_thread) == 0 ? 1 : 2;
}

static int from_code(void *address) {
    Dl_info info;
    if (!dladdr(address, &info) || !info.dli_fname) return 0;
    const char *base = strrchr(info.dli_fname, '/');
    base = base ? base + 1 : info.dli_fname;
    if (from) return strcmp(base, from) == 0;
    return strcmp(base, "pam_mfa.so") == 0 || strcmp(base, "libpam_mfa.so") == 0;
}

static void report(long n) {
    int fd = calls_file ? open(calls_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600) : -1;
    if (fd >= 0) {
        char line[32];
        int len = snprintf(line, sizeof line, "%20ld\n", n);
        if (pwrite(fd, line, len, 0) != len) errno = 0;
        close(fd);
    }
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    int kind = from_code(__builtin_return_address(0)) ? thread_kind() : 0;
    long n = 0;
    if (kind == 2) {
        n = __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST);
        report(n);
    }
    if ((kind == 2 && n == fail_at) || (kind && fail_while && access(fail_while, F_OK) == 0)) {
        errno = EINVAL;
        return -1;
    }
    return real(clock, ts);
}
"#;

struct Shimmed<'a> {
    h: &'a Harness,
    shim: PathBuf,
    calls_file: PathBuf,
    syslog: Option<Syslog>,
}

impl<'a> Shimmed<'a> {
    fn new(h: &'a Harness) -> Shimmed<'a> {
        Shimmed {
            h,
            shim: build_preload_shim(h.dir.path(), "clock_shim", SHIM),
            calls_file: h.dir.path().join("clock-calls"),
            syslog: is_root().then(|| Syslog::new(h.dir.path())),
        }
    }

    /// Runs pamtester with the `fail_at`-th clock call of the module failing
    /// (0: none fails). Returns the login and how many calls the module made.
    fn run(&self, service: &str, ops: &[&str], answers: &[&str], fail_at: u32) -> (Login, u32) {
        let mut cmd = self.h.pamtester_command(service, "alice", ops);
        cmd.env(
            "LD_PRELOAD",
            format!(
                "libpam_wrapper.so libnss_wrapper.so {}",
                self.shim.display()
            ),
        )
        .env("PAM_MFA_FAIL_CLOCK_CALL", fail_at.to_string())
        .env("PAM_MFA_CLOCK_CALLS_FILE", &self.calls_file)
        // The panic message names the place; a backtrace would only be noise.
        .env("RUST_BACKTRACE", "0");
        let _ = std::fs::remove_file(&self.calls_file);
        let mut s = start_session(match &self.syslog {
            Some(log) => log.wrap(cmd),
            None => cmd,
        });
        let mut answers = answers.iter();
        while s.next_prompt().is_some() {
            s.answer(answers.next().copied().unwrap_or(""));
        }
        let login = s.finish();
        assert_no_signal(&login, &format!("clock call {fail_at} failing"));
        let calls = std::fs::read_to_string(&self.calls_file)
            .unwrap_or_else(|e| panic!("the shim did not report ({e}): {login:?}"))
            .trim()
            .parse()
            .unwrap();
        (login, calls)
    }

    fn expect_log(&self, words: &[&str], login: &Login, fail_at: u32) {
        if let Some(log) = &self.syslog {
            if !log
                .lines()
                .iter()
                .any(|l| words.iter().all(|w| l.contains(w)))
            {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            let lines = log.lines();
            assert!(
                lines.iter().any(|l| words.iter().all(|w| l.contains(w))),
                "no syslog line with {words:?} after a login whose clock read {} failed:\n{}\nlogged:\n{}",
                fail_at,
                login.transcript,
                lines.join("\n")
            );
        }
    }

    fn clear_log(&self) {
        if let Some(log) = &self.syslog {
            log.clear();
        }
    }
}

fn panicked(login: &Login) -> bool {
    login.transcript.contains("panicked")
}

/// Runs `run` (a wrong-code login with clock read `n` failing, returning
/// the login and how many reads were made) until read `n` is made: how
/// many reads a login makes varies with how the other side's lines arrive,
/// in one read or in two (8 or 9 seen). Such a login without a fault is an
/// ordinary denial, and counts a failure. Returns the faulted login and how
/// many ordinary denials came before it; None when five logins made fewer
/// than `n` reads.
fn fault_at(n: u32, mut run: impl FnMut() -> (Login, u32)) -> Option<(Login, u64)> {
    for ordinary in 0..5u64 {
        let (login, calls) = run();
        if calls >= n {
            return Some((login, ordinary));
        }
        assert_eq!(login.code, 1, "read {n} not made: {login:?}");
        assert!(!login.authenticated(), "read {n} not made: {login:?}");
        assert!(!panicked(&login), "read {n} not made: {login:?}");
    }
    None
}

#[test]
fn a_panic_at_any_clock_read_denies_the_login_and_the_process_lives_on() {
    let h = Harness::new();
    // Every run below adds a failure: keep alice below the lock.
    h.write_config("[lockout]\ndeny = 1000\n");
    let secret = h.enroll_totp("alice", "phone");
    let s = Shimmed::new(&h);
    let ops = ["authenticate", "acct_mgmt"];

    // A wrong code without a fault: how many clock reads a login makes.
    let (plain, reads) = s.run(SERVICE, &ops, &[password("alice"), "000000"], 0);
    assert_eq!(plain.code, 1, "{plain:?}");
    assert!(!panicked(&plain), "{plain:?}");
    assert!(reads >= 3, "only {reads} clock reads: is the shim working?");
    let (failures, _) = h.lock_state("alice");
    assert_eq!(failures, 1);

    let mut summary = Vec::new();
    let mut not_reached = Vec::new();
    for n in 1..=reads {
        let before = h.lock_state("alice").0;
        s.clear_log();
        let Some((login, ordinary)) = fault_at(n, || {
            s.run(SERVICE, &ops, &[password("alice"), "000000"], n)
        }) else {
            not_reached.push(n);
            continue;
        };
        assert!(
            panicked(&login),
            "clock read {n} of {reads} did not panic: {login:?}"
        );
        assert_eq!(login.code, 1, "read {n}: {login:?}");
        assert!(
            !login.authenticated() || !login.account_ok(),
            "read {n}: {login:?}"
        );
        assert!(
            login.transcript.contains("pamtester: "),
            "read {n}: pamtester did not report: {login:?}"
        );
        s.expect_log(&["internal error (panic) in pam_mfa; denying"], &login, n);
        assert_eq!(integrity_check(&h.db), "ok", "read {n}");
        // Either the failure committed before the panic or it rolled back;
        // the ordinary denials before it each counted one.
        let after = h.lock_state("alice").0 - ordinary;
        assert!(
            after == before || after == before + 1,
            "read {n}: {before} -> {after} after {ordinary} ordinary denials"
        );
        summary.push(after - before);
    }
    eprintln!(
        "panic at each of {reads} clock reads of a wrong-code login: all denied, no signal; \
         failure counted {summary:?}; reads not made in 5 tries: {not_reached:?}"
    );
    assert!(
        summary.len() >= 3,
        "too few faults injected: {not_reached:?}"
    );

    // A valid code with the first read failing: refused, and not spent.
    assert!(h.mfa(None, &["admin", "unlock", "alice"]).status.success());
    let code = totp(&secret, 1);
    let (login, _) = s.run(SERVICE, &ops, &[password("alice"), &code], 1);
    assert!(panicked(&login), "{login:?}");
    assert_eq!(login.code, 1, "{login:?}");
    let (login, _) = s.run(SERVICE, &ops, &[password("alice"), &code], 0);
    assert!(
        login.succeeded(),
        "the code was not spent by the panicked login: {login:?}"
    );
}

/// The second factor panics on an `optional` line, so pamtester goes on to
/// the account phase in the same process: the module must answer there, and
/// answer right.
#[test]
fn after_a_panic_the_same_process_still_gets_account_decisions() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let m = h.module.display();
    let c = format!("{} socket={}", h.config.display(), h.socket.display());
    h.write_service(
        "panic-then-account",
        &format!(
            "auth    optional {m} config={c}\n\
             auth    required {}/pam_permit.so\n\
             account required {m} config={c}\n",
            security_dir()
        ),
    );
    let s = Shimmed::new(&h);
    let ops = ["authenticate", "acct_mgmt"];

    let (login, _) = s.run("panic-then-account", &ops, &[], 1);
    assert!(panicked(&login), "{login:?}");
    assert!(
        login.authenticated(),
        "pam_permit decides the auth: {login:?}"
    );
    assert!(
        login.account_ok(),
        "account phase after the panic: {login:?}"
    );
    assert_eq!(login.code, 0, "{login:?}");
    s.expect_log(
        &["internal error (panic) in pam_mfa; denying", "pam_mfa["],
        &login,
        1,
    );

    // Lock alice: the account phase after a panic must refuse her.
    for _ in 0..6 {
        h.login("alice", &wrong_code(&secret));
    }
    assert_eq!(h.lock_state("alice"), (6, true));
    let (login, _) = s.run("panic-then-account", &ops, &[], 1);
    assert!(panicked(&login), "{login:?}");
    assert!(login.authenticated(), "{login:?}");
    assert!(!login.account_ok(), "{login:?}");
    assert!(login.said_locked(), "{login:?}");
    assert_eq!(login.code, 1, "{login:?}");
}

/// The world's daemon run with the shim: the clock reads of its connection
/// threads are counted and may fail (its accept loop is left alone), and
/// the one that fails is chosen at each start.
struct ShimmedDaemon<'a> {
    h: &'a Harness,
    shim: PathBuf,
    calls_file: PathBuf,
    /// While this file exists every counted read fails.
    fail_every: PathBuf,
    syslog: Option<Syslog>,
}

impl<'a> ShimmedDaemon<'a> {
    fn new(h: &'a Harness) -> ShimmedDaemon<'a> {
        ShimmedDaemon {
            h,
            shim: build_preload_shim(h.dir.path(), "clock_shim", SHIM),
            calls_file: h.dir.path().join("daemon-clock-calls"),
            fail_every: h.dir.path().join("fail-every-clock-read"),
            syslog: is_root().then(|| Syslog::new(h.dir.path())),
        }
    }

    /// (Re)starts the daemon with its `fail_at`-th counted read failing
    /// (0: none).
    fn start(&self, fail_at: u32) {
        let _ = std::fs::remove_file(&self.calls_file);
        if let Some(log) = &self.syslog {
            log.clear();
        }
        self.h.start_daemon_under(|mut cmd| {
            cmd.env(
                "LD_PRELOAD",
                format!("libnss_wrapper.so {}", self.shim.display()),
            )
            .env("PAM_MFA_CLOCK_FROM", "mfa")
            // The daemon names each connection's thread "client-PID" (the
            // peer's); the harness's own probe that the daemon listens is
            // a connection of this process, and is not counted.
            .env("PAM_MFA_CLOCK_THREADS", "client-")
            .env(
                "PAM_MFA_CLOCK_SKIP_THREAD",
                format!("client-{}", std::process::id()),
            )
            .env("PAM_MFA_FAIL_CLOCK_CALL", fail_at.to_string())
            .env("PAM_MFA_CLOCK_CALLS_FILE", &self.calls_file)
            .env("PAM_MFA_FAIL_CLOCK_WHILE", &self.fail_every)
            .env("RUST_BACKTRACE", "0");
            match &self.syslog {
                Some(log) => log.wrap(cmd),
                None => cmd,
            }
        });
    }

    /// Counted reads since the start.
    fn calls(&self) -> u32 {
        std::fs::read_to_string(&self.calls_file)
            .map(|t| t.trim().parse().unwrap())
            .unwrap_or(0)
    }

    fn expect_log(&self, words: &[&str]) {
        if let Some(log) = &self.syslog {
            let line = log.expect(words);
            let daemon = format!(" mfa[{}]:", self.h.daemon_pid());
            assert!(line.contains(&daemon), "not the daemon's line: {line}");
        }
    }
}

/// One login phase over a raw connection made as `uid`: everything the
/// daemon sent until it closed the connection.
fn raw_login(socket: &Path, uid: u32, mode: Mode, user: &str) -> String {
    let mut stream = crate::common::daemon::connect_as(socket, uid, uid);
    let hello = protocol::encode_line(&Envelope {
        version: protocol::VERSION,
        request: Request::Login(LoginRequest {
            mode,
            user: user.to_owned(),
            service: "raw".into(),
            rhost: String::new(),
            debug: false,
        }),
    });
    // A daemon whose thread panicked at once may have closed already.
    let _ = stream.write_all(&hello);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_panic_in_a_daemon_connection_denies_that_login_and_the_daemon_serves_the_next() {
    let h = Harness::new();
    // Every run below adds a failure: keep alice below the lock.
    h.write_config("[lockout]\ndeny = 1000\n");
    let secret = h.enroll_totp("alice", "phone");
    let d = ShimmedDaemon::new(&h);
    let wrong = wrong_code(&secret);

    // A wrong code without a fault: how many clock reads the daemon makes.
    d.start(0);
    let plain = h.login("alice", &wrong);
    assert_eq!(plain.code, 1, "{plain:?}");
    assert!(!plain.transcript.contains(MSG_UNAVAILABLE), "{plain:?}");
    let reads = d.calls();
    assert!(reads >= 3, "only {reads} clock reads: is the shim working?");
    assert_eq!(h.lock_state("alice"), (1, false));

    let mut summary = Vec::new();
    let mut not_reached = Vec::new();
    for n in 1..=reads {
        let before = h.lock_state("alice").0;
        let mut log_before = 0;
        let Some((login, ordinary)) = fault_at(n, || {
            d.start(n);
            log_before = h.daemon_log().len();
            let login = h.login("alice", &wrong);
            (login, d.calls())
        }) else {
            not_reached.push(n);
            continue;
        };
        assert_no_signal(&login, &format!("daemon clock read {n} failing"));
        assert_eq!(login.code, 1, "read {n}: {login:?}");
        assert!(!login.authenticated(), "read {n}: {login:?}");
        assert!(
            login.transcript.contains(MSG_UNAVAILABLE),
            "read {n}: the user is told: {login:?}"
        );
        let printed = h.daemon_log()[log_before..].to_owned();
        assert!(
            printed.contains("panicked"),
            "daemon clock read {n} of {reads} did not panic: {login:?}\ndaemon:\n{printed}"
        );
        d.expect_log(&["internal error (panic) serving uid=0"]);
        assert_eq!(integrity_check(&h.db), "ok", "read {n}");
        // Either the failure committed before the panic or it rolled back;
        // the ordinary denials before it each counted one.
        let after = h.lock_state("alice").0 - ordinary;
        assert!(
            after == before || after == before + 1,
            "read {n}: {before} -> {after} after {ordinary} ordinary denials"
        );
        summary.push(after - before);
        // The same daemon answers the next request, and answers right.
        let account = h.account("alice");
        assert!(
            account.code == 0 && account.account_ok(),
            "read {n}: the daemon after its panic: {account:?}\n{}",
            h.daemon_log()
        );
    }
    eprintln!(
        "daemon panic at each of {reads} clock reads of its connection threads in a \
         wrong-code login: all denied, the daemon served the next; failure counted \
         {summary:?}; reads not made in 5 tries: {not_reached:?}"
    );
    assert!(
        summary.len() >= 3,
        "too few faults injected: {not_reached:?}"
    );

    // A valid code with the daemon's first read failing: refused, not spent.
    d.start(1);
    let code = totp(&secret, 1);
    let login = h.login("alice", &code);
    assert_eq!(login.code, 1, "{login:?}");
    d.start(0);
    let login = h.login("alice", &code);
    assert!(
        login.succeeded(),
        "the code was not spent by the panicked login: {login:?}"
    );

    // A panicked connection gives its place back: an ordinary user (alice,
    // for her own account) panics the daemon more times than one user may
    // hold connections at once, and is then served.
    if is_root() {
        // alice must reach the socket: let her through the world's dir.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(h.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::write(&d.fail_every, "").unwrap();
        for i in 0..12 {
            let sent = raw_login(&h.socket, 1001, Mode::Account, "alice");
            assert_eq!(sent, "", "connection {i}: closed without a word");
        }
        std::fs::remove_file(&d.fail_every).unwrap();
        let sent = raw_login(&h.socket, 1001, Mode::Account, "alice");
        assert!(
            sent.contains(r#"{"verdict":"success"}"#),
            "after 12 panics: {sent}\n{}",
            h.daemon_log()
        );
    }
}
