//! The daemon: `mfa serve` as root on a temporary socket, called by
//! throwaway real accounts through the `mfa` command and through raw
//! sockets speaking protocol version 2 (the world they live in is
//! tests/common/daemon.rs; logins through the module are in
//! tests/daemon_login.rs).
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
use pam_mfa::internals::commands::Command as MfaCommand;
use pam_mfa::internals::error::exit;
use pam_mfa::internals::protocol::{self, CommandRequest, Mode, Request, Response, Verdict};
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

    // A member of admin_group administers through the socket, each time
    // with a current code of its own (here bypass codes).
    let carols = d.cli.bypass_codes(&carol.name, 4);
    d.client(&bob, "--code 000000 bypass generate")
        .assert_exit(exit::WRONG_CODE);
    assert_eq!(d.cli.lock_state(b), (1, false));
    let shown = d.client_json(&carol, &format!("--code {} admin show {b}", carols[0]));
    assert_eq!(shown["failures"], 1, "{shown}");
    d.client(&carol, &format!("--code {} admin unlock {b}", carols[1]))
        .assert_exit(exit::OK);
    assert_eq!(d.cli.lock_state(b), (0, false));
    let devices = d.client_json(
        &carol,
        &format!("--code {} --user {b} device list", carols[2]),
    );
    assert_eq!(device_tuples(&devices), [totp_device("phone", true)]);
    // Only while the config says so: the daemon reads it for every request.
    d.write_config("policy = \"optional\"\n");
    d.client(&carol, &format!("--code {} admin unlock {b}", carols[3]))
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
    ] {
        d.client(&alice, line)
            .assert_exit(exit::WRONG_CODE)
            .assert_stderr(STEP_UP);
    }
    // A request that would fail anyway says why before asking for a code.
    d.client(&alice, "device add sms +15551234567 --no-verify")
        .assert_exit(exit::FAILED)
        .assert_stderr("no SMS gateway is configured");
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

    let carols = d.cli.bypass_codes(&carol.name, 1);
    d.client(&carol, &format!("--code {} admin unlock {a}", carols[0]))
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
    let mut oversized = vec![b'a'; protocol::MAX_LINE_BYTES + 100];
    oversized.push(b'\n');
    // Well-formed but for its size: one field makes it a megabyte.
    let mut huge =
        br#"{"version":2,"request":{"command":{"command":{"device":{"delete":{"nick":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1 << 20));
    huge.extend_from_slice(b"\"}}}}}}\n");
    let long_code = format!(
        "{{\"version\":2,\"request\":{{\"command\":{{\"command\":\"status\",\"code\":\"{}\"}}}}}}\n",
        "1".repeat(protocol::MAX_FIELD_BYTES + 1)
    );
    let mut binary: Vec<u8> = (0..=255u8).rev().filter(|b| *b != b'\n').collect();
    binary.push(b'\n');
    // Nesting the parser must not follow on the thread's stack.
    let depth = 8000;
    let nested = format!(
        "{{\"version\":2,\"request\":{}{}}}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let nested_command = format!(
        "{{\"version\":2,\"request\":{{\"command\":{{\"command\":{}{}}}}}}}\n",
        "{\"device\":".repeat(depth / 8),
        "}".repeat(depth / 8)
    );
    let malformed = "malformed request";
    let large = "larger than 16384 bytes";
    let unknown_field = "unknown field";

    // (what, request, exit, error kind, words of the message)
    let cases: &[(&str, &[u8], i32, &str, &str)] = &[
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
            b"{\"version\":2,\"request\":{\"command\":{\"command\":{\"device\":{\"delete\":{\"nick\":\"\xff\xfe\"}}}}}}\n",
            exit::USAGE,
            "protocol",
            malformed,
        ),
        ("deeply nested", nested.as_bytes(), exit::USAGE, "protocol", malformed),
        (
            "deeply nested command",
            nested_command.as_bytes(),
            exit::USAGE,
            "protocol",
            malformed,
        ),
        ("oversized", &oversized, exit::USAGE, "protocol", large),
        ("a megabyte", &huge, exit::USAGE, "protocol", large),
        (
            "protocol version 1 (an mfa of 0.1)",
            b"{\"version\":1,\"args\":[\"status\"],\"json\":true}\n",
            exit::USAGE,
            "protocol",
            "protocol version 1 is not supported",
        ),
        (
            "a later version",
            b"{\"version\":3,\"request\":{\"command\":{\"command\":\"status\"}}}\n",
            exit::USAGE,
            "protocol",
            "protocol version 3 is not supported",
        ),
        (
            "no request",
            b"{\"version\":2}\n",
            exit::USAGE,
            "protocol",
            malformed,
        ),
        (
            "unknown field beside the request",
            b"{\"version\":2,\"request\":{\"command\":{\"command\":\"status\"}},\"uid\":0}\n",
            exit::USAGE,
            "protocol",
            unknown_field,
        ),
        (
            "unknown field in a command",
            b"{\"version\":2,\"request\":{\"command\":{\"command\":\"status\",\"uid\":0}}}\n",
            exit::USAGE,
            "protocol",
            unknown_field,
        ),
        (
            // Version 1 had to refuse global flags hidden among the words;
            // a typed request has no field for them.
            "a global flag as a field",
            b"{\"version\":2,\"request\":{\"command\":{\"command\":\"status\",\"config\":\"/tmp/x\"}}}\n",
            exit::USAGE,
            "protocol",
            "unknown field `config`",
        ),
        (
            "unknown command",
            b"{\"version\":2,\"request\":{\"command\":{\"command\":{\"shell\":\"ls\"}}}}\n",
            exit::USAGE,
            "protocol",
            malformed,
        ),
        (
            "unknown login mode",
            b"{\"version\":2,\"request\":{\"login\":{\"mode\":\"sudo\",\"user\":\"root\"}}}\n",
            exit::USAGE,
            "protocol",
            malformed,
        ),
        (
            "a uid in a login request",
            b"{\"version\":2,\"request\":{\"login\":{\"mode\":\"auth\",\"user\":\"root\",\"uid\":0}}}\n",
            exit::USAGE,
            "protocol",
            unknown_field,
        ),
        (
            "control character",
            b"{\"version\":2,\"request\":{\"command\":{\"command\":\"status\",\"user\":\"a\\nb\"}}}\n",
            exit::USAGE,
            "protocol",
            "control characters",
        ),
        (
            "a field over 1024 bytes",
            long_code.as_bytes(),
            exit::USAGE,
            "protocol",
            "longer than 1024 bytes",
        ),
        (
            "a value the command line would refuse",
            b"{\"version\":2,\"request\":{\"command\":{\"command\":{\"bypass\":{\"generate\":{\"count\":11}}}}}}\n",
            exit::USAGE,
            "usage",
            "between 1 and 10",
        ),
        (
            "the daemon itself",
            b"{\"version\":2,\"request\":{\"command\":{\"command\":\"serve\"}}}\n",
            exit::PERMISSION,
            "permission",
            "not through the daemon",
        ),
        (
            "someone else in the user field",
            b"{\"version\":2,\"request\":{\"command\":{\"command\":\"status\",\"user\":\"root\"}}}\n",
            exit::PERMISSION,
            "permission",
            "only your own account",
        ),
    ];
    for (what, bytes, code, kind, message) in cases {
        let reply = d
            .raw(&alice, bytes)
            .unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(reply.exit, *code, "{what}: {reply:?}");
        assert_eq!(reply.error.as_deref(), Some(*kind), "{what}: {reply:?}");
        assert!(reply.stderr.contains(message), "{what}: {reply:?}");
        assert!(reply.stdout.is_empty(), "{what}: {reply:?}");
        // And the next client is served.
        let next = d.raw(&alice, &status_request()).expect("a reply to status");
        assert_eq!(next.exit, exit::OK, "after {what}: {next:?}");
        d.assert_alive();
    }
    d.logged(&[
        "refused a request from",
        &format!("uid={}", alice.uid),
        "protocol version 1 is not supported",
    ]);
    // Requests that end before their newline get no answer.
    for half in [
        &b""[..],
        b"{\"version\":2,\"request\":{\"comm",
        b"\xff\xff\xff",
    ] {
        let mut stream = d.connect_as(&alice);
        stream.write_all(half).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_reply(stream), None, "{half:?}");
    }
    // Answers in a login that are no answers end it, without a verdict.
    let secret = d.cli.enroll_totp(&alice.name, "phone");
    let long_answer = format!(
        "{{\"answer\":\"{}\"}}\n",
        "1".repeat(protocol::MAX_FIELD_BYTES + 1)
    );
    for (what, answer) in [
        ("garbage", &b"hello\n"[..]),
        ("an over-long answer", long_answer.as_bytes()),
        ("a request again", &status_request()),
        ("half an answer", b"{\"answer\":\"12"),
    ] {
        let stream = d.connect_as(&alice);
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        writer
            .write_all(&login_line(Mode::SecondFactor, &alice.name))
            .unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        while !line.contains("\"ask\"") {
            line.clear();
            let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            assert!(n > 0, "{what}: no question asked");
        }
        writer.write_all(answer).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        assert!(!rest.contains("verdict"), "{what}: {rest}");
        d.assert_alive();
    }
    // The account works as before.
    let said = converse(
        d.connect_as(&alice),
        &login_line(Mode::SecondFactor, &alice.name),
        &[&totp(&secret, 1)],
    );
    assert_eq!(said.verdict, Some(Verdict::Success), "{said:?}");
    let status = d.client_json(&alice, "status");
    assert_eq!(status["user"], alice.name.as_str(), "{status}");
    d.assert_alive();
    d.assert_no_panic();
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
    half.write_all(b"{\"version\":2,\"request\":{\"comm")
        .unwrap();
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
    // Meanwhile others are served at once, the same user's too (two of
    // its four places are taken by the slow ones).
    for _ in 0..3 {
        let asked = Instant::now();
        let reply = d.raw(&alice, &status_request()).expect("reply");
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
    d.raw(&alice, &status_request()).expect("reply");
    d.assert_alive();
}

