//! Issue 14, what a sysadmin and users meet first: the messages of the
//! `mfa` command and of logins, through the real thing. Root's `mfa` on
//! the database, ordinary users' `mfa` through `mfa serve` as real
//! accounts (on a terminal where echo and retries matter), and logins
//! through pamtester and the real libpam (pam_wrapper).
//!
//! The daemon tests need root, like tests/daemon.rs; the pamtester ones
//! (`Harness`) do not.

mod common;

use common::daemon::*;
use common::pty::{self, Pty};
use common::*;
use pam_mfa::internals::error::exit;
use std::process::Command;

/// The SMS outbox of a daemon whose texts go to a file.
fn with_texts(d: &Daemon, extra: &str) -> std::path::PathBuf {
    let outbox = d.dir.path().join("sms-outbox");
    d.write_config(&format!(
        "policy = \"optional\"\n{extra}[sms]\nbackend = \"file\"\npath = \"{}\"\n",
        outbox.display()
    ));
    outbox
}

/// The last code of `digits` digits texted to the outbox.
fn last_texted(outbox: &std::path::Path, digits: usize) -> String {
    let text = std::fs::read_to_string(outbox).unwrap_or_default();
    let last = text.lines().last().expect("a text was sent");
    let message = last.split_once('\t').expect("phone<TAB>text").1;
    message
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == digits)
        .unwrap_or_else(|| panic!("no {digits}-digit code in {last:?}"))
        .to_owned()
}

fn texts(outbox: &std::path::Path) -> usize {
    std::fs::read_to_string(outbox)
        .unwrap_or_default()
        .lines()
        .count()
}

/// A PIN that is not `pin`.
fn other_pin(pin: &str) -> String {
    format!("{:04}", (pin.parse::<u32>().unwrap() + 1) % 10_000)
}

/// Gives `user` a verified phone, by root's `mfa`, and nothing else.
fn phone_only(d: &Daemon, outbox: &std::path::Path, user: &str) {
    let add = d.cli.mfa(
        Some(user),
        &["device", "add", "sms", "+15551234567", "--no-verify"],
    );
    assert!(add.status.success(), "{add:?}");
    let pin = last_texted(outbox, 4);
    let verify = d.cli.mfa(Some(user), &["device", "verify", "sms", &pin]);
    assert!(verify.status.success(), "{verify:?}");
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ------------------------------------------------------------------ item 1

/// A `policy = ...` appended below `[sms]`: logins are denied with the
/// one line users see, and root's `mfa` (run with a relative --config)
/// names the key, its section, the fix and the config's full path.
#[test]
fn a_key_below_a_section_denies_with_a_line_and_root_learns_where_it_is() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    h.write_config("policy = \"optional\"\n\n[sms]\nbackend = \"none\"\npolicy = \"required\"\n");

    let login = h.login("alice", &totp(&secret, 1));
    assert!(!login.authenticated(), "{login:?}");
    assert!(
        login.transcript.contains(
            "Multi-factor authentication is unavailable on this host; contact your administrator."
        ),
        "{login:?}"
    );

    let out = Command::new(mfa_bin())
        .current_dir(h.dir.path())
        .args(["--config", "pam_mfa.toml", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::UNAVAILABLE), "{out:?}");
    let full = std::fs::canonicalize(&h.config).unwrap();
    let full = full.display();
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "mfa: {full}:6: key `policy` is in section [sms]; move it above the first [section] of {full}"
        )
    );
}

// ------------------------------------------------------------------ item 9

