//! Logins killed with SIGKILL at random moments, forty at a time: the
//! database stays intact, and every failure that committed stays counted.
//! The logins are pamtester processes, clients of the daemon; in a few
//! batches the daemon itself is killed with SIGKILL mid-batch and started
//! again, and every failure whose verdict a client had seen stays counted.

use crate::common::*;
use crate::support::*;
use std::time::{Duration, Instant};

const LOGINS: usize = 1000;
const BATCH: usize = 40;
/// Batches in which the daemon is killed (and restarted) mid-batch.
const DAEMON_KILLS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// Right password, wrong code: one failure when it commits.
    AliceWrongCode,
    /// Wrong password: one failure (authfail) when it commits.
    AliceWrongPassword,
    /// Locked before the run: refused before the password, never counted.
    Bob,
    /// No device, policy optional: the password alone logs her in.
    Carol,
}

#[derive(Clone, Copy, Debug)]
enum Kill {
    Never,
    /// At the password prompt, before anything was typed.
    AtPrompt,
    /// This long after the password was sent.
    AfterPassword(Duration),
    /// This long after the code was sent (AliceWrongCode only).
    AfterCode(Duration),
}

#[derive(Default, Debug)]
struct Tally {
    logins: usize,
    killed: usize,
    /// Logins that ended after the daemon was killed under them.
    daemon_killed_under: usize,
    /// Alice's failures that were sent (a lower bound on nothing: a killed
    /// one may or may not have committed).
    alice_started: u64,
    /// Alice's failures whose login ended normally: committed for sure.
    alice_completed: u64,
}

fn pick(rng: &mut Rng) -> (Who, Kill) {
    let who = match rng.below(100) {
        0..=54 => Who::AliceWrongCode,
        55..=69 => Who::AliceWrongPassword,
        70..=79 => Who::Bob,
        _ => Who::Carol,
    };
    let delay = Duration::from_micros([0, 100, 500, 1000, 3000][rng.below(5) as usize]);
    let kill = if !rng.chance(35) {
        Kill::Never
    } else {
        match (who, rng.below(3)) {
            (_, 0) => Kill::AtPrompt,
            (Who::AliceWrongCode, 1) => Kill::AfterCode(delay),
            _ => Kill::AfterPassword(delay),
        }
    };
    (who, kill)
}

fn sigkill(s: &Session) {
    // The process may have ended already: then there is nothing to kill.
    // SAFETY: kill(2) with a pid and a signal number touches no memory.
    unsafe { libc::kill(s.pty.pid() as libc::pid_t, libc::SIGKILL) };
}

/// Drives one login to its end, killing it where planned. Returns the login,
/// whether a failure of alice's was sent, and when the login ended.
fn drive(s: Session, who: Who, plan: Kill, wrong_code: &str) -> (Login, bool, Instant) {
    let (login, sent) = drive_to_end(s, who, plan, wrong_code);
    (login, sent, Instant::now())
}

fn drive_to_end(mut s: Session, who: Who, plan: Kill, wrong_code: &str) -> (Login, bool) {
    if let Kill::AtPrompt = plan {
        sigkill(&s);
        return (s.finish(), false);
    }
    if s.next_prompt() != Some(PASSWORD_PROMPT) {
        return (s.finish(), false);
    }
    s.answer(match who {
        Who::AliceWrongPassword => "not-the-password",
        Who::Carol => password("carol"),
        // Locked bob is refused after his password, before any code prompt.
        Who::Bob => password("bob"),
        _ => password("alice"),
    });
    if who == Who::Bob {
        return (s.finish(), false);
    }
    let mut sent_failure = who == Who::AliceWrongPassword;
    if let Kill::AfterPassword(d) = plan {
        std::thread::sleep(d);
        sigkill(&s);
        return (s.finish(), sent_failure);
    }
    if who == Who::AliceWrongCode && s.next_prompt() == Some(CODE_PROMPT) {
        s.answer(wrong_code);
        sent_failure = true;
        if let Kill::AfterCode(d) = plan {
            std::thread::sleep(d);
            sigkill(&s);
        }
    }
    (s.finish(), sent_failure)
}