/// Sends `request` on each stream at once (every connection made before
/// any request is sent); the replies, in order.
fn all_at_once(streams: Vec<UnixStream>, request: &[u8]) -> Vec<Response> {
    let threads: Vec<_> = streams
        .into_iter()
        .map(|s| {
            let request = request.to_vec();
            std::thread::spawn(move || exchange(s, &request))
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap().expect("every client gets a reply"))
        .collect()
}

fn assert_busy(reply: &Response) {
    assert_eq!(reply.error.as_deref(), Some("busy"), "{reply:?}");
    assert_eq!(reply.exit, exit::UNAVAILABLE, "{reply:?}");
    assert!(reply.stderr.contains("try again"), "{reply:?}");
}

#[test]
fn twenty_clients_at_once_are_answered_or_told_the_daemon_is_busy() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    // Five users with four connections each: within every limit (four per
    // user), so every one is served.
    let users: Vec<TestUser> = (0..5).map(|_| TestUser::create(&[])).collect();
    let mut streams = Vec::new();
    for user in &users {
        streams.extend((0..4).map(|_| d.connect_as(user)));
    }
    let replies = all_at_once(streams, &status_request());
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.exit, exit::OK, "client {i}: {reply:?}");
        let status: Value = serde_json::from_str(&reply.stdout).unwrap();
        assert_eq!(status["user"], users[i / 4].name.as_str(), "{status}");
    }
    d.assert_alive();

    // One user, twenty at once: each is answered, served or told the
    // daemon is busy; the first four it accepts are always served.
    let alice = &users[0];
    let streams: Vec<UnixStream> = (0..20).map(|_| d.connect_as(alice)).collect();
    let mut served = 0;
    for reply in all_at_once(streams, &status_request()) {
        if reply.error.as_deref() == Some("busy") {
            assert_busy(&reply);
        } else {
            assert_eq!(reply.exit, exit::OK, "neither success nor busy: {reply:?}");
            let status: Value = serde_json::from_str(&reply.stdout).unwrap();
            assert_eq!(status["user"], alice.name.as_str(), "{status}");
            served += 1;
        }
    }
    assert!(served >= 4, "only {served} of 20 served");
    if served < 20 {
        d.logged(&["too many connections", &format!("uid={}", alice.uid)]);
    }
    // Every place came back: the next request is served at once (a slot
    // is given back before the connection closes).
    let reply = d.raw(alice, &status_request()).expect("a reply");
    assert_eq!(reply.exit, exit::OK, "{reply:?}");
    d.assert_alive();
    d.assert_no_panic();
}

/// `n` connections of `user` that send nothing (each holds a place until
/// the daemon's 10 s for a request run out).
fn idle(d: &Daemon, user: &TestUser, n: usize) -> Vec<UnixStream> {
    (0..n).map(|_| d.connect_as(user)).collect()
}

