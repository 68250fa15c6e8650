//! The self-service daemon: `mfa serve` on a temporary socket, called by
//! throwaway real accounts through the `mfa` command and through raw
//! sockets (the world they live in is tests/common/daemon.rs).
//!
//! Needs root, like the sshd tests (CI runs it as root): it adds users and
//! groups and runs clients as them. The daemon learns who calls from
//! SO_PEERCRED and resolves the uid through the system's own NSS, so
//! nss_wrapper cannot stand in for the accounts. The request-parser fuzz
//! test and the setuid check need no root.

mod common;

use common::daemon::*;
use common::pty::{self, Pty};
use common::*;
use pam_mfa::error::exit;
use pam_mfa::protocol;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the daemon answers when a change needs a step-up code.
const STEP_UP: &str = "this needs a current verification code";
const START_HINT: &str = "systemctl enable --now pam-mfa.socket";
const LOCKED_HINT: &str = "an administrator must unlock it";
const STATUS_REQUEST: &[u8] = b"{\"version\":1,\"args\":[\"status\"],\"json\":true}\n";

#[test]
fn an_ordinary_user_enrolls_a_totp_device_through_the_socket() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);

    let added = d.client_json(&alice, "device add totp --name phone --no-verify");
    let secret = added["secret"].as_str().expect("secret in JSON").to_owned();
    let uri = added["otpauth_uri"].as_str().expect("otpauth_uri in JSON");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&alice.name), "{uri}");
    assert_eq!(added["verified"], Value::Bool(false), "{added}");
    assert_eq!(d.devices(&alice.name), [totp_device("phone", false)]);

    let code = totp(&secret, 0);
    d.client(&alice, &format!("device verify phone {code}"))
        .assert_exit(exit::OK);
    assert_eq!(d.devices(&alice.name), [totp_device("phone", true)]);
    // The row itself, read without the mfa command.
    let conn = rusqlite::Connection::open_with_flags(
        d.dir.path().join("db").join("mfa.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let row: (String, String, bool) = conn
        .query_row(
            "SELECT name, kind, verified FROM devices WHERE user = ?1",
            [&alice.name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(row, totp_device("phone", true));
    // The user sees the same through the socket.
    let own = d.client_json(&alice, "device list");
    assert_eq!(device_tuples(&own), [totp_device("phone", true)]);
    let status = d.client_json(&alice, "status");
    assert_eq!(status["locked"], Value::Bool(false), "{status}");
    assert_eq!(status["failures"], 0, "{status}");

    // Interactively, as a person would: the QR code, then the first code.
    let bob = TestUser::create(&[]);
    let mut term = Pty::spawn(d.command(&bob, "device add totp --name phone"));
    term.expect(ENROLL_PROMPT, TIMEOUT);
    let shown = term.transcript();
    assert!(has_qr(&shown), "{shown}");
    term.send_line(&totp(&typed_secret(&shown), 0));
    let (status, transcript) = term.finish(TIMEOUT);
    assert_eq!(pty::code(status), 0, "{transcript}");
    assert!(
        transcript.contains("Device \"phone\" is verified."),
        "{transcript}"
    );
    assert_eq!(d.devices(&bob.name), [totp_device("phone", true)]);

    // A second device needs a code from the first, asked for at the terminal.
    let mut term = Pty::spawn(d.command(&alice, "device add totp --name tablet"));
    term.expect("Current verification code: ", TIMEOUT);
    term.send_line(&totp(&secret, 1));
    term.expect(ENROLL_PROMPT, TIMEOUT);
    let shown = term.transcript();
    assert!(has_qr(&shown), "{shown}");
    let tablet = typed_secret(&shown);
    assert_ne!(tablet, secret);
    term.send_line(&totp(&tablet, 0));
    let (status, transcript) = term.finish(TIMEOUT);
    assert_eq!(pty::code(status), 0, "{transcript}");
    assert_eq!(
        d.devices(&alice.name),
        [totp_device("phone", true), totp_device("tablet", true)]
    );
    assert_eq!(d.cli.lock_state(&alice.name), (0, false));
}

#[test]
fn another_account_and_administration_are_out_of_reach() {
    if !can_run() {
        return;
    }
    let admins = TestGroup::create();
    let d = Daemon::start(&format!(
        "policy = \"optional\"\nadmin_group = \"{}\"\n",
        admins.name
    ));
    let alice = TestUser::create(&[]);
    let bob = TestUser::create(&[]);
    let carol = TestUser::create(&[&admins]);
    let b = bob.name.as_str();
    d.cli.enroll_totp(b, "phone");
    let google = d.public.path().join("google_authenticator");
    write_file(&google, "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n", 0o644);

    for line in [
        "device list",
        "status",
        "device delete phone",
        "device remove-all",
        "device add totp --no-verify",
        "device verify phone 123456",
        "bypass generate",
    ] {
        let ran = d.client(&alice, &format!("--user {b} {line}"));
        ran.assert_exit(exit::PERMISSION)
            .assert_stderr("you may manage only your own account");
        assert!(ran.stdout.is_empty(), "{ran}");
    }
    let admin_only = format!(
        "administrative commands need root or membership of the group {}",
        admins.name
    );
    for line in [
        format!("admin unlock {b}"),
        "admin policy required".into(),
        "admin policy".into(),
        format!("admin show {b}"),
        "admin users".into(),
        format!("admin temp-code {b} --show"),
        format!("admin import-google-authenticator {b} {}", google.display()),
        "audit".into(),
        format!("--user {b} audit"),
    ] {
        let ran = d.client(&alice, &line);
        ran.assert_exit(exit::PERMISSION).assert_stderr(&admin_only);
        assert!(ran.stdout.is_empty(), "{ran}");
    }
    // Nothing of bob's changed, nor the policy.
    assert_eq!(d.devices(b), [totp_device("phone", true)]);
    assert_eq!(d.cli.lock_state(b), (0, false));
    let policy = d.cli.mfa_json(None, &["admin", "policy"]);
    assert_eq!(policy["policy"], "optional", "{policy}");

    // With --json a refusal is a JSON error, as when root's command fails.
    for line in [
        format!("--user {b} device list"),
        format!("admin unlock {b}"),
    ] {
        let ran = d.client(&alice, &format!("--json {line}"));
        ran.assert_exit(exit::PERMISSION);
        assert_eq!(json_error(&ran), "permission");
    }

    // A member of admin_group administers through the socket.
    d.client(&bob, "--code 000000 bypass generate")
        .assert_exit(exit::WRONG_CODE);
    assert_eq!(d.cli.lock_state(b), (1, false));
    let shown = d.client_json(&carol, &format!("admin show {b}"));
    assert_eq!(shown["failures"], 1, "{shown}");
    d.client(&carol, &format!("admin unlock {b}"))
        .assert_exit(exit::OK);
    assert_eq!(d.cli.lock_state(b), (0, false));
    let devices = d.client_json(&carol, &format!("--user {b} device list"));
    assert_eq!(device_tuples(&devices), [totp_device("phone", true)]);
    // Only while the config says so: the daemon reads it for every request.
    d.write_config("policy = \"optional\"\n");
    d.client(&carol, &format!("admin unlock {b}"))
        .assert_exit(exit::PERMISSION);
}

#[test]
fn changes_need_a_current_code_once_a_device_is_verified() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let a = alice.name.as_str();
    let (secret, verified_at) = d.enroll(&alice, "phone");

    // No code, and stdin is no terminal to ask on: refused, not counted.
    let ran = d.client(&alice, "bypass generate");
    ran.assert_exit(exit::WRONG_CODE).assert_stderr(STEP_UP);
    assert!(ran.stdout.is_empty(), "{ran}");
    assert_eq!(d.cli.lock_state(a), (0, false));
    let ran = d.client(&alice, "--json bypass generate");
    ran.assert_exit(exit::WRONG_CODE);
    assert_eq!(json_error(&ran), "step-up");

    // A wrong code is a failure, as at login.
    let wrong = wrong_code(&secret);
    d.client(&alice, &format!("--code {wrong} bypass generate"))
        .assert_exit(exit::WRONG_CODE)
        .assert_stderr("wrong verification code");
    let shown = d.cli.mfa_json(None, &["admin", "show", a]);
    assert_eq!(shown["failures"], 1, "{shown}");
    assert_eq!(shown["locked"], Value::Bool(false), "{shown}");

    // The code that verified the device is spent.
    let spent = totp_at(&secret, verified_at);
    d.client(&alice, &format!("--code {spent} bypass generate"))
        .assert_exit(exit::WRONG_CODE);
    assert_eq!(d.cli.lock_state(a), (2, false));

    // The next time step's code works, and a success resets the count.
    let next = totp(&secret, 1);
    let out = d.client_json(&alice, &format!("--code {next} bypass generate --count 3"));
    let codes: Vec<String> = out["codes"]
        .as_array()
        .unwrap_or_else(|| panic!("codes in {out}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 3, "{out}");
    assert_eq!(d.cli.lock_state(a), (0, false));

    // Every change to what can log in needs a code.
    for line in [
        "device delete phone",
        "device remove-all",
        "device add totp --name tablet --no-verify",
        "device add sms +15551234567 --no-verify",
    ] {
        d.client(&alice, line)
            .assert_exit(exit::WRONG_CODE)
            .assert_stderr(STEP_UP);
    }
    // A bypass code will do, once.
    let [first, second, third] = &codes[..] else {
        unreachable!()
    };
    d.client(
        &alice,
        &format!("--code {first} device add totp --name tablet --no-verify"),
    )
    .assert_exit(exit::OK);
    d.client(&alice, &format!("--code {first} device delete tablet"))
        .assert_exit(exit::WRONG_CODE);
    d.client(&alice, &format!("--code {second} device delete tablet"))
        .assert_exit(exit::OK);
    assert_eq!(d.devices(a), [totp_device("phone", true)]);
    d.client(&alice, &format!("--code {third} device delete phone"))
        .assert_exit(exit::OK);
    assert_eq!(d.devices(a), []);
}

#[test]
fn a_locked_account_cannot_self_serve_until_an_admin_unlocks_it() {
    if !can_run() {
        return;
    }
    let admins = TestGroup::create();
    let d = Daemon::start(&format!(
        "policy = \"optional\"\nadmin_group = \"{}\"\n",
        admins.name
    ));
    let alice = TestUser::create(&[]);
    let carol = TestUser::create(&[&admins]);
    let a = alice.name.as_str();
    let (secret, _) = d.enroll(&alice, "phone");

    let wrong = wrong_code(&secret);
    for n in 1..=6 {
        let ran = d.client(&alice, &format!("--code {wrong} bypass generate"));
        let expected = if n < 6 {
            exit::WRONG_CODE
        } else {
            exit::LOCKED
        };
        ran.assert_exit(expected);
        assert_eq!(d.cli.lock_state(a), (n, n == 6), "{ran}");
    }

    let status = d.client_json(&alice, "status");
    assert_eq!(status["locked"], Value::Bool(true), "{status}");
    assert_eq!(status["failures"], 6, "{status}");
    let next = totp(&secret, 1);
    for line in [
        "device list".to_owned(),
        format!("--code {next} bypass generate"),
        format!("--code {next} device add totp --name x --no-verify"),
        format!("--code {next} device delete phone"),
        format!("--code {next} device remove-all"),
        format!("device verify phone {next}"),
    ] {
        d.client(&alice, &line)
            .assert_exit(exit::LOCKED)
            .assert_stderr(LOCKED_HINT);
    }
    d.client(&alice, &format!("admin unlock {a}"))
        .assert_exit(exit::PERMISSION);
    assert_eq!(d.cli.lock_state(a), (6, true));
    assert_eq!(d.devices(a), [totp_device("phone", true)]);

    d.client(&carol, &format!("admin unlock {a}"))
        .assert_exit(exit::OK);
    assert_eq!(d.cli.lock_state(a), (0, false));
    // The code offered while locked was not looked at, so it is not spent.
    let out = d.client_json(&alice, &format!("--code {next} bypass generate"));
    assert_eq!(out["codes"].as_array().map(Vec::len), Some(10), "{out}");
}

#[test]
fn malformed_requests_get_an_error_or_are_dropped_and_the_daemon_lives_on() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let mut oversized = vec![b'a'; protocol::MAX_REQUEST_BYTES + 100];
    oversized.push(b'\n');
    let mut huge = br#"{"version":1,"args":[""#.to_vec();
    huge.extend(std::iter::repeat(b'x').take(1 << 20));
    huge.extend_from_slice(b"\"]}\n");
    let mut binary: Vec<u8> = (0..=255u8).rev().filter(|b| *b != b'\n').collect();
    binary.push(b'\n');
    let malformed = "malformed request";
    let large = "larger than 16384 bytes";

    // (what, request, exit, error kind, words of the message)
    let cases: [(&str, &[u8], i32, &str, &str); 12] = [
        (
            "garbage",
            b"hello daemon\n",
            exit::USAGE,
            "protocol",
            malformed,
        ),
        ("empty line", b"\n", exit::USAGE, "protocol", malformed),
        ("binary", &binary, exit::USAGE, "protocol", malformed),
        (
            "not UTF-8",
            b"{\"version\":1,\"args\":[\"\xff\xfe\"]}\n",
            exit::USAGE,
            "protocol",
            malformed,
        ),
        ("oversized", &oversized, exit::USAGE, "protocol", large),
        ("a megabyte", &huge, exit::USAGE, "protocol", large),
        (
            "wrong version",
            b"{\"version\":2,\"args\":[\"status\"]}\n",
            exit::USAGE,
            "protocol",
            "protocol version 2 is not supported",
        ),
        (
            "unknown field",
            b"{\"version\":1,\"args\":[\"status\"],\"uid\":0}\n",
            exit::USAGE,
            "protocol",
            "unknown field",
        ),
        (
            "control character",
            b"{\"version\":1,\"args\":[\"device\",\"list\\n\"]}\n",
            exit::USAGE,
            "protocol",
            "control characters",
        ),
        (
            "hidden global flag",
            b"{\"version\":1,\"args\":[\"device\",\"list\",\"--config\",\"/tmp/x\"]}\n",
            exit::USAGE,
            "usage",
            "global flags",
        ),
        (
            "hidden --user",
            b"{\"version\":1,\"args\":[\"--user=root\",\"status\"]}\n",
            exit::USAGE,
            "usage",
            "global flags",
        ),
        (
            "someone else in the user field",
            b"{\"version\":1,\"args\":[\"status\"],\"user\":\"root\"}\n",
            exit::PERMISSION,
            "permission",
            "only your own account",
        ),
    ];
    for (what, bytes, code, kind, message) in cases {
        let reply = d
            .raw(&alice, bytes)
            .unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(reply.exit, code, "{what}: {reply:?}");
        assert_eq!(reply.error.as_deref(), Some(kind), "{what}: {reply:?}");
        assert!(reply.stderr.contains(message), "{what}: {reply:?}");
        assert!(reply.stdout.is_empty(), "{what}: {reply:?}");
        // And the next client is served.
        let next = d.raw(&alice, STATUS_REQUEST).expect("a reply to status");
        assert_eq!(next.exit, exit::OK, "after {what}: {next:?}");
        d.assert_alive();
    }
    // Requests that end before their newline get no answer.
    for half in [&b""[..], b"{\"version\":1,\"args\":[\"sta", b"\xff\xff\xff"] {
        let mut stream = d.connect_as(&alice);
        stream.write_all(half).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_reply(stream), None, "{half:?}");
    }
    let status = d.client_json(&alice, "status");
    assert_eq!(status["user"], alice.name.as_str(), "{status}");
    d.assert_alive();
}

#[test]
fn a_slow_client_does_not_hold_up_others_and_is_dropped() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let started = Instant::now();
    // One client stops halfway through its request...
    let mut half = d.connect_as(&alice);
    half.write_all(b"{\"version\":1,\"args\":[\"sta").unwrap();
    // ...another sends a byte a second, never reaching the newline.
    let mut drip = d.connect_as(&alice);
    let dripping = std::thread::spawn(move || {
        drip.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let begun = Instant::now();
        let mut probe = [0u8; 1];
        while begun.elapsed() < Duration::from_secs(30) {
            if drip.write_all(b" ").is_err() {
                return Some(begun.elapsed());
            }
            match drip.read(&mut probe) {
                Ok(0) => return Some(begun.elapsed()),
                Ok(_) => panic!("the daemon answered a request without its end"),
                Err(_) => {} // still open: the read timed out
            }
        }
        None
    });
    // Meanwhile others are served at once.
    for _ in 0..3 {
        let asked = Instant::now();
        let reply = d.raw(&alice, STATUS_REQUEST).expect("reply");
        assert_eq!(reply.exit, exit::OK, "{reply:?}");
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
    }
    d.client(&alice, "status").assert_exit(exit::OK);
    assert!(started.elapsed() < Duration::from_secs(8));

    // The half-sent request is dropped after the daemon's 10 s, unanswered.
    half.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(read_reply(half), None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    // A request trickling in gets the same 10 s in all.
    let dropped_after = dripping.join().unwrap();
    assert!(
        dropped_after.is_some_and(|t| t < Duration::from_secs(15)),
        "a client sending a byte a second kept its connection for {dropped_after:?}"
    );
    d.raw(&alice, STATUS_REQUEST).expect("reply");
    d.assert_alive();
}

#[test]
fn twenty_clients_at_once_are_answered_or_told_the_daemon_is_busy() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);

    let streams: Vec<UnixStream> = (0..20).map(|_| d.connect_as(&alice)).collect();
    let threads: Vec<_> = streams
        .into_iter()
        .map(|s| std::thread::spawn(move || exchange(s, STATUS_REQUEST)))
        .collect();
    let mut served = 0;
    for t in threads {
        let reply = t.join().unwrap().expect("every client gets a reply");
        if reply.error.as_deref() == Some("busy") {
            assert_eq!(reply.exit, exit::UNAVAILABLE, "{reply:?}");
            assert!(reply.stderr.contains("try again"), "{reply:?}");
        } else {
            assert_eq!(reply.exit, exit::OK, "neither success nor busy: {reply:?}");
            let status: Value = serde_json::from_str(&reply.stdout).unwrap();
            assert_eq!(status["user"], alice.name.as_str(), "{status}");
            served += 1;
        }
    }
    assert!(served >= 16, "only {served} of 20 served");
    d.assert_alive();

    // The limit itself: sixteen idle connections take every place...
    let idle: Vec<UnixStream> = (0..16).map(|_| d.connect_as(&alice)).collect();
    let busy = d.raw(&alice, STATUS_REQUEST).expect("a reply");
    assert_eq!(busy.error.as_deref(), Some("busy"), "{busy:?}");
    assert_eq!(busy.exit, exit::UNAVAILABLE);
    // ...and give them back when they go.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = d.raw(&alice, STATUS_REQUEST).expect("a reply");
        if reply.exit == exit::OK {
            break;
        }
        assert_eq!(reply.error.as_deref(), Some("busy"), "{reply:?}");
        assert!(
            Instant::now() < deadline,
            "still busy after the clients left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.assert_alive();
}

#[test]
fn without_the_daemon_the_client_says_how_to_start_it() {
    if !can_run() {
        return;
    }
    let world = World::new("");
    let alice = TestUser::create(&[]);
    let missing = world.public.path().join("no-daemon.sock");
    // A socket file nobody listens on, as after the daemon died.
    let stale = world.public.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o666)).unwrap();
    for socket in [&missing, &stale] {
        for line in ["status", "device add totp", "--json status"] {
            let args: Vec<&str> = line.split_whitespace().collect();
            let out = world
                .client_command(socket, &alice, &args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let ran = Ran::from(out, &alice, line);
            ran.assert_exit(exit::UNAVAILABLE).assert_stderr(START_HINT);
            if line.starts_with("--json") {
                assert_eq!(json_error(&ran), "unavailable");
            } else {
                assert!(ran.stdout.is_empty(), "{ran}");
            }
        }
    }
}