#[test]
fn logins_killed_at_random_keep_the_database_and_every_committed_failure() {
    let mut rng = Rng::from_env("kill -9 test");
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    // Lock bob with the default limit, then raise it so that alice's
    // hundreds of failures are all counted and never lock her.
    for _ in 0..6 {
        let l = h.login_with(SERVICE, "bob", vec![text("not-the-password")]);
        assert_eq!(l.code, 1, "{l:?}");
    }
    assert_eq!(h.lock_state("bob"), (6, true));
    h.write_config("[lockout]\ndeny = 1000\n");

    let _turn = many_logins_at_once();
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut alice_before = 0;
    let batches = LOGINS.div_ceil(BATCH) as u64;
    let mut daemon_kill_batches = Vec::new();
    while daemon_kill_batches.len() < DAEMON_KILLS {
        let b = rng.below(batches);
        if !daemon_kill_batches.contains(&b) {
            daemon_kill_batches.push(b);
        }
    }
    let mut batch = 0;
    while tally.logins < LOGINS {
        let n = BATCH.min(LOGINS - tally.logins);
        // When (after the batch starts) the daemon is killed, in this batch.
        let daemon_kill = daemon_kill_batches
            .contains(&batch)
            .then(|| Duration::from_millis(rng.below(60)));
        batch += 1;
        let wrong = wrong_code(&secret);
        let plans: Vec<(Who, Kill)> = (0..n).map(|_| pick(&mut rng)).collect();
        let sessions: Vec<Session> = plans
            .iter()
            .map(|(who, _)| {
                let user = match who {
                    Who::AliceWrongCode | Who::AliceWrongPassword => "alice",
                    Who::Bob => "bob",
                    Who::Carol => "carol",
                };
                h.start_pamtester(SERVICE, user, &["authenticate", "acct_mgmt"])
            })
            .collect();
        let pids: Vec<u32> = sessions.iter().map(|s| s.pty.pid()).collect();
        let mut daemon_killed_at = None;
        let results: Vec<(Who, Kill, Login, bool, Instant)> = std::thread::scope(|scope| {
            let workers: Vec<_> = sessions
                .into_iter()
                .zip(&plans)
                .map(|(s, &(who, plan))| {
                    let wrong = &wrong;
                    scope.spawn(move || {
                        let (login, sent, ended) = drive(s, who, plan, wrong);
                        (who, plan, login, sent, ended)
                    })
                })
                .collect();
            if let Some(after) = daemon_kill {
                std::thread::sleep(after);
                // SIGKILL, wait, and a new daemon on the same socket; the
                // logins that meet neither are told MFA is unavailable.
                daemon_killed_at = Some(Instant::now());
                h.stop_daemon();
                h.start_daemon();
            }
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for (who, plan, login, sent, ended) in &results {
            let killed = login.code == 128 + 9;
            if !killed {
                assert_no_signal(login, "crash test");
            }
            // A login still running when the daemon was killed may have lost
            // its daemon before or after its failure committed: like a
            // killed login, it proves nothing about the count. One that had
            // its verdict before the kill committed for sure.
            let daemon_gone = daemon_killed_at.is_some_and(|at| *ended >= at);
            tally.killed += usize::from(killed);
            tally.daemon_killed_under += usize::from(daemon_gone && !killed);
            tally.alice_started += u64::from(*sent);
            tally.alice_completed += u64::from(*sent && !killed && !daemon_gone);
            if killed {
                continue;
            }
            if daemon_gone {
                // Whatever happened, nobody got in who should not have.
                if *who != Who::Carol {
                    assert_eq!(login.code, 1, "{plan:?} {login:?}");
                    assert!(!login.authenticated(), "{plan:?} {login:?}");
                }
                continue;
            }
            // Not killed (or killed after it had ended): the exact outcome.
            match who {
                Who::Carol => assert!(login.succeeded(), "{plan:?} {login:?}"),
                Who::Bob => {
                    login.assert_prompts(&[PASSWORD_PROMPT]);
                    assert!(login.said_locked(), "{login:?}");
                    assert_eq!(login.code, 1, "{login:?}");
                }
                Who::AliceWrongCode | Who::AliceWrongPassword => {
                    assert_eq!(login.code, 1, "{plan:?} {login:?}");
                    assert!(!login.authenticated(), "{login:?}");
                }
            }
        }
        tally.logins += n;
        remove_pam_wrapper_dirs_of(&pids);

        assert_eq!(
            integrity_check(&h.db),
            "ok",
            "after {} logins",
            tally.logins
        );
        let (alice, alice_locked) = account_row(&h.db, "alice");
        assert!(
            alice >= alice_before,
            "alice's failures went down: {alice_before} -> {alice}"
        );
        assert!(
            (tally.alice_completed..=tally.alice_started).contains(&alice),
            "alice has {alice} failures; {} committed for sure, {} sent ({tally:?})",
            tally.alice_completed,
            tally.alice_started
        );
        assert!(!alice_locked, "alice is below the limit of 1000");
        assert_eq!(account_row(&h.db, "bob"), (6, true), "bob's lock must stay");
        assert_eq!(account_row(&h.db, "carol"), (0, false));
        alice_before = alice;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "kill -9: {} logins in batches of {BATCH} in {elapsed:.1?}, {} killed; the daemon \
         killed and restarted in batches {daemon_kill_batches:?}, under {} logins; alice: {} \
         failures sent, {} surely committed, {alice_before} counted; integrity ok",
        tally.logins,
        tally.killed,
        tally.daemon_killed_under,
        tally.alice_started,
        tally.alice_completed
    );
    assert!(
        tally.killed >= LOGINS / 5,
        "too few kills to mean anything: {tally:?}"
    );
    assert!(
        tally.daemon_killed_under > 0,
        "the daemon's kills met no login: {tally:?}"
    );
    assert!(
        tally.alice_started > tally.alice_completed,
        "no failure was in flight when killed: {tally:?}"
    );

    // The command agrees, and the account still works.
    assert_eq!(h.lock_state("alice"), (alice_before, false));
    let ok = h.login("alice", &totp(&secret, 1));
    assert!(ok.succeeded(), "{ok:?}");
    assert_eq!(h.lock_state("alice"), (0, false));
    assert_eq!(h.lock_state("bob"), (6, true));
}
