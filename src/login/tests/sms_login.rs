//! Logging in with a phone: the 7-digit code texted after the password,
//! `sms` typed at the prompt of a user who also has an app, and what happens
//! when the gateway fails.

use super::env::*;
use super::fakes::*;
use crate::attempt::{Accepted, AttemptResult};
use crate::codes::{OneTimePurpose, PBKDF2_ROUNDS};
use crate::login::{Denial, Outcome, CODE_OR_SMS_PROMPT, CODE_PROMPT, MSG_LOCKED, MSG_WRONG};
use crate::store::Account;
use crate::users::UserInfo;

const PHONE: &str = "5551234567";
const SENT_PROMPT: &str = "Code sent by text to ***-***-4567: ";
const SEND_FAILED: &str =
    "The text message could not be sent; use a bypass code or ask an administrator.";
const PASSWORD: &[u8] = b"correct horse";
const LIFETIME: i64 = 300;

/// alice, whose only device is a verified phone, and a working gateway.
fn sms_only() -> (TestEnv, UserInfo) {
    let mut env = TestEnv::new();
    env.sms.gateway.set(true);
    env.add_sms("alice", PHONE);
    (env, user("alice"))
}

/// alice with an app and a phone, and a working gateway.
fn app_and_phone() -> (TestEnv, UserInfo) {
    let (mut env, alice) = sms_only();
    env.add_totp("alice", "phone", SECRET);
    (env, alice)
}

fn the_code(env: &TestEnv) -> Answer {
    texted_code(&env.sms.sent, 7)
}

/// The texted code with its last digit changed.
fn not_the_code(env: &TestEnv) -> Answer {
    let outbox = std::rc::Rc::clone(&env.sms.sent);
    Answer::Computed(Box::new(move |_| {
        let mut code = last_code_in(&outbox, 7).into_bytes();
        code[6] = b'0' + (code[6] - b'0' + 1) % 10;
        code
    }))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn after_the_password_a_user_with_only_a_phone_is_texted_a_seven_digit_code() {
    let (mut env, alice) = sms_only();
    let answer = the_code(&env);
    let (outcome, p) = env.second_factor_after_password(&alice, PASSWORD, vec![answer]);
    assert_eq!(outcome, Outcome::Verified(Accepted::Sms));
    assert_eq!(p.shown, [Shown::Prompt(SENT_PROMPT.into())]);

    let code = env.sms.last_code(7);
    assert_eq!(
        *env.sms.sent.borrow(),
        [(
            PHONE.to_owned(),
            format!("Your login code is {code}. It expires in 5 minutes.")
        )]
    );
    assert_eq!(p.typed, [code.as_bytes()]);
    assert_eq!(env.live_one_time_codes("alice"), 0, "the code is spent");
    assert_eq!(
        env.audit_events("alice"),
        ["sms-code-sent", "code-accepted"]
    );
    assert_eq!(
        env.audit(Some("alice")).pop().unwrap().detail,
        format!("method=sms factor=code service={SERVICE} rhost={RHOST}")
    );
}

#[test]
fn the_prompt_names_the_last_four_digits_of_an_international_number() {
    let mut env = TestEnv::new();
    env.sms.gateway.set(true);
    env.add_sms("bob", "+4930123456");
    let answer = the_code(&env);
    let (outcome, p) = env.second_factor(&user("bob"), vec![answer]);
    assert_eq!(outcome, Outcome::Verified(Accepted::Sms));
    assert_eq!(p.prompts(), ["Code sent by text to ***-***-3456: "]);
    assert_eq!(env.sms.sent.borrow()[0].0, "+4930123456");
}

#[test]
fn the_texted_code_is_accepted_once() {
    let (mut env, alice) = sms_only();
    let answer = the_code(&env);
    assert_eq!(
        env.second_factor(&alice, vec![answer]).0,
        Outcome::Verified(Accepted::Sms)
    );
    let code = env.sms.last_code(7);

    // Again, before any new text: spent, and counted.
    assert_eq!(
        env.attempt(&alice, code.as_bytes()),
        AttemptResult::Wrong {
            failures: 1,
            locked_now: false
        }
    );
    // At the next login a new code is texted; the old one is still wrong.
    let (outcome, p) = env.second_factor(&alice, vec![typed(&code)]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(p.prompts(), [SENT_PROMPT]);
    assert_eq!(p.errors(), [MSG_WRONG]);
    assert_eq!(env.sms.count(), 2);
    assert_eq!(env.account("alice").failures, 2);
}

#[test]
fn the_texted_code_works_for_five_minutes_and_not_a_second_more() {
    let (mut env, alice) = sms_only();
    // The user hangs up at the prompt; the texted code stays live.
    let (outcome, _) = env.second_factor(&alice, vec![]);
    assert_eq!(outcome, Outcome::ConversationFailed);
    let first = env.sms.last_code(7);
    env.remember_secret(&first);
    let live = env.live_codes("alice", OneTimePurpose::SmsLogin);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].expires, T0 + LIFETIME);

    env.clock.advance(LIFETIME - 1);
    assert_eq!(
        env.attempt(&alice, first.as_bytes()),
        AttemptResult::Accepted(Accepted::Sms)
    );

    let sent_at = env.now();
    env.second_factor(&alice, vec![]);
    let second = env.sms.last_code(7);
    env.remember_secret(&second);
    env.clock.set(sent_at + LIFETIME);
    assert_eq!(
        env.attempt(&alice, second.as_bytes()),
        AttemptResult::Wrong {
            failures: 1,
            locked_now: false
        }
    );
    assert!(env.live_codes("alice", OneTimePurpose::SmsLogin).is_empty());
}