/// `admin unlock` and `admin temp-code` refuse a name the system does not
/// know with the same words and exit code; a real name still unlocks.
#[test]
fn unlock_and_temp_code_refuse_an_unknown_name_the_same_way() {
    let h = Harness::new();
    let unlock = h.mfa(None, &["admin", "unlock", "alcie"]);
    let temp = h.mfa(None, &["admin", "temp-code", "alcie", "--show"]);
    assert_eq!(unlock.status.code(), Some(exit::NOT_FOUND), "{unlock:?}");
    assert_eq!(temp.status.code(), Some(exit::NOT_FOUND), "{temp:?}");
    assert_eq!(stderr(&unlock), stderr(&temp));
    assert!(
        stderr(&unlock).contains("there is no user alcie on this system"),
        "{unlock:?}"
    );
    assert!(stdout(&unlock).is_empty(), "{unlock:?}");
    let json = h.mfa(None, &["--json", "admin", "unlock", "alcie"]);
    assert!(stdout(&json).contains("\"not-found\""), "{json:?}");

    let ok = h.mfa(None, &["admin", "unlock", "alice"]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(stdout(&ok).contains("alice was not locked"), "{ok:?}");
}

// ------------------------------------------------------------------ item 8

/// Root working on another account is told commands that act on that
/// account: `--user NAME` in every hint.
#[test]
fn hints_for_another_account_name_it() {
    let h = Harness::new();
    let outbox = h.dir.path().join("sms-outbox");
    h.write_config(&format!(
        "policy = \"optional\"\n[sms]\nbackend = \"file\"\npath = \"{}\"\n",
        outbox.display()
    ));
    let add = h.mfa(
        Some("alice"),
        &["device", "add", "sms", "5551234567", "--no-verify"],
    );
    assert!(add.status.success(), "{add:?}");
    assert!(
        stdout(&add).contains("finish with `mfa --user alice device verify sms PIN`"),
        "{add:?}"
    );
    let again = h.mfa(
        Some("alice"),
        &["device", "add", "sms", "5551234567", "--no-verify"],
    );
    assert_eq!(again.status.code(), Some(exit::CONFLICT), "{again:?}");
    assert!(
        stderr(&again).contains("delete it first with `mfa --user alice device delete sms`"),
        "{again:?}"
    );
    let missing = h.mfa(Some("alice"), &["device", "delete", "tablet"]);
    assert!(
        stderr(&missing).contains("see `mfa --user alice device list`"),
        "{missing:?}"
    );
    let none = h.mfa(Some("bob"), &["device", "list"]);
    assert!(
        stdout(&none).contains("Add one with `mfa --user bob device add totp`"),
        "{none:?}"
    );
    // Three wrong PINs: the last one says how to start again, for alice.
    let pin = last_texted(&outbox, 4);
    for _ in 0..3 {
        let _ = h.mfa(
            Some("alice"),
            &["device", "verify", "sms", &other_pin(&pin)],
        );
    }
    let wrong = h.mfa(Some("alice"), &["device", "verify", "sms", &pin]);
    assert!(
        stderr(&wrong).contains("`mfa --user alice device delete sms`"),
        "{wrong:?}"
    );
    // Root's own account: no --user.
    let own = h.mfa(None, &["device", "delete", "tablet"]);
    assert!(stderr(&own).contains("see `mfa device list`"), "{own:?}");
}

// ------------------------------------------------------------------ item 3

/// A user whose only device is a phone is texted a step-up code (counted
/// by the text limits) and can generate bypass codes with it; the prompt
/// offers an administrator's temporary code too.
#[test]
fn a_phone_only_user_is_texted_a_step_up_code() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let outbox = with_texts(&d, "");
    let alice = TestUser::create(&[]);
    phone_only(&d, &outbox, &alice.name);
    let before = texts(&outbox);

    let mut term = Pty::spawn(d.command(&alice, "bypass generate --count 2"));
    term.expect("one was texted to", TIMEOUT);
    term.expect("or ask an administrator for a temporary code", TIMEOUT);
    term.expect("Current verification code: ", TIMEOUT);
    assert_eq!(texts(&outbox), before + 1, "one text");
    term.send_line(&last_texted(&outbox, 7));
    let (status, transcript) = term.finish(TIMEOUT);
    assert_eq!(pty::code(status), 0, "{transcript}");
    let status = d.cli.mfa_json(Some(&alice.name), &["status"]);
    assert_eq!(status["bypass_codes_left"], 2, "{status}");

    // Without a terminal (a script), the refusal says the same.
    let ran = d.client(&alice, "bypass generate");
    ran.assert_exit(exit::WRONG_CODE)
        .assert_stderr("one was texted to")
        .assert_stderr("or ask an administrator for a temporary code");

    // The texts count toward the hourly limit like any other.
    let bob = TestUser::create(&[]);
    let _ = with_texts(&d, "");
    phone_only(&d, &outbox, &bob.name);
    d.write_config(&format!(
        "policy = \"optional\"\n[sms]\nbackend = \"file\"\npath = \"{}\"\nmax_per_user_hour = 1\n",
        outbox.display()
    ));
    let sent = texts(&outbox);
    let ran = d.client(&bob, "bypass generate");
    ran.assert_exit(exit::WRONG_CODE)
        .assert_stderr("none could be texted")
        .assert_stderr("Too many text messages")
        .assert_stderr("or ask an administrator for a temporary code");
    assert_eq!(texts(&outbox), sent, "no text over the limit");

    // A user with an app and a phone gets a text only when asking for it.
    let carol = TestUser::create(&[]);
    let _ = with_texts(&d, "");
    let (_secret, _) = d.enroll(&carol, "app");
    let add = d.cli.mfa(
        Some(&carol.name),
        &["device", "add", "sms", "+15557654321", "--no-verify"],
    );
    assert!(add.status.success(), "{add:?}");
    let pin = last_texted(&outbox, 4);
    let verify = d
        .cli
        .mfa(Some(&carol.name), &["device", "verify", "sms", &pin]);
    assert!(verify.status.success(), "{verify:?}");
    let sent = texts(&outbox);
    let ran = d.client(&carol, "bypass generate");
    ran.assert_exit(exit::WRONG_CODE)
        .assert_stderr("answer `sms` to have one texted");
    assert_eq!(texts(&outbox), sent, "not texted unasked");
    let ran = d.client(&carol, "--code sms bypass generate");
    ran.assert_exit(exit::WRONG_CODE)
        .assert_stderr("one was texted to");
    assert_eq!(texts(&outbox), sent + 1);
    let code = last_texted(&outbox, 7);
    d.client(&carol, &format!("--code {code} bypass generate"))
        .assert_exit(exit::OK);
}

