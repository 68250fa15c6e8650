//! Hostile and broken input through the real module and the real command:
//! user names, codes, nicknames, phone numbers, config files and
//! google-authenticator files. Each case must be refused with a clear error
//! — the command exits non-zero with a message on stderr, the module denies
//! — never crash, never succeed, and write nothing.
//!
//! Every table has a positive control first, so a refusal below it is the
//! input's doing, not a broken setup's.

use crate::common::*;
use crate::support::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Output;

/// One case: a label for the summary, the bytes, and a fragment the
/// command's error message must contain (unused for module cases).
struct Case {
    label: String,
    input: Vec<u8>,
    expect: &'static str,
}

fn case(label: impl Into<String>, input: impl AsRef<[u8]>, expect: &'static str) -> Case {
    Case {
        label: label.into(),
        input: input.as_ref().to_vec(),
        expect,
    }
}

#[derive(Default)]
struct Summary {
    module: usize,
    cli: usize,
}

/// The command refused: a documented non-zero exit, "mfa: ..." on stderr
/// holding `expect`, and nothing a terminal would act on echoed back.
fn assert_cli_refused(c: &Case, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!("{}: {:?}", c.label, String::from_utf8_lossy(&c.input));
    assert!(
        out.status.code().is_some(),
        "{what}: mfa died of a signal: {out:?}"
    );
    let code = out.status.code().unwrap();
    assert!((2..=8).contains(&code), "{what}: exit {code}: {stderr}");
    assert!(
        stderr.contains(c.expect),
        "{what}: stderr lacks {:?}: {stderr}",
        c.expect
    );
    assert!(
        !out.stderr
            .iter()
            .any(|&b| b == 0x1b || b == b'\r' || b == 0),
        "{what}: raw control characters echoed to the terminal: {stderr:?}"
    );
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// The stack of DESIGN.md with pam_permit for the password: pam_mfa alone
/// decides, so a refusal cannot be the password module's.
const PERMIT: &str = "permit-password";

fn permit_stack(h: &Harness) -> String {
    h.stack_with_password_module(&format!("{}/pam_permit.so", security_dir()), "")
}

fn user_names() -> Vec<Case> {
    vec![
        case("empty", "", "user"),
        case("over-long", "a".repeat(300), "user"),
        case("very long", "b".repeat(20_000), "user"),
        case("newline", "alice\nroot", "user"),
        case("tab", "alice\t", "user"),
        case("escape sequence", "\x1b[2Jalice", "user"),
        case("carriage return", "alice\r", "user"),
        case("bell", "al\x07ice", "user"),
        case("DEL", "alice\x7f", "user"),
        case("non-UTF-8", b"al\xffice", "UTF-8"),
        case("lone continuation byte", b"\x80alice", "UTF-8"),
        case("slash", "../alice", "user"),
        case("colon", "alice:x:0:0", "user"),
        case("space", "alice bob", "user"),
        case("trailing space", "alice ", "user"),
        case("upper case", "ALICE", "no user ALICE"),
        case("look-alike (Cyrillic a)", "\u{430}lice", "no user"),
        case("right-to-left override", "\u{202e}ecila", "user"),
    ]
}

#[test]
fn bad_user_names_are_refused_by_the_module_and_the_command() {
    let h = Harness::new();
    h.write_service(PERMIT, &permit_stack(&h));
    let secret = h.enroll_totp("alice", "phone");
    let mut n = Summary::default();

    // Controls: with this stack, bob (no device) and alice (valid code) pass.
    let bob = h.login_with(PERMIT, "bob", vec![]);
    bob.assert_prompts(&[]);
    assert!(bob.succeeded(), "{bob:?}");
    let alice = h.login_with(PERMIT, "alice", vec![text(totp(&secret, 1))]);
    alice.assert_prompts(&[CODE_PROMPT]);
    assert!(alice.succeeded(), "{alice:?}");
    let before = h.database_dump();

    for c in user_names() {
        let mut s = start_session(h.pamtester_command_os(
            PERMIT,
            os(&c.input),
            &["authenticate", "acct_mgmt"],
        ));
        while s.next_prompt().is_some() {
            s.answer("123456");
        }
        let login = s.finish();
        assert_no_signal(&login, &c.label);
        assert_eq!(login.code, 1, "{}: {login:?}", c.label);
        assert!(!login.succeeded(), "{}: {login:?}", c.label);
        n.module += 1;

        // A write command for that account.
        let out = h.mfa_os(&[
            os(b"--user"),
            os(&c.input),
            os(b"device"),
            os(b"add"),
            os(b"totp"),
            os(b"--no-verify"),
        ]);
        assert_cli_refused(&c, &out);
        n.cli += 1;
    }
    assert_eq!(h.database_dump(), before, "a bad user name wrote something");
    eprintln!(
        "bad input, user names: {} module + {} command cases refused",
        n.module, n.cli
    );
}

fn codes(other_secret: &str) -> Vec<Case> {
    vec![
        case("empty", "", ""),
        case("spaces", "      ", ""),
        case("tab", "\t", ""),
        case("five digits", "12345", ""),
        case("seven digits", "1234567", ""),
        case("over-long", "7".repeat(3000), ""),
        case("full-width digits", "１２３４５６", ""),
        case("Arabic-Indic digits", "١٢٣٤٥٦", ""),
        case("non-UTF-8", b"\xff\xfe\xfd\xfc\xfb\xfa", ""),
        case("invalid UTF-8 sequence", b"12\xc3\x2834", ""),
        case("escape sequence", "\x1b[2J000000", ""),
        case("NUL inside", b"000\x00000", ""),
        case("literal ^C", b"\x03000000", ""),
        case("literal ^D", b"000000\x04", ""),
        case("carriage return", b"000\r000", ""),
        case("sign", "-000000", ""),
        case("shell", "000000; rm -rf /", ""),
        case("scientific", "1e6", ""),
        case("hex", "0x1F2E3D", ""),
        case("huge number", "99999999999999999999999", ""),
        case("word sms", "sms", ""),
        case("bypass-shaped, never issued", "ABCDE-FGHJK", ""),
        case("scratch-shaped, never issued", "12345678", ""),
        case("another secret's code", totp(other_secret, 0), ""),
        case("the password", password("alice"), ""),
    ]
}

/// Quotes every control character with ^V, so the terminal passes it on
/// instead of acting on it (^C would interrupt pamtester, ^D end input).
fn quoted(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in bytes {
        if b < 0x20 || b == 0x7f {
            out.push(0x16);
        }
        out.push(b);
    }
    out
}

#[test]
fn bad_codes_are_refused_and_counted() {
    let h = Harness::new();
    h.write_config("[lockout]\ndeny = 1000\n");
    let secret = h.enroll_totp("alice", "phone");
    // The check at the end uses another device: the control spends a step.
    let tablet = h.enroll_totp("alice", "tablet");
    let other = h.enroll_totp("bob", "phone");
    let control = h.login("alice", &totp(&secret, 1));
    assert!(control.succeeded(), "{control:?}");

    let cases = codes(&other);
    for (i, c) in cases.iter().enumerate() {
        let mut s = h.start_pamtester(SERVICE, "alice", &["authenticate", "acct_mgmt"]);
        assert_eq!(s.next_prompt(), Some(PASSWORD_PROMPT));
        s.answer(password("alice"));
        assert_eq!(s.next_prompt(), Some(CODE_PROMPT), "{}", c.label);
        s.answer_bytes(&quoted(&c.input));
        let login = s.finish();
        assert_no_signal(&login, &c.label);
        login.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
        assert_eq!(login.code, 1, "{}: {login:?}", c.label);
        assert!(!login.authenticated(), "{}: {login:?}", c.label);
        assert!(
            login.transcript.contains("Wrong verification code"),
            "{}: {login:?}",
            c.label
        );
        assert_eq!(
            h.lock_state("alice"),
            (i as u64 + 1, false),
            "{}: every refusal is a counted failure",
            c.label
        );
    }
    let after = h.login("alice", &totp(&tablet, 1));
    assert!(after.succeeded(), "{after:?}");
    eprintln!(
        "bad input, codes: {} module cases refused and counted",
        cases.len()
    );
}

fn nicknames() -> Vec<Case> {
    vec![
        case("empty", "", "nickname"),
        case("33 characters", "n".repeat(33), "nickname"),
        case("over-long", "n".repeat(5000), "nickname"),
        case("reserved sms", "sms", "\"sms\""),
        case("reserved SMS", "SMS", "\"sms\""),
        case("space", "my phone", "nickname"),
        case("slash", "../phone", "nickname"),
        case("newline", "phone\nroot", "nickname"),
        case("tab", "phone\t", "nickname"),
        case("escape sequence", "\x1b[31mphone", "nickname"),
        case("non-ASCII", "téléphone", "nickname"),
        case("non-UTF-8", b"ph\xffone", "UTF-8"),
        case("quote", "phone\"", "nickname"),
        case("shell", "phone;reboot", "nickname"),
        case("taken", "phone", "already"),
    ]
}

#[test]
fn bad_nicknames_are_refused() {
    let h = Harness::new();
    h.enroll_totp("alice", "phone");
    let ok = h.mfa(
        Some("alice"),
        &["device", "add", "totp", "--name", "a-1_b.c", "--no-verify"],
    );
    assert!(ok.status.success(), "control: {ok:?}");
    assert!(h
        .mfa(Some("alice"), &["device", "delete", "a-1_b.c"])
        .status
        .success());
    let before = h.database_dump();

    let cases = nicknames();
    for c in &cases {
        let out = h.mfa_os(&[
            os(b"--user"),
            os(b"alice"),
            os(b"device"),
            os(b"add"),
            os(b"totp"),
            os(b"--no-verify"),
            os(b"--name"),
            os(&c.input),
        ]);
        assert_cli_refused(c, &out);
    }
    assert_eq!(
        h.database_dump(),
        before,
        "a refused nickname wrote something"
    );
    eprintln!(
        "bad input, nicknames: {} command cases refused",
        cases.len()
    );
}

fn phones() -> Vec<Case> {
    const INVALID: &str = "invalid phone number";
    vec![
        case("empty", "", INVALID),
        case("three digits", "123", INVALID),
        case("nine digits", "555123456", INVALID),
        case("eleven digits", "55512345678", INVALID),
        case("plus alone", "+", INVALID),
        case("country code 0", "+0123456789", INVALID),
        case("E.164 too short", "+1234567", INVALID),
        case("E.164 too long", "+1234567890123456", INVALID),
        case("dashes", "555-123-4567", INVALID),
        case("parentheses", "(555)1234567", INVALID),
        case("spaces", "555 123 4567", INVALID),
        case("full-width digits", "５５５１２３４５６７", INVALID),
        case("Arabic-Indic digits", "٥٥٥١٢٣٤٥٦٧", INVALID),
        case("over-long", "5".repeat(10_000), INVALID),
        case("newline", "5551234567\n", INVALID),
        case("escape sequence", "\x1b[2J5551234567", INVALID),
        case("letters", "555CALLNOW", INVALID),
        case("non-UTF-8", b"555\xff234567", "UTF-8"),
        case("leading dash", "-5551234567", "unexpected argument"),
    ]
}

#[test]
fn bad_phone_numbers_are_refused() {
    let h = Harness::new();
    let outbox = h.dir.path().join("sms-outbox");
    h.write_config(&format!(
        "[sms]\nbackend = \"file\"\npath = \"{}\"\n",
        outbox.display()
    ));
    h.create_database();
    let ok = h.mfa(
        Some("alice"),
        &["device", "add", "sms", "+15551234567", "--no-verify"],
    );
    assert!(ok.status.success(), "control: {ok:?}");
    assert!(h
        .mfa(Some("alice"), &["device", "delete", "sms"])
        .status
        .success());
    let texts = std::fs::read_to_string(&outbox).unwrap();
    let before = h.database_dump();

    let cases = phones();
    for c in &cases {
        let out = h.mfa_os(&[
            os(b"--user"),
            os(b"alice"),
            os(b"device"),
            os(b"add"),
            os(b"sms"),
            os(&c.input),
            os(b"--no-verify"),
        ]);
        assert_cli_refused(c, &out);
    }
    assert_eq!(
        h.database_dump(),
        before,
        "a refused number wrote something"
    );
    assert_eq!(
        std::fs::read_to_string(&outbox).unwrap(),
        texts,
        "a refused number was texted"
    );
    eprintln!(
        "bad input, phone numbers: {} command cases refused",
        cases.len()
    );
}

/// Config files, with the part of the error message that must say what is
/// wrong: the key, or the file and line where parsing stopped.
fn configs(db: &Path) -> Vec<Case> {
    // Paths under the test's own directory, so that an unprivileged run
    // meets the same checks as root (and not "needs root").
    let dir = db.parent().unwrap().display().to_string();
    let db = db.display();
    let d = format!("database = \"{db}\"\n");
    let with = |body: &str| format!("{d}{body}");
    let long_path = format!("{dir}/{}/mfa.sqlite3", "d".repeat(5000));
    let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    #[rustfmt::skip]
    let cases = vec![
        case("policy word", with("policy = \"sometimes\"\n"), "toml:2: unknown variant `sometimes`"),
        case("policy number", with("policy = 1\n"), "toml:2: "),
        case("policy table", with("policy = { a = 1 }\n"), "toml:2: "),
        case("on_unavailable word", with("on_unavailable = \"maybe\"\n"), "toml:2: unknown variant `maybe`"),
        case("relative database", "database = \"mfa.sqlite3\"\n", "key `database`: must be an absolute path"),
        case("empty database", "database = \"\"\n", "key `database`: must be an absolute path"),
        case("database is a directory", format!("database = \"{dir}\"\n"), "not a regular file"),
        case("database path too long", format!("database = \"{long_path}\"\n"), "File name too long"),
        case("deny 0", with("[lockout]\ndeny = 0\n"), "key `lockout.deny`"),
        case("deny 1001", with("[lockout]\ndeny = 1001\n"), "key `lockout.deny`"),
        case("deny negative", with("[lockout]\ndeny = -1\n"), "toml:3: invalid value: integer `-1`"),
        case("deny overflow", with("[lockout]\ndeny = 18446744073709551616\n"), "toml:3: number too large"),
        case("unlock_after text", with("[lockout]\nunlock_after = \"1h\"\n"), "toml:3: invalid type: string \"1h\""),
        case("digits 5", with("[totp]\ndigits = 5\n"), "key `totp.digits`"),
        case("digits 9", with("[totp]\ndigits = 9\n"), "key `totp.digits`"),
        case("digits 256", with("[totp]\ndigits = 256\n"), "toml:3: invalid value: integer `256`"),
        case("period 0", with("[totp]\nperiod = 0\n"), "key `totp.period`"),
        case("period 301", with("[totp]\nperiod = 301\n"), "key `totp.period`"),
        case("window 11", with("[totp]\nwindow = 11\n"), "key `totp.window`"),
        case("window negative", with("[totp]\nwindow = -1\n"), "toml:3: invalid value: integer `-1`"),
        case("algorithm MD5", with("[totp]\nalgorithm = \"MD5\"\n"), "toml:3: unknown variant `MD5`"),
        case("issuer colon", with("issuer = \"a:b\"\n"), "key `issuer`"),
        case("issuer control escape", with("issuer = \"a\\u0007b\"\n"), "key `issuer`"),
        case("issuer newline escape", with("issuer = \"a\\nb\"\n"), "key `issuer`"),
        case("issuer raw control", with("issuer = \"a\x01b\"\n"), "toml:2: invalid basic string"),
        case("sms backend", with("[sms]\nbackend = \"pigeon\"\n"), "toml:3: unknown variant `pigeon`"),
        case("sms command empty", with("[sms]\nbackend = \"command\"\n"), "key `sms.command`"),
        case("sms command relative", with("[sms]\nbackend = \"command\"\ncommand = [\"send-sms\"]\n"), "key `sms.command`"),
        case("sms path relative", with("[sms]\nbackend = \"file\"\npath = \"out\"\n"), "key `sms.path`"),
        case("sms timeout 0", with("[sms]\ntimeout = 0\n"), "key `sms.timeout`"),
        case("sms timeout 301", with("[sms]\ntimeout = 301\n"), "key `sms.timeout`"),
        case("unknown key", with("nullok = true\n"), "toml:2: unknown field `nullok`"),
        case("unknown section", with("[extra]\nkey = 1\n"), "toml:2: unknown field `extra`"),
        case("duplicate key", with("policy = \"required\"\npolicy = \"optional\"\n"), "toml:3: duplicate key `policy`"),
        case("exempt_groups string", with("exempt_groups = \"wheel\"\n"), "toml:2: invalid type: string \"wheel\""),
        case("enroll_at_login text", with("enroll_at_login = \"yes\"\n"), "toml:2: invalid value: string \"yes\", expected true, false or \"offer\""),
        case("unterminated string", with("issuer = \"abc\n"), "toml:2: invalid basic string"),
        case("NUL byte", [d.as_bytes(), b"\x00\n"].concat(), "toml:2: "),
        case("non-UTF-8", [d.as_bytes(), b"issuer = \"\xff\"\n"].concat(), "is not valid UTF-8 text"),
        case("binary", [d.as_bytes(), &png].concat(), "is not valid UTF-8 text"),
        case("over 64 KiB", with(&"# padding\n".repeat(7000)), "is larger than 65536 bytes"),
    ];
    cases
}

#[test]
fn bad_config_files_are_refused_by_the_command_and_deny_in_the_module() {
    let h = Harness::new();
    let db = h.db.display().to_string();
    let good = format!("database = \"{db}\"\n");
    let control = h.login("bob", "unused");
    assert!(control.succeeded(), "control: {control:?}");
    let before = h.database_dump();

    let cases = configs(&h.db);
    for c in &cases {
        std::fs::write(&h.config, &c.input).unwrap();
        let out = h.mfa(None, &["admin", "policy", "required"]);
        assert_cli_refused(c, &out);
        assert_eq!(out.status.code(), Some(8), "{}: {out:?}", c.label);

        let login = h.login("bob", "unused");
        assert_no_signal(&login, &c.label);
        assert_eq!(login.code, 1, "{}: {login:?}", c.label);
        assert!(!login.authenticated(), "{}: {login:?}", c.label);
    }
    h.write_raw_config(&good);
    assert_eq!(
        h.database_dump(),
        before,
        "a refused config changed the database"
    );
    let after = h.login("bob", "unused");
    assert!(after.succeeded(), "{after:?}");
    eprintln!(
        "bad input, config files: {} cases, each refused by the command and denying in the module",
        cases.len()
    );
}

fn ga_files() -> Vec<Case> {
    vec![
        case("empty", "", "empty"),
        case("secret too short", "JBSWY3DPEHPK3PX\n", "80 bits"),
        case("secret not base32", "JBSWY3DP!HPK3PXPJBSWY3DP\n", "base32"),
        case(
            "HOTP",
            "JBSWY3DPEHPK3PXPJBSWY3DP\n\" HOTP_COUNTER 1\n",
            "HOTP",
        ),
        case(
            "unknown option",
            "JBSWY3DPEHPK3PXPJBSWY3DP\n\" EVIL 1\n",
            "unknown option",
        ),
        case(
            "step 0",
            "JBSWY3DPEHPK3PXPJBSWY3DP\n\" STEP_SIZE 0\n",
            "STEP_SIZE",
        ),
        case(
            "window 101",
            "JBSWY3DPEHPK3PXPJBSWY3DP\n\" WINDOW_SIZE 101\n",
            "WINDOW_SIZE must be followed by a number of codes from 1 to 100",
        ),
        case(
            "bad scratch code",
            "JBSWY3DPEHPK3PXPJBSWY3DP\n1234567\n",
            "8 digits",
        ),
        case(
            "non-UTF-8",
            b"JBSWY3DPEHPK3PXPJBSWY3DP\n\xff\xfe\n",
            "not text",
        ),
        case("binary", [0u8, 1, 2, 3, 0xff, 0xfe, 0x7f, 0x1b], "not text"),
        case(
            "over 4 KiB",
            format!("JBSWY3DPEHPK3PXPJBSWY3DP\n{}", "12345678\n".repeat(500)),
            "larger than",
        ),
    ]
}

#[test]
fn bad_google_authenticator_files_are_refused() {
    let h = Harness::new();
    let file = h.dir.path().join("google_authenticator");
    write_file(
        &file,
        "JBSWY3DPEHPK3PXPJBSWY3DP\n\" TOTP_AUTH\n12345678\n",
        0o600,
    );
    let f = file.display().to_string();
    let ok = h.mfa(None, &["admin", "import-google-authenticator", "carol", &f]);
    assert!(ok.status.success(), "control: {ok:?}");
    assert!(h
        .mfa(Some("carol"), &["device", "remove-all"])
        .status
        .success());
    let before = h.database_dump();

    let cases = ga_files();
    for c in &cases {
        std::fs::write(&file, &c.input).unwrap();
        let out = h.mfa(None, &["admin", "import-google-authenticator", "alice", &f]);
        assert_cli_refused(c, &out);
    }
    assert_eq!(h.database_dump(), before, "a refused file was imported");
    eprintln!(
        "bad input, google-authenticator files: {} command cases refused",
        cases.len()
    );
}