#[test]
fn a_wrong_sms_code_counts_as_a_failure_like_any_code() {
    let (mut env, alice) = sms_only();
    let wrong = not_the_code(&env);
    let (outcome, p) = env.second_factor(&alice, vec![wrong]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(
        p.shown,
        [
            Shown::Prompt(SENT_PROMPT.into()),
            Shown::Error(MSG_WRONG.into())
        ]
    );
    assert_eq!(env.account("alice").failures, 1);
    let failures = env.failure_entries("alice");
    assert_eq!(failures.len(), 1);
    assert_eq!(
        failures[0].detail,
        format!("failures=1 factor=code service={SERVICE} rhost={RHOST}")
    );
    // A wrong guess does not spend the right code, and the right one ends the run.
    let code = env.sms.last_code(7);
    assert_eq!(
        env.attempt(&alice, code.as_bytes()),
        AttemptResult::Accepted(Accepted::Sms)
    );
    assert_eq!(env.account("alice"), Account::default());
}

#[test]
fn six_wrong_sms_codes_lock_the_account_and_stop_the_texts() {
    let (mut env, alice) = sms_only();
    // Six texts in a minute: above the default hourly limit of five.
    env.config.sms.max_per_user_hour = 10;
    for n in 1..=5 {
        let wrong = not_the_code(&env);
        let (outcome, p) = env.second_factor(&alice, vec![wrong]);
        assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
        assert_eq!(p.errors(), [MSG_WRONG]);
        assert_eq!(env.account("alice").failures, n);
    }
    let wrong = not_the_code(&env);
    let (outcome, p) = env.second_factor(&alice, vec![wrong]);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert_eq!(p.errors(), [MSG_LOCKED]);
    assert_eq!(
        env.account("alice"),
        Account {
            failures: 6,
            locked_at: Some(T0),
            last_failure: Some(T0),
            locked_until: None
        }
    );
    assert_eq!(env.sms.count(), 6);

    // Locked: no text, no prompt, and the last texted code is refused unread.
    let last = env.sms.last_code(7);
    env.remember_secret(&last);
    let (outcome, p) = env.second_factor(&alice, vec![typed(&last)]);
    assert_eq!(outcome, Outcome::Denied(Denial::Locked));
    assert_eq!(p.shown, [Shown::Error(MSG_LOCKED.into())]);
    assert_eq!(env.sms.count(), 6);
    assert_eq!(env.attempt(&alice, last.as_bytes()), AttemptResult::Locked);
    assert_eq!(env.account("alice").failures, 6);
}

#[test]
fn typing_sms_without_an_app_is_just_a_wrong_code() {
    let (mut env, alice) = sms_only();
    let (outcome, p) = env.second_factor(&alice, vec![typed("sms")]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(p.prompts(), [SENT_PROMPT]);
    assert_eq!(p.errors(), [MSG_WRONG]);
    assert_eq!(env.sms.count(), 1, "one text per login");
    assert_eq!(env.account("alice").failures, 1);
}

#[test]
fn texted_codes_are_stored_only_as_salted_hashes() {
    let (mut env, alice) = sms_only();
    env.add_sms("bob", "5559876543");
    env.second_factor(&alice, vec![]);
    let alice_code = env.sms.last_code(7);
    env.second_factor(&user("bob"), vec![]);
    let bob_code = env.sms.last_code(7);
    env.remember_secret(&alice_code);
    env.remember_secret(&bob_code);

    let stored = env.live_codes("alice", OneTimePurpose::SmsLogin);
    assert_eq!(stored.len(), 1);
    let hash = &stored[0].hash;
    assert_eq!(hash.rounds, PBKDF2_ROUNDS);
    assert_eq!(hash.salt.len(), 16);
    assert!(hash.matches(&alice_code));
    let bob_hash = env.live_codes("bob", OneTimePurpose::SmsLogin)[0]
        .hash
        .clone();
    assert_ne!(hash.salt, bob_hash.salt, "each code has its own salt");

    let bytes = env.database_bytes();
    // The reader sees the rows (the hash is there), but not the codes.
    assert!(contains(&bytes, hash.encode().as_bytes()));
    assert!(contains(&bytes, bob_hash.encode().as_bytes()));
    assert!(!contains(&bytes, alice_code.as_bytes()));
    assert!(!contains(&bytes, bob_code.as_bytes()));

    assert_eq!(
        env.attempt(&alice, alice_code.as_bytes()),
        AttemptResult::Accepted(Accepted::Sms)
    );
    assert!(!contains(&env.database_bytes(), alice_code.as_bytes()));
}

#[test]
fn a_user_with_an_app_and_a_phone_may_type_sms_to_get_a_text() {
    for word in ["sms", "SMS", " sms \n"] {
        let (mut env, alice) = app_and_phone();
        let answer = the_code(&env);
        let (outcome, p) = env.second_factor(&alice, vec![typed(word), answer]);
        assert_eq!(outcome, Outcome::Verified(Accepted::Sms), "{word:?}");
        assert_eq!(
            p.shown,
            [
                Shown::Prompt(CODE_OR_SMS_PROMPT.into()),
                Shown::Prompt(SENT_PROMPT.into())
            ]
        );
        assert_eq!(env.sms.count(), 1);
        assert_eq!(env.sms.sent.borrow()[0].0, PHONE);
        assert_eq!(env.account("alice"), Account::default());
        assert!(env.failure_entries("alice").is_empty());
    }
}

#[test]
fn a_user_with_an_app_and_a_phone_can_use_the_app_without_a_text() {
    let (mut env, alice) = app_and_phone();
    let (outcome, p) = env.second_factor(&alice, vec![typed(code_at(SECRET, T0))]);
    assert_eq!(
        outcome,
        Outcome::Verified(Accepted::Totp {
            device: "phone".into()
        })
    );
    assert_eq!(p.shown, [Shown::Prompt(CODE_OR_SMS_PROMPT.into())]);
    assert_eq!(env.sms.count(), 0);
    assert_eq!(env.live_one_time_codes("alice"), 0);
}

#[test]
fn without_a_gateway_sms_is_not_offered_and_typing_it_is_a_wrong_code() {
    let (mut env, alice) = app_and_phone();
    env.sms.gateway.set(false);
    let (outcome, p) = env.second_factor(&alice, vec![typed("sms")]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(
        p.shown,
        [
            Shown::Prompt(CODE_PROMPT.into()),
            Shown::Error(MSG_WRONG.into())
        ]
    );
    assert_eq!(env.account("alice").failures, 1);
    assert_eq!(env.live_one_time_codes("alice"), 0);
}

#[test]
fn without_a_gateway_a_user_with_only_a_phone_may_use_a_bypass_code() {
    let (mut env, alice) = sms_only();
    env.sms.gateway.set(false);
    let codes = env.give_bypass_codes("alice", 2);
    let (outcome, p) = env.second_factor(&alice, vec![typed(&codes[0])]);
    assert_eq!(outcome, Outcome::Verified(Accepted::Bypass { left: 1 }));
    assert_eq!(p.prompts(), [CODE_PROMPT]);
    assert!(p.errors().is_empty());
    assert_eq!(env.live_one_time_codes("alice"), 0);
}

#[test]
fn when_the_gateway_fails_the_user_is_told_and_may_use_a_bypass_code() {
    let (mut env, alice) = sms_only();
    env.sms.fail.set(true);
    let codes = env.give_bypass_codes("alice", 2);
    let (outcome, p) = env.second_factor(&alice, vec![typed(&codes[1])]);
    assert_eq!(outcome, Outcome::Verified(Accepted::Bypass { left: 1 }));
    // No "code sent" after saying it could not be sent.
    assert_eq!(
        p.shown,
        [
            Shown::Error(SEND_FAILED.into()),
            Shown::Prompt(CODE_PROMPT.into()),
            Shown::Info(
                "Bypass code accepted; 1 left. Generate new ones with `mfa bypass generate`."
                    .into()
            ),
        ]
    );
    assert_eq!(env.sms.count(), 0);
    assert_eq!(env.live_one_time_codes("alice"), 0);
}

#[test]
fn a_failed_text_is_audited_as_not_sent() {
    let (mut env, alice) = sms_only();
    env.sms.fail.set(true);
    env.second_factor(&alice, vec![]);
    let entries = env.audit(Some("alice"));
    let events: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.event.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            ("sms-code-sent", ""),
            ("sms-send-failed", "purpose=sms-login")
        ]
    );
}

#[test]
fn a_failed_text_leaves_no_live_code_behind() {
    let (mut env, alice) = sms_only();
    env.sms.fail.set(true);
    let (outcome, p) = env.second_factor(&alice, vec![]);
    assert_eq!(outcome, Outcome::ConversationFailed);
    assert_eq!(p.errors(), [SEND_FAILED]);
    assert!(env.live_codes("alice", OneTimePurpose::SmsLogin).is_empty());
    assert_eq!(env.account("alice"), Account::default());
}

#[test]
fn when_the_gateway_fails_after_sms_was_typed_the_app_still_works() {
    let (mut env, alice) = app_and_phone();
    env.sms.fail.set(true);
    let answers = vec![typed("sms"), typed(code_at(SECRET, T0))];
    let (outcome, p) = env.second_factor(&alice, answers);
    assert_eq!(
        outcome,
        Outcome::Verified(Accepted::Totp {
            device: "phone".into()
        })
    );
    assert_eq!(
        p.shown,
        [
            Shown::Prompt(CODE_OR_SMS_PROMPT.into()),
            Shown::Error(SEND_FAILED.into()),
            Shown::Prompt(CODE_PROMPT.into()),
        ]
    );
    assert_eq!(env.live_one_time_codes("alice"), 0);
}

/// Issue 13 #6: "type sms" over the user's hourly limit texts nothing, says
/// why and when to try again, is audited, and an app code still lets in.
#[test]
fn texts_over_the_hourly_limit_are_refused_and_other_methods_still_work() {
    let (mut env, alice) = app_and_phone();
    env.config.sms.max_per_user_hour = 2;
    for _ in 0..2 {
        let (outcome, _) = env.second_factor(&alice, vec![typed("sms"), typed("0000000")]);
        assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    }
    assert_eq!(env.sms.count(), 2);
    env.admin_unlock("alice");
    env.clock.advance(600);
    let code = code_at(SECRET, env.now());
    let (outcome, p) = env.second_factor(&alice, vec![typed("sms"), typed(&code)]);
    assert!(
        matches!(outcome, Outcome::Verified(Accepted::Totp { .. })),
        "{outcome:?} {:?}",
        p.shown
    );
    assert_eq!(env.sms.count(), 2, "no third text");
    assert_eq!(
        p.errors(),
        ["Too many text messages; try again in 50 minutes or use another method."]
    );
    let limited: Vec<_> = env
        .audit(Some("alice"))
        .into_iter()
        .filter(|e| e.event == "sms-limited")
        .collect();
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert!(limited[0].detail.contains("scope=user"), "{limited:?}");

    // An hour after the first text, texts go out again.
    env.clock.advance(3000);
    let (_, p) = env.second_factor(&alice, vec![typed("sms"), typed("0000000")]);
    assert_eq!(env.sms.count(), 3, "{:?}", p.shown);
}

/// The per-host limit counts every user's texts from this host.
#[test]
fn the_host_limit_counts_texts_to_everyone() {
    let (mut env, alice) = sms_only();
    env.add_sms("bob", "+15557654321");
    env.config.sms.max_per_host_hour = 1;
    let (_, _) = env.second_factor(&alice, vec![typed("0000000")]);
    assert_eq!(env.sms.count(), 1);
    let (outcome, p) = env.second_factor(&user("bob"), vec![typed("0000000")]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.sms.count(), 1, "bob's text is over the host's limit");
    assert!(
        p.errors()[0].starts_with("Too many text messages; try again in 60 minutes"),
        "{:?}",
        p.shown
    );
}

/// Reads work, every write transaction fails (a full disk, say).
struct WritesFail<'a>(&'a mut crate::store::SqliteStore);

