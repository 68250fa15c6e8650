//! Parallel logins, each with its own connection to the same database file,
//! released at the same instant: the exclusive transaction must give no
//! more guesses than the limit and accept a code only once.

use std::sync::Barrier;
use std::thread;

use super::env::*;
use super::fakes::*;
use crate::attempt::{self, Accepted, AttemptResult, Context};
use crate::config::Config;
use crate::store::{OpenMode, SqliteStore};
use crate::users::UserInfo;

/// Runs `threads` attempts with `code` at T0, all starting together.
fn race(config: &Config, user: &UserInfo, code: &str, threads: usize) -> Vec<AttemptResult> {
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut store = SqliteStore::open(&config.database, OpenMode::Existing, None)
                        .expect("open the shared database");
                    let ctx = Context {
                        detail: "service=race",
                    };
                    barrier.wait();
                    attempt::attempt_code(&mut store, config, user, code.as_bytes(), None, T0, &ctx)
                        .expect("every attempt gets the database within the busy timeout")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn forty_parallel_wrong_codes_get_exactly_six_guesses() {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    let wrong = wrong_code(SECRET, T0);
    env.remember_secret(&wrong);
    let results = race(&env.config, &user("alice"), &wrong, 40);

    let mut counted: Vec<u32> = results
        .iter()
        .filter_map(|r| match r {
            AttemptResult::Wrong { failures, .. } => Some(*failures),
            _ => None,
        })
        .collect();
    counted.sort_unstable();
    assert_eq!(
        counted,
        [1, 2, 3, 4, 5, 6],
        "each failure counted once, in turn"
    );
    let locking: Vec<_> = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                AttemptResult::Wrong {
                    locked_now: true,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(
        locking,
        [&AttemptResult::Wrong {
            failures: 6,
            locked_now: true
        }]
    );
    let refused = results
        .iter()
        .filter(|r| **r == AttemptResult::Locked)
        .count();
    assert_eq!(refused, 34);

    let account = env.account("alice");
    assert_eq!((account.failures, account.locked_at), (6, Some(T0)));
    assert_eq!(env.failure_entries("alice").len(), 6);
    let events = env.audit_events("alice");
    assert_eq!(events.iter().filter(|e| *e == "locked").count(), 1);
}

#[test]
fn twenty_parallel_logins_with_one_valid_code_succeed_once() {
    // Losers count as failures; a high limit keeps them from locking the
    // account before the winner runs, which would hide a double acceptance.
    let mut env = TestEnv::with(|c| c.lockout.deny = 1000);
    env.add_totp("alice", "phone", SECRET);
    let code = code_at(SECRET, T0);
    env.remember_secret(&code);
    let results = race(&env.config, &user("alice"), &code, 20);

    let accepted = results
        .iter()
        .filter(|r| {
            **r == AttemptResult::Accepted(Accepted::Totp {
                device: "phone".into(),
            })
        })
        .count();
    let wrong = results
        .iter()
        .filter(|r| matches!(r, AttemptResult::Wrong { .. }))
        .count();
    assert_eq!((accepted, wrong), (1, 19));
    assert_eq!(env.last_step("alice", "phone"), Some(step_at(T0)));
    let events = env.audit_events("alice");
    assert_eq!(events.iter().filter(|e| *e == "code-accepted").count(), 1);
}

#[test]
fn eight_parallel_logins_with_one_bypass_code_succeed_once() {
    let mut env = TestEnv::with(|c| c.lockout.deny = 1000);
    let codes = env.give_bypass_codes("alice", 3);
    let results = race(&env.config, &user("alice"), &codes[0], 8);
    let accepted = results
        .iter()
        .filter(|r| **r == AttemptResult::Accepted(Accepted::Bypass { left: 2 }))
        .count();
    assert_eq!(accepted, 1, "{results:?}");
    assert_eq!(env.bypass_hashes("alice").len(), 2);
}
