//! A panic inside the module denies the login and leaves the host process
//! alive and able to call the module again.
//!
//! The panic is real and the module is the shipped one: a preloaded shim
//! makes one `clock_gettime` call made from pam_mfa's code fail, and Rust's
//! standard library panics when the clock fails. Failing the first, second,
//! ... call in turn puts the panic at every point of a login where the
//! module reads the clock, inside transactions and while logging included.

use crate::common::*;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long calls, fail_at = -1;
static int (*real)(clockid_t, struct timespec *);

__attribute__((constructor)) static void init(void) {
    const char *n = getenv("PAM_MFA_FAIL_CLOCK_CALL");
    if (n) fail_at = atol(n);
    real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
}

static int from_module(void *address) {
    Dl_info info;
    if (!dladdr(address, &info) || !info.dli_fname) return 0;
    const char *base = strrchr(info.dli_fname, '/');
    base = base ? base + 1 : info.dli_fname;
    return strcmp(base, "pam_mfa.so") == 0 || strcmp(base, "libpam_mfa.so") == 0;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    if (from_module(__builtin_return_address(0)) && ++calls == fail_at) {
        errno = EINVAL;
        return -1;
    }
    return real(clock, ts);
}

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("PAM_MFA_CLOCK_CALLS_FILE");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "%ld\n", calls);
        fclose(f);
    }
}
"#;

/// Builds the shim into `dir` (cc is cargo's linker, so it is there).
fn build_shim(dir: &Path) -> PathBuf {
    let src = dir.join("clock_shim.c");
    let lib = dir.join("clock_shim.so");
    std::fs::write(&src, SHIM).unwrap();
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

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
            shim: build_shim(h.dir.path()),
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
    for n in 1..=reads {
        let before = h.lock_state("alice").0;
        s.clear_log();
        let (login, _) = s.run(SERVICE, &ops, &[password("alice"), "000000"], n);
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
        // Either the failure committed before the panic or it rolled back.
        let after = h.lock_state("alice").0;
        assert!(
            after == before || after == before + 1,
            "read {n}: {before} -> {after}"
        );
        summary.push(after - before);
    }
    eprintln!(
        "panic at each of {reads} clock reads of a wrong-code login: all denied, no signal; \
         failure counted {:?}",
        summary
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
    let c = h.config.display();
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