impl crate::store::Store for WritesFail<'_> {
    fn begin(&mut self) -> crate::store::StoreResult<Box<dyn crate::store::Tx + '_>> {
        Err(crate::store::StoreError::Faulty(
            "database: disk I/O error".into(),
        ))
    }

    fn begin_read(&mut self) -> crate::store::StoreResult<Box<dyn crate::store::Tx + '_>> {
        self.0.begin_read()
    }
}

#[test]
fn a_store_failing_as_the_login_code_is_stored_is_unavailable_not_a_failed_text() {
    let (mut env, alice) = sms_only();
    let mut prompter = FakePrompter::new(vec![the_code(&env)]);
    let result = crate::login::Login {
        config: &env.config,
        store: &mut WritesFail(&mut env.store),
        clock: &env.clock,
        sms: &env.sms,
        prompter: &mut prompter,
    }
    .second_factor(&crate::login::Request {
        info: Some(&alice),
        password: Some(PASSWORD),
        service: SERVICE,
        rhost: RHOST,
    });
    // The adapter says "MFA unavailable" and applies `on_unavailable`; the
    // user is not told a text failed, nor asked for a code nothing can check.
    assert!(
        matches!(&result, Err(crate::store::StoreError::Faulty(_))),
        "{result:?}"
    );
    assert!(prompter.shown.is_empty(), "{:?}", prompter.shown);
    assert_eq!(env.sms.count(), 0);
}
