//! Logins through real libpam: pamtester under pam_wrapper, with
//! pam_matrix as the password module and pam_mfa stacked as DESIGN.md says
//! (preauth, password, authfail, second factor, account).

mod common;

use std::time::Duration;

use common::*;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;

/// The harness itself: pam_wrapper, nss_wrapper, pam_matrix and the pty
/// driver, without pam_mfa. If this fails, the other failures are not the
/// module's.
#[test]
fn harness_drives_a_plain_pam_matrix_stack() {
    let h = Harness::without_database("");
    let matrix = wrapper_dir().join("pam_matrix.so");
    let matrix = matrix.display();
    h.write_service(
        "plain",
        &format!(
            "auth required {matrix}\naccount required {}/pam_permit.so\n",
            security_dir()
        ),
    );
    let ok = h.login_with("plain", "alice", vec![text(password("alice"))]);
    ok.assert_prompts(&[PASSWORD_PROMPT]);
    assert!(ok.succeeded(), "{ok:?}");
    let bad = h.login_with("plain", "alice", vec![text("wrong")]);
    bad.assert_prompts(&[PASSWORD_PROMPT]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(!bad.authenticated(), "{bad:?}");
}

#[test]
fn module_exports_the_pam_entry_points() {
    let path = std::ffi::CString::new(module_path().as_os_str().as_bytes()).unwrap();
    // SAFETY: dlopen gets a NUL-terminated path; RTLD_NOW makes it resolve
    // every symbol now, so a library built without its dependencies fails
    // here rather than inside a login.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen failed: {}", dlerror());
    for name in ["pam_sm_authenticate", "pam_sm_setcred", "pam_sm_acct_mgmt"] {
        let symbol = std::ffi::CString::new(name).unwrap();
        // SAFETY: `handle` is a live handle from dlopen; we only compare the
        // returned address with NULL and never call it.
        let address = unsafe { libc::dlsym(handle, symbol.as_ptr()) };
        assert!(!address.is_null(), "{name} is not exported: {}", dlerror());
    }
    // SAFETY: `handle` came from dlopen and is closed exactly once.
    assert_eq!(unsafe { libc::dlclose(handle) }, 0);
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string that stays
    // valid until the next dl* call on this thread; we copy it at once.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "(no dlerror)".into()
        } else {
            std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

#[test]
fn totp_code_logs_in_and_the_same_code_is_refused_the_second_time() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let code = totp(&secret, 1);

    let first = h.login("alice", &code);
    first.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
    assert!(first.succeeded(), "{first:?}");
    assert_eq!(h.lock_state("alice"), (0, false));

    let replay = h.login("alice", &code);
    replay.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
    assert_eq!(replay.code, 1, "{replay:?}");
    assert!(!replay.authenticated(), "{replay:?}");
    assert_eq!(h.lock_state("alice"), (1, false), "a replay is a failure");
}

#[test]
fn wrong_empty_and_overlong_codes_are_refused_and_counted() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    // The terminal and misc_conv cap one answer at a few thousand bytes;
    // the module still gets far more than any code is long.
    let overlong = "7".repeat(5000);
    for (n, code) in [wrong_code(&secret), String::new(), overlong]
        .iter()
        .enumerate()
    {
        let login = h.login("alice", code);
        login.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
        assert_eq!(login.code, 1, "code of {} chars: {login:?}", code.len());
        assert!(!login.authenticated(), "{login:?}");
        assert_eq!(h.lock_state("alice"), (n as u64 + 1, false));
    }
    let good = h.login("alice", &totp(&secret, 1));
    assert!(good.succeeded(), "{good:?}");
    assert_eq!(
        h.lock_state("alice"),
        (0, false),
        "success resets the count"
    );
}

#[test]
fn a_bypass_code_works_once() {
    let h = Harness::new();
    h.enroll_totp("alice", "phone");
    let codes = h.bypass_codes("alice", 3);
    assert_eq!(codes.len(), 3);

    let first = h.login("alice", &codes[0]);
    first.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
    assert!(first.succeeded(), "{first:?}");
    assert!(first.transcript.contains("2 left"), "{first:?}");

    let again = h.login("alice", &codes[0]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(!again.authenticated(), "{again:?}");
    assert_eq!(h.lock_state("alice"), (1, false));

    let second = h.login("alice", &codes[1]);
    assert!(second.succeeded(), "{second:?}");
    assert!(second.transcript.contains("1 left"), "{second:?}");
}

/// Three wrong passwords and three wrong codes: six failures in a row.
fn lock_alice(h: &Harness, secret: &str) {
    for n in 1..=3 {
        let login = h.login_with(SERVICE, "alice", vec![text("not-the-password")]);
        login.assert_prompts(&[PASSWORD_PROMPT]);
        assert_eq!(login.code, 1, "{login:?}");
        assert_eq!(h.lock_state("alice"), (n, false));
    }
    for n in 4..=6 {
        let login = h.login("alice", &wrong_code(secret));
        login.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
        assert_eq!(login.code, 1, "{login:?}");
        assert_eq!(h.lock_state("alice"), (n, n == 6));
        if n == 6 {
            assert!(
                login.said_locked(),
                "the locking attempt says so: {login:?}"
            );
        }
    }
}

#[test]
fn three_wrong_passwords_and_three_wrong_codes_lock_the_account() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    lock_alice(&h, &secret);

    // Even the right password and a valid code: stopped after the
    // password (before it, only known names could be told "locked").
    let login = h.login("alice", &totp(&secret, 1));
    login.assert_prompts(&[PASSWORD_PROMPT]);
    assert_eq!(login.code, 1, "{login:?}");
    assert!(!login.authenticated(), "{login:?}");
    assert!(login.said_locked(), "{login:?}");
    assert_eq!(
        h.lock_state("alice"),
        (6, true),
        "refusals while locked are not counted"
    );
}