/// How a socket-activated daemon gets its socket.
#[derive(Debug, Clone, Copy)]
enum Activator {
    /// systemd's own tool for this (package systemd).
    SystemdSocketActivate,
    /// This test: bind, then exec `mfa serve` with the socket as fd 3.
    Here,
}

/// Starts `mfa serve` the way systemd does: the listening socket arrives as
/// fd 3 with LISTEN_FDS=1 and LISTEN_PID naming the daemon. Its `--socket`
/// names a path it must not use.
fn start_activated(activator: Activator) -> Daemon {
    let world = World::new("policy = \"optional\"\n");
    let socket = world.public.path().join("activated.sock");
    let unused = world.public.path().join("unused.sock");
    let log = world.dir.path().join("serve.log");
    let serve = vec![
        mfa_bin().into(),
        "--config".into(),
        world.cli.config.clone().into_os_string(),
        "serve".into(),
        "--socket".into(),
        unused.clone().into_os_string(),
    ];
    let mut d = match activator {
        Activator::SystemdSocketActivate => {
            let mut cmd = Command::new("systemd-socket-activate");
            cmd.arg("-l").arg(&socket).arg("--").args(&serve);
            // It binds with the umask's mode (systemd's units say SocketMode=0666),
            // and execs the daemon at the first connection.
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("run systemd-socket-activate");
            let mut d = Daemon {
                child,
                socket,
                log,
                world,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while !d.log_text().contains("Listening on") {
                d.assert_alive();
                assert!(Instant::now() < deadline, "{}", d.log_text());
                std::thread::sleep(Duration::from_millis(20));
            }
            std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
            d.wait_ready();
            d
        }
        Activator::Here => {
            let listener = UnixListener::bind(&socket).unwrap();
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
            let fd = listener.as_raw_fd();
            // The shell's pid becomes the daemon's when it execs.
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c")
                .arg("LISTEN_PID=$$; LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; exec \"$@\"")
                .arg("sh");
            cmd.args(&serve);
            // SAFETY: between fork and exec the child calls only dup2 and
            // fcntl, which are async-signal-safe, on its own descriptors.
            unsafe {
                cmd.pre_exec(move || {
                    // dup2 onto itself would keep close-on-exec set.
                    let rc = if fd == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, 3)
                    };
                    if rc < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            // The listener stays open here until the daemon has its copy.
            let d = Daemon::spawn(world, cmd, socket, log);
            drop(listener);
            d
        }
    };
    d.assert_alive();
    assert!(
        !unused.exists(),
        "{activator:?}: the daemon bound --socket instead of using the socket it was given"
    );
    d
}

#[test]
fn a_socket_activated_daemon_serves_clients() {
    if !can_run() {
        return;
    }
    let alice = TestUser::create(&[]);
    let mut activators = vec![Activator::Here];
    if Path::new("/usr/bin/systemd-socket-activate").exists() {
        activators.push(Activator::SystemdSocketActivate);
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "systemd-socket-activate is not installed; activation tested with this test's own launcher only"
        );
    }
    for activator in activators {
        let mut d = start_activated(activator);
        let status = d.client_json(&alice, "status");
        assert_eq!(
            status["user"],
            alice.name.as_str(),
            "{activator:?}: {status}"
        );
        let (secret, _) = d.enroll(&alice, "phone");
        let next = totp(&secret, 1);
        d.client(&alice, &format!("--code {next} bypass generate"))
            .assert_exit(exit::OK);
        d.assert_alive();
    }
}

/// Modes that install scripts, spec files and units give files: the word
/// after `-m`, `chmod` (and its flags), `%attr(`, `%defattr(`, `...Mode=`.
/// Returns how many modes were seen and the lines giving a setuid or
/// setgid bit.
fn special_modes(text: &str) -> (usize, Vec<String>) {
    let mut seen = 0;
    let mut bad = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || "(),=\"'".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        for (i, word) in words.iter().enumerate() {
            let mode = match *word {
                "-m" | "--mode" | "%attr" | "%defattr" | "SocketMode" | "DirectoryMode" => {
                    words.get(i + 1).copied()
                }
                "chmod" => words[i + 1..].iter().copied().find(|w| !w.starts_with('-')),
                w if w.starts_with("-m") && w[2..].bytes().all(|b| b.is_ascii_digit()) => {
                    Some(&w[2..])
                }
                _ => None,
            };
            let Some(mode) = mode else { continue };
            if let Ok(bits) = u32::from_str_radix(mode, 8) {
                seen += 1;
                if bits & 0o6000 != 0 {
                    bad.push(line.to_owned());
                }
            } else if *word == "chmod" {
                seen += 1;
                if mode
                    .split(',')
                    .any(|m| (m.contains('+') || m.contains('=')) && m.contains('s'))
                {
                    bad.push(line.to_owned());
                }
            }
        }
    }
    (seen, bad)
}