/// Polls until `user` is served again (the daemon notices closed
/// connections in its own time).
fn served_again(d: &Daemon, user: &TestUser) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = d.raw(user, &status_request()).expect("a reply");
        if reply.exit == exit::OK {
            return;
        }
        assert_busy(&reply);
        assert!(
            Instant::now() < deadline,
            "still busy after the connections closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon's limits (src/cli/serve/slots.rs).
const MAX_PER_USER: usize = 4;
const MAX_UNPRIVILEGED: usize = 128;

#[test]
fn a_user_holding_all_its_places_shuts_out_only_itself_and_gets_them_back() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let bob = TestUser::create(&[]);
    d.cli.enroll_totp(&alice.name, "phone");
    let codes = d.cli.bypass_codes(&alice.name, 2);

    for (round, code) in codes.iter().enumerate() {
        let held = idle(&d, &alice, MAX_PER_USER);
        // The fifth is told the daemon is busy, command or login alike...
        assert_busy(&d.raw(&alice, &status_request()).expect("a reply"));
        assert_busy(
            &d.raw(&alice, &login_line(Mode::SecondFactor, &alice.name))
                .expect("a reply"),
        );
        // ...while others are served: another user, root's command, and
        // logins from root (as sshd's), alice's included.
        let reply = d.raw(&bob, &status_request()).expect("a reply");
        assert_eq!(reply.exit, exit::OK, "round {round}: {reply:?}");
        let reply = exchange(d.connect_as_root(), &status_request()).expect("a reply");
        assert_eq!(reply.exit, exit::OK, "round {round}: {reply:?}");
        let said = converse(
            d.connect_as_root(),
            &login_line(Mode::SecondFactor, &alice.name),
            &[code],
        );
        assert_eq!(
            said.verdict,
            Some(Verdict::Success),
            "round {round}: {said:?}"
        );
        assert_eq!(said.asked(), ["Verification code: "]);
        let said = converse(
            d.connect_as_root(),
            &login_line(Mode::Account, &alice.name),
            &[],
        );
        assert_eq!(
            said.verdict,
            Some(Verdict::Success),
            "round {round}: {said:?}"
        );
        // Closed, the places come back.
        drop(held);
        served_again(&d, &alice);
    }
    d.logged(&["too many connections", &format!("uid={}", alice.uid)]);

    // Connections that end badly give their place back too: refused,
    // half-sent, cut off mid-login, timed out.
    for _ in 0..MAX_PER_USER {
        let refused = d.raw(&alice, b"nonsense\n").expect("a reply");
        assert_eq!(refused.error.as_deref(), Some("protocol"), "{refused:?}");
        let mut half = d.connect_as(&alice);
        half.write_all(b"{\"version\":2").unwrap();
        drop(half);
        let unanswered = converse(
            d.connect_as(&alice),
            &login_line(Mode::SecondFactor, &alice.name),
            &[],
        );
        assert_eq!(
            unanswered.verdict,
            Some(Verdict::ConversationFailed),
            "{unanswered:?}"
        );
        let mut cut = d.connect_as(&alice);
        cut.write_all(&login_line(Mode::SecondFactor, &alice.name))
            .unwrap();
        let mut first = [0u8; 1];
        cut.read_exact(&mut first).unwrap();
        drop(cut);
        let reply = d.raw(&alice, &command_line(MfaCommand::Serve, None, false));
        assert_eq!(reply.expect("a reply").exit, exit::PERMISSION);
    }
    served_again(&d, &alice);
    let timed_out = idle(&d, &alice, MAX_PER_USER);
    let started = Instant::now();
    for stream in timed_out {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(read_reply(stream), None);
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // Exactly four places again, no more and no fewer.
    let held = idle(&d, &alice, MAX_PER_USER);
    assert_busy(&d.raw(&alice, &status_request()).expect("a reply"));
    drop(held);
    served_again(&d, &alice);
    d.assert_alive();
    d.assert_no_panic();
}

#[test]
fn ordinary_users_together_cannot_take_the_places_root_needs() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let users: Vec<TestUser> = (0..MAX_UNPRIVILEGED / MAX_PER_USER + 1)
        .map(|_| TestUser::create(&[]))
        .collect();
    let (last, rest) = users.split_last().unwrap();
    // Every place ordinary users may have, held (each for at most the
    // daemon's 10 s, so the checks below come right after).
    let started = Instant::now();
    let held: Vec<UnixStream> = rest
        .iter()
        .flat_map(|u| idle(&d, u, MAX_PER_USER))
        .collect();
    assert_eq!(held.len(), MAX_UNPRIVILEGED);
    // A user with none of its own is turned away...
    assert_busy(&d.raw(last, &status_request()).expect("a reply"));
    // ...root is not.
    let reply = exchange(d.connect_as_root(), &status_request()).expect("a reply");
    assert_eq!(reply.exit, exit::OK, "{reply:?}");
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::Account, &last.name),
        &[],
    );
    assert_eq!(said.verdict, Some(Verdict::Success), "{said:?}");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "too slow to test the limit: {:?}",
        started.elapsed()
    );
    drop(held);
    served_again(&d, last);
    d.assert_alive();
    d.assert_no_panic();
}

