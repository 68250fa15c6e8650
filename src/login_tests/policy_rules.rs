//! Who is asked for what: policy optional/required, setup at login, exempt
//! groups, and unknown users.
#![forbid(unsafe_code)]

use super::env::*;
use super::fakes::*;
use crate::attempt::Accepted;
use crate::config::Policy;
use crate::enroll;
use crate::login::{
    Denial, Outcome, CODE_PROMPT, ENROLL_PROMPT, MSG_LOCKED, MSG_NOT_ENROLLED, MSG_WRONG,
};
use crate::secret::{base32_encode, group4};
use crate::store::{Account, Factor};

const SETUP_REASON: &str = "Multi-factor authentication is required for this account";
const SETUP_RETRY: &str = "That code does not match; check the app and try the next code.";

fn required() -> TestEnv {
    TestEnv::with(|c| c.policy = Policy::Required)
}

/// A code the app for the shown secret does not show anywhere near `t`.
fn wrong_setup_code_at(t: i64) -> Answer {
    Answer::Computed(Box::new(move |shown| {
        wrong_code(&shown_secret(shown), t).into_bytes()
    }))
}

#[test]
fn optional_policy_lets_a_user_without_a_device_in_on_the_password() {
    let mut env = TestEnv::new();
    let (outcome, p) = env.second_factor(&user("alice"), vec![]);
    assert_eq!(outcome, Outcome::Passed("optional-no-device"));
    assert!(p.shown.is_empty());
    assert!(env.users_with_rows().is_empty());
}

#[test]
fn under_optional_policy_a_pending_device_is_not_a_factor() {
    let mut env = TestEnv::new();
    env.add_pending_totp("alice", "phone", SECRET);
    let (outcome, p) = env.second_factor(&user("alice"), vec![]);
    assert_eq!(outcome, Outcome::Passed("optional-no-device"));
    assert!(p.shown.is_empty());
}

#[test]
fn under_optional_policy_a_user_with_a_device_must_use_it() {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    let (outcome, p) = env.second_factor(&user("alice"), vec![]);
    assert_eq!(outcome, Outcome::ConversationFailed);
    assert_eq!(p.prompts(), [CODE_PROMPT]);
}

#[test]
fn required_policy_leads_a_user_without_a_device_through_setup() {
    let mut env = required();
    let (outcome, p) = env.second_factor(&user("alice"), vec![setup_code_at(T0)]);
    assert_eq!(outcome, Outcome::Enrolled);

    let secret = shown_secret(&p.shown);
    let b32 = base32_encode(&secret);
    let uri = format!(
        "otpauth://totp/test-host:alice?secret={}&issuer=test-host&algorithm=SHA1&digits=6&period=30",
        b32.as_str()
    );
    let qr = enroll::qr_text(&uri);
    assert!(qr.lines().count() > 10);
    // The setup ends with the QR code (of exactly that URI), the grouped
    // secret and the URI, then the one prompt, then the confirmation.
    let n = p.shown.len();
    assert!(n > 5, "{:?}", p.shown);
    assert_eq!(
        p.shown[n - 5..],
        [
            Shown::Info(qr.to_string()),
            Shown::Info(format!("Secret: {}", group4(&b32).as_str())),
            Shown::Info(format!("URI: {uri}")),
            Shown::Prompt(ENROLL_PROMPT.into()),
            Shown::Info(
                "Device \"login\" is set up. Use a code from it at your next login.".into()
            ),
        ]
    );
    // Before it, only information saying why.
    let intro = &p.shown[..n - 5];
    assert!(intro.iter().all(|s| matches!(s, Shown::Info(_))));
    assert!(
        matches!(&intro[0], Shown::Info(t) if t.starts_with(SETUP_REASON)),
        "{intro:?}"
    );

    let devices = env.devices("alice");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].name, "login");
    assert!(devices[0].verified);
    match &devices[0].factor {
        Factor::Totp {
            secret: stored,
            last_step,
            ..
        } => {
            assert_eq!(stored.as_slice(), secret.as_slice());
            assert_eq!(*last_step, Some(step_at(T0)));
        }
        Factor::Sms { .. } => panic!("a TOTP device was stored"),
    }
    assert_eq!(env.account("alice"), Account::default());
    assert_eq!(env.audit_events("alice"), ["device-enrolled"]);
    assert!(env.sms.sent.borrow().is_empty(), "TOTP setup texts nothing");
    env.remember_secret(b32.as_str());
}