#[test]
fn nothing_built_or_packaged_is_setuid_or_setgid() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = build_dir().parent().expect("target dir").to_owned();
    for tree in [source, &target] {
        let out = Command::new("find")
            .arg(tree)
            .args(["-perm", "/6000", "-print"])
            .output()
            .expect("run find");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "setuid or setgid files:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // The scan itself must catch what it is for.
    assert_eq!(
        special_modes("install -D -m 4755 mfa /usr/bin/mfa").1.len(),
        1
    );
    assert_eq!(
        special_modes("%attr(2755,root,root) /usr/bin/mfa").1.len(),
        1
    );
    assert_eq!(
        special_modes("chmod u+s \"$staging/usr/bin/mfa\"").1.len(),
        1
    );
    assert_eq!(special_modes("chmod -R 6755 x").1.len(), 1);
    assert_eq!(special_modes("install -m0755 a b\nSocketMode=0666").0, 2);

    // What the packages install, if this tree builds packages.
    let packaging = source.join("packaging");
    if !packaging.is_dir() {
        return;
    }
    let mut files = vec![source.join("Makefile")];
    let mut dirs = vec![packaging, source.join("scripts")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut seen = 0;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let (n, bad) = special_modes(&text);
        seen += n;
        assert!(
            bad.is_empty(),
            "{} gives a setuid or setgid mode: {bad:?}",
            file.display()
        );
    }
    assert!(
        seen > 0,
        "packaging/ is there but no file mode was found in it"
    );
    // Packages built already: their file lists, as dpkg and rpm show them.
    for dir in [target.join("debian"), source.join("target").join("debian")] {
        for deb in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if deb.path().extension().is_some_and(|e| e == "deb") {
                let out = Command::new("dpkg-deb")
                    .arg("-c")
                    .arg(deb.path())
                    .output()
                    .unwrap();
                let list = String::from_utf8_lossy(&out.stdout);
                for line in list.lines() {
                    let perms = line.split_whitespace().next().unwrap_or("");
                    assert!(
                        !perms.contains(['s', 'S']),
                        "{}: {line}",
                        deb.path().display()
                    );
                }
            }
        }
    }
}

