//! Lockout: six failures in a row, from wrong passwords or wrong codes, lock
//! the account in every phase; a locked account is refused without looking
//! at the code; `unlock_after` and root's exemption.

use super::env::*;
use super::fakes::*;
use crate::attempt::{Accepted, AttemptResult};
use crate::login::{Denial, Outcome, PassReason, MSG_LOCKED, MSG_WRONG};
use crate::store::Account;

fn alice_with_phone() -> (TestEnv, crate::users::UserInfo) {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    (env, user("alice"))
}

fn totp_ok() -> Outcome {
    Outcome::Verified(Accepted::Totp {
        device: "phone".into(),
    })
}

fn locked_message_only(p: &FakePrompter) -> bool {
    p.shown == [Shown::Error(MSG_LOCKED.into())]
}

#[test]
fn three_wrong_passwords_and_three_wrong_codes_lock_the_account() {
    let (mut env, alice) = alice_with_phone();
    for n in 1..=3 {
        let (outcome, p) = env.authfail(&alice);
        assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
        assert!(p.shown.is_empty(), "a wrong password shows nothing of ours");
        assert_eq!(env.account("alice").failures, n);
    }
    let wrong = wrong_code(SECRET, T0);
    for n in 4..=5 {
        let (outcome, p) = env.second_factor(&alice, vec![typed(&wrong)]);
        assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
        assert_eq!(p.errors(), [MSG_WRONG]);
        assert_eq!(env.account("alice").failures, n);
    }
    assert_eq!(
        env.account("alice").locked_at,
        None,
        "five failures do not lock"
    );
    env.clock.advance(7);
    let (outcome, p) = env.second_factor(&alice, vec![typed(&wrong)]);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert_eq!(p.errors(), [MSG_LOCKED]);
    assert_eq!(
        env.account("alice"),
        Account {
            failures: 6,
            locked_at: Some(T0 + 7),
            last_failure: Some(T0 + 7),
            locked_until: None
        }
    );
    assert_eq!(env.audit_events("alice").last().unwrap(), "locked");
}

#[test]
fn the_sixth_wrong_password_locks_quietly() {
    let (mut env, alice) = alice_with_phone();
    for _ in 0..5 {
        env.authfail(&alice);
    }
    let (outcome, p) = env.authfail(&alice);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    // Said after a wrong password, it would tell which names exist.
    assert!(p.shown.is_empty(), "{:?}", p.shown);
    assert_eq!(env.account("alice").failures, 6);
}

#[test]
fn lockout_deny_sets_the_number_of_failures() {
    let mut env = TestEnv::with(|c| c.lockout.deny = 2);
    let alice = user("alice");
    env.authfail(&alice);
    assert_eq!(env.account("alice").locked_at, None);
    assert_eq!(env.authfail(&alice).0, Outcome::Denied(Denial::Locked));
}

#[test]
fn a_locked_account_is_not_told_so_before_the_password_nor_after_a_wrong_one() {
    let (mut env, alice) = alice_with_phone();
    for _ in 0..5 {
        let (outcome, p) = env.authfail(&alice);
        assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
        assert!(p.shown.is_empty(), "{:?}", p.shown);
    }
    // The failure that locks it says nothing either: an unknown name
    // after a wrong password looks the same.
    let (outcome, p) = env.authfail(&alice);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert!(p.shown.is_empty(), "{:?}", p.shown);
    let (outcome, p) = env.preauth(&alice);
    assert_eq!(outcome, Outcome::Passed(PassReason::NotLocked));
    assert!(p.shown.is_empty(), "{:?}", p.shown);
    let (outcome, p) = env.authfail(&alice);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert!(p.shown.is_empty(), "{:?}", p.shown);
    // After the right password it is told, and denied.
    let (outcome, p) = env.second_factor(&alice, vec![]);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert!(locked_message_only(&p), "{:?}", p.shown);
}

