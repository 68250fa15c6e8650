//! Temporary passcodes an administrator sends: valid five minutes, once, and
//! only for accounts that are not locked.

use super::env::*;
use super::fakes::*;
use crate::attempt::{Accepted, AttemptResult};
use crate::config::Policy;
use crate::login::{Denial, Outcome, CODE_PROMPT, MSG_LOCKED};

const TEMP: &str = "52830417";
const LIFETIME: i64 = 300;

fn temporary() -> Outcome {
    Outcome::Verified(Accepted::Temporary)
}

/// alice with an app, and a temporary code issued at T0.
fn alice_with_temporary_code() -> (TestEnv, crate::users::UserInfo) {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    env.give_temporary_code("alice", TEMP, T0 + LIFETIME);
    (env, user("alice"))
}

#[test]
fn a_temporary_code_is_accepted_once() {
    let (mut env, alice) = alice_with_temporary_code();
    let (outcome, p) = env.second_factor(&alice, vec![typed(TEMP)]);
    assert_eq!(outcome, temporary());
    assert_eq!(p.shown, [Shown::Prompt(CODE_PROMPT.into())]);
    assert_eq!(env.live_one_time_codes("alice"), 0);

    let (outcome, _) = env.second_factor(&alice, vec![typed(TEMP)]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.account("alice").failures, 1);
}

#[test]
fn a_temporary_code_works_in_its_last_second() {
    let (mut env, alice) = alice_with_temporary_code();
    env.clock.set(T0 + LIFETIME - 1);
    assert_eq!(env.second_factor(&alice, vec![typed(TEMP)]).0, temporary());
}

#[test]
fn a_temporary_code_is_refused_and_counted_once_five_minutes_have_passed() {
    let (mut env, alice) = alice_with_temporary_code();
    env.clock.set(T0 + LIFETIME);
    let (outcome, _) = env.second_factor(&alice, vec![typed(TEMP)]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.account("alice").failures, 1);
    assert_eq!(env.live_one_time_codes("alice"), 0);
}

#[test]
fn a_temporary_code_is_refused_for_a_locked_account_and_kept() {
    let (mut env, alice) = alice_with_temporary_code();
    env.lock_out(&alice);
    let (outcome, p) = env.second_factor(&alice, vec![typed(TEMP)]);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert_eq!(p.shown, [Shown::Error(MSG_LOCKED.into())]);
    assert_eq!(env.attempt(&alice, TEMP.as_bytes()), AttemptResult::Locked);
    assert_eq!(env.account("alice").failures, 6);
    assert_eq!(env.live_one_time_codes("alice"), 1);
}

#[test]
fn a_user_whose_only_factor_is_a_temporary_code_is_asked_for_it() {
    let mut env = TestEnv::with(|c| c.policy = Policy::Required);
    env.give_temporary_code("bob", TEMP, T0 + LIFETIME);
    let (outcome, p) = env.second_factor(&user("bob"), vec![typed(TEMP)]);
    assert_eq!(outcome, temporary());
    assert_eq!(p.shown, [Shown::Prompt(CODE_PROMPT.into())]);
    assert!(env.devices("bob").is_empty(), "no setup was started");
}

#[test]
fn a_wrong_temporary_code_is_counted_and_the_right_one_still_works() {
    let (mut env, alice) = alice_with_temporary_code();
    let (outcome, _) = env.second_factor(&alice, vec![typed("52830418")]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.account("alice").failures, 1);
    assert_eq!(env.second_factor(&alice, vec![typed(TEMP)]).0, temporary());
    assert_eq!(env.account("alice").failures, 0);
}

/// Issue 13, finding 16: a wrong code of a temporary or text code's shape
/// cost a PBKDF2 run only when such a code was waiting, so its time told
/// whether one was. Now the work is the same either way.
#[test]
fn a_wrong_code_costs_the_same_work_whether_or_not_a_code_is_waiting() {
    for wrong in ["11112222", "1111222"] {
        let work = |waiting: bool| {
            let mut env = TestEnv::new();
            env.add_totp("alice", "phone", SECRET);
            if waiting {
                env.give_temporary_code("alice", TEMP, T0 + LIFETIME);
            }
            let before = crate::codes::derivations();
            let (outcome, _) = env.second_factor(&user("alice"), vec![typed(wrong)]);
            assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
            crate::codes::derivations() - before
        };
        let (with, without) = (work(true), work(false));
        assert_eq!(with, without, "{wrong}");
        assert!(without >= 1, "{wrong}");
    }
}

/// Issue 13, finding 16: a wrong guess of a one-time code's shape uses
/// up one of its tries; with none left the code is void.
#[test]
fn wrong_guesses_use_up_a_temporary_codes_tries() {
    let (mut env, alice) = alice_with_temporary_code();
    for _ in 0..crate::onetime::TEMP_CODE_TRIES {
        assert_eq!(env.live_one_time_codes("alice"), 1);
        let (outcome, _) = env.second_factor(&alice, vec![typed("11112222")]);
        assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    }
    assert_eq!(env.live_one_time_codes("alice"), 0);
    let (outcome, _) = env.second_factor(&alice, vec![typed(TEMP)]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
}
