//! TOTP at the second-factor prompt: success, failure counting, replay and
//! the window of steps either side of now.

use super::env::*;
use super::fakes::*;
use crate::attempt::Accepted;
use crate::login::{Denial, Outcome, CODE_PROMPT, MSG_WRONG};
use crate::store::Account;

fn verified_by(device: &str) -> Outcome {
    Outcome::Verified(Accepted::Totp {
        device: device.into(),
    })
}

/// alice with one verified app holding [`SECRET`].
fn alice_with_phone() -> (TestEnv, crate::users::UserInfo) {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    (env, user("alice"))
}

#[test]
fn the_current_code_is_accepted_after_one_prompt() {
    let (mut env, alice) = alice_with_phone();
    let (outcome, p) = env.second_factor(&alice, vec![typed(code_at(SECRET, T0))]);
    assert_eq!(outcome, verified_by("phone"));
    assert_eq!(p.shown, [Shown::Prompt(CODE_PROMPT.into())]);
    assert_eq!(env.account("alice"), Account::default());
    assert_eq!(env.last_step("alice", "phone"), Some(step_at(T0)));
}

#[test]
fn a_wrong_code_is_refused_and_counted() {
    let (mut env, alice) = alice_with_phone();
    let (outcome, p) = env.second_factor(&alice, vec![typed(wrong_code(SECRET, T0))]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(
        p.shown,
        [
            Shown::Prompt(CODE_PROMPT.into()),
            Shown::Error(MSG_WRONG.into())
        ]
    );
    assert_eq!(
        env.account("alice"),
        Account {
            failures: 1,
            locked_at: None,
            last_failure: Some(T0),
            locked_until: None
        }
    );
    assert_eq!(env.last_step("alice", "phone"), None);
}

#[test]
fn a_success_resets_the_failure_count() {
    let (mut env, alice) = alice_with_phone();
    for _ in 0..4 {
        env.second_factor(&alice, vec![typed(wrong_code(SECRET, T0))]);
    }
    assert_eq!(env.account("alice").failures, 4);
    let (outcome, _) = env.second_factor(&alice, vec![typed(code_at(SECRET, T0))]);
    assert_eq!(outcome, verified_by("phone"));
    assert_eq!(env.account("alice"), Account::default());
}

#[test]
fn the_same_code_is_refused_the_second_time_and_counted() {
    let (mut env, alice) = alice_with_phone();
    let code = code_at(SECRET, T0);
    assert_eq!(
        env.second_factor(&alice, vec![typed(&code)]).0,
        verified_by("phone")
    );
    env.clock.advance(10);
    let (outcome, p) = env.second_factor(&alice, vec![typed(&code)]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(p.errors(), [MSG_WRONG]);
    assert_eq!(env.account("alice").failures, 1);
}

#[test]
fn an_older_code_is_refused_once_a_newer_one_was_used() {
    let (mut env, alice) = alice_with_phone();
    let next = code_at(SECRET, T0 + PERIOD);
    assert_eq!(
        env.second_factor(&alice, vec![typed(next)]).0,
        verified_by("phone")
    );
    let (outcome, _) = env.second_factor(&alice, vec![typed(code_at(SECRET, T0))]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.last_step("alice", "phone"), Some(step_at(T0) + 1));
}

#[test]
fn codes_one_step_either_side_of_now_are_accepted() {
    for offset in [-1, 1] {
        let (mut env, alice) = alice_with_phone();
        let code = code_at(SECRET, T0 + offset * PERIOD);
        let (outcome, _) = env.second_factor(&alice, vec![typed(code)]);
        assert_eq!(outcome, verified_by("phone"), "step offset {offset}");
        assert_eq!(env.last_step("alice", "phone"), Some(step_at(T0) + offset));
    }
}

#[test]
fn codes_two_steps_from_now_are_refused_and_counted() {
    for offset in [-2, 2] {
        let (mut env, alice) = alice_with_phone();
        let code = code_at(SECRET, T0 + offset * PERIOD);
        let (outcome, _) = env.second_factor(&alice, vec![typed(code)]);
        assert_eq!(
            outcome,
            Outcome::Denied(Denial::WrongCode),
            "step offset {offset}"
        );
        assert_eq!(env.account("alice").failures, 1, "step offset {offset}");
    }
}

/// A code shown during step s works from the first second of s-1 to the last
/// second of s+1, and not a second outside.
#[test]
fn the_window_edges_follow_the_clock_to_the_second() {
    let code = code_at(SECRET, T0);
    for (now, accepted) in [
        (T0 - PERIOD - 1, false),
        (T0 - PERIOD, true),
        (T0 + 2 * PERIOD - 1, true),
        (T0 + 2 * PERIOD, false),
    ] {
        let (mut env, alice) = alice_with_phone();
        env.clock.set(now);
        let (outcome, _) = env.second_factor(&alice, vec![typed(&code)]);
        let want = if accepted {
            verified_by("phone")
        } else {
            Outcome::Denied(Denial::WrongCode)
        };
        assert_eq!(outcome, want, "at T0{:+}", now - T0);
        assert_eq!(env.account("alice").failures, u32::from(!accepted));
    }
}

#[test]
fn window_zero_accepts_only_the_current_step() {
    let mut env = TestEnv::with(|c| c.totp.window = 0);
    env.add_totp("alice", "phone", SECRET);
    let alice = user("alice");
    let previous = code_at(SECRET, T0 - PERIOD);
    assert_eq!(
        env.second_factor(&alice, vec![typed(previous)]).0,
        Outcome::Denied(Denial::WrongCode)
    );
    assert_eq!(
        env.second_factor(&alice, vec![typed(code_at(SECRET, T0))])
            .0,
        verified_by("phone")
    );
}

#[test]
fn a_code_from_any_verified_device_is_accepted_and_names_it() {
    let other: &[u8] = b"abcdefghijabcdefghij";
    let (mut env, alice) = alice_with_phone();
    env.add_totp("alice", "tablet", other);
    let (outcome, _) = env.second_factor(&alice, vec![typed(code_at(other, T0))]);
    assert_eq!(outcome, verified_by("tablet"));
    assert_eq!(env.last_step("alice", "phone"), None);
}

#[test]
fn a_pending_device_does_not_open_the_login() {
    let other: &[u8] = b"abcdefghijabcdefghij";
    let (mut env, alice) = alice_with_phone();
    env.add_pending_totp("alice", "new-phone", other);
    let (outcome, _) = env.second_factor(&alice, vec![typed(code_at(other, T0))]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.account("alice").failures, 1);
}

#[test]
fn spaces_around_and_inside_a_code_are_ignored() {
    let (mut env, alice) = alice_with_phone();
    let code = code_at(SECRET, T0);
    let spaced = format!(" {} {}\n", &code[..3], &code[3..]);
    assert_eq!(
        env.second_factor(&alice, vec![typed(spaced)]).0,
        verified_by("phone")
    );
}

#[test]
fn a_client_that_hangs_up_at_the_prompt_is_not_counted() {
    let (mut env, alice) = alice_with_phone();
    let (outcome, p) = env.second_factor(&alice, vec![]);
    assert_eq!(outcome, Outcome::ConversationFailed);
    assert_eq!(p.prompts(), [CODE_PROMPT]);
    assert_eq!(env.account("alice"), Account::default());
}
