//! What a login does when the daemon is not there, is stopped, or is kept
//! waiting by a client (issue 11): through real libpam, the real module and
//! the real `mfa serve`.
//!
//! - killed: the login ends at once (≤ 1 s) with the admin's
//!   `on_unavailable` choice, and a denied user is told why;
//! - stopped (SIGSTOP), before or during a login: denied within the
//!   module's 10 s reply timeout (≤ 15 s), never allowed, whatever
//!   `on_unavailable` says; after SIGCONT logins work again;
//! - a client stopped by its own user at the code prompt, or started with
//!   a file size limit, holds nothing other logins need.

use crate::common::*;
use crate::support::*;
use pam_mfa::internals::login::MSG_UNAVAILABLE;
use std::time::{Duration, Instant};

/// The issue's bounds: a daemon that is not running answers at once...
const NOT_RUNNING_BOUND: Duration = Duration::from_secs(1);
/// ...and one that does not answer costs the module's 10 s reply timeout.
const STALLED_BOUND: Duration = Duration::from_secs(15);

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
        .unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
}

/// The daemon stopped with SIGSTOP until dropped (SIGCONT), so that a
/// failing assertion does not leave it stopped.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        signal(pid, nix::sys::signal::Signal::SIGSTOP);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
}

/// A full login answering prompts in order, and how long PAM took: from
/// pam_start (pamtester's "invoking pam_start" line) to pamtester's end.
fn timed_login(h: &Harness, user: &str, answers: &[&str]) -> (Login, Duration) {
    let s = h.start_pamtester(SERVICE, user, &["authenticate", "acct_mgmt"]);
    let started = Instant::now();
    let login = s.answer_in_order(answers);
    (login, started.elapsed())
}

/// Only the account phase, as after an SSH key, timed the same way.
fn timed_account(h: &Harness, user: &str) -> (Login, Duration) {
    let s = h.start_pamtester(SERVICE, user, &["acct_mgmt"]);
    let started = Instant::now();
    let login = s.finish();
    (login, started.elapsed())
}

/// Denied before the password (preauth), told why, within `bound`.
fn assert_denied_unavailable(login: &Login, took: Duration, bound: Duration, what: &str) {
    assert_no_signal(login, what);
    assert_eq!(login.code, 1, "{what}: {login:?}");
    assert!(!login.authenticated(), "{what}: {login:?}");
    assert!(
        login.transcript.contains(MSG_UNAVAILABLE),
        "{what}: the user is told MFA is unavailable: {login:?}"
    );
    assert!(
        took <= bound,
        "{what}: denied after {took:?}, more than {bound:?}: {login:?}"
    );
}