#[test]
fn preauth_lets_an_unlocked_account_on_to_the_password_silently() {
    let (mut env, alice) = alice_with_phone();
    for _ in 0..5 {
        env.authfail(&alice);
    }
    let (outcome, p) = env.preauth(&alice);
    assert_eq!(outcome, Outcome::Passed(PassReason::NotLocked));
    assert!(p.shown.is_empty());
}

#[test]
fn the_account_phase_refuses_a_locked_account() {
    let (mut env, alice) = alice_with_phone();
    assert_eq!(
        env.account_phase(&alice).0,
        Outcome::Passed(PassReason::NotLocked)
    );
    env.lock_out(&alice);
    let (outcome, p) = env.account_phase(&alice);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert!(locked_message_only(&p));
}

#[test]
fn a_locked_account_is_refused_a_correct_code_without_a_prompt_or_a_count() {
    let (mut env, alice) = alice_with_phone();
    env.lock_out(&alice);
    let code = code_at(SECRET, T0);
    let (outcome, p) = env.second_factor(&alice, vec![typed(&code)]);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert!(locked_message_only(&p), "no prompt: {:?}", p.shown);
    assert_eq!(env.attempt(&alice, code.as_bytes()), AttemptResult::Locked);
    assert_eq!(env.account("alice").failures, 6);
    // Not even looked at: the code is still unspent after an unlock.
    assert_eq!(env.last_step("alice", "phone"), None);
    env.admin_unlock("alice");
    assert_eq!(env.second_factor(&alice, vec![typed(&code)]).0, totp_ok());
}

#[test]
fn a_wrong_password_on_a_locked_account_is_not_counted() {
    let (mut env, alice) = alice_with_phone();
    env.lock_out(&alice);
    let before = env.account("alice");
    env.clock.advance(60);
    let (outcome, p) = env.authfail(&alice);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert!(p.shown.is_empty(), "{:?}", p.shown);
    assert_eq!(env.account("alice"), before);
}

#[test]
fn unlock_after_reopens_the_account_exactly_at_the_boundary() {
    let mut env = TestEnv::with(|c| c.lockout.unlock_after = 600);
    env.add_totp("alice", "phone", SECRET);
    let alice = user("alice");
    env.lock_out(&alice);

    env.clock.set(T0 + 599);
    assert_eq!(env.account_phase(&alice).0, Outcome::Denied(Denial::Locked));
    assert_eq!(env.account_phase(&alice).0, Outcome::Denied(Denial::Locked));
    let code = code_at(SECRET, T0 + 599);
    assert_eq!(env.attempt(&alice, code.as_bytes()), AttemptResult::Locked);

    env.clock.set(T0 + 600);
    assert_eq!(
        env.account_phase(&alice).0,
        Outcome::Passed(PassReason::NotLocked)
    );
    assert_eq!(
        env.account_phase(&alice).0,
        Outcome::Passed(PassReason::NotLocked)
    );
    let (outcome, _) = env.second_factor(&alice, vec![typed(code_at(SECRET, T0 + 600))]);
    assert_eq!(outcome, totp_ok());
    assert_eq!(env.account("alice"), Account::default());
}