#[test]
fn the_daemon_never_creates_the_database() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let db_dir = d.dir.path().join("db");
    std::fs::remove_dir_all(&db_dir).unwrap();

    // A command: unavailable, root's through the socket too.
    let ran = d.client(&alice, "--json status");
    ran.assert_exit(exit::UNAVAILABLE);
    assert_eq!(json_error(&ran), "unavailable");
    let policy = command_line(
        MfaCommand::Admin(pam_mfa::internals::commands::AdminCmd::Policy { policy: None }),
        None,
        true,
    );
    let reply = exchange(d.connect_as_root(), &policy).expect("a reply");
    assert_eq!(reply.exit, exit::UNAVAILABLE, "{reply:?}");
    // A login: the admin's on_unavailable, and the user is told.
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, &alice.name),
        &[],
    );
    assert_eq!(
        said.verdict,
        Some(Verdict::Unavailable { allow: false }),
        "{said:?}"
    );
    assert!(
        said.said(pam_mfa::internals::login::MSG_UNAVAILABLE),
        "{said:?}"
    );
    assert!(said.asked().is_empty(), "{said:?}");
    d.write_config("policy = \"optional\"\non_unavailable = \"allow\"\n");
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, &alice.name),
        &[],
    );
    assert_eq!(
        said.verdict,
        Some(Verdict::Unavailable { allow: true }),
        "{said:?}"
    );
    d.logged(&["MFA unavailable", "allowing"]);
    assert!(!db_dir.exists(), "the daemon created {}", db_dir.display());

    // An administrator makes it; the daemon uses it without a restart.
    d.cli.mfa_json(None, &["admin", "init"]);
    let status = d.client_json(&alice, "status");
    assert_eq!(status["user"], alice.name.as_str(), "{status}");
    d.assert_alive();
}
/// Issue 13 #4: with the database moved aside, nothing but `mfa admin init`
/// makes a new one — not a user's command through the daemon, not root's
/// own `mfa status` — so a user whose devices are in the moved-away file is
/// never let in by the password alone (on_unavailable = "deny").
#[test]
fn a_database_moved_aside_is_recreated_by_nothing_but_admin_init() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let (secret, _) = d.enroll(&alice, "phone");
    let db = d.dir.path().join("db").join("mfa.sqlite3");
    let aside = d.dir.path().join("db").join("moved-aside");
    std::fs::create_dir(&aside).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{}{suffix}", db.display());
        if Path::new(&from).exists() {
            std::fs::rename(&from, aside.join(format!("mfa.sqlite3{suffix}"))).unwrap();
        }
    }

    let ran = d.client(&alice, "--json status");
    ran.assert_exit(exit::UNAVAILABLE);
    assert!(
        !db.exists(),
        "a user's status through the daemon created it"
    );
    let root = d.cli.mfa(Some(&alice.name), &["status"]);
    assert_eq!(root.status.code(), Some(exit::UNAVAILABLE), "{root:?}");
    let said = String::from_utf8_lossy(&root.stderr);
    assert!(said.contains("mfa admin init"), "{said}");
    assert!(!db.exists(), "root's `mfa status` created it");
    let policy = d.cli.mfa(None, &["admin", "policy", "optional"]);
    assert_eq!(policy.status.code(), Some(exit::UNAVAILABLE), "{policy:?}");
    assert!(!db.exists(), "root's `mfa admin policy` created it");

    // A login of the user with a device: refused, never passed for having
    // no device in an empty new store.
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, &alice.name),
        &[],
    );
    assert_eq!(
        said.verdict,
        Some(Verdict::Unavailable { allow: false }),
        "{said:?}"
    );
    assert!(!db.exists());

    // Put back, the device works again.
    for suffix in ["", "-wal", "-shm"] {
        let from = aside.join(format!("mfa.sqlite3{suffix}"));
        if from.exists() {
            std::fs::rename(&from, format!("{}{suffix}", db.display())).unwrap();
        }
    }
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, &alice.name),
        &[&totp(&secret, 1)],
    );
    assert_eq!(said.verdict, Some(Verdict::Success), "{said:?}");

    // `admin init` on an existing store leaves it as it is.
    let init = d.cli.mfa_json(None, &["admin", "init"]);
    assert_eq!(init["created"], false, "{init}");
    assert_eq!(d.devices(&alice.name), [totp_device("phone", true)]);
    d.assert_alive();
}

/// A command of any kind with values from `pick`: what a caller could send
/// without the `mfa` command's own checks.
fn any_command(rng: &mut Rng, pick: &mut dyn FnMut(&mut Rng) -> String) -> MfaCommand {
    use pam_mfa::internals::commands::{AddCmd, AdminCmd, BypassCmd, DeviceCmd, PolicyArg};
    let flag = |rng: &mut Rng| rng.below(2) == 0;
    let number = |rng: &mut Rng| [0, 1, 10, 11, 100_000, 100_001, u32::MAX][rng.below(7)];
    match rng.below(18) {
        0 => MfaCommand::Status,
        1 => MfaCommand::Device(DeviceCmd::List),
        2 => MfaCommand::Device(DeviceCmd::Add(AddCmd::Totp {
            name: pick(rng),
            no_verify: flag(rng),
        })),
        3 => MfaCommand::Device(DeviceCmd::Add(AddCmd::Sms {
            phone: pick(rng),
            no_verify: flag(rng),
        })),
        4 => MfaCommand::Device(DeviceCmd::Verify {
            nick: pick(rng),
            code: flag(rng).then(|| pick(rng)),
        }),
        5 => MfaCommand::Device(DeviceCmd::Delete { nick: pick(rng) }),
        6 => MfaCommand::Device(DeviceCmd::RemoveAll),
        7 => MfaCommand::Bypass(BypassCmd::Generate { count: number(rng) }),
        8 => MfaCommand::Admin(AdminCmd::Policy {
            policy: [None, Some(PolicyArg::Optional), Some(PolicyArg::Required)][rng.below(3)],
        }),
        9 => MfaCommand::Admin(AdminCmd::Users { locked: flag(rng) }),
        10 => MfaCommand::Admin(AdminCmd::Show { name: pick(rng) }),
        11 => MfaCommand::Admin(AdminCmd::Unlock { name: pick(rng) }),
        12 => MfaCommand::Admin(AdminCmd::ImportGoogleAuthenticator {
            name: pick(rng),
            file: pick(rng).into(),
        }),
        13 => MfaCommand::Admin(AdminCmd::TempCode {
            name: pick(rng),
            show: flag(rng),
        }),
        14 => MfaCommand::Audit {
            limit: number(rng),
            host: flag(rng).then(|| pick(rng)),
        },
        15 => MfaCommand::Serve,
        16 => MfaCommand::Admin(AdminCmd::GenerateKey {
            file: pick(rng).into(),
        }),
        _ => MfaCommand::Doctor {
            pam_dir: pick(rng).into(),
            sshd_config: flag(rng).then(|| pick(rng).into()),
        },
    }
}