#[test]
fn a_killed_daemon_denies_at_once_or_lets_the_password_decide() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let code = totp(&secret, 1);
    let mut report = Vec::new();

    // Killed, its socket file left behind (ECONNREFUSED), then removed
    // too (ENOENT): the same either way.
    h.stop_daemon();
    assert!(h.socket.exists(), "SIGKILL leaves the socket file");
    for socket in ["left", "removed"] {
        if socket == "removed" {
            std::fs::remove_file(&h.socket).unwrap();
        }
        h.write_config("");
        let (login, took) = timed_login(&h, "alice", &[password("alice"), &code]);
        let what = format!("daemon killed, socket {socket}, on_unavailable deny");
        assert_denied_unavailable(&login, took, NOT_RUNNING_BOUND, &what);
        login.assert_prompts(&[]);
        report.push(format!("{what}: denied in {took:.0?}"));

        let (account, took) = timed_account(&h, "alice");
        let what = format!("daemon killed, socket {socket}, account phase");
        assert_denied_unavailable(&account, took, NOT_RUNNING_BOUND, &what);
        assert!(!account.account_ok(), "{account:?}");

        // "allow": the password decides, with no code asked.
        h.write_config("on_unavailable = \"allow\"\n");
        let (login, took) = timed_login(&h, "alice", &[password("alice")]);
        login.assert_prompts(&[PASSWORD_PROMPT]);
        assert!(login.succeeded(), "allow, right password: {login:?}");
        assert!(took <= NOT_RUNNING_BOUND, "allowed after {took:?}");
        report.push(format!(
            "daemon killed, socket {socket}, on_unavailable allow: password decided in {took:.0?}"
        ));
        let (login, _) = timed_login(&h, "alice", &["not-the-password"]);
        login.assert_prompts(&[PASSWORD_PROMPT]);
        assert_eq!(login.code, 1, "allow, wrong password: {login:?}");
        assert!(!login.authenticated(), "{login:?}");
    }
    assert_eq!(h.lock_state("alice"), (0, false));

    // Killed mid-conversation: the daemon was there, so even "allow"
    // denies; at once, as the answer meets a closed connection.
    h.start_daemon();
    let mut s = h.start_pamtester(SERVICE, "alice", &["authenticate", "acct_mgmt"]);
    assert_eq!(s.next_prompt(), Some(PASSWORD_PROMPT));
    s.answer(password("alice"));
    assert_eq!(s.next_prompt(), Some(CODE_PROMPT));
    h.stop_daemon();
    let answered = Instant::now();
    s.answer(&code);
    let login = s.finish();
    let took = answered.elapsed();
    let what = "daemon killed at the code prompt, on_unavailable allow";
    assert_denied_unavailable(&login, took, NOT_RUNNING_BOUND, what);
    report.push(format!("{what}: denied {took:.0?} after the answer"));

    // Back: logins work again.
    h.write_config("");
    h.start_daemon();
    let login = h.login("alice", &code);
    assert!(login.succeeded(), "after a restart: {login:?}");
    eprintln!("{}", report.join("\n"));
}

#[test]
fn a_stopped_daemon_denies_within_the_reply_timeout_and_never_allows() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let bypass = h.bypass_codes("alice", 2);
    // A daemon that is there but silent is never a reason to let anyone in.
    h.write_config("on_unavailable = \"allow\"\n");
    let mut report = Vec::new();

    // Stopped before the login: the connection is queued, the request
    // sent, and no reply comes.
    {
        let _stopped = Stopped::new(h.daemon_pid());
        let (login, took) = timed_login(&h, "alice", &[password("alice"), &totp(&secret, 1)]);
        let what = "daemon stopped, on_unavailable allow";
        assert_denied_unavailable(&login, took, STALLED_BOUND, what);
        login.assert_prompts(&[]);
        report.push(format!("{what}: denied in {took:.1?}"));
    }
    // SIGCONT: it serves again (and the abandoned request harms no one).
    let login = h.login("alice", &totp(&secret, 1));
    assert!(login.succeeded(), "after SIGCONT: {login:?}");

    // Stopped while the user reads the code prompt: the module's clock
    // starts when it sends the answer.
    let mut s = h.start_pamtester(SERVICE, "alice", &["authenticate", "acct_mgmt"]);
    assert_eq!(s.next_prompt(), Some(PASSWORD_PROMPT));
    s.answer(password("alice"));
    assert_eq!(s.next_prompt(), Some(CODE_PROMPT));
    let stopped = Stopped::new(h.daemon_pid());
    let answered = Instant::now();
    s.answer(&bypass[0]);
    let login = s.finish();
    let took = answered.elapsed();
    let what = "daemon stopped at the code prompt, on_unavailable allow";
    assert_denied_unavailable(&login, took, STALLED_BOUND, what);
    report.push(format!("{what}: denied {took:.1?} after the answer"));
    drop(stopped);

    // After SIGCONT logins work again. (The daemon then goes on with the
    // abandoned login: it may spend that bypass code, and its verdict
    // finds nobody. Failing closed costs the user one code.)
    h.write_config("");
    let login = h.login("alice", &bypass[1]);
    assert!(login.succeeded(), "after SIGCONT: {login:?}");
    assert_eq!(h.lock_state("alice"), (0, false));
    eprintln!("{}", report.join("\n"));
}

