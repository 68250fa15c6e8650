//! What is on disk when a login returns, seen through strace: a counted
//! failure, a lock and a spent bypass code are synced before the user hears
//! the answer; a TOTP success is not (see `Tx::commit_unsynced`). The store
//! is the daemon's, so the daemon is traced (every thread, the ones it
//! starts for connections included) while a login runs.

use crate::common::*;
use crate::support::checkpoint;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs one login while `strace -f -y -p DAEMON` watches the daemon, and
/// returns the login with the paths of every file the daemon passed to
/// fsync or fdatasync. `step` names the trace.
fn login_traced(h: &Harness, step: &str, user: &str, code: &str) -> (Login, Vec<String>) {
    let trace = h.dir.path().join(format!("strace.{step}"));
    let daemon = h.daemon_pid();
    let mut strace = Command::new("strace")
        .args(["-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg("-p")
        .arg(daemon.to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("run strace");
    wait_until_traced(daemon, &mut strace);
    let login = h
        .start_pamtester(SERVICE, user, &["authenticate", "acct_mgmt"])
        .answer_in_order(&[password(user), code]);
    // The verdict comes after the commit (and its sync, if any): by now
    // every sync of this login has been made. SIGINT detaches strace.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(strace.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    // strace detaches, then ends by the same signal.
    let status = strace.wait().unwrap();
    assert!(
        status.success() || status.signal() == Some(libc::SIGINT),
        "strace: {status}"
    );
    (login, synced_paths(&trace))
}

/// Waits until strace has attached to the daemon's main thread (which
/// accepts the connections: the threads it starts are traced from birth).
fn wait_until_traced(pid: u32, strace: &mut std::process::Child) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let tracer = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .map(|t| t.trim().to_owned());
        if tracer.is_some_and(|t| t != "0") {
            return;
        }
        if let Ok(Some(s)) = strace.try_wait() {
            panic!("strace -p {pid} ended ({s}) before attaching");
        }
        assert!(Instant::now() < deadline, "strace did not attach to {pid}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `1234 fdatasync(5</tmp/x/db/mfa.sqlite3-wal>) = 0` -> the path.
fn synced_paths(trace: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(trace).expect("strace output");
    text.lines()
        .filter_map(|l| {
            let start = l.find('<')? + 1;
            let end = l[start..].find('>')? + start;
            Some(l[start..end].to_owned())
        })
        .collect()
}

fn strace_or_skip(test: &str) -> bool {
    let ok = Command::new("strace")
        .args(["-qq", "-e", "trace=none", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("{test}: skipped (strace missing or ptrace not allowed here)");
    }
    ok
}

#[test]
fn a_failure_and_a_spent_bypass_code_are_synced_before_the_answer_a_totp_success_is_not() {
    if !strace_or_skip("durability") {
        return;
    }
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let bypass = h.bypass_codes("alice", 2);
    let wal = format!("{}-wal", h.db.display());
    // Start from an empty WAL. Closing a store whose WAL has grown
    // checkpoints it, and the first write after that syncs the new WAL's
    // header: fsyncs that come every few logins and belong to no one login.
    checkpoint(&h.db);

    let (login, synced) = login_traced(&h, "failure", "alice", &wrong_code(&secret));
    assert!(!login.authenticated(), "{login:?}");
    assert!(
        synced.contains(&wal),
        "a counted failure must reach the disk before the answer; synced: {synced:?}"
    );

    let (login, synced) = login_traced(&h, "bypass", "alice", &bypass[0]);
    assert!(login.succeeded(), "{login:?}");
    assert!(
        synced.contains(&wal),
        "a spent bypass code must stay spent after a power cut; synced: {synced:?}"
    );

    let code = totp(&secret, 1);
    let (login, synced) = login_traced(&h, "totp", "alice", &code);
    assert!(login.succeeded(), "{login:?}");
    assert!(
        synced.is_empty(),
        "a TOTP success is not worth an fsync per login; synced: {synced:?}"
    );
    // Not synced is still committed: the next login sees the replay step.
    let replay = h.login("alice", &code);
    assert!(!replay.authenticated(), "{replay:?}");
}