#[test]
fn random_typed_requests_from_a_user_and_from_root_never_break_the_daemon() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let bob = TestUser::create(&[]);
    let secret = d.cli.enroll_totp(&alice.name, "phone");
    // Spent at once, but a code of the right shape.
    let current = totp(&secret, 0);
    let google = d.public.path().join("google_authenticator");
    write_file(&google, "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n", 0o644);
    let values: Vec<String> = vec![
        String::new(),
        "phone".into(),
        "sms".into(),
        "root".into(),
        alice.name.clone(),
        bob.name.clone(),
        "mfad-no-such-user".into(),
        "-x".into(),
        "../../etc/shadow".into(),
        "/etc/shadow".into(),
        google.display().to_string(),
        "+15551234567".into(),
        "5551234567".into(),
        "123456".into(),
        "1234".into(),
        "0".into(),
        "y".into(),
        "\u{1b}[2J\u{7}".into(),
        "a\nb".into(),
        "tab\there".into(),
        "\u{202e}txt.exe".into(),
        "ü".repeat(300),
        "a".repeat(protocol::MAX_FIELD_BYTES),
        "a".repeat(protocol::MAX_FIELD_BYTES + 1),
        "9".repeat(protocol::MAX_LINE_BYTES / 2),
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut pick = |rng: &mut Rng| values[rng.below(values.len())].clone();
    let (mut answered, mut conversations) = (0, 0);
    for round in 0..600 {
        let as_root = round % 3 == 0;
        let connect = |d: &Daemon| {
            if as_root {
                d.connect_as_root()
            } else {
                d.connect_as(&alice)
            }
        };
        if rng.below(3) == 0 {
            let mode = [
                Mode::Preauth,
                Mode::Authfail,
                Mode::SecondFactor,
                Mode::Account,
            ][rng.below(4)];
            let user = if rng.below(2) == 0 {
                alice.name.clone()
            } else {
                pick(&mut rng)
            };
            let request = login_line(mode, &user);
            let answers: Vec<String> = (0..rng.below(4)).map(|_| pick(&mut rng)).collect();
            let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
            if request.len() <= protocol::MAX_LINE_BYTES {
                let said = converse(connect(&d), &request, &answers);
                conversations += usize::from(said.verdict.is_some());
            }
        } else {
            let command = CommandRequest {
                command: any_command(&mut rng, &mut pick),
                user: match rng.below(3) {
                    0 => None,
                    1 => Some(alice.name.clone()),
                    _ => Some(pick(&mut rng)),
                },
                json: rng.below(2) == 0,
                code: match rng.below(3) {
                    0 => None,
                    1 => Some(current.clone()),
                    _ => Some(pick(&mut rng)),
                },
            };
            let line = protocol::encode_command(&command);
            let reply = exchange(connect(&d), &line);
            answered += usize::from(reply.is_some());
        }
        if round % 100 == 99 {
            d.assert_alive();
            // Failures pile up; keep the account usable for the next ones.
            d.cli.mfa_json(None, &["admin", "unlock", &alice.name]);
        }
    }
    assert!(
        answered > 200 && conversations > 50,
        "{answered} commands answered, {conversations} logins ended with a verdict"
    );
    d.assert_alive();
    d.assert_no_panic();
    // And it still does its work.
    let status = d.client_json(&bob, "status");
    assert_eq!(status["user"], bob.name.as_str(), "{status}");
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
                syslog: None,
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
            let d = Daemon::spawn(world, cmd, socket, log, None);
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
    const SEEDS: [&str; 6] = [
        r#"{"version":2,"request":{"command":{"command":{"device":"list"},"json":true}}}"#,
        r#"{"version":2,"request":{"command":{"command":{"bypass":{"generate":{"count":3}}},"code":"123456"}}}"#,
        r#"{"version":2,"request":{"command":{"command":"status","user":"alice","json":false,"code":null}}}"#,
        r#"{"version":2,"request":{"command":{"command":{"device":{"add":{"totp":{"name":"phone","no_verify":false}}}}}}}"#,
        r#"{"version":2,"request":{"login":{"mode":"auth","user":"alice","service":"sshd","rhost":"192.0.2.1","debug":false}}}"#,
        r#"{"version":2,"request":{"login":{"mode":"preauth","user":"bob"}}}"#,
    ];
    const TOKENS: [&str; 31] = [
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"version\"",
        "\"request\"",
        "\"command\"",
        "\"login\"",
        "\"mode\"",
        "\"auth\"",
        "\"status\"",
        "\"user\"",
        "\"code\"",
        "\"json\"",
        "2",
        "0",
        "-1",
        "4294967298",
        "1e999",
        "true",
        "null",
        "\"x\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"\u{10ffff}\"",
        " ",
        "\"\\n\"",
        "\"\\u001b[2J\"",
        "{\"version\":2,\"request\":",
    ];
    let fine = |s: &str| s.len() <= protocol::MAX_FIELD_BYTES && !s.chars().any(char::is_control);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut logins, mut commands, mut refused) = (0, 0, 0);
    for case in 0..20_000 {
        let input: Vec<u8> = match case % 4 {
            // Random bytes, now and then past the size limit.
            0 => {
                let len = if case % 1000 == 0 {
                    protocol::MAX_LINE_BYTES + 1 + rng.below(100)
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
        let Ok(request) = parsed else {
            refused += 1;
            continue;
        };
        // Whatever is accepted is within the limits, and of this version.
        assert!(input.len() <= protocol::MAX_LINE_BYTES);
        let value: Value = serde_json::from_slice(&input).expect("accepted input is JSON");
        assert_eq!(value["version"], protocol::VERSION, "{input:?}");
        match request {
            Request::Login(login) => {
                logins += 1;
                for field in [&login.user, &login.service, &login.rhost] {
                    assert!(fine(field), "{input:?}");
                }
            }
            Request::Command(command) => {
                commands += 1;
                for field in command.user.iter().chain(command.code.iter()) {
                    assert!(fine(field), "{input:?}");
                }
                // What the client would send for it parses back the same.
                let line = protocol::encode_command(&command);
                let again = protocol::parse_request(&line[..line.len() - 1])
                    .unwrap_or_else(|e| panic!("{e}: re-encoded {input:?}"));
                let Request::Command(again) = again else {
                    panic!("a command came back as a login: {input:?}")
                };
                assert_eq!(*protocol::encode_command(&again), *line, "{input:?}");
            }
        }
    }
    assert!(
        logins > 100 && commands > 100 && refused > 100,
        "the cases reach every outcome: {logins} logins, {commands} commands, {refused} refused"
    );
}

// ------------------------------------------------ issue 13 (security review)

/// Issue 13, finding 8: a member of admin_group locked by six wrong step-up
/// codes unlocked itself, gave itself a temporary code without any code,
/// then one for root. Now every admin command through the socket needs a
/// current code of the member's own and an unlocked member; nobody but
/// root gives itself (or root) a way in; all of it is in the audit trail.
#[test]
fn an_admin_group_member_needs_a_code_and_cannot_let_itself_or_root_in() {
    if !can_run() {
        return;
    }
    let admins = TestGroup::create();
    let d = Daemon::start(&format!(
        "policy = \"optional\"\nadmin_group = \"{}\"\n",
        admins.name
    ));
    let carol = TestUser::create(&[&admins]);
    let dave = TestUser::create(&[&admins]);
    let bob = TestUser::create(&[]);
    let (c, b) = (carol.name.as_str(), bob.name.as_str());
    let carol_secret = d.cli.enroll_totp(c, "phone");
    d.cli.enroll_totp(b, "phone");
    let codes = d.cli.bypass_codes(c, 6);

    // Without a code: refused, before anything happens; asked for one.
    for line in [
        format!("admin show {b}"),
        "admin users".into(),
        format!("admin temp-code {b} --show"),
        format!("--user {b} device list"),
        "audit".into(),
    ] {
        let ran = d.client(&carol, &line);
        ran.assert_exit(exit::WRONG_CODE).assert_stderr(STEP_UP);
        assert!(ran.stdout.is_empty(), "{ran}");
    }
    // With one, it works (and the code is spent).
    let temp = d.client_json(
        &carol,
        &format!("--code {} admin temp-code {b} --show", codes[0]),
    );
    assert!(
        temp["code"].as_str().is_some_and(|c| c.len() == 8),
        "{temp}"
    );
    d.client(&carol, &format!("--code {} admin users", codes[0]))
        .assert_exit(exit::WRONG_CODE);

    // Never for itself, nor a temporary code for root, nor root's devices,
    // whatever the code: refused before the code is looked at.
    for line in [
        format!("admin temp-code {c} --show"),
        format!("admin unlock {c}"),
        "admin temp-code root --show".into(),
        "--user root bypass generate".into(),
        "--user root device add totp --name x --no-verify".into(),
    ] {
        let ran = d.client(&carol, &format!("--code {} {line}", codes[1]));
        ran.assert_exit(exit::PERMISSION);
        assert!(ran.stdout.is_empty(), "{line}: {ran}");
    }
    // codes[1] was never spent.
    d.client(&carol, &format!("--code {} admin users", codes[1]))
        .assert_exit(exit::OK);

    // Locked by wrong codes, carol cannot administer, even with a right code...
    let wrong = wrong_code(&carol_secret);
    for n in 1..=6 {
        let ran = d.client(&carol, &format!("--code {wrong} admin users"));
        ran.assert_exit(if n < 6 {
            exit::WRONG_CODE
        } else {
            exit::LOCKED
        });
    }
    assert!(d.cli.lock_state(c).1);
    let ran = d.client(&carol, &format!("--code {} admin unlock {c}", codes[2]));
    ran.assert_exit(exit::PERMISSION);
    let ran = d.client(&carol, &format!("--code {} admin show {b}", codes[2]));
    ran.assert_exit(exit::LOCKED).assert_stderr("locked");
    assert!(d.cli.lock_state(c).1);
    // ...another member (with a code of its own) unlocks her.
    let dave_codes = d.cli.bypass_codes(&dave.name, 1);
    d.client(&dave, &format!("--code {} admin unlock {c}", dave_codes[0]))
        .assert_exit(exit::OK);
    assert_eq!(d.cli.lock_state(c), (0, false));

    // A member without any second factor cannot administer at all.
    let ran = d.client(&dave, &format!("admin show {b}"));
    ran.assert_exit(exit::PERMISSION)
        .assert_stderr("need a second factor on your own account");

    // All of it in syslog and the audit trail, on the member's account.
    d.logged(&[
        &format!("user={c}"),
        "result=refused",
        "command=\"admin temp-code\"",
        "kind=permission",
    ]);
    let audit = d
        .cli
        .mfa_json(None, &["audit", "--user", c, "--limit", "100"]);
    let events: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "admin-refused command=\"admin temp-code\" target=",
        "admin-refused command=\"admin unlock\"",
        "admin-refused command=\"bypass generate\" target=root",
        "code-accepted method=bypass factor=step-up via=daemon for=\"admin temp-code\"",
        "failure failures=1 factor=step-up via=daemon for=\"admin users\"",
        "locked",
    ] {
        assert!(
            events.iter().any(|e| e.starts_with(want)),
            "no {want:?} in carol's audit trail:\n{}",
            events.join("\n")
        );
    }
    let root_trail = d.cli.mfa_json(None, &["audit", "--user", "root"]);
    assert!(
        !root_trail.to_string().contains("temp-code-issued"),
        "{root_trail}"
    );
}

/// Issue 13, finding 9: an account with bypass codes and nothing else
/// had no step-up, so a process running as the user removed the codes
/// and the password alone logged in. Any second factor guards changes.
#[test]
fn a_bypass_only_account_needs_a_code_to_change_anything() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let a = alice.name.as_str();
    let codes = d.cli.bypass_codes(a, 3);
    for line in [
        "device remove-all",
        "bypass generate",
        "device add totp --name tablet --no-verify",
    ] {
        d.client(&alice, line)
            .assert_exit(exit::WRONG_CODE)
            .assert_stderr(STEP_UP);
    }
    let status = d.cli.mfa_json(Some(a), &["status"]);
    assert_eq!(status["bypass_codes_left"], 3, "{status}");
    // The login still asks for a code.
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, a),
        &["000000"],
    );
    assert_eq!(said.asked(), ["Verification code: "], "{said:?}");
    assert_eq!(
        said.verdict,
        Some(Verdict::Denied(
            pam_mfa::internals::login::Denial::WrongCode
        ))
    );
    // With one of its codes, the change is made.
    d.client(&alice, &format!("--code {} device remove-all", codes[0]))
        .assert_exit(exit::OK);
    let status = d.cli.mfa_json(Some(a), &["status"]);
    assert_eq!(status["bypass_codes_left"], 0, "{status}");
}