// ------------------------------------------------------------ items 5, 11

/// `device add totp --name phone` as `user`, waiting at the code prompt.
fn adding_phone_app(d: &Daemon, user: &TestUser) -> Pty {
    let mut term = Pty::spawn(d.command(user, "device add totp --name phone"));
    term.expect(ENROLL_PROMPT, TIMEOUT);
    term
}

/// Ctrl-C at a hidden prompt ends the command as Ctrl-C does, and leaves
/// the terminal echoing: the shell and the commands after it are not left
/// typing blind.
#[test]
fn ctrl_c_at_a_hidden_prompt_gives_the_terminal_its_echo_back() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let mut term = adding_phone_app(&d, &alice);
    assert!(!term.echoes(), "echo is off at the prompt");
    term.send_raw(b"12\x03");
    let status = term.wait(TIMEOUT);
    assert_eq!(pty::code(status), 128 + 2, "{}", term.transcript());
    assert!(term.echoes(), "echo still off after Ctrl-C");
}

/// `device add totp` through the daemon: the QR code, then the code is
/// asked with echo off; a wrong code is asked again; no "finish later"
/// hint when it ends verified, and one naming the command when it ends
/// pending.
#[test]
fn device_add_totp_asks_again_hides_the_code_and_hints_only_when_left_pending() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let mut term = adding_phone_app(&d, &alice);
    let shown = term.transcript();
    assert!(has_qr(&shown), "{shown}");
    let alice_secret = typed_secret(&shown);
    let wrong = wrong_code(&alice_secret);
    term.send_line(&wrong);
    term.expect("does not match", TIMEOUT);
    term.expect(ENROLL_PROMPT, TIMEOUT);
    let right = totp(&alice_secret, 0);
    term.send_line(&right);
    let (status, transcript) = term.finish(TIMEOUT);
    assert_eq!(pty::code(status), 0, "{transcript}");
    assert!(
        transcript.contains("Device \"phone\" is verified."),
        "{transcript}"
    );
    assert!(!transcript.contains("pending"), "{transcript}");
    assert!(!transcript.contains("Finish with"), "{transcript}");
    assert!(!transcript.contains(&wrong), "echoed: {transcript}");
    assert!(!transcript.contains(&right), "echoed: {transcript}");
    assert_eq!(d.devices(&alice.name), [totp_device("phone", true)]);

    // Three wrong codes: left pending, and told how to finish.
    let bob = TestUser::create(&[]);
    let mut term = adding_phone_app(&d, &bob);
    let secret = typed_secret(&term.transcript());
    for _ in 0..3 {
        term.send_line(&wrong_code(&secret));
        let _ = term.expect_any(&[ENROLL_PROMPT, "finish with"], TIMEOUT);
    }
    let (status, transcript) = term.finish(TIMEOUT);
    assert_eq!(pty::code(status), exit::WRONG_CODE, "{transcript}");
    assert_eq!(transcript.matches(ENROLL_PROMPT).count(), 3, "{transcript}");
    assert!(
        transcript.contains("finish with `mfa device verify phone`"),
        "{transcript}"
    );
    assert_eq!(d.devices(&bob.name), [totp_device("phone", false)]);

    // The step-up code is read with echo off too.
    let mut term = Pty::spawn(d.command(&alice, "bypass generate --count 1"));
    term.expect("Current verification code: ", TIMEOUT);
    let code = totp(&alice_secret, 1);
    term.send_line(&code);
    let (status, transcript) = term.finish(TIMEOUT);
    assert_eq!(pty::code(status), 0, "{transcript}");
    assert!(!transcript.contains(&code), "echoed: {transcript}");
}