#[test]
fn after_an_expired_lock_the_count_starts_again_from_one() {
    let mut env = TestEnv::with(|c| c.lockout.unlock_after = 600);
    env.add_totp("alice", "phone", SECRET);
    let alice = user("alice");
    env.lock_out(&alice);
    env.clock.set(T0 + 600);
    let (outcome, p) = env.second_factor(&alice, vec![typed(wrong_code(SECRET, T0 + 600))]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(p.errors(), [MSG_WRONG]);
    assert_eq!(
        env.account("alice"),
        Account {
            failures: 1,
            locked_at: None,
            last_failure: Some(T0 + 600),
            locked_until: None
        }
    );
}

#[test]
fn with_unlock_after_zero_the_lock_outlasts_a_year() {
    let (mut env, alice) = alice_with_phone();
    env.lock_out(&alice);
    env.clock.advance(366 * 86_400);
    assert_eq!(env.account_phase(&alice).0, Outcome::Denied(Denial::Locked));
    let code = code_at(SECRET, env.now());
    assert_eq!(env.attempt(&alice, code.as_bytes()), AttemptResult::Locked);
}

/// `root_unlock_time = 0`: root is never locked (0.2's rule).
#[test]
fn root_is_never_locked_with_root_unlock_time_zero() {
    let mut env = TestEnv::with(|c| c.lockout.root_unlock_time = 0);
    env.add_totp("root", "phone", SECRET);
    let root = root();
    for _ in 0..5 {
        env.authfail(&root);
    }
    for _ in 0..5 {
        let (outcome, _) = env.second_factor(&root, vec![typed(wrong_code(SECRET, T0))]);
        assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    }
    let account = env.account("root");
    assert_eq!((account.failures, account.locked_at), (10, None));
    assert_eq!(env.clock.slept(), 0, "no pause without a lock that ends");
    assert_eq!(
        env.account_phase(&root).0,
        Outcome::Passed(PassReason::NotLocked)
    );
    assert_eq!(
        env.account_phase(&root).0,
        Outcome::Passed(PassReason::NotLocked)
    );
    let (outcome, _) = env.second_factor(&root, vec![typed(code_at(SECRET, T0))]);
    assert_eq!(outcome, totp_ok());
    assert_eq!(env.account("root"), Account::default());
}

/// Issue 13 #7, by default: root is locked for `root_unlock_time` after
/// `deny` failures (never for good), its right code is refused meanwhile,
/// and each failure pauses 1 s, doubling up to the cap, before the verdict.
#[test]
fn root_is_locked_for_root_unlock_time_and_failures_pause() {
    let mut env = TestEnv::new();
    env.add_totp("root", "phone", SECRET);
    let root = root();
    env.authfail(&root);
    assert_eq!(env.clock.slept(), 1);
    for _ in 0..4 {
        let (outcome, _) = env.second_factor(&root, vec![typed(wrong_code(SECRET, T0))]);
        assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    }
    assert_eq!(env.clock.slept(), 1 + 2 + 4 + 8 + 8);
    let (outcome, _) = env.second_factor(&root, vec![typed(wrong_code(SECRET, T0))]);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked), "the sixth locks");
    assert_eq!(env.clock.slept(), 1 + 2 + 4 + 8 + 8 + 8);
    let account = env.account("root");
    assert_eq!(account.locked_until, Some(T0 + 600), "{account:?}");

    // Locked: the right code is refused, nothing more counted or paused.
    let (outcome, _) = env.second_factor(&root, vec![typed(code_at(SECRET, T0))]);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert_eq!(env.account_phase(&root).0, Outcome::Denied(Denial::Locked));
    env.clock.advance(599);
    assert_eq!(env.account_phase(&root).0, Outcome::Denied(Denial::Locked));
    assert_eq!(env.clock.slept(), 31);

    // After root_unlock_time the code lets in and the run of failures ends.
    env.clock.advance(1);
    assert_eq!(env.preauth(&root).0, Outcome::Passed(PassReason::NotLocked));
    let code = code_at(SECRET, env.now());
    let (outcome, _) = env.second_factor(&root, vec![typed(code)]);
    assert_eq!(outcome, totp_ok());
    assert_eq!(env.account("root"), Account::default());
}

#[test]
fn root_is_locked_when_lock_root_is_set() {
    let mut env = TestEnv::with(|c| c.lockout.lock_root = true);
    env.add_totp("root", "phone", SECRET);
    let root = root();
    env.lock_out(&root);
    assert_eq!(env.account_phase(&root).0, Outcome::Denied(Denial::Locked));
    let (outcome, _) = env.second_factor(&root, vec![typed(code_at(SECRET, T0))]);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
}

#[test]
fn an_admin_unlock_lets_the_user_in_again() {
    let (mut env, alice) = alice_with_phone();
    env.lock_out(&alice);
    env.admin_unlock("alice");
    assert_eq!(
        env.account_phase(&alice).0,
        Outcome::Passed(PassReason::NotLocked)
    );
    assert_eq!(
        env.second_factor(&alice, vec![typed(code_at(SECRET, T0))])
            .0,
        totp_ok()
    );
}