#[test]
fn the_account_phase_refuses_a_locked_account() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let before = h.account("alice");
    assert!(before.account_ok() && before.code == 0, "{before:?}");

    lock_alice(&h, &secret);
    // What an SSH key login goes through: no auth stack at all.
    let after = h.account("alice");
    after.assert_prompts(&[]);
    assert_eq!(after.code, 1, "{after:?}");
    assert!(!after.account_ok(), "{after:?}");
    assert!(after.said_locked(), "{after:?}");
}

#[test]
fn admin_unlock_restores_the_account() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    lock_alice(&h, &secret);

    let out = h.mfa(None, &["admin", "unlock", "alice"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(h.lock_state("alice"), (0, false));
    let login = h.login("alice", &totp(&secret, 1));
    assert!(login.succeeded(), "{login:?}");
}

#[test]
fn forty_parallel_wrong_codes_get_exactly_six_guesses() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let wrong = wrong_code(&secret);
    // Bring all forty logins to the code prompt, past the lock check of
    // preauth, then answer them all at once.
    let sessions: Vec<Session> = (0..40)
        .map(|_| {
            let mut s = h.start_pamtester(SERVICE, "alice", &["authenticate", "acct_mgmt"]);
            assert_eq!(s.next_prompt(), Some(PASSWORD_PROMPT));
            s.answer(password("alice"));
            assert_eq!(s.next_prompt(), Some(CODE_PROMPT));
            s
        })
        .collect();
    let go = std::sync::Barrier::new(sessions.len());
    let logins: Vec<Login> = std::thread::scope(|scope| {
        let workers: Vec<_> = sessions
            .into_iter()
            .map(|mut s| {
                let (go, wrong) = (&go, &wrong);
                scope.spawn(move || {
                    go.wait();
                    s.answer(wrong);
                    s.finish()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for login in &logins {
        login.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
        assert_eq!(login.code, 1, "{login:?}");
        assert!(!login.authenticated(), "{login:?}");
    }
    assert_eq!(h.lock_state("alice"), (6, true));
    let told_wrong = logins
        .iter()
        .filter(|l| l.transcript.contains("Wrong verification code"))
        .count();
    assert_eq!(
        told_wrong, 5,
        "five wrong, then the sixth locks; the rest see the lock"
    );
    let told_locked = logins.iter().filter(|l| l.said_locked()).count();
    assert_eq!(
        told_locked, 35,
        "the sixth and the 34 refused without a guess"
    );
}

#[test]
fn an_unknown_user_sees_the_same_prompts_and_leaves_no_trace() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    // dave passes the password module but NSS does not know him.
    let dave = h.login("dave", "123456");
    let alice = h.login("alice", &wrong_code(&secret));
    dave.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
    assert_eq!(dave.prompts, alice.prompts);
    assert_eq!(dave.code, 1, "{dave:?}");
    assert!(!dave.authenticated(), "{dave:?}");

    // erin is known to nobody: refused at the password like a wrong password.
    let erin = h.login_with(SERVICE, "erin", vec![text("x"), text("123456")]);
    erin.assert_prompts(&[PASSWORD_PROMPT]);
    assert_eq!(erin.code, 1, "{erin:?}");

    let account = h.account("dave");
    assert_eq!(account.code, 1, "{account:?}");
    assert!(!account.account_ok(), "{account:?}");

    let dump = h.database_dump();
    for who in ["dave", "erin"] {
        assert!(!dump.contains(who), "database mentions {who}:\n{dump}");
    }
}

/// Issue 13, finding 12: before, a locked account was told so before any
/// password prompt, and only existing names can be locked, so the message
/// told which names exist. Now a locked name and an unknown one look the
/// same until the right password has been given.
#[test]
fn a_locked_name_and_an_unknown_name_look_the_same_until_the_right_password() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    // Anyone who can reach a login prompt can lock an account: six wrong
    // passwords. Not one of them says so, the locking one included.
    for n in 1..=6 {
        let login = h.login_with(SERVICE, "alice", vec![text("not-the-password")]);
        login.assert_prompts(&[PASSWORD_PROMPT]);
        assert_eq!(login.code, 1, "{login:?}");
        assert!(!login.said_locked(), "failure {n}: {login:?}");
    }
    assert_eq!(h.lock_state("alice"), (6, true));
    // Locked alice and erin, whom nobody knows: the same prompts and the
    // same words after a wrong password.
    let alice = h.login_with(SERVICE, "alice", vec![text("not-the-password")]);
    let erin = h.login_with(SERVICE, "erin", vec![text("not-the-password")]);
    alice.assert_prompts(&[PASSWORD_PROMPT]);
    erin.assert_prompts(&[PASSWORD_PROMPT]);
    assert_eq!(alice.code, erin.code);
    // pam_wrapper's own lines carry a pid.
    let said = |l: &Login, name: &str| -> Vec<String> {
        l.transcript
            .lines()
            .filter(|line| !line.starts_with("PWRAP_"))
            .map(|line| line.replace(name, "NAME"))
            .collect()
    };
    assert_eq!(said(&alice, "alice"), said(&erin, "erin"));
    // The right password: the password prompt first, then the lock.
    let right = h.login("alice", &totp(&secret, 1));
    right.assert_prompts(&[PASSWORD_PROMPT]);
    assert!(right.said_locked(), "{right:?}");
    assert!(!right.authenticated(), "{right:?}");
    let before_password = right.transcript.find(PASSWORD_PROMPT).unwrap();
    let locked_at = right.transcript.find("locked").unwrap();
    assert!(before_password < locked_at, "{right:?}");
    assert_eq!(h.lock_state("alice"), (6, true));

    // unlock_after bounds what such a lock costs the owner.
    h.write_config("[lockout]\nunlock_after = 1\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let login = h.login("alice", &totp(&secret, 1));
        if login.succeeded() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{login:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(h.lock_state("alice"), (0, false));
}

#[test]
fn a_broken_config_denies_even_a_valid_login() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let db = h.db.display().to_string();
    let good = format!("database = \"{db}\"\non_unavailable = \"allow\"\n");

    // A syntax error: nothing in the file can be trusted, not even "allow".
    h.write_raw_config(&format!("{good}policy = \n"));
    let login = h.login("alice", &totp(&secret, 1));
    assert_eq!(login.code, 1, "{login:?}");
    assert!(!login.authenticated(), "{login:?}");
    assert_eq!(h.account("alice").code, 1);

    // A group-writable config could have been written by someone else.
    h.write_raw_config(&good);
    write_file(&h.config, &good, 0o620);
    let login = h.login("alice", &totp(&secret, 1));
    assert_eq!(login.code, 1, "{login:?}");
    assert!(!login.authenticated(), "{login:?}");
    assert_eq!(h.account("alice").code, 1);

    // The same file, fixed, works (so the refusals above were the config's).
    write_file(&h.config, &good, 0o600);
    let login = h.login("alice", &totp(&secret, 1));
    assert!(login.succeeded(), "{login:?}");
}

#[test]
fn a_missing_database_denies_by_default() {
    let h = Harness::without_database("");
    let login = h.login("alice", "123456");
    assert_eq!(login.code, 1, "{login:?}");
    assert!(!login.authenticated(), "{login:?}");
}

#[test]
fn on_unavailable_allow_lets_the_password_decide() {
    let h = Harness::without_database("on_unavailable = \"allow\"\n");
    let right = h.login("alice", "unused");
    right.assert_prompts(&[PASSWORD_PROMPT]);
    assert!(right.succeeded(), "{right:?}");

    let wrong = h.login_with(SERVICE, "alice", vec![text("not-the-password")]);
    wrong.assert_prompts(&[PASSWORD_PROMPT]);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(!wrong.authenticated(), "{wrong:?}");
    assert!(!h.db.exists(), "the module must not create the database");
}

#[test]
fn optional_policy_without_a_device_is_the_password_alone() {
    let h = Harness::new();
    let login = h.login("bob", "unused");
    login.assert_prompts(&[PASSWORD_PROMPT]);
    assert!(login.succeeded(), "{login:?}");
}

#[test]
fn required_policy_sets_up_a_device_during_login() {
    let h = Harness::new();
    h.set_policy("required");
    let login = h.login_with(
        SERVICE,
        "alice",
        vec![
            text(password("alice")),
            Answer::FromTranscript(Box::new(|t| totp(&secret_from(t), 0))),
        ],
    );
    login.assert_prompts(&[PASSWORD_PROMPT, ENROLL_PROMPT]);
    assert!(login.succeeded(), "{login:?}");
    assert!(
        login.transcript.contains("URI: otpauth://totp/"),
        "{login:?}"
    );
    let secret = secret_from(&login.transcript);

    let devices = h.mfa_json(Some("alice"), &["device", "list"]);
    let devices = devices.as_array().expect("device list is a list");
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0]["name"], "login");
    assert_eq!(devices[0]["kind"], "totp");
    assert_eq!(devices[0]["verified"], true);

    // From now on the device is asked for.
    let next = h.login("alice", &totp(&secret, 1));
    next.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
    assert!(next.succeeded(), "{next:?}");
}

#[test]
fn required_policy_without_setup_at_login_refuses_and_says_why() {
    let h = Harness::new();
    h.write_config("enroll_at_login = false\n");
    h.set_policy("required");
    let login = h.login("bob", "123456");
    login.assert_prompts(&[PASSWORD_PROMPT]);
    assert_eq!(login.code, 1, "{login:?}");
    assert!(!login.authenticated(), "{login:?}");
    assert!(
        login.transcript.contains("no device is set up"),
        "{login:?}"
    );
}

#[test]
fn an_exempt_group_needs_no_second_factor() {
    let h = Harness::new();
    h.write_config("exempt_groups = [\"breakglass\"]\n");
    h.set_policy("required");
    let carol = h.login("carol", "unused");
    carol.assert_prompts(&[PASSWORD_PROMPT]);
    assert!(carol.succeeded(), "{carol:?}");

    // The policy really is "required": bob, not exempt, is led to setup.
    let bob = h.login("bob", "000000");
    assert_eq!(
        bob.prompts[..2],
        [PASSWORD_PROMPT, ENROLL_PROMPT],
        "{bob:?}"
    );
    assert!(
        bob.prompts[2..].iter().all(|p| p == ENROLL_PROMPT),
        "{bob:?}"
    );
    assert_eq!(bob.code, 1, "{bob:?}");
}

#[test]
fn a_code_equal_to_the_password_is_refused() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let code = totp(&secret, 1);
    // What sshd's password method does: the password answers every prompt.
    h.set_password("alice", &code);
    h.write_authtok_service("authtok");
    let login = h.login_with("authtok", "alice", vec![text(&code), text(&code)]);
    login.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
    assert_eq!(login.code, 1, "{login:?}");
    assert!(!login.authenticated(), "{login:?}");
    assert_eq!(h.lock_state("alice"), (1, false));

    // The code itself was valid and unspent: refused only for the equality.
    h.set_password("alice", password("alice"));
    let login = h.login_with(
        "authtok",
        "alice",
        vec![text(password("alice")), text(&code)],
    );
    login.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
    assert!(login.succeeded(), "{login:?}");
}

/// Issue 13 #7: root (lock_root = false) is locked for `root_unlock_time`
/// after `deny` failures, never for good; each failure pauses, growing, in
/// the daemon before the verdict, holding nothing others need (alice logs
/// in meanwhile). 40 wrong codes: locked after `deny`, the right code
/// refused while locked, and let in once the time is over.
#[test]
fn root_is_locked_for_root_unlock_time_after_deny_failures() {
    const UNLOCK: u64 = 20;
    let h = Harness::new();
    h.write_config(&format!(
        "policy = \"optional\"\n[lockout]\ndeny = 3\nroot_unlock_time = {UNLOCK}\n"
    ));
    let secret = h.enroll_totp("root", "phone");
    let alice = h.enroll_totp("alice", "phone");

    let started = std::time::Instant::now();
    for n in 1..=2 {
        let login = h.login("root", &wrong_code(&secret));
        assert_eq!(login.code, 1, "{login:?}");
        assert_eq!(h.lock_state("root"), (n, false));
    }
    // 1 s, then 2 s of pauses so far.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // The third failure (4 s pause, and the lock) while alice logs in.
    let mut third = h.start_pamtester(SERVICE, "root", &["authenticate", "acct_mgmt"]);
    assert_eq!(third.next_prompt(), Some(PASSWORD_PROMPT));
    third.answer(password("root"));
    assert_eq!(third.next_prompt(), Some(CODE_PROMPT));
    third.answer(&wrong_code(&secret));
    let paused_from = std::time::Instant::now();
    let beside = h.login("alice", &totp(&alice, 1));
    let alice_took = paused_from.elapsed();
    assert!(beside.succeeded(), "alice beside root's pause: {beside:?}");
    let third = third.finish();
    let root_took = paused_from.elapsed();
    assert!(third.said_locked(), "{third:?}");
    assert!(
        alice_took < root_took && root_took >= Duration::from_secs(4),
        "alice {alice_took:?}, root's paused login {root_took:?}"
    );
    // The daemon locked root when it recorded the failure, before pausing.
    let locked_at = paused_from;
    assert_eq!(h.lock_state("root"), (3, true));

    // 37 more wrong codes: all refused as locked, none counted or paused.
    for _ in 0..37 {
        let login = h.login("root", &wrong_code(&secret));
        assert_eq!(login.code, 1, "{login:?}");
        assert!(login.said_locked(), "{login:?}");
    }
    assert_eq!(h.lock_state("root"), (3, true));
    let code = totp(&secret, 0);
    let refused = h.login("root", &code);
    assert!(
        !refused.authenticated(),
        "the right code while locked: {refused:?}"
    );
    assert!(refused.said_locked(), "{refused:?}");
    assert!(
        locked_at.elapsed() < Duration::from_secs(UNLOCK),
        "the test was too slow to see the lock: {:?}",
        locked_at.elapsed()
    );

    // Once root_unlock_time is over, the right code lets in.
    let deadline = locked_at + Duration::from_secs(UNLOCK + 30);
    while h.lock_state("root").1 {
        assert!(std::time::Instant::now() < deadline, "root stayed locked");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(locked_at.elapsed() >= Duration::from_secs(UNLOCK - 2));
    let login = h.login("root", &totp(&secret, 1));
    assert!(login.succeeded(), "{login:?}");
    assert_eq!(h.lock_state("root"), (0, false));
}

#[test]
fn an_unknown_module_argument_denies() {
    let h = Harness::new();
    let stack = h.design_stack("").replace(" preauth ", " preauth nullok ");
    h.write_service("typo", &stack);
    let login = h.login_with("typo", "bob", vec![text(password("bob")), text("")]);
    assert_eq!(login.code, 1, "{login:?}");
    assert!(!login.authenticated(), "{login:?}");
}

#[test]
fn a_password_only_login_also_ends_a_run_of_failures() {
    let h = Harness::new();
    for n in 1..=3 {
        let login = h.login_with(SERVICE, "bob", vec![text("not-the-password")]);
        assert_eq!(login.code, 1, "{login:?}");
        assert_eq!(h.lock_state("bob"), (n, false));
    }
    let login = h.login("bob", "unused");
    login.assert_prompts(&[PASSWORD_PROMPT]);
    assert!(login.succeeded(), "{login:?}");
    assert_eq!(h.lock_state("bob"), (0, false));
}

#[test]
fn a_locked_exempt_account_is_still_refused() {
    let h = Harness::new();
    h.write_config("exempt_groups = [\"breakglass\"]\n");
    for _ in 0..6 {
        let login = h.login_with(SERVICE, "carol", vec![text("not-the-password")]);
        assert_eq!(login.code, 1, "{login:?}");
    }
    assert_eq!(h.lock_state("carol"), (6, true));
    let login = h.login("carol", "unused");
    login.assert_prompts(&[PASSWORD_PROMPT]);
    assert_eq!(login.code, 1, "{login:?}");
    assert!(login.said_locked(), "{login:?}");
    assert_eq!(h.account("carol").code, 1);
}

#[test]
fn a_temporary_code_works_once_and_not_for_a_locked_account() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let temp = h.mfa_json(None, &["admin", "temp-code", "alice", "--show"]);
    let code = temp["code"].as_str().expect("code in JSON").to_owned();

    let first = h.login("alice", &code);
    first.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
    assert!(first.succeeded(), "{first:?}");
    let again = h.login("alice", &code);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(!again.authenticated(), "{again:?}");
    assert_eq!(h.lock_state("alice"), (1, false));

    assert!(h.mfa(None, &["admin", "unlock", "alice"]).status.success());
    lock_alice(&h, &secret);
    let out = h.mfa(None, &["admin", "temp-code", "alice", "--show"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "locked accounts get no temporary code: {out:?}"
    );
}

#[test]
fn a_code_from_any_verified_device_is_accepted() {
    let h = Harness::new();
    // `debug` is a valid argument and changes no decision.
    h.write_service(SERVICE, &h.design_stack("debug"));
    let phone = h.enroll_totp("alice", "phone");
    let tablet = h.enroll_totp("alice", "tablet");
    assert_ne!(phone, tablet);
    let login = h.login("alice", &totp(&tablet, 1));
    assert!(login.succeeded(), "{login:?}");
    let login = h.login("alice", &totp(&phone, 1));
    assert!(login.succeeded(), "{login:?}");
}

#[test]
fn a_corrupt_or_exposed_database_denies_unless_allowed() {
    let h = Harness::new();
    h.enroll_totp("alice", "phone");
    // Readable by others: it holds TOTP secrets, so it is not trusted.
    std::fs::set_permissions(&h.db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let login = h.login("alice", "123456");
    assert_eq!(login.code, 1, "{login:?}");
    assert!(!login.authenticated(), "{login:?}");
    std::fs::set_permissions(&h.db, std::fs::Permissions::from_mode(0o600)).unwrap();

    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", h.db.display()));
    }
    write_file(&h.db, &"not a database\n".repeat(100), 0o600);
    let login = h.login("alice", "123456");
    assert_eq!(login.code, 1, "{login:?}");
    assert!(!login.authenticated(), "{login:?}");

    h.write_config("on_unavailable = \"allow\"\n");
    let login = h.login("alice", "unused");
    login.assert_prompts(&[PASSWORD_PROMPT]);
    assert!(login.succeeded(), "the password decides: {login:?}");
    let wrong = h.login_with(SERVICE, "alice", vec![text("not-the-password")]);
    assert_eq!(wrong.code, 1, "{wrong:?}");
}

/// The daemon texts the code before it asks for it, and a gateway may take
/// up to `sms.timeout` seconds: longer than the module's 10 s wait for a
/// reply. The daemon announces the wait, so a slow gateway costs time, not
/// the login.
#[test]
fn a_gateway_slower_than_the_reply_timeout_still_logs_in() {
    let h = Harness::new();
    let dir = h.dir.path();
    let outbox = dir.join("outbox");
    let slow = dir.join("slow");
    let gateway = dir.join("send-sms");
    write_file(
        &gateway,
        &format!(
            "#!/bin/sh\n\
             # A gateway that takes 12 s while {slow} exists.\n\
             [ -e {slow} ] && sleep 12\n\
             {{ printf '%s\\t' \"$1\"; cat; echo; }} >> {outbox}\n",
            slow = slow.display(),
            outbox = outbox.display()
        ),
        0o700,
    );
    h.write_config(&format!(
        "policy = \"optional\"\n[sms]\nbackend = \"command\"\ncommand = [\"{}\", \"{{phone}}\"]\ntimeout = 30\n",
        gateway.display()
    ));
    let last_digits = |n: usize| -> String {
        let text = std::fs::read_to_string(&outbox).unwrap_or_default();
        let line = text.lines().last().unwrap_or_default().to_owned();
        line.split(|c: char| !c.is_ascii_digit())
            .rfind(|w| w.len() == n)
            .unwrap_or_else(|| panic!("no {n}-digit code in {line:?}"))
            .to_owned()
    };
    let added = h.mfa(
        Some("alice"),
        &["device", "add", "sms", "+15551234567", "--no-verify"],
    );
    assert!(added.status.success(), "{added:?}");
    let verified = h.mfa(Some("alice"), &["device", "verify", "sms", &last_digits(4)]);
    assert!(verified.status.success(), "{verified:?}");

    write_file(&slow, "", 0o600);
    let started = std::time::Instant::now();
    let mut s = h.start_pamtester(SERVICE, "alice", &["authenticate", "acct_mgmt"]);
    s.pty.expect(PASSWORD_PROMPT, TIMEOUT);
    s.answer(password("alice"));
    s.pty.expect("Code sent by text to", TIMEOUT);
    let waited = started.elapsed();
    s.answer(&last_digits(7));
    let login = s.finish();
    assert!(login.succeeded(), "{login:?}\ndaemon: {}", h.daemon_log());
    assert!(
        waited >= std::time::Duration::from_secs(11),
        "the gateway did not hold the login up ({waited:?}): the test proves nothing"
    );
    assert!(!login.transcript.contains("unavailable"), "{login:?}");
}

/// A secrets key for `h`, made with `mfa admin generate-key`, and the config
/// naming it (`extra` appended).
fn seal_with_new_key(h: &Harness, extra: &str) -> std::path::PathBuf {
    let key = h.dir.path().join("pam_mfa.key");
    let out = h.mfa(
        None,
        &["--json", "admin", "generate-key", key.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let line = printed["config_line"].as_str().unwrap().to_owned();
    assert_eq!(line, format!("secrets_key_file = \"{}\"", key.display()));
    h.write_config(&format!("{line}\n{extra}"));
    key
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The database file and its WAL, as bytes.
fn database_bytes(h: &Harness) -> Vec<u8> {
    let mut bytes = std::fs::read(&h.db).unwrap();
    let mut wal = h.db.as_os_str().to_owned();
    wal.push("-wal");
    bytes.extend(std::fs::read(std::path::PathBuf::from(wal)).unwrap_or_default());
    bytes
}

#[test]
fn generate_key_writes_a_private_key_once_and_never_overwrites() {
    use std::os::unix::fs::MetadataExt;
    let h = Harness::new();
    let key = h.dir.path().join("k");
    let out = h.mfa(None, &["admin", "generate-key", key.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("secrets_key_file = \"{}\"", key.display())),
        "{said}"
    );
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw(), "root in CI");
    let text = std::fs::read_to_string(&key).unwrap();
    // The key is in the file only, never on the terminal.
    let hex_key = text.split_whitespace().nth(1).unwrap();
    assert_eq!(hex_key.len(), 64);
    assert!(!said.contains(hex_key));

    let again = h.mfa(None, &["admin", "generate-key", key.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(7), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"),
        "{again:?}"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}

#[test]
fn a_sealed_store_logs_in_and_its_files_hold_no_secret() {
    let h = Harness::new();
    seal_with_new_key(&h, "");
    let secret = h.enroll_totp("alice", "phone");
    let raw = pam_mfa::internals::secret::base32_decode(&secret).unwrap();

    let login = h.login("alice", &totp(&secret, 1));
    assert!(login.succeeded(), "{login:?}\n{}", h.daemon_log());
    let replay = h.login("alice", &totp(&secret, 1));
    assert!(!replay.authenticated(), "{replay:?}");

    let bytes = database_bytes(&h);
    for needle in [
        secret.clone(),
        secret.to_lowercase(),
        hex(&raw),
        hex(&raw).to_uppercase(),
    ] {
        assert!(!contains(&bytes, needle.as_bytes()), "{needle} on disk");
    }
    assert!(!contains(&bytes, &raw), "the raw secret on disk");
}

#[test]
fn a_sealed_store_without_its_key_denies_as_unavailable_and_counts_nothing() {
    let h = Harness::new();
    let key = seal_with_new_key(&h, "");
    let secret = h.enroll_totp("alice", "phone");
    let sealed_config = std::fs::read_to_string(&h.config).unwrap();

    // The config no longer names the key (on_unavailable = deny, the default).
    h.write_config("");
    let login = h.login("alice", &totp(&secret, 1));
    assert_eq!(login.code, 1, "{login:?}");
    assert!(!login.authenticated(), "{login:?}");
    assert!(
        login.transcript.contains("authentication is unavailable"),
        "{login:?}"
    );
    assert!(
        !login.prompts.contains(&CODE_PROMPT.to_owned()),
        "no code is asked for: {login:?}"
    );

    // The config names it, but the file is gone.
    let moved = h.dir.path().join("key.moved");
    std::fs::rename(&key, &moved).unwrap();
    h.write_raw_config(&sealed_config);
    let login = h.login("alice", &totp(&secret, 1));
    assert_eq!(login.code, 1, "{login:?}");
    assert!(
        login.transcript.contains("authentication is unavailable"),
        "{login:?}"
    );

    // The key back: no failure was counted, and the daemon (not restarted)
    // logs alice in.
    std::fs::rename(&moved, &key).unwrap();
    assert_eq!(h.lock_state("alice"), (0, false));
    let login = h.login("alice", &totp(&secret, 1));
    assert!(login.succeeded(), "{login:?}\n{}", h.daemon_log());
}

fn doctor_check(h: &Harness, name: &str) -> (String, String) {
    let out = h.mfa(
        None,
        &[
            "--json",
            "doctor",
            "--pam-dir",
            h.services.to_str().unwrap(),
        ],
    );
    let checks: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let c = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks}"));
    (
        c["status"].as_str().unwrap().to_owned(),
        c["message"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn doctor_checks_the_key_file_and_counts_unsealed_secrets() {
    let h = Harness::new();
    h.enroll_totp("alice", "phone");
    let (status, message) = doctor_check(&h, "key");
    assert_eq!(status, "ok", "{message}");
    assert!(message.contains("no secrets_key_file"), "{message}");

    let key = seal_with_new_key(&h, "");
    h.enroll_totp("bob", "phone");
    assert_eq!(doctor_check(&h, "key").0, "ok");
    let (status, message) = doctor_check(&h, "secrets");
    assert_eq!(status, "warn", "{message}");
    assert!(
        message.contains("1 device secret(s) sealed, 1 still unsealed"),
        "{message}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, message) = doctor_check(&h, "key");
    assert_eq!(status, "fail", "{message}");
    assert!(message.contains("chmod 0600"), "{message}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&key, "not a key\n").unwrap();
    let (status, message) = doctor_check(&h, "key");
    assert_eq!(status, "fail", "{message}");
    assert!(message.contains("is not a pam_mfa key"), "{message}");

    // Another valid key: it loads, but does not open bob's secret.
    std::fs::remove_file(&key).unwrap();
    let out = h.mfa(None, &["admin", "generate-key", key.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(doctor_check(&h, "key").0, "ok");
    let (status, message) = doctor_check(&h, "secrets");
    assert_eq!(status, "fail", "{message}");
    assert!(message.contains("cannot be unsealed"), "{message}");
}

#[test]
fn audit_rows_carry_the_host_and_audit_host_filters_by_it() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    assert!(h.login("alice", &totp(&secret, 1)).succeeded());
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();

    let all = h.mfa_json(None, &["audit", "--host", &host]);
    let rows = all.as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["event"] == "code-accepted"),
        "the daemon's rows: {all}"
    );
    assert!(
        rows.iter().any(|r| r["event"] == "device-verified"),
        "root mfa's rows: {all}"
    );
    assert!(rows.iter().all(|r| r["host"] == host.as_str()), "{all}");

    let other = h.mfa_json(None, &["audit", "--host", "no-such-host.example"]);
    assert_eq!(other, serde_json::json!([]));

    let out = h.mfa(Some("alice"), &["audit", "--limit", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!(" {host} ")), "{text}");
}

/// Issue 13 #15: a FIFO at the file backend's path (no reader) must not
/// hang a login: the text fails at once, the user is told, and a bypass
/// code still lets in.
#[test]
fn a_fifo_at_the_sms_file_path_does_not_hang_a_login() {
    let h = Harness::new();
    let outbox = h.dir.path().join("sms-outbox");
    h.write_config(&format!(
        "policy = \"optional\"\n[sms]\nbackend = \"file\"\npath = \"{}\"\n",
        outbox.display()
    ));
    let added = h.mfa(
        Some("alice"),
        &["device", "add", "sms", "+15551234567", "--no-verify"],
    );
    assert!(added.status.success(), "{added:?}");
    let text = std::fs::read_to_string(&outbox).unwrap();
    let pin = text
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|w| w.len() == 4)
        .expect("a PIN")
        .to_owned();
    let verified = h.mfa(Some("alice"), &["device", "verify", "sms", &pin]);
    assert!(verified.status.success(), "{verified:?}");
    let bypass = h.bypass_codes("alice", 1);

    std::fs::remove_file(&outbox).unwrap();
    nix::unistd::mkfifo(&outbox, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let started = std::time::Instant::now();
    let login = h.login("alice", &bypass[0]);
    let took = started.elapsed();
    assert!(login.succeeded(), "{login:?}");
    assert!(
        login
            .transcript
            .contains("The text message could not be sent"),
        "the user is told: {login:?}"
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

/// Issue 13 #13: an account holds at most 10 devices waiting for
/// verification, and a pending device older than a day is removed (and
/// audited) the next time one is added.
#[test]
fn pending_devices_are_capped_and_expire_after_a_day() {
    let h = Harness::new();
    for n in 0..10 {
        let name = format!("p{n}");
        let out = h.mfa(
            Some("alice"),
            &["device", "add", "totp", "--name", &name, "--no-verify"],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let over = h.mfa(
        Some("alice"),
        &["device", "add", "totp", "--name", "p10", "--no-verify"],
    );
    assert_eq!(over.status.code(), Some(7), "{over:?}");
    let said = String::from_utf8_lossy(&over.stderr);
    assert!(
        said.contains("10 devices waiting for verification"),
        "{said}"
    );

    // A day later (the rows made older, as the clock cannot be moved).
    {
        let conn = rusqlite::Connection::open(&h.db).unwrap();
        conn.execute("UPDATE devices SET created = created - 86400", [])
            .unwrap();
    }
    let out = h.mfa(
        Some("alice"),
        &["device", "add", "totp", "--name", "fresh", "--no-verify"],
    );
    assert!(out.status.success(), "{out:?}");
    let devices = h.mfa_json(Some("alice"), &["device", "list"]);
    let names: Vec<&str> = devices
        .as_array()
        .or_else(|| devices["devices"].as_array())
        .unwrap_or_else(|| panic!("{devices}"))
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["fresh"], "{devices}");
    let trail = h.mfa_json(None, &["audit", "--user", "alice", "--limit", "100"]);
    let expired = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "device-expired")
        .count();
    assert_eq!(expired, 10, "{trail}");
}

/// Issue 13 #13: the daemon purges audit rows older than `audit_days`, and
/// says so in the trail.
#[test]
fn the_daemon_purges_audit_rows_older_than_audit_days() {
    let h = Harness::new();
    h.write_config("policy = \"optional\"\naudit_days = 30\n");
    let old = now() - 31 * 86_400;
    {
        let conn = rusqlite::Connection::open(&h.db).unwrap();
        for i in 0..3 {
            conn.execute(
                "INSERT INTO audit (time, user, host, event, detail) VALUES (?1, 'alice', 'h', 'failure', 'old')",
                [old + i],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO audit (time, user, host, event, detail) VALUES (?1, 'alice', 'h', 'failure', 'recent')",
            [now() - 29 * 86_400],
        )
        .unwrap();
    }
    h.start_daemon();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let trail = h.mfa_json(None, &["audit", "--limit", "100"]);
        let rows = trail.as_array().unwrap();
        let old_left = rows.iter().filter(|r| r["detail"] == "old").count();
        let purge = rows.iter().find(|r| r["event"] == "audit-purged");
        if old_left == 0 {
            let purge = purge.unwrap_or_else(|| panic!("no audit-purged row: {trail}"));
            assert!(
                purge["detail"].as_str().unwrap().contains("rows=3"),
                "{trail}"
            );
            assert!(rows.iter().any(|r| r["detail"] == "recent"), "{trail}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not purged: {trail}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The events of `user`'s audit trail, oldest first, as `mfa audit` gives them.
fn audit_rows(h: &Harness, user: &str) -> Vec<(String, String)> {
    let rows = h.mfa_json(None, &["audit", "--user", user]);
    rows.as_array()
        .expect("audit gives a list")
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_owned(),
                r["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Issue 14 #4, through libpam: three wrong setup codes count no failure,
/// and the next login shows the same secret and can finish the setup.
#[test]
fn setup_mistakes_at_login_do_not_lock_and_the_retry_shows_the_same_secret() {
    let h = Harness::new();
    h.set_policy("required");
    let wrong = || Answer::FromTranscript(Box::new(|t| wrong_code(&secret_from(t))));
    let first = h.login_with(
        SERVICE,
        "alice",
        vec![text(password("alice")), wrong(), wrong(), wrong()],
    );
    first.assert_prompts(&[PASSWORD_PROMPT, ENROLL_PROMPT, ENROLL_PROMPT, ENROLL_PROMPT]);
    assert_eq!(first.code, 1, "{first:?}");
    assert!(first.transcript.contains("within 10 minutes"), "{first:?}");
    assert_eq!(h.lock_state("alice"), (0, false), "no failure counted");
    let secret = secret_from(&first.transcript);

    let second = h.login_with(
        SERVICE,
        "alice",
        vec![
            text(password("alice")),
            Answer::FromTranscript(Box::new(|t| totp(&secret_from(t), 0))),
        ],
    );
    second.assert_prompts(&[PASSWORD_PROMPT, ENROLL_PROMPT]);
    assert!(second.succeeded(), "{second:?}");
    assert_eq!(secret_from(&second.transcript), secret, "the same secret");
    assert!(
        second.transcript.contains("the secret is the same"),
        "{second:?}"
    );
    let events: Vec<String> = audit_rows(&h, "alice").into_iter().map(|r| r.0).collect();
    assert_eq!(
        events,
        [
            "device-pending",
            "device-verify-failed",
            "device-verify-failed",
            "device-verify-failed",
            "device-verified"
        ]
    );
}

/// Issue 14 #6, through libpam: the one-line hint, turned off by
/// `optional_hint = false`, and `enroll_at_login = "offer"`: asked once,
/// a "no" remembered, a "yes" leading through setup.
#[test]
fn optional_policy_hints_and_offers_setup_once() {
    let h = Harness::new();
    let hint = "Protect this account with a second factor: run `mfa device add totp`.";
    let login = h.login("bob", "unused");
    login.assert_prompts(&[PASSWORD_PROMPT]);
    assert!(login.succeeded(), "{login:?}");
    assert!(login.transcript.contains(hint), "{login:?}");

    h.write_config("optional_hint = false\n");
    let login = h.login("bob", "unused");
    assert!(login.succeeded(), "{login:?}");
    assert!(!login.transcript.contains(hint), "{login:?}");

    h.write_config("enroll_at_login = \"offer\"\n");
    let login = h.login_with(SERVICE, "bob", vec![text(password("bob")), text("n")]);
    login.assert_prompts(&[PASSWORD_PROMPT, OFFER_PROMPT]);
    assert!(login.succeeded(), "{login:?}");
    let login = h.login("bob", "unused");
    login.assert_prompts(&[PASSWORD_PROMPT]);
    assert!(login.succeeded(), "declined is remembered: {login:?}");
    assert!(login.transcript.contains(hint), "{login:?}");

    let login = h.login_with(
        SERVICE,
        "carol",
        vec![
            text(password("carol")),
            text("y"),
            Answer::FromTranscript(Box::new(|t| totp(&secret_from(t), 0))),
        ],
    );
    login.assert_prompts(&[PASSWORD_PROMPT, OFFER_PROMPT, ENROLL_PROMPT]);
    assert!(login.succeeded(), "{login:?}");
    let devices = h.mfa_json(Some("carol"), &["device", "list"]);
    assert_eq!(devices[0]["verified"], true, "{devices}");
    assert!(audit_rows(&h, "bob")
        .iter()
        .any(|r| r.0 == "setup-declined"));
}

/// Issue 14 #10, through libpam: a wrong code's failure names its factor,
/// and attempts on a locked account reach the audit trail.
#[test]
fn code_failures_and_attempts_on_a_locked_account_are_audited() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    lock_alice(&h, &secret);
    let rows = audit_rows(&h, "alice");
    let failures: Vec<&str> = rows
        .iter()
        .filter(|r| r.0 == "failure")
        .map(|r| r.1.as_str())
        .collect();
    assert_eq!(failures.len(), 6, "{rows:?}");
    assert!(
        failures[..3].iter().all(|d| d.contains("factor=password")),
        "{rows:?}"
    );
    assert!(
        failures[3..].iter().all(|d| d.contains("factor=code")),
        "{rows:?}"
    );

    let login = h.login_with(SERVICE, "alice", vec![text("not-the-password")]);
    assert_eq!(login.code, 1, "{login:?}");
    let login = h.login("alice", &totp(&secret, 1));
    assert_eq!(login.code, 1, "{login:?}");
    let account = h.account("alice");
    assert_eq!(account.code, 1, "{account:?}");
    let locked: Vec<String> = audit_rows(&h, "alice")
        .into_iter()
        .filter(|r| r.0 == "login-locked")
        .map(|r| r.1.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(locked, ["mode=authfail", "mode=auth", "mode=account"]);
    assert_eq!(h.lock_state("alice"), (6, true), "none of them counted");
}