/// `device add sms` through the daemon: "PIN from the text message:", a
/// wrong PIN asked again until its tries are used up; `device verify sms`
/// asks for a PIN too. Root's `mfa` reads the PIN with echo off.
#[test]
fn device_add_sms_asks_for_the_pin_until_its_tries_are_used_up() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let outbox = with_texts(&d, "");
    let alice = TestUser::create(&[]);
    let mut term = Pty::spawn(d.command(&alice, "device add sms +15551234567"));
    term.expect("PIN from the text message: ", TIMEOUT);
    let pin = last_texted(&outbox, 4);
    term.send_line(&other_pin(&pin));
    term.expect("2 tries left", TIMEOUT);
    term.expect("PIN from the text message: ", TIMEOUT);
    term.send_line(&pin);
    let (status, transcript) = term.finish(TIMEOUT);
    assert_eq!(pty::code(status), 0, "{transcript}");
    assert!(transcript.contains("is verified"), "{transcript}");
    assert!(!transcript.contains("pending"), "{transcript}");
    assert!(
        !transcript.contains("Code shown by the app"),
        "{transcript}"
    );
    assert!(!transcript.contains(&pin), "echoed: {transcript}");

    // Three wrong PINs use it up: asked three times, then told to start again.
    let bob = TestUser::create(&[]);
    let add = d.client(&bob, "device add sms +15557654321 --no-verify");
    add.assert_exit(exit::OK);
    let pin = last_texted(&outbox, 4);
    let mut term = Pty::spawn(d.command(&bob, "device verify sms"));
    for _ in 0..3 {
        term.expect("PIN from the text message: ", TIMEOUT);
        term.send_line(&other_pin(&pin));
    }
    let (status, transcript) = term.finish(TIMEOUT);
    assert_eq!(pty::code(status), exit::WRONG_CODE, "{transcript}");
    assert_eq!(
        transcript.matches("PIN from the text message: ").count(),
        3,
        "{transcript}"
    );
    assert!(transcript.contains("that was the last try"), "{transcript}");
    assert!(
        !transcript.contains("Code shown by the app"),
        "{transcript}"
    );

    // Root, on another account, at a terminal.
    let carol = TestUser::create(&[]);
    let mut cmd = Command::new(mfa_bin());
    cmd.arg("--config").arg(&d.cli.config).args([
        "--user",
        &carol.name,
        "device",
        "add",
        "sms",
        "+15550001111",
    ]);
    let mut term = Pty::spawn(cmd);
    term.expect("PIN from the text message: ", TIMEOUT);
    let pin = last_texted(&outbox, 4);
    term.send_line(&other_pin(&pin));
    term.expect("PIN from the text message: ", TIMEOUT);
    term.send_line(&pin);
    let (status, transcript) = term.finish(TIMEOUT);
    assert_eq!(pty::code(status), 0, "{transcript}");
    assert!(!transcript.contains(&pin), "echoed: {transcript}");
}