/// Issue 13, finding 16 (and issue 14, item 2): the step-up code was
/// spent before the request was checked, so a typo cost a code. Now a
/// request that would fail says why and spends nothing.
#[test]
fn invalid_requests_do_not_spend_the_step_up_code() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let outbox = d.dir.path().join("outbox");
    d.write_config(&format!(
        "policy = \"optional\"\n[sms]\nbackend = \"file\"\npath = \"{}\"\n",
        outbox.display()
    ));
    let alice = TestUser::create(&[]);
    let a = alice.name.as_str();
    // A verified phone, set up by root.
    d.cli.mfa(
        Some(a),
        &["device", "add", "sms", "+15551234567", "--no-verify"],
    );
    let text = std::fs::read_to_string(&outbox).expect("the PIN was texted");
    let pin: String = text
        .lines()
        .last()
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .take(4)
        .collect();
    let out = d.cli.mfa(Some(a), &["device", "verify", "sms", &pin]);
    assert!(out.status.success(), "{out:?}");
    let codes = d.cli.bypass_codes(a, 3);
    let left = || d.cli.mfa_json(Some(a), &["status"])["bypass_codes_left"].clone();
    assert_eq!(left(), 3);
    for (line, code, says) in [
        ("device add sms 12345", exit::USAGE, "phone"),
        (
            "device add totp --name bad/name --no-verify",
            exit::USAGE,
            "ickname",
        ),
        (
            "device add sms +15557654321 --no-verify",
            exit::CONFLICT,
            "already has an SMS device",
        ),
        ("device delete tablet", exit::NOT_FOUND, "no device named"),
    ] {
        d.client(&alice, &format!("--code {} {line}", codes[0]))
            .assert_exit(code)
            .assert_stderr(says);
        assert_eq!(left(), 3, "{line} spent a code");
    }
    assert_eq!(d.cli.lock_state(a), (0, false));
    // The same code still does what it is for.
    d.client(
        &alice,
        &format!(
            "--code {} device add totp --name tablet --no-verify",
            codes[0]
        ),
    )
    .assert_exit(exit::OK);
    assert_eq!(left(), 2);
}

