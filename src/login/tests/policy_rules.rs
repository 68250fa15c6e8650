//! Who is asked for what: policy optional/required, setup at login, exempt
//! groups, and unknown users.

use super::env::*;
use super::fakes::*;
use crate::attempt::Accepted;
use crate::config::Policy;
use crate::enroll;
use crate::login::{
    Denial, Outcome, PassReason, CODE_PROMPT, ENROLL_PROMPT, MSG_LOCKED, MSG_NOT_ENROLLED,
    MSG_OPTIONAL_HINT, MSG_SETUP_KEPT, MSG_SETUP_SAME, OFFER_PROMPT,
};
use crate::secret::{base32_encode, group4};
use crate::store::{Account, Factor};

const SETUP_REASON: &str = "Multi-factor authentication is required for this account";
use crate::login::MSG_SETUP_RETRY as SETUP_RETRY;

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
    assert_eq!(outcome, Outcome::Passed(PassReason::OptionalNoDevice));
    assert_eq!(p.shown, [Shown::Info(MSG_OPTIONAL_HINT.into())]);
    assert!(env.users_with_rows().is_empty());
}

#[test]
fn under_optional_policy_a_pending_device_is_not_a_factor() {
    let mut env = TestEnv::new();
    env.add_pending_totp("alice", "phone", SECRET);
    let (outcome, p) = env.second_factor(&user("alice"), vec![]);
    assert_eq!(outcome, Outcome::Passed(PassReason::OptionalNoDevice));
    assert_eq!(p.shown, [Shown::Info(MSG_OPTIONAL_HINT.into())]);
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
    assert_eq!(
        env.audit_events("alice"),
        ["device-pending", "device-verified"]
    );
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

/// Issue 14 #4: wrong setup codes are setup mistakes, not guesses: three
/// end the login without a failure counted, and the next login within ten
/// minutes goes on with the same secret.
#[test]
fn setup_mistakes_count_no_failure_and_the_retry_keeps_the_secret() {
    let mut env = required();
    let alice = user("alice");
    let answers = vec![
        wrong_setup_code_at(T0),
        wrong_setup_code_at(T0),
        wrong_setup_code_at(T0),
    ];
    let (outcome, p) = env.second_factor(&alice, answers);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(p.prompts(), [ENROLL_PROMPT; 3]);
    assert_eq!(p.errors(), [SETUP_RETRY, SETUP_RETRY, MSG_SETUP_KEPT]);
    assert_eq!(
        env.account("alice"),
        Account::default(),
        "no failure counted"
    );
    let first = shown_secret(&p.shown);
    env.remember_secret(base32_encode(&first).as_str());
    let devices = env.devices("alice");
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (devices[0].name.as_str(), devices[0].verified),
        ("login", false)
    );
    assert_eq!(
        env.audit_events("alice"),
        [
            "device-pending",
            "device-verify-failed",
            "device-verify-failed",
            "device-verify-failed"
        ]
    );

    // Nine minutes later: the same secret, said so, and it can be finished.
    env.clock.advance(9 * 60);
    let now = env.now();
    let (outcome, p) = env.second_factor(&alice, vec![setup_code_at(now)]);
    assert_eq!(outcome, Outcome::Enrolled);
    assert_eq!(shown_secret(&p.shown).as_slice(), first.as_slice());
    assert!(p.infos().contains(&MSG_SETUP_SAME), "{:?}", p.shown);
    let devices = env.devices("alice");
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (devices[0].name.as_str(), devices[0].verified),
        ("login", true)
    );
}

#[test]
fn after_ten_minutes_an_unfinished_setup_starts_over_with_a_new_secret() {
    let mut env = required();
    let alice = user("alice");
    let (_, p) = env.second_factor(&alice, vec![wrong_setup_code_at(T0)]);
    let first = shown_secret(&p.shown);
    env.remember_secret(base32_encode(&first).as_str());

    env.clock.advance(enroll::SETUP_LIFETIME);
    let now = env.now();
    let (outcome, p) = env.second_factor(&alice, vec![setup_code_at(now)]);
    assert_eq!(outcome, Outcome::Enrolled);
    let second = shown_secret(&p.shown);
    env.remember_secret(base32_encode(&second).as_str());
    assert_ne!(second.as_slice(), first.as_slice());
    assert!(!p.infos().contains(&MSG_SETUP_SAME));
    let names: Vec<(String, bool)> = env
        .devices("alice")
        .into_iter()
        .map(|d| (d.name, d.verified))
        .collect();
    assert_eq!(names, [("login".into(), true)], "the stale one is gone");
    assert!(env
        .audit_events("alice")
        .contains(&"device-expired".to_string()));
}