// ----------------------------------------------------------------- item 12

/// A locked user's `mfa status` says to ask an administrator, not to run
/// `mfa admin unlock`; a broken database shows users no path and no fix,
/// while root's `mfa` shows both.
#[test]
fn ordinary_users_see_no_admin_only_text() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let (secret, _) = d.enroll(&alice, "phone");
    let wrong = wrong_code(&secret);
    for _ in 0..6 {
        let _ = d.client(&alice, &format!("--code {wrong} bypass generate"));
    }
    assert_eq!(d.cli.lock_state(&alice.name), (6, true));
    let status = d.client(&alice, "status");
    status.assert_exit(exit::OK);
    assert!(status.stdout.contains("LOCKED since"), "{status}");
    assert!(
        status
            .stdout
            .contains("ask your administrator to unlock it"),
        "{status}"
    );
    assert!(!status.stdout.contains("mfa admin unlock"), "{status}");
    let refused = d.client(&alice, "device list");
    refused.assert_exit(exit::LOCKED);
    assert!(!refused.stderr.contains("mfa admin unlock"), "{refused}");
    let root = d.cli.mfa(None, &["admin", "show", &alice.name]);
    assert!(
        stdout(&root).contains(&format!("unlock with `mfa admin unlock {}`", alice.name)),
        "{root:?}"
    );

    // The database's mode made unsafe.
    use std::os::unix::fs::PermissionsExt;
    let db = d.dir.path().join("db").join("mfa.sqlite3");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    let ran = d.client(&alice, "status");
    ran.assert_exit(exit::UNAVAILABLE)
        .assert_stderr("unavailable on this host")
        .assert_stderr("ask your administrator");
    assert!(!ran.stderr.contains("chmod"), "{ran}");
    assert!(!ran.stderr.contains(&db.display().to_string()), "{ran}");
    let root = d.cli.mfa(None, &["status"]);
    assert!(stderr(&root).contains("chmod"), "{root:?}");
    assert!(
        d.logged(&["result=refused", "chmod"]).contains("status"),
        "the detail is logged"
    );
}

// ----------------------------------------------------------------- item 13

/// `make demo` as an administrator meets it: it gets ready without sshd
/// logging a probe of its port (`kex_exchange_identification`), and Ctrl-C
/// at the terminal ends it cleanly: everything removed, no
/// `make: *** ... Error 130`, and make's own status 0.
#[test]
fn make_demo_starts_quietly_and_ctrl_c_ends_it_with_status_0() {
    if !can_run() || !std::path::Path::new("/usr/sbin/sshd").exists() {
        return;
    }
    let _exclusive = demo_lock();
    let port = free_port();
    let mut cmd = Command::new("make");
    cmd.args(["--no-print-directory", "demo"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DEMO_PORT", port.to_string());
    let mut term = Pty::spawn(cmd);
    term.expect("Press Ctrl-C to stop", std::time::Duration::from_secs(900));
    // A client that connects and says nothing, as a port probe would.
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let ready = term.transcript();
    // Ctrl-C, as typed: the terminal signals the whole foreground group.
    term.send_bytes_line(b"\x03");
    let (status, transcript) = term.finish(TIMEOUT);
    let before_probe = ready.rsplit_once("Press Ctrl-C").map_or("", |(a, _)| a);
    assert!(
        !before_probe.contains("kex_exchange_identification"),
        "the readiness probe shows: {transcript}"
    );
    assert!(!transcript.contains("Error 130"), "{transcript}");
    assert!(!transcript.contains("make: ***"), "{transcript}");
    assert!(transcript.contains("Demo stopped"), "{transcript}");
    assert_eq!(pty::code(status), 0, "{transcript}");
    assert!(
        nix::unistd::User::from_name("demo").unwrap().is_none(),
        "the demo user is removed"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One demo at a time (it owns the user `demo`).
fn demo_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
