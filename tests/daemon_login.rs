//! A PAM application that does not run as root — a screen locker — logs
//! its own user in through `mfa serve`: pamtester run as a real account
//! under pam_wrapper, with a stack whose auth section holds only
//! `pam_mfa.so socket=...`, against a daemon running as root on a
//! root-only config and database (tests/common/daemon.rs).
//!
//! Needs root, like tests/daemon.rs: it adds accounts and runs the
//! locker as them, since the daemon decides from SO_PEERCRED and the
//! system's own NSS.

mod common;

use common::daemon::*;
use common::*;
use pam_mfa::internals::protocol::{Mode, Verdict};
use serde_json::Value;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;

const LOCKER: &str = "mfa-locker";

/// A screen locker's PAM service, readable by the test accounts.
struct Locker {
    services: PathBuf,
}

impl Locker {
    fn new(d: &Daemon) -> Locker {
        let services = d.public.path().join("services");
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&services)
            .unwrap();
        // The mode is not left to the umask: the accounts must read it.
        std::fs::set_permissions(&services, std::fs::Permissions::from_mode(0o755)).unwrap();
        let module = d.public_module();
        let line = format!("{} socket={}", module.display(), d.socket.display());
        write_file(
            &services.join(LOCKER),
            &format!("auth    required {line}\naccount required {line}\n"),
            0o644,
        );
        Locker { services }
    }

    /// `pamtester -v mfa-locker TARGET authenticate acct_mgmt`, run as
    /// `user` with its own groups and a clean environment. pam_wrapper is
    /// preloaded into pamtester only (`env` after setpriv): in setpriv it
    /// would make a directory of its own that nobody removes.
    fn command(&self, user: &TestUser, target: &str) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", &user.uid.to_string()])
            .args(["--regid", &user.gid.to_string()])
            .args(["--init-groups", "--", "/usr/bin/env", "-i"])
            .args([
                "PATH=/usr/bin:/bin",
                "LC_ALL=C.UTF-8",
                "LD_PRELOAD=libpam_wrapper.so",
                "PAM_WRAPPER=1",
            ])
            .arg(format!(
                "PAM_WRAPPER_SERVICE_DIR={}",
                self.services.display()
            ))
            .args([
                "pamtester",
                "-v",
                LOCKER,
                target,
                "authenticate",
                "acct_mgmt",
            ])
            .current_dir("/")
            .env_clear();
        cmd
    }

    /// The locker run by `user` for `target`'s account, answering each
    /// prompt with the next of `answers`.
    fn login(&self, user: &TestUser, target: &str, answers: &[&str]) -> Login {
        let login = start_session(self.command(user, target)).answer_in_order(answers);
        assert!(
            !login
                .transcript
                .contains("Multi-factor authentication is unavailable"),
            "the locker did not reach the daemon:\n{}",
            login.transcript
        );
        login
    }
}