/// A user may stop (SIGSTOP) a PAM client of their own — `su`, a screen
/// locker — while it shows the code prompt, and leave it there. The daemon
/// holds no store lock while it waits on a client, so everyone else, the
/// same user's other logins included, goes on.
#[test]
fn a_client_stopped_at_the_code_prompt_blocks_nobody() {
    let h = Harness::new();
    let alice = h.enroll_totp("alice", "phone");
    let bob = h.enroll_totp("bob", "phone");
    let mut parked = park_at_code_prompt(&h, "alice", 3);
    let pids: Vec<u32> = parked.iter().map(|s| s.pty.pid()).collect();
    for &pid in &pids {
        signal(pid, nix::sys::signal::Signal::SIGSTOP);
    }

    let started = Instant::now();
    let login = h.login("bob", &totp(&bob, 1));
    assert!(login.succeeded(), "bob beside stopped clients: {login:?}");
    let bob_took = started.elapsed();
    let wrong = h.login("bob", &wrong_code(&bob));
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert_eq!(h.lock_state("bob"), (1, false), "bob's failure was written");
    let started = Instant::now();
    let login = h.login("alice", &totp(&alice, 1));
    assert!(
        login.succeeded(),
        "alice beside her stopped clients: {login:?}"
    );
    let alice_took = started.elapsed();
    eprintln!(
        "with 3 of alice's clients stopped at the code prompt: bob logged in in {bob_took:.0?}, \
         alice in {alice_took:.0?}"
    );

    // Woken, the stopped logins go on where they were.
    for &pid in &pids {
        signal(pid, nix::sys::signal::Signal::SIGCONT);
    }
    let last = parked.pop().unwrap();
    let wrong = wrong_code(&alice);
    for mut s in parked {
        s.answer(&wrong);
        let login = s.finish();
        assert_eq!(login.code, 1, "{login:?}");
        assert!(
            login.transcript.contains("Wrong verification code"),
            "{login:?}"
        );
    }
    // The replay of a spent code is refused, and counted like the rest.
    let mut last = last;
    last.answer(&totp(&alice, 1));
    let login = last.finish();
    assert_eq!(login.code, 1, "{login:?}");
    assert_eq!(h.lock_state("alice"), (3, false));
    assert_eq!(integrity_check(&h.db), "ok");
}

/// Issue 13, finding 1: phases that only look read a snapshot. With the
/// database's write lock held elsewhere (a long admin transaction; in 0.1
/// a stopped `su`), the account phase — all an SSH key login asks of
/// pam_mfa — still answers at once; before, it waited out the 10 s busy
/// timeout and denied. Code checks need the lock and wait for it.
#[test]
fn the_account_phase_answers_while_the_write_lock_is_held_elsewhere() {
    let h = Harness::new();
    let alice = h.enroll_totp("alice", "phone");
    let holder = rusqlite::Connection::open(&h.db).expect("open the database");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let (login, took) = timed_account(&h, "alice");
    assert!(login.account_ok(), "{login:?}");
    assert!(
        took < Duration::from_secs(5),
        "the account phase waited {took:?} for the write lock"
    );
    eprintln!("account phase with the write lock held elsewhere: {took:.0?}");

    holder
        .execute_batch("ROLLBACK")
        .expect("release the write lock");
    let login = h.login("alice", &totp(&alice, 1));
    assert!(login.succeeded(), "{login:?}");
}

/// pamtester with RLIMIT_FSIZE at one block from the start of its PAM
/// work. (Set from the shell, the limit would stop pam_wrapper, which
/// copies libpam into its own directory before main; a preloaded shim sets
/// it when pamtester calls pam_start.) In 0.1 the module wrote the database
/// from inside such a process; now the daemon does.
fn rlimited_pamtester(h: &Harness, user: &str) -> Session {
    let shim = build_preload_shim(h.dir.path(), "rlimit_shim", RLIMIT_SHIM);
    let mut cmd = h.pamtester_command(SERVICE, user, &["authenticate", "acct_mgmt"]);
    cmd.env(
        "LD_PRELOAD",
        format!("{} libpam_wrapper.so libnss_wrapper.so", shim.display()),
    );
    start_session(cmd)
}