// ------------------------------------------------ no root needed for these

/// A deterministic xorshift generator: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn the_request_parser_survives_random_input() {
    const SEEDS: [&str; 5] = [
        r#"{"version":1,"args":["device","list"],"json":true}"#,
        r#"{"version":1,"args":["bypass","generate","--count","3"],"code":"123456"}"#,
        r#"{"version":1,"args":["status"],"user":"alice","json":false,"code":null}"#,
        r#"{"version":1,"args":["device","add","totp","--name","phone"]}"#,
        r#"{"version":1,"args":[]}"#,
    ];
    const TOKENS: [&str; 24] = [
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"version\"",
        "\"args\"",
        "\"user\"",
        "\"code\"",
        "\"json\"",
        "1",
        "0",
        "-1",
        "4294967296",
        "1e999",
        "true",
        "null",
        "\"x\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"\u{10ffff}\"",
        " ",
        "\"\\n\"",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..20_000 {
        let input: Vec<u8> = match case % 4 {
            // Random bytes, now and then past the size limit.
            0 => {
                let len = if case % 1000 == 0 {
                    protocol::MAX_REQUEST_BYTES + 1 + rng.below(100)
                } else {
                    rng.below(80)
                };
                (0..len).map(|_| rng.next() as u8).collect()
            }
            // JSON-shaped token soup.
            1 => (0..rng.below(30))
                .flat_map(|_| TOKENS[rng.below(TOKENS.len())].bytes())
                .collect(),
            // A valid request, mutated a few bytes at a time (sometimes not at all).
            _ => {
                let mut bytes = SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec();
                for _ in 0..rng.below(4) {
                    let at = rng.below(bytes.len() + 1);
                    match rng.below(3) {
                        0 if at < bytes.len() => bytes[at] = rng.next() as u8,
                        1 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => bytes.insert(at, rng.next() as u8),
                    }
                }
                bytes
            }
        };
        let parsed = std::panic::catch_unwind(|| protocol::parse_request(&input))
            .unwrap_or_else(|_| panic!("parse_request panicked on {input:?}"));
        match parsed {
            Ok(request) => {
                accepted += 1;
                assert!(input.len() <= protocol::MAX_REQUEST_BYTES);
                assert_eq!(request.version, protocol::VERSION, "{input:?}");
                assert!(request.args.len() <= protocol::MAX_ARGS, "{input:?}");
                let fields = request
                    .args
                    .iter()
                    .chain(request.user.iter())
                    .chain(request.code.iter());
                for field in fields {
                    assert!(field.len() <= protocol::MAX_ARG_BYTES, "{input:?}");
                    assert!(!field.chars().any(char::is_control), "{input:?}");
                }
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        accepted > 100 && refused > 100,
        "the cases reach both outcomes: {accepted} accepted, {refused} refused"
    );
}