/// Issue 13, finding 16: a wrong one-time code did not use up the code's
/// tries. A temporary code has three: then it is void.
#[test]
fn a_wrong_guess_uses_up_a_temporary_codes_try() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let a = alice.name.as_str();
    d.cli.enroll_totp(a, "phone");
    let issue = || {
        let temp = d.cli.mfa_json(None, &["admin", "temp-code", a, "--show"]);
        temp["code"].as_str().unwrap().to_owned()
    };
    // Untouched, it works.
    let code = issue();
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, a),
        &[&code],
    );
    assert_eq!(said.verdict, Some(Verdict::Success), "{said:?}");
    // After three wrong guesses of its shape, it is void.
    let code = issue();
    let wrong = if code == "12345678" {
        "87654321"
    } else {
        "12345678"
    };
    for _ in 0..3 {
        let said = converse(
            d.connect_as_root(),
            &login_line(Mode::SecondFactor, a),
            &[wrong],
        );
        assert_eq!(
            said.verdict,
            Some(Verdict::Denied(
                pam_mfa::internals::login::Denial::WrongCode
            ))
        );
    }
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, a),
        &[&code],
    );
    assert_eq!(
        said.verdict,
        Some(Verdict::Denied(
            pam_mfa::internals::login::Denial::WrongCode
        )),
        "a temporary code took a second guess: {said:?}"
    );
    assert_eq!(d.cli.lock_state(a), (4, false));
}

/// Issue 13, finding 14: refusals by the daemon are logged, and what a
/// caller controls (names, the service) cannot reorder or hide a log line.
#[test]
fn refusals_are_logged_and_odd_characters_are_escaped() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let alice = TestUser::create(&[]);
    let bob = TestUser::create(&[]);
    // Another account's devices: refused, logged, audited on alice's.
    d.client(&alice, &format!("--user {} device list", bob.name))
        .assert_exit(exit::PERMISSION);
    d.logged(&[
        &format!("user={}", alice.name),
        "result=refused",
        "command=\"device list\"",
        &format!("target={}", bob.name),
    ]);
    // An admin command: the same.
    d.client(&alice, "admin users")
        .assert_exit(exit::PERMISSION);
    d.logged(&[
        &format!("user={}", alice.name),
        "result=refused",
        "command=\"admin users\"",
    ]);
    let trail = d.cli.mfa_json(None, &["audit", "--user", &alice.name]);
    assert!(trail.to_string().contains("admin-refused"), "{trail}");

    // A login for a name with a right-to-left override (control
    // characters are refused at the protocol already).
    let evil = "gpj.\u{202e}exe";
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, evil),
        &["123456"],
    );
    assert_eq!(
        said.verdict,
        Some(Verdict::Denied(
            pam_mfa::internals::login::Denial::UnknownUser
        )),
        "{said:?}"
    );
    let logged = d.logged(&["result=denied", "gpj."]);
    assert!(logged.contains("user=\"gpj.\\u{202e}exe\""), "{logged}");
    for l in d.log_lines() {
        assert!(!l.contains('\u{202e}'), "an unescaped U+202E: {l:?}");
    }
}

/// Issue 13, finding 5: 16 idle half-requests from one user kept every
/// other request refused. Now one user holds at most four places, others
/// (and root's logins) are served at once, and a request must be whole
/// within 10 s of its connection, however it trickles in.
#[test]
fn sixteen_half_requests_from_one_user_do_not_shut_out_others() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start("policy = \"optional\"\n");
    let mallory = TestUser::create(&[]);
    let bob = TestUser::create(&[]);
    d.cli.enroll_totp(&bob.name, "phone");
    let bob_codes = d.cli.bypass_codes(&bob.name, 1);
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut s = d.connect_as(&mallory);
        // Half a line, then nothing (a refused one may already be closed).
        let _ = s.write_all(b"{\"version\":2,\"request\":{\"command\":");
        held.push(s);
    }
    // Bob's command and root's login for bob: served promptly.
    let asked = Instant::now();
    let reply = d.raw(&bob, &status_request()).expect("a reply");
    assert_eq!(reply.exit, exit::OK, "{reply:?}");
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, &bob.name),
        &[&bob_codes[0]],
    );
    assert_eq!(said.verdict, Some(Verdict::Success), "{said:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    // Mallory's own further requests are the ones turned away.
    assert_busy(&d.raw(&mallory, &status_request()).expect("a reply"));
    // The deadline counts from the connection: a request trickled in a
    // byte a second is dropped within the daemon's 10 s, unanswered.
    let mut drip = d.connect_as(&bob);
    drip.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let dripped = Instant::now();
    let mut probe = [0u8; 1];
    let dropped = loop {
        if drip.write_all(b" ").is_err() {
            break dripped.elapsed();
        }
        match drip.read(&mut probe) {
            Ok(0) | Err(_) if dripped.elapsed() > Duration::from_secs(30) => {
                panic!("never dropped")
            }
            Ok(0) => break dripped.elapsed(),
            Ok(_) => panic!("the daemon answered a request without its end"),
            Err(_) => {}
        }
    };
    assert!(dropped < Duration::from_secs(15), "{dropped:?}");
    // Mallory's half-requests are dropped too, and its places come back.
    for s in held {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = read_reply(s);
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    served_again(&d, &mallory);
    d.assert_alive();
    d.assert_no_panic();
}

/// Issue 13, finding 10: the daemon chmodded its socket by path after
/// bind, following a symlink another user could put there. Now the mode
/// comes from the umask at bind, and a directory others can write is
/// refused before anything is made in it.
#[test]
fn the_socket_is_made_right_at_bind_and_never_in_a_directory_others_can_write() {
    if !can_run() {
        return;
    }
    let world = World::new("policy = \"optional\"\n");
    let mallory = TestUser::create(&[]);
    // A directory mallory may write (not sticky), holding mallory's symlink
    // at the socket's path to a root-owned file.
    let open_dir = world.public.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let victim = world.dir.path().join("victim");
    write_file(&victim, "root's\n", 0o600);
    let socket = open_dir.join("mfa.sock");
    std::os::unix::fs::symlink(&victim, &socket).unwrap();
    std::os::unix::fs::lchown(&socket, Some(mallory.uid), None).unwrap();
    let out = Command::new(mfa_bin())
        .arg("--config")
        .arg(&world.cli.config)
        .args(["serve", "--socket"])
        .arg(&socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("writable by others"), "{stderr}");
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o600,
        "the daemon changed the mode of a file behind a symlink"
    );
    assert!(std::fs::symlink_metadata(&socket)
        .unwrap()
        .file_type()
        .is_symlink());

    // In a directory only root writes, the socket is everyone's from the
    // start, under root's strictest umask, and nothing is chmodded later.
    let dir = world.public.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.join("mfa.sock");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 077; exec \"$@\"")
        .arg("sh")
        .arg(mfa_bin())
        .arg("--config")
        .arg(&world.cli.config)
        .args(["serve", "--socket"])
        .arg(&socket);
    let log = world.dir.path().join("serve.log");
    let d = Daemon::spawn(world, cmd, socket.clone(), log, None);
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
    let reply = d
        .raw(&mallory, &status_request())
        .expect("mallory reaches it");
    assert_eq!(reply.exit, exit::OK, "{reply:?}");
}

