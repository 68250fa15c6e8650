//! Parallel logins through real libpam: one code cannot be used twice, and
//! administrators working at the same time never make a login fail.

use crate::common::*;
use crate::support::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Twenty logins hold the same valid code at the prompt and send it at once.
/// The first transaction takes it; the other nineteen are replays, counted
/// as failures: five say "wrong", the sixth locks, the rest meet the lock.
#[test]
fn one_valid_code_sent_by_twenty_parallel_logins_is_accepted_once() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let _turn = many_logins_at_once();
    let sessions = park_at_code_prompt(&h, "alice", 20);
    let code = totp(&secret, 1);
    let started = Instant::now();
    let logins = answer_all_at_once(sessions.into_iter().map(|s| (s, code.clone())).collect());
    for login in &logins {
        assert_no_signal(login, "parallel valid code");
        login.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
    }
    // Counted at the code: the accepted login may still meet the lock the
    // replays set, in its account phase, and that is right.
    let (accepted, refused): (Vec<&Login>, Vec<&Login>) =
        logins.iter().partition(|l| l.authenticated());
    let wrong = refused
        .iter()
        .filter(|l| l.transcript.contains("Wrong verification code"))
        .count();
    let locked = refused.iter().filter(|l| l.said_locked()).count();
    eprintln!(
        "20 parallel logins with one valid code: {} accepted, {wrong} wrong, {locked} locked, \
         in {:?}",
        accepted.len(),
        started.elapsed()
    );
    assert_eq!(accepted.len(), 1, "accepted exactly once");
    assert_eq!(wrong, 5);
    assert_eq!(locked, 14);
    for l in &refused {
        assert_eq!(l.code, 1, "{l:?}");
    }
    assert_eq!(h.lock_state("alice"), (6, true));
}

/// Forty users log in at once, each with a valid code, while an
/// administrator unlocks, sets the policy and lists devices in a loop.
/// Nobody may be refused, and nobody may see "database is locked".
#[test]
fn admin_commands_during_forty_parallel_logins_make_no_login_fail() {
    const USERS: usize = 40;
    let h = Harness::new();
    let users: Vec<String> = (0..USERS).map(|i| format!("user{i:02}")).collect();
    let secrets: Vec<String> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            h.add_user(u, 3000 + i as u32, &format!("{u}-pw"));
            h.enroll_totp(u, "phone")
        })
        .collect();
    let _turn = many_logins_at_once();
    let logins_done = AtomicBool::new(false);
    let (logins, admin_runs) = std::thread::scope(|scope| {
        let admin = scope.spawn(|| {
            let mut runs = Vec::new();
            let mut i = 0;
            while !logins_done.load(Ordering::SeqCst) {
                let user = &users[i % USERS];
                let args: Vec<&str> = match i % 3 {
                    0 => vec!["admin", "unlock", user],
                    1 => vec!["admin", "policy", "optional"],
                    _ => vec!["--user", user, "device", "list"],
                };
                runs.push((args.join(" "), h.mfa(None, &args)));
                i += 1;
            }
            runs
        });
        // Ends the loop even if a login below fails its assertion.
        let done = SetOnDrop(&logins_done);
        // The admin loop runs from the first lock check to the last account
        // phase, not only while the codes are checked.
        let answers: Vec<(Session, String)> = users
            .iter()
            .zip(&secrets)
            .map(|(u, secret)| {
                let mut s = h.start_pamtester(SERVICE, u, &["authenticate", "acct_mgmt"]);
                assert_eq!(s.next_prompt(), Some(PASSWORD_PROMPT));
                s.answer(&format!("{u}-pw"));
                assert_eq!(s.next_prompt(), Some(CODE_PROMPT));
                (s, totp(secret, 1))
            })
            .collect();
        let logins = answer_all_at_once(answers);
        drop(done);
        (logins, admin.join().unwrap())
    });

    for (n, login) in logins.iter().enumerate() {
        assert_no_signal(login, "login during admin commands");
        assert!(login.succeeded(), "login {n} refused: {login:?}");
        assert!(
            !login.transcript.contains("locked") && !login.transcript.contains("unavailable"),
            "{login:?}"
        );
    }
    for (args, out) in &admin_runs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "mfa {args} failed during logins ({:?}): {stderr}",
            out.status.code()
        );
        assert!(!stderr.contains("locked"), "mfa {args}: {stderr}");
    }
    eprintln!(
        "{USERS} parallel logins: {} succeeded; {} admin commands ran meanwhile, all succeeded",
        logins.iter().filter(|l| l.succeeded()).count(),
        admin_runs.len()
    );
    assert!(
        admin_runs.len() >= 3 * 3,
        "only {} admin commands ran during the logins",
        admin_runs.len()
    );
    assert_eq!(integrity_check(&h.db), "ok");
}

struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