#[test]
fn a_screen_locker_running_as_the_user_checks_that_user_only() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let bob = TestUser::create(&[]);
    let alice_secret = d.cli.enroll_totp(&alice.name, "phone");
    let bob_secret = d.cli.enroll_totp(&bob.name, "phone");
    let locker = Locker::new(&d);
    let as_alice = format!("uid={}", alice.uid);

    // Alice's locker, for alice: her current code unlocks it.
    let login = locker.login(&alice, &alice.name, &[&totp(&alice_secret, 1)]);
    assert!(login.succeeded(), "{}", login.transcript);
    login.assert_prompts(&[CODE_PROMPT]);
    d.logged(&[
        &format!("user={} event=login", alice.name),
        "service=\"mfa-locker\"",
        &as_alice,
        "result=success method=totp",
    ]);
    // Not a code that happens to work: a wrong one is refused.
    let wrong = wrong_code(&alice_secret);
    let login = locker.login(&alice, &alice.name, &[&wrong]);
    assert!(!login.authenticated(), "{}", login.transcript);
    assert_ne!(login.code, 0);
    login.assert_prompts(&[CODE_PROMPT]);

    // Alice's locker, for bob, with bob's valid code: refused before any
    // question, logged with who asked, and nothing of bob's touched.
    let login = locker.login(&alice, &bob.name, &[&totp(&bob_secret, 1)]);
    assert!(!login.authenticated(), "{}", login.transcript);
    assert_ne!(login.code, 0, "{}", login.transcript);
    login.assert_prompts(&[]);
    d.logged(&[
        &format!("user={} event=login", bob.name),
        &as_alice,
        "result=refused",
    ]);
    assert_eq!(d.cli.lock_state(&bob.name), (0, false));
    // The same for root's account and for one that does not exist.
    for target in ["root", "mfad-no-such-user"] {
        let login = locker.login(&alice, target, &["123456"]);
        assert!(!login.authenticated(), "{target}: {}", login.transcript);
        login.assert_prompts(&[]);
        d.logged(&[
            &format!("user={target} event=login"),
            &as_alice,
            "result=refused",
        ]);
    }

    // Every mode is refused for another user's account, authfail too: a
    // user cannot count failures against someone else and lock them out.
    for mode in [
        Mode::Preauth,
        Mode::Authfail,
        Mode::SecondFactor,
        Mode::Account,
    ] {
        let said = converse(d.connect_as(&alice), &login_line(mode, &bob.name), &["1"]);
        assert_eq!(said.verdict, Some(Verdict::Refused), "{mode:?}: {said:?}");
        // Told why, before any question; after a wrong password (authfail)
        // nothing, as with "unavailable".
        let told = format!("{:?}", said.messages);
        if mode == Mode::Authfail {
            assert!(said.messages.is_empty(), "{mode:?}: {said:?}");
        } else {
            assert!(
                told.contains("may check only the account it runs as"),
                "{mode:?}: {said:?}"
            );
        }
    }
    assert_eq!(d.cli.lock_state(&bob.name), (0, false));
    // ...which is not for want of authfail working: from root (sshd's
    // side) it counts, and from alice for her own account too.
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::Authfail, &bob.name),
        &[],
    );
    assert_ne!(said.verdict, Some(Verdict::Refused), "{said:?}");
    assert_eq!(d.cli.lock_state(&bob.name), (1, false));
    let before = d.cli.lock_state(&alice.name).0;
    let said = converse(
        d.connect_as(&alice),
        &login_line(Mode::Authfail, &alice.name),
        &[],
    );
    assert_ne!(said.verdict, Some(Verdict::Refused), "{said:?}");
    assert_eq!(d.cli.lock_state(&alice.name), (before + 1, false));

    // Bob's code was not spent by the refused attempt: his own locker
    // takes it.
    let login = locker.login(&bob, &bob.name, &[&totp(&bob_secret, 1)]);
    assert!(login.succeeded(), "{}", login.transcript);
    assert_eq!(d.cli.lock_state(&bob.name), (0, false));
    d.assert_alive();
    d.assert_no_panic();
}

#[test]
fn a_wrong_code_at_a_screen_locker_counts_toward_lockout() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let a = alice.name.as_str();
    let secret = d.cli.enroll_totp(a, "phone");
    let locker = Locker::new(&d);
    let wrong = wrong_code(&secret);

    for n in 1..=6 {
        let login = locker.login(&alice, a, &[&wrong]);
        assert!(!login.authenticated(), "attempt {n}: {}", login.transcript);
        login.assert_prompts(&[CODE_PROMPT]);
        assert_eq!(d.cli.lock_state(a), (n, n == 6), "attempt {n}");
    }
    d.logged(&[&format!("user={a} event=locked"), "failures=6"]);
    // In the audit trail, as from any other service.
    let audit = d.cli.mfa_json(Some(a), &["audit"]);
    let failures = audit
        .as_array()
        .unwrap_or_else(|| panic!("audit is not a list: {audit}"))
        .iter()
        .filter(|e| {
            e["event"] == "failure"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("service=mfa-locker"))
        })
        .count();
    assert_eq!(failures, 6, "{audit}");

    // Locked: the right code no longer unlocks the screen, and the user
    // is told why.
    let login = locker.login(&alice, a, &[&totp(&secret, 1)]);
    assert!(!login.authenticated(), "{}", login.transcript);
    assert!(login.said_locked(), "{}", login.transcript);
    assert_eq!(d.cli.lock_state(a), (6, true));

    // Until an administrator unlocks it.
    d.cli.mfa_json(None, &["admin", "unlock", a]);
    let login = locker.login(&alice, a, &[&totp(&secret, 1)]);
    assert!(login.succeeded(), "{}", login.transcript);
    assert_eq!(d.cli.lock_state(a), (0, false));
    let status: Value = d.cli.mfa_json(Some(a), &["status"]);
    assert_eq!(status["locked"], Value::Bool(false), "{status}");
    d.assert_alive();
    d.assert_no_panic();
}

/// A second passwd entry for a uid (`useradd -o -u UID NAME`), removed on drop.
struct Alias {
    name: String,
}