const RLIMIT_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>

/* pam_start(3), first: limits the files this process may write to one
   block (ulimit -f 1), and says so, then goes on to the real pam_start. */
int pam_start(const char *service, const char *user, const void *conv, void **pamh) {
    struct rlimit one = { 512, 512 };
    int (*real)(const char *, const char *, const void *, void **) =
        (int (*)(const char *, const char *, const void *, void **))dlsym(RTLD_NEXT, "pam_start");
    if (setrlimit(RLIMIT_FSIZE, &one) == 0) fprintf(stderr, "RLIMIT_FSIZE=512\n");
    return real(service, user, conv, pamh);
}
"#;

/// A client under a file size limit of one block fails closed or works,
/// but never lets a user in while recording nothing: its wrong code is
/// counted and its valid code spent. Other logins meanwhile are unaffected.
#[test]
fn a_client_under_a_file_size_limit_records_what_it_must() {
    a_client_under_a_file_size_limit_records_what_it_must_with("deny");
}

/// The same with `on_unavailable = "allow"` (issue 13 #2/#3): a limit the
/// caller set is never "MFA unavailable".
#[test]
fn a_client_under_a_file_size_limit_records_what_it_must_in_allow_mode() {
    a_client_under_a_file_size_limit_records_what_it_must_with("allow");
}

fn a_client_under_a_file_size_limit_records_what_it_must_with(on_unavailable: &str) {
    let h = Harness::new();
    h.write_config(&format!(
        "policy = \"optional\"\non_unavailable = \"{on_unavailable}\"\n"
    ));
    let alice = h.enroll_totp("alice", "phone");
    let bob = h.enroll_totp("bob", "phone");
    let bob_bypass = h.bypass_codes("bob", 1);

    let mut s = rlimited_pamtester(&h, "alice");
    assert_eq!(s.next_prompt(), Some(PASSWORD_PROMPT));
    s.answer(password("alice"));
    assert_eq!(s.next_prompt(), Some(CODE_PROMPT));
    // Meanwhile, bob.
    let login = h.login("bob", &totp(&bob, 1));
    assert!(login.succeeded(), "bob beside a limited client: {login:?}");
    s.answer(&wrong_code(&alice));
    let wrong = s.finish();
    assert!(
        wrong.transcript.contains("RLIMIT_FSIZE=512"),
        "the limit was set: {wrong:?}"
    );
    assert_no_signal(&wrong, "wrong code under RLIMIT_FSIZE");
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(!wrong.authenticated(), "{wrong:?}");
    assert_eq!(
        h.lock_state("alice"),
        (1, false),
        "the failure was recorded"
    );

    let code = totp(&alice, 1);
    let valid = rlimited_pamtester(&h, "alice").answer_in_order(&[password("alice"), &code]);
    assert_no_signal(&valid, "valid code under RLIMIT_FSIZE");
    if valid.authenticated() {
        assert!(valid.succeeded(), "{valid:?}");
        assert_eq!(
            h.lock_state("alice"),
            (0, false),
            "the success was recorded"
        );
        let replay = h.login("alice", &code);
        assert!(!replay.authenticated(), "the code was spent: {replay:?}");
    } else {
        assert_eq!(valid.code, 1, "fails closed: {valid:?}");
    }
    let login = h.login("bob", &bob_bypass[0]);
    assert!(
        login.succeeded(),
        "bob after the limited clients: {login:?}"
    );
    assert_eq!(integrity_check(&h.db), "ok");
}