/// Setup mistakes are limited on their own (three a login) and never lock:
/// five failures before, and still five after three wrong setup codes.
#[test]
fn setup_mistakes_never_lock_the_account() {
    let mut env = required();
    let alice = user("alice");
    for _ in 0..5 {
        env.authfail(&alice);
    }
    for _ in 0..3 {
        let answers = vec![
            wrong_setup_code_at(T0),
            wrong_setup_code_at(T0),
            wrong_setup_code_at(T0),
            wrong_setup_code_at(T0),
        ];
        let (outcome, p) = env.second_factor(&alice, answers);
        assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
        assert_eq!(p.prompts(), [ENROLL_PROMPT; 3], "three tries a login");
        env.remember_secret(base32_encode(&shown_secret(&p.shown)).as_str());
    }
    let account = env.account("alice");
    assert_eq!(account.failures, 5);
    assert_eq!(account.locked_at, None);
    assert!(env.devices("alice").iter().all(|d| !d.verified));
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
fn hanging_up_during_setup_keeps_the_pending_secret_and_counts_nothing() {
    let mut env = required();
    let (outcome, p) = env.second_factor(&user("alice"), vec![]);
    assert_eq!(outcome, Outcome::ConversationFailed);
    assert_eq!(p.prompts(), [ENROLL_PROMPT]);
    env.remember_secret(base32_encode(&shown_secret(&p.shown)).as_str());
    assert_eq!(env.account("alice"), Account::default());
    let devices = env.devices("alice");
    assert_eq!(devices.len(), 1);
    assert!(!devices[0].verified);
}

#[test]
fn setup_at_login_leaves_other_pending_devices_alone() {
    let mut env = required();
    env.add_pending_totp("alice", "phone", SECRET);
    let (outcome, p) = env.second_factor(&user("alice"), vec![setup_code_at(T0)]);
    assert_eq!(outcome, Outcome::Enrolled);
    let secret = shown_secret(&p.shown);
    env.remember_secret(base32_encode(&secret).as_str());
    assert_ne!(
        secret.as_slice(),
        SECRET,
        "a new secret, not the pending device's"
    );
    let names: Vec<(String, bool)> = env
        .devices("alice")
        .into_iter()
        .map(|d| (d.name, d.verified))
        .collect();
    assert_eq!(names, [("phone".into(), false), ("login".into(), true)]);
}

#[test]
fn required_policy_without_setup_at_login_refuses_with_a_message() {
    let mut env = TestEnv::with(|c| {
        c.policy = Policy::Required;
        c.enroll_at_login = crate::config::EnrollAtLogin::Off;
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
    assert_eq!(outcome, Outcome::Passed(PassReason::OptionalNoDevice));
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
    assert_eq!(outcome, Outcome::Passed(PassReason::ExemptGroup));
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
    let (ghost, ghost_p) = env.run(Phase::SecondFactor, Who::Unknown, None, vec![typed(&wrong)]);
    assert_eq!(real, Outcome::Denied(Denial::WrongCode));
    assert_eq!(ghost, Outcome::Denied(Denial::UnknownUser));
    assert_eq!(ghost_p.shown, real_p.shown);
    assert_eq!(ghost_p.prompts(), [CODE_PROMPT]);
}

#[test]
fn an_unknown_user_is_refused_even_under_optional_policy_and_leaves_no_rows() {
    let mut env = TestEnv::new();
    let ghost = || Who::Unknown;
    assert_eq!(
        env.run(Phase::Preauth, ghost(), None, vec![]).0,
        Outcome::Passed(PassReason::UnknownUserPreauth)
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

fn offering() -> TestEnv {
    TestEnv::with(|c| c.enroll_at_login = crate::config::EnrollAtLogin::Offer)
}

/// Issue 14 #6: the hint goes, with `optional_hint = false`.
#[test]
fn the_optional_hint_can_be_turned_off() {
    let mut env = TestEnv::with(|c| c.optional_hint = false);
    let (outcome, p) = env.second_factor(&user("alice"), vec![]);
    assert_eq!(outcome, Outcome::Passed(PassReason::OptionalNoDevice));
    assert!(p.shown.is_empty(), "{:?}", p.shown);
}

#[test]
fn an_accepted_offer_leads_through_setup() {
    let mut env = offering();
    let (outcome, p) = env.second_factor(&user("alice"), vec![typed("y"), setup_code_at(T0)]);
    assert_eq!(outcome, Outcome::Enrolled);
    assert_eq!(p.prompts(), [OFFER_PROMPT, ENROLL_PROMPT]);
    env.remember_secret(base32_encode(&shown_secret(&p.shown)).as_str());
    assert!(env.devices("alice")[0].verified);
}

#[test]
fn a_declined_offer_is_remembered_and_the_hint_remains() {
    let mut env = offering();
    let alice = user("alice");
    // Enter alone is "no", as the [y/N] says.
    let (outcome, p) = env.second_factor(&alice, vec![typed("")]);
    assert_eq!(outcome, Outcome::Passed(PassReason::OptionalOfferDeclined));
    assert_eq!(p.prompts(), [OFFER_PROMPT]);
    assert!(env.devices("alice").is_empty());
    assert_eq!(env.audit_events("alice"), ["setup-declined"]);

    let (outcome, p) = env.second_factor(&alice, vec![]);
    assert_eq!(outcome, Outcome::Passed(PassReason::OptionalNoDevice));
    assert_eq!(
        p.shown,
        [Shown::Info(MSG_OPTIONAL_HINT.into())],
        "not asked again"
    );
    // Someone else is still asked.
    let (_, p) = env.second_factor(&user("bob"), vec![typed("n")]);
    assert_eq!(p.prompts(), [OFFER_PROMPT]);
}

/// Under `optional` the password is enough: an offer taken up but not
/// finished still lets the user in, and the next login offers it again.
#[test]
fn an_unfinished_setup_after_an_accepted_offer_still_lets_the_user_in() {
    let mut env = offering();
    let alice = user("alice");
    let answers = vec![
        typed("yes"),
        wrong_setup_code_at(T0),
        wrong_setup_code_at(T0),
        wrong_setup_code_at(T0),
    ];
    let (outcome, p) = env.second_factor(&alice, answers);
    assert_eq!(
        outcome,
        Outcome::Passed(PassReason::OptionalSetupUnfinished)
    );
    env.remember_secret(base32_encode(&shown_secret(&p.shown)).as_str());
    assert_eq!(env.account("alice"), Account::default());
    env.clock.advance(60);
    let (outcome, p) = env.second_factor(&alice, vec![typed("y"), setup_code_at(T0 + 60)]);
    assert_eq!(outcome, Outcome::Enrolled);
    assert_eq!(p.prompts(), [OFFER_PROMPT, ENROLL_PROMPT]);
    assert!(p.infos().contains(&MSG_SETUP_SAME));
}

#[test]
fn offer_under_required_policy_is_setup_without_a_question() {
    let mut env = TestEnv::with(|c| {
        c.policy = Policy::Required;
        c.enroll_at_login = crate::config::EnrollAtLogin::Offer;
    });
    let (outcome, p) = env.second_factor(&user("alice"), vec![setup_code_at(T0)]);
    assert_eq!(outcome, Outcome::Enrolled);
    assert_eq!(p.prompts(), [ENROLL_PROMPT]);
    env.remember_secret(base32_encode(&shown_secret(&p.shown)).as_str());
}

/// sshd's password method answers every question with the password: not
/// a "no" to remember.
#[test]
fn the_password_as_the_answer_to_the_offer_is_not_remembered_as_a_no() {
    let mut env = offering();
    let alice = user("alice");
    let (outcome, p) = env.second_factor_after_password(&alice, b"hunter2", vec![typed("hunter2")]);
    assert_eq!(outcome, Outcome::Passed(PassReason::OptionalNoDevice));
    assert_eq!(p.prompts(), [OFFER_PROMPT]);
    assert!(env.audit_events("alice").is_empty());
    let (_, p) = env.second_factor(&alice, vec![typed("n")]);
    assert_eq!(p.prompts(), [OFFER_PROMPT], "asked again");
}