#[test]
fn after_setup_at_login_the_next_login_asks_for_a_code_from_the_new_device() {
    let mut env = required();
    let alice = user("alice");
    let (_, setup) = env.second_factor(&alice, vec![setup_code_at(T0)]);
    let secret = shown_secret(&setup.shown);
    env.remember_secret(base32_encode(&secret).as_str());

    // The code that proved the device is spent.
    let (outcome, p) = env.second_factor(&alice, vec![typed(code_at(&secret, T0))]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(p.prompts(), [CODE_PROMPT]);

    env.clock.advance(PERIOD);
    let (outcome, p) = env.second_factor(&alice, vec![typed(code_at(&secret, T0 + PERIOD))]);
    assert_eq!(
        outcome,
        Outcome::Verified(Accepted::Totp {
            device: "login".into()
        })
    );
    assert_eq!(p.shown, [Shown::Prompt(CODE_PROMPT.into())]);
}

#[test]
fn setup_with_three_wrong_codes_is_denied_and_counts_three_failures() {
    let mut env = required();
    let answers = vec![
        wrong_setup_code_at(T0),
        wrong_setup_code_at(T0),
        wrong_setup_code_at(T0),
    ];
    let (outcome, p) = env.second_factor(&user("alice"), answers);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(p.prompts(), [ENROLL_PROMPT; 3]);
    assert_eq!(p.errors(), [SETUP_RETRY, SETUP_RETRY, MSG_WRONG]);
    assert_eq!(env.account("alice").failures, 3);
    assert!(env.devices("alice").is_empty());
}

#[test]
fn setup_stops_when_its_wrong_codes_lock_the_account() {
    let mut env = required();
    let alice = user("alice");
    for _ in 0..3 {
        env.authfail(&alice);
    }
    let answers = vec![
        wrong_setup_code_at(T0),
        wrong_setup_code_at(T0),
        wrong_setup_code_at(T0),
    ];
    let (outcome, p) = env.second_factor(&alice, answers);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert_eq!(p.errors(), [SETUP_RETRY, SETUP_RETRY, MSG_LOCKED]);
    assert_eq!(env.account("alice").failures, 6);
    assert!(env.devices("alice").is_empty());
}

#[test]
fn a_locked_user_without_a_device_is_not_offered_setup() {
    let mut env = required();
    let alice = user("alice");
    env.lock_out(&alice);
    let (outcome, p) = env.second_factor(&alice, vec![setup_code_at(T0)]);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert_eq!(p.shown, [Shown::Error(MSG_LOCKED.into())]);
    assert!(env.devices("alice").is_empty());
}

#[test]
fn hanging_up_during_setup_stores_nothing_and_counts_nothing() {
    let mut env = required();
    let (outcome, p) = env.second_factor(&user("alice"), vec![]);
    assert_eq!(outcome, Outcome::ConversationFailed);
    assert_eq!(p.prompts(), [ENROLL_PROMPT]);
    assert!(env.users_with_rows().is_empty());
}

#[test]
fn setup_at_login_picks_a_free_nickname_beside_a_pending_login_device() {
    let mut env = required();
    env.add_pending_totp("alice", "login", SECRET);
    let (outcome, p) = env.second_factor(&user("alice"), vec![setup_code_at(T0)]);
    assert_eq!(outcome, Outcome::Enrolled);
    env.remember_secret(base32_encode(&shown_secret(&p.shown)).as_str());
    let names: Vec<(String, bool)> = env
        .devices("alice")
        .into_iter()
        .map(|d| (d.name, d.verified))
        .collect();
    assert_eq!(names, [("login".into(), false), ("login-2".into(), true)]);
}

#[test]
fn required_policy_without_setup_at_login_refuses_with_a_message() {
    let mut env = TestEnv::with(|c| {
        c.policy = Policy::Required;
        c.enroll_at_login = false;
    });
    let (outcome, p) = env.second_factor(&user("alice"), vec![]);
    assert_eq!(outcome, Outcome::Denied(Denial::NotEnrolled));
    assert_eq!(p.shown, [Shown::Error(MSG_NOT_ENROLLED.into())]);
    assert!(
        env.users_with_rows().is_empty(),
        "nothing counted, nothing stored"
    );
}

#[test]
fn a_user_with_only_bypass_codes_is_asked_for_a_code_under_required_policy() {
    let mut env = required();
    let codes = env.give_bypass_codes("alice", 2);
    let (outcome, p) = env.second_factor(&user("alice"), vec![typed(&codes[0])]);
    assert_eq!(outcome, Outcome::Verified(Accepted::Bypass { left: 1 }));
    assert_eq!(p.prompts(), [CODE_PROMPT]);
    assert!(env.devices("alice").is_empty(), "not led through setup");
}

#[test]
fn the_policy_an_administrator_set_overrides_the_config() {
    let mut env = TestEnv::new();
    env.set_policy(Policy::Required);
    let (outcome, p) = env.second_factor(&user("alice"), vec![]);
    assert_eq!(outcome, Outcome::ConversationFailed);
    assert_eq!(p.prompts(), [ENROLL_PROMPT]);

    let mut env = required();
    env.set_policy(Policy::Optional);
    let (outcome, _) = env.second_factor(&user("alice"), vec![]);
    assert_eq!(outcome, Outcome::Passed("optional-no-device"));
}

#[test]
fn an_exempt_group_member_passes_without_a_prompt() {
    let mut env = TestEnv::with(|c| {
        c.policy = Policy::Required;
        c.exempt_groups = vec!["breakglass".into()];
    });
    env.add_totp("carol", "phone", SECRET);
    let carol = user_in("carol", &["users", "breakglass"]);
    let (outcome, p) = env.second_factor(&carol, vec![]);
    assert_eq!(outcome, Outcome::Passed("exempt-group"));
    assert!(p.shown.is_empty());
    // Membership is what counts: without the group she is asked.
    let (outcome, _) = env.second_factor(&user("carol"), vec![]);
    assert_eq!(outcome, Outcome::ConversationFailed);
}

#[test]
fn an_unknown_user_sees_exactly_what_a_real_user_with_a_wrong_code_sees() {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    let wrong = wrong_code(SECRET, T0);
    let (real, real_p) = env.second_factor(&user("alice"), vec![typed(&wrong)]);
    let (ghost, ghost_p) = env.run(
        Phase::SecondFactor,
        Who::Unknown("ghost"),
        None,
        vec![typed(&wrong)],
    );
    assert_eq!(real, Outcome::Denied(Denial::WrongCode));
    assert_eq!(ghost, Outcome::Denied(Denial::UnknownUser));
    assert_eq!(ghost_p.shown, real_p.shown);
    assert_eq!(ghost_p.prompts(), [CODE_PROMPT]);
}

#[test]
fn an_unknown_user_is_refused_even_under_optional_policy_and_leaves_no_rows() {
    let mut env = TestEnv::new();
    let ghost = || Who::Unknown("ghost");
    assert_eq!(
        env.run(Phase::Preauth, ghost(), None, vec![]).0,
        Outcome::Passed("unknown-user-preauth")
    );
    for _ in 0..7 {
        let (outcome, p) = env.run(Phase::Authfail, ghost(), Some(b"guess"), vec![]);
        assert_eq!(outcome, Outcome::Denied(Denial::UnknownUser));
        assert!(p.shown.is_empty());
    }
    let (outcome, p) = env.run(
        Phase::SecondFactor,
        ghost(),
        Some(b"guess"),
        vec![typed("123456")],
    );
    assert_eq!(outcome, Outcome::Denied(Denial::UnknownUser));
    assert_eq!(p.prompts(), [CODE_PROMPT]);
    assert_eq!(
        env.run(Phase::Account, ghost(), None, vec![]).0,
        Outcome::Denied(Denial::UnknownUser)
    );

    assert!(
        env.users_with_rows().is_empty(),
        "no account, device or code rows"
    );
    assert_eq!(env.account("ghost"), Account::default());
    assert!(env.devices("ghost").is_empty());
    assert_eq!(env.live_one_time_codes("ghost"), 0);
    assert!(env.audit(None).is_empty(), "no audit rows either");
}