impl Alias {
    fn of(user: &TestUser) -> Alias {
        let name = format!("{}a", user.name);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let out = Command::new("useradd")
                .args([
                    "-o",
                    "-u",
                    &user.uid.to_string(),
                    "-g",
                    &user.gid.to_string(),
                ])
                .args([
                    "-M",
                    "-d",
                    "/nonexistent",
                    "-s",
                    "/usr/sbin/nologin",
                    "-c",
                    GECOS,
                ])
                .arg(&name)
                .output()
                .unwrap();
            if out.status.success() {
                return Alias { name };
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("lock") && std::time::Instant::now() < deadline,
                "useradd -o: {stderr}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Alias {
    fn drop(&mut self) {
        for _ in 0..100 {
            let out = Command::new("userdel").arg(&self.name).output();
            if out.is_ok_and(|o| o.status.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Issue 13, finding 11: an alias of a user with devices (same uid, own
/// name and password) logged in with the password alone. The second
/// factor belongs to the uid: the alias gets the factors, the lockout and
/// the policy of the uid's primary name.
#[test]
fn an_alias_of_a_uid_has_the_second_factor_of_its_primary_name() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let secret = d.cli.enroll_totp(&alice.name, "phone");
    let alias = Alias::of(&alice);
    let locker = Locker::new(&d);

    // The alias is asked for alice's code, and a wrong one counts on alice.
    let login = locker.login(&alice, &alias.name, &["000000"]);
    login.assert_prompts(&[CODE_PROMPT]);
    assert!(!login.succeeded(), "{}", login.transcript);
    assert_eq!(d.cli.lock_state(&alice.name), (1, false));
    // Alice's code lets the alias in.
    let login = locker.login(&alice, &alias.name, &[&totp(&secret, 1)]);
    assert!(login.succeeded(), "{}", login.transcript);
    assert_eq!(d.cli.lock_state(&alice.name), (0, false));
    d.logged(&[
        &format!("user={}", alias.name),
        &format!("account={}", alice.name),
    ]);

    // Locked as alice, locked as the alias.
    for _ in 0..6 {
        locker.login(&alice, &alice.name, &["000000"]);
    }
    assert!(d.cli.lock_state(&alice.name).1);
    let login = locker.login(&alice, &alias.name, &[&totp(&secret, 2)]);
    assert!(!login.succeeded(), "{}", login.transcript);
    assert!(login.said_locked(), "{}", login.transcript);
    // Root's `mfa` means the same account by either name.
    let shown = d.cli.mfa_json(None, &["admin", "show", &alias.name]);
    assert_eq!(shown["locked"], Value::Bool(true), "{shown}");
    let devices = d.cli.mfa_json(Some(&alias.name), &["device", "list"]);
    assert_eq!(device_tuples(&devices), [totp_device("phone", true)]);
    // No row was ever written under the alias's name.
    let trail = d.cli.mfa_json(None, &["audit", "--user", &alias.name]);
    assert_eq!(trail.as_array().map(Vec::len), Some(0), "{trail}");
}

/// A stand-in for `su`: setuid root, calls `pam_start_confdir` and
/// `pam_authenticate`, prints every PAM message on a line of its own and
/// answers prompts from stdin.
const SETUID_PAM: &str = r#"
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data) {
    struct pam_response *r = calloc(n, sizeof *r);
    (void)data;
    for (int i = 0; i < n; i++) {
        printf("%s\n", msg[i]->msg);
        fflush(stdout);
        if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON) {
            char line[256];
            if (!fgets(line, sizeof line, stdin)) { free(r); return PAM_CONV_ERR; }
            line[strcspn(line, "\n")] = 0;
            r[i].resp = strdup(line);
        }
    }
    *resp = r;
    return PAM_SUCCESS;
}

int main(int argc, char **argv) {
    struct pam_conv c = { conv, NULL };
    pam_handle_t *h;
    if (argc != 4) return 2;
    int rc = pam_start_confdir(argv[2], argv[3], &c, argv[1], &h);
    if (rc != PAM_SUCCESS) { printf("pam_start_confdir: %d\n", rc); return 2; }
    rc = pam_authenticate(h, 0);
    printf("result: %s\n", pam_strerror(h, rc));
    fflush(stdout);
    pam_end(h, rc);
    return rc == PAM_SUCCESS ? 0 : 1;
}
"#;

/// Builds [`SETUID_PAM`] into `dir`, owned by root with mode 4755.
fn build_setuid_pam(dir: &std::path::Path) -> PathBuf {
    let src = dir.join("setuid_pam.c");
    let bin = dir.join("setuid_pam");
    std::fs::write(&src, SETUID_PAM).unwrap();
    let out = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .arg("-lpam")
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::os::unix::fs::chown(&bin, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o4755)).unwrap();
    bin
}

/// Reads `reader`'s lines until one equals `wanted` (or the stream ends).
fn read_until(reader: &mut impl std::io::BufRead, wanted: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return seen;
        }
        let line = line.trim_end_matches('\n').to_owned();
        let done = line == wanted;
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// Issue 13 #1: in 0.1 a user who SIGSTOPped `su` while it held the
/// store's write lock (PBKDF2 on a bypass-shaped code inside `BEGIN
/// IMMEDIATE`) froze every login and root's `mfa`. Now no process a user can
/// signal holds the store: a setuid PAM program run by an ordinary user and
/// stopped at the code prompt, or right after sending a bypass-shaped code,
/// delays nobody: another user's login and root's `mfa status` go through
/// at once meanwhile.
#[test]
fn a_stopped_setuid_pam_program_blocks_no_other_login_nor_roots_mfa() {
    if !can_run() {
        return;
    }
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::io::Write;
    use std::time::{Duration, Instant};
    let d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let bob = TestUser::create(&[]);
    let alice_secret = d.cli.enroll_totp(&alice.name, "phone");
    d.cli.enroll_totp(&bob.name, "phone");
    let bob_bypass = d.cli.bypass_codes(&bob.name, 2);
    let services = d.public.path().join("setuid-services");
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&services)
        .unwrap();
    std::fs::set_permissions(&services, std::fs::Permissions::from_mode(0o755)).unwrap();
    let line = format!(
        "{} socket={}",
        d.public_module().display(),
        d.socket.display()
    );
    write_file(
        &services.join("su-test"),
        &format!("auth required {line}\n"),
        0o644,
    );
    let program = build_setuid_pam(d.public.path());

    // Twice: stopped at the prompt, and stopped just after answering it
    // with a bypass-shaped code (the daemon runs PBKDF2 on it).
    for (round, answer_first) in [false, true].into_iter().enumerate() {
        let mut child = Command::new("setpriv")
            .args(["--reuid", &alice.uid.to_string()])
            .args(["--regid", &alice.gid.to_string()])
            .args(["--init-groups", "--"])
            .arg(&program)
            .arg(&services)
            .arg("su-test")
            .arg(&alice.name)
            .current_dir("/")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the setuid program");
        // A failed assertion must not leave a stopped root process behind.
        struct KillOnDrop(Pid);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = kill(self.0, Signal::SIGKILL);
            }
        }
        let pid = Pid::from_raw(child.id() as i32);
        let _guard = KillOnDrop(pid);
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let seen = read_until(&mut stdout, CODE_PROMPT);
        assert_eq!(
            seen.last().map(String::as_str),
            Some(CODE_PROMPT),
            "{seen:?}"
        );
        if answer_first {
            stdin.write_all(b"abcd-efgh-jkmn\n").unwrap();
        }
        kill(pid, Signal::SIGSTOP).unwrap();

        let started = Instant::now();
        let said = converse(
            d.connect_as_root(),
            &login_line(Mode::SecondFactor, &bob.name),
            &[&bob_bypass[round]],
        );
        assert_eq!(
            said.verdict,
            Some(Verdict::Success),
            "bob meanwhile: {said:?}"
        );
        let status = d.cli.mfa(Some(&alice.name), &["status"]);
        assert!(status.status.success(), "root's mfa meanwhile: {status:?}");
        let admin = d.cli.mfa(None, &["admin", "unlock", &bob.name]);
        assert!(
            admin.status.success(),
            "root's mfa writes meanwhile: {admin:?}"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "others waited {took:?}");

        kill(pid, Signal::SIGCONT).unwrap();
        if !answer_first {
            stdin
                .write_all(format!("{}\n", totp(&alice_secret, 1)).as_bytes())
                .unwrap();
        }
        let rest = read_until(&mut stdout, "");
        let status = child.wait().unwrap();
        let result = rest.iter().find(|l| l.starts_with("result: ")).cloned();
        if answer_first {
            assert_eq!(status.code(), Some(1), "{rest:?}");
            assert_eq!(
                result.as_deref(),
                Some("result: Authentication failure"),
                "{rest:?}"
            );
        } else {
            assert!(status.success(), "{rest:?}");
            assert_eq!(result.as_deref(), Some("result: Success"), "{rest:?}");
        }
    }
}