/// Issue 13 #6: an ordinary user's `device add sms` / `device delete sms`
/// loop through the daemon stops at the hourly limit, and a login asking
/// for a text over the limit is told so and can still use its app.
#[test]
fn text_messages_stop_at_the_hourly_limit() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n");
    let outbox = d.dir.path().join("sms-outbox");
    d.write_config(&format!(
        "policy = \"optional\"\n[sms]\nbackend = \"file\"\npath = \"{}\"\nmax_per_user_hour = 3\n",
        outbox.display()
    ));
    let texts = || {
        std::fs::read_to_string(&outbox)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let alice = TestUser::create(&[]);
    let mut added = 0;
    let mut refused = None;
    for _ in 0..10 {
        let ran = d.client(&alice, "device add sms +15551234567 --no-verify");
        if ran.code != exit::OK {
            refused = Some(ran);
            break;
        }
        added += 1;
        d.client(&alice, "device delete sms").assert_exit(exit::OK);
    }
    assert_eq!(added, 3, "texts before the limit");
    let refused = refused.expect("the loop was stopped");
    refused
        .assert_exit(exit::LIMITED)
        .assert_stderr("Too many text messages; try again in 60 minutes or use another method");
    assert_eq!(texts(), 3);
    assert!(d.devices(&alice.name).is_empty(), "no pending phone left");
    let audit = d.cli.mfa_json(None, &["--user", &alice.name, "audit"]);
    assert!(
        audit.to_string().contains("sms-limited"),
        "the limit hit is audited: {audit}"
    );

    // A login: bob has an app and a phone; his texts run out.
    let bob = TestUser::create(&[]);
    let (secret, _) = d.enroll(&bob, "phone");
    let add = d.cli.mfa(
        Some(&bob.name),
        &["device", "add", "sms", "+15557654321", "--no-verify"],
    );
    assert!(add.status.success(), "{add:?}");
    let last = std::fs::read_to_string(&outbox).unwrap();
    let pin = last
        .lines()
        .last()
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|w| w.len() == 4)
        .unwrap()
        .to_owned();
    let verify = d
        .cli
        .mfa(Some(&bob.name), &["device", "verify", "sms", &pin]);
    assert!(verify.status.success(), "{verify:?}");
    for _ in 0..2 {
        let said = converse(
            d.connect_as_root(),
            &login_line(Mode::SecondFactor, &bob.name),
            &["sms", "0000000"],
        );
        assert!(said.said("Wrong verification code"), "{said:?}");
    }
    assert_eq!(texts(), 6);
    let said = converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, &bob.name),
        &["sms", &totp(&secret, 1)],
    );
    assert!(
        said.said("Too many text messages; try again in"),
        "the user is told: {said:?}"
    );
    assert_eq!(
        said.verdict,
        Some(Verdict::Success),
        "the app still works: {said:?}"
    );
    assert_eq!(texts(), 6, "no text over the limit");
}

/// Issue 14 #10: syslog and the audit trail speak one vocabulary: a wrong
/// password is `reason=wrong-password` (not a code's `WrongCode`), a wrong
/// code `reason=wrong-code` with `factor=code` in its audit row, and an
/// attempt on a locked account is in the audit trail too.
#[test]
fn syslog_reasons_and_audit_rows_name_what_was_wrong() {
    if !can_run() {
        return;
    }
    let d = Daemon::start("policy = \"optional\"\n[lockout]\ndeny = 2\n");
    let alice = TestUser::create(&[]);
    let a = alice.name.as_str();
    d.enroll(&alice, "phone");

    let said = converse(d.connect_as_root(), &login_line(Mode::Authfail, a), &[]);
    assert_eq!(
        said.verdict,
        Some(Verdict::Denied(
            pam_mfa::internals::login::Denial::WrongCode
        ))
    );
    let line = d.logged(&[&format!("user={a}"), "mode=authfail", "result=denied"]);
    assert!(line.contains("reason=wrong-password"), "{line}");

    converse(
        d.connect_as_root(),
        &login_line(Mode::SecondFactor, a),
        &["000000"],
    );
    let line = d.logged(&[&format!("user={a}"), "mode=auth ", "reason=locked"]);
    assert!(
        line.contains("reason=locked"),
        "the second failure locks: {line}"
    );
    converse(d.connect_as_root(), &login_line(Mode::Account, a), &[]);
    d.logged(&[&format!("user={a}"), "mode=account", "reason=locked"]);
    for l in d.log_lines() {
        assert!(
            !l.contains("WrongCode") && !l.contains("reason=Locked"),
            "{l}"
        );
    }

    let trail = d.cli.mfa_json(None, &["audit", "--user", a]);
    let rows: Vec<String> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["event"].as_str().unwrap(),
                r["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        rows.iter()
            .any(|r| r.starts_with("failure failures=1 factor=password")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("failure failures=2 factor=code")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("login-locked mode=account")),
        "{rows:?}"
    );
}