/// `sh -c 'ulimit LIMIT; trap "" XFSZ; exec DAEMON'`: what an
/// administrator's shell with a file size limit hands to a daemon started by
/// hand (issue 13 #2/#3: 0.1's `su` under such a limit logged in with the
/// password alone).
fn file_size_limited_shell(limit: &str) -> std::process::Command {
    let mut sh = std::process::Command::new("sh");
    sh.args([
        "-c",
        &format!("ulimit {limit} && trap '' XFSZ && exec \"$0\" \"$@\""),
    ]);
    sh
}

/// The soft and hard "Max file size" of /proc/PID/limits.
fn max_file_size(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max file size"))
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[3].to_owned(), words[4].to_owned())
}

/// Wrong codes, one per mode: each counted and refused; then `valid`
/// lets in and ends the run of failures.
fn wrong_codes_are_counted(h: &Harness, secret: &str, valid: &str) {
    for mode in ["deny", "allow"] {
        h.write_config(&format!(
            "policy = \"optional\"\non_unavailable = \"{mode}\"\n"
        ));
        let before = h.lock_state("alice").0;
        let wrong = h.login("alice", &wrong_code(secret));
        assert_no_signal(&wrong, "wrong code, daemon under RLIMIT_FSIZE");
        assert_eq!(wrong.code, 1, "{mode}: {wrong:?}");
        assert!(!wrong.authenticated(), "{mode}: {wrong:?}");
        assert_eq!(
            h.lock_state("alice"),
            (before + 1, false),
            "{mode}: the failure was recorded"
        );
    }
    let ok = h.login("alice", valid);
    assert!(ok.succeeded(), "{ok:?}");
    assert_eq!(h.lock_state("alice"), (0, false));
}

/// A daemon started under a file size limit of one block lifts it: wrong
/// codes are counted and refused, valid ones let in, in both
/// `on_unavailable` modes. A hard limit it cannot lift (no
/// CAP_SYS_RESOURCE, as in some containers) leaves every write failing
/// with EFBIG: then every login is denied, "allow" or not, since a failure
/// that cannot be recorded must not become a way to guess.
#[test]
fn a_daemon_started_under_a_file_size_limit_counts_and_never_allows() {
    if !root_or_skip("a_daemon_started_under_a_file_size_limit_counts_and_never_allows") {
        return;
    }
    let h = Harness::new();
    let alice = h.enroll_totp("alice", "phone");
    let bypass = h.bypass_codes("alice", 2);

    // A soft limit: any process may raise it to the hard one.
    h.start_daemon_under(|cmd| run_under(file_size_limited_shell("-S -f 1"), &cmd));
    let (soft, _) = max_file_size(h.daemon_pid());
    assert_eq!(soft, "unlimited", "the daemon lifted its soft limit");
    wrong_codes_are_counted(&h, &alice, &bypass[0]);

    // A hard limit: root lifts it where it holds CAP_SYS_RESOURCE.
    h.start_daemon_under(|cmd| run_under(file_size_limited_shell("-f 1"), &cmd));
    let (soft, hard) = max_file_size(h.daemon_pid());
    if soft == "unlimited" {
        wrong_codes_are_counted(&h, &alice, &bypass[1]);
    } else {
        eprintln!("the daemon could not lift a hard limit ({soft}/{hard}): checking it denies");
        let before = h.database_dump();
        for mode in ["deny", "allow"] {
            h.write_config(&format!(
                "policy = \"optional\"\non_unavailable = \"{mode}\"\n"
            ));
            for code in [wrong_code(&alice), totp(&alice, 1)] {
                let login = h
                    .start_pamtester(SERVICE, "alice", &["authenticate", "acct_mgmt"])
                    .answer_in_order(&[password("alice"), &code]);
                assert_no_signal(&login, "daemon under a hard RLIMIT_FSIZE");
                assert_eq!(login.code, 1, "{mode}: {login:?}");
                assert!(!login.authenticated(), "{mode}: never allowed: {login:?}");
            }
        }
        assert_eq!(h.database_dump(), before, "nothing was half-written");
        h.start_daemon();
        wrong_codes_are_counted(&h, &alice, &bypass[1]);
    }
    assert_eq!(integrity_check(&h.db), "ok");
}
