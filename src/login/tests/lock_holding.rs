//! Issue 13, finding 1: no slow work under the store's write lock, and
//! phases that only look never take it. A login waiting on PBKDF2 or at a
//! prompt must not hold up anyone else's.

use super::env::*;
use super::fakes::*;
use crate::attempt::{self, Accepted, AttemptResult, Context};
use crate::codes::{self, CodeHash};
use crate::login::{Outcome, PassReason};
use crate::store::{SqliteStore, Store, StoreError, StoreResult, Tx};
use std::time::{Duration, Instant};

const TEMP: &str = "52830417";
const PHONE: &str = "5551234567";

/// PBKDF2 runs made during `f`, in all and inside a write transaction.
fn derivations_during(f: impl FnOnce()) -> (u64, u64) {
    let (all, locked) = (codes::derivations(), codes::derivations_under_write_lock());
    f();
    (
        codes::derivations() - all,
        codes::derivations_under_write_lock() - locked,
    )
}

#[test]
fn no_code_is_hashed_inside_the_write_transaction() {
    let mut env = TestEnv::new();
    env.sms.gateway.set(true);
    env.add_sms("alice", PHONE);
    let alice = user("alice");
    let bypass = env.give_bypass_codes("alice", 3);
    env.give_temporary_code("alice", TEMP, T0 + 300);

    let mut tries: Vec<(&str, Vec<u8>, bool)> = vec![
        ("right bypass code", bypass[0].clone().into_bytes(), true),
        ("wrong bypass code", b"ABCDE-23456".to_vec(), false),
        ("right temporary code", TEMP.into(), true),
        ("wrong temporary code", b"11112222".to_vec(), false),
    ];
    // A texted login code: sent by the phase itself, then typed.
    let (outcome, _) = env.second_factor(&alice, vec![texted_code(&env.sms.sent, 7)]);
    assert_eq!(outcome, Outcome::Verified(Accepted::Sms));
    tries.push(("wrong texted code", b"1234567".to_vec(), false));
    for (what, code, right) in tries {
        let (all, locked) = derivations_during(|| {
            let result = env.attempt(&alice, &code);
            assert_eq!(
                matches!(result, AttemptResult::Accepted(_)),
                right,
                "{what}"
            );
        });
        assert!(all >= 1, "{what}: checked with PBKDF2");
        assert_eq!(locked, 0, "{what}: PBKDF2 ran under the write lock");
    }
}

#[test]
fn the_phone_pin_is_not_hashed_inside_the_write_transaction() {
    let mut env = TestEnv::new();
    env.sms.gateway.set(true);
    let now = env.now();
    crate::onetime::start_sms_enrollment(&mut env.store, &env.config, &env.sms, "bob", PHONE, now)
        .unwrap();
    let pin = env.sms.last_code(4);
    let wrong = format!("{:04}", (pin.parse::<u32>().unwrap() + 1) % 10_000);
    for (code, right) in [(wrong, false), (pin, true)] {
        let (all, locked) = derivations_during(|| {
            let done =
                crate::onetime::verify_sms_pin(&mut env.store, &env.config, "bob", &code, now);
            assert_eq!(done.is_ok(), right, "{done:?}");
        });
        assert_eq!((all, locked), (1, 0));
    }
}

/// Another process holds SQLite's write lock (a long admin transaction, or
/// in 0.1.0 a stopped `su`): phases that only look still answer at once.
#[test]
fn read_only_phases_answer_while_another_process_holds_the_write_lock() {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    let alice = user("alice");
    let other = rusqlite::Connection::open(&env.config.database).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    let started = Instant::now();
    assert_eq!(
        env.preauth(&alice).0,
        Outcome::Passed(PassReason::NotLocked)
    );
    assert_eq!(
        env.account_phase(&alice).0,
        Outcome::Passed(PassReason::NotLocked)
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?} for the lock",
        started.elapsed()
    );
    // Which factors alice has is read before the prompt, from a snapshot;
    // only the verdict needs the write lock, and a busy store denies.
    let (verdict, prompter) = env.try_run(
        Phase::SecondFactor,
        Who::Known(&alice),
        None,
        vec![typed(code_at(SECRET, T0))],
    );
    assert_eq!(prompter.prompts(), [crate::login::CODE_PROMPT]);
    assert!(
        matches!(&verdict, Err(e) if !e.permits_allow()),
        "{verdict:?}"
    );

    other.execute_batch("ROLLBACK").unwrap();
    let (outcome, _) = env.second_factor(&alice, vec![typed(code_at(SECRET, T0))]);
    assert!(matches!(outcome, Outcome::Verified(_)), "{outcome:?}");
}

/// Before each write transaction, installs a new set of bypass codes for
/// alice: what a parallel `mfa bypass generate` does between the snapshot
/// the hashing used and the check.
struct RegeneratesBeforeEachCheck<'a> {
    inner: &'a mut SqliteStore,
    sets: Vec<Vec<CodeHash>>,
}

impl Store for RegeneratesBeforeEachCheck<'_> {
    fn begin(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        if let Some(set) = self.sets.pop() {
            let tx = self.inner.begin()?;
            tx.replace_bypass_codes("alice", &set, T0)?;
            tx.commit()?;
        }
        self.inner.begin()
    }

    fn begin_read(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        self.inner.begin_read()
    }
}

fn set_of(codes: &[&str]) -> Vec<CodeHash> {
    let salt = codes::new_salt().unwrap();
    codes
        .iter()
        .map(|c| codes::hash_with_salt(&codes::normalize_bypass(c).unwrap(), &salt))
        .collect()
}

#[test]
fn codes_replaced_between_hashing_and_checking_are_hashed_again() {
    let mut env = TestEnv::new();
    env.store_bypass_codes("alice", &["AAAAA-22222", "BBBBB-33333"]);
    env.remember_secret("CCCCC-44444");
    let alice = user("alice");
    let config = env.config.clone();
    let mut store = RegeneratesBeforeEachCheck {
        inner: &mut env.store,
        sets: vec![set_of(&["CCCCC-44444", "DDDDD-55555", "EEEEE-66666"])],
    };
    let ctx = Context { detail: "" };
    let (all, locked) = derivations_during(|| {
        let result =
            attempt::attempt_code(&mut store, &config, &alice, b"CCCCC-44444", None, T0, &ctx);
        assert_eq!(
            result.unwrap(),
            AttemptResult::Accepted(Accepted::Bypass { left: 2 })
        );
    });
    assert_eq!(
        (all, locked),
        (2, 0),
        "one run per set, none under the lock"
    );
    assert_eq!(env.account("alice").failures, 0);
}

#[test]
fn codes_that_keep_changing_fail_the_attempt_without_counting_it() {
    let mut env = TestEnv::new();
    env.store_bypass_codes("alice", &["AAAAA-22222"]);
    let alice = user("alice");
    let config = env.config.clone();
    let mut store = RegeneratesBeforeEachCheck {
        inner: &mut env.store,
        sets: (0..attempt::PREPARE_ROUNDS)
            .map(|_| set_of(&["AAAAA-22222"]))
            .collect(),
    };
    let ctx = Context { detail: "" };
    let result = attempt::attempt_code(&mut store, &config, &alice, b"AAAAA-22222", None, T0, &ctx);
    assert!(matches!(result, Err(StoreError::Faulty(_))), "{result:?}");
    assert_eq!(env.account("alice").failures, 0);
    assert_eq!(env.bypass_hashes("alice").len(), 1, "nothing spent");
}
