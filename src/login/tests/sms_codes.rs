//! Codes that reach a phone outside the login prompt: the 4-digit PIN that
//! proves a new phone (from `mfa device add sms` or setup at login), and the
//! 8-digit temporary code an administrator sends.

use super::env::*;
use super::fakes::*;
use crate::attempt::{Accepted, AttemptResult};
use crate::cli::error::CliError;
use crate::codes::OneTimePurpose;
use crate::config::Policy;
use crate::login::{Denial, Outcome, CHOICE_PROMPT, ENROLL_PROMPT, PHONE_PROMPT, PIN_PROMPT};
use crate::onetime::{self, TempCode, INVALID_PIN};
use crate::sms::INVALID_PHONE;
use crate::store::{Account, Factor, Store};

const PHONE: &str = "5551234567";
const OTHER_PHONE: &str = "+4930123456";
const PIN_LIFETIME: i64 = 600;
const TEMP_LIFETIME: i64 = 300;
/// The administrator, as `mfa` names the invoker in the audit trail.
const BY: &str = "by=root";
const SETUP_INTRO: &str =
    "Multi-factor authentication is required for this account and no device is set up yet.";
const PHONE_SET_UP: &str = "Your phone is set up. A code will be texted to it at each login.";

fn with_gateway() -> TestEnv {
    let env = TestEnv::new();
    env.sms.gateway.set(true);
    env
}

fn start(env: &mut TestEnv, user: &str, phone: &str) -> Result<(), CliError> {
    let now = env.now();
    // As `mfa` reports it: the words and kinds stay those of `mfa`.
    onetime::start_sms_enrollment(&mut env.store, &env.config, &env.sms, user, phone, now)
        .map_err(CliError::from)
}

fn verify(env: &mut TestEnv, user: &str, pin: &str) -> Result<(), CliError> {
    let now = env.now();
    onetime::verify_sms_pin(&mut env.store, &env.config, user, pin, now).map_err(CliError::from)
}

fn issue(env: &mut TestEnv, user: &str, show: bool) -> Result<TempCode, CliError> {
    let now = env.now();
    onetime::issue_temp_code(&mut env.store, &env.config, &env.sms, user, show, now, BY)
        .map_err(CliError::from)
}

/// The PIN of the last text; remembered for the audit-leak check unless it
/// is the phone's last four digits, which the audit shows masked on purpose.
fn texted_pin(env: &mut TestEnv) -> String {
    let pin = env.sms.last_code(4);
    if !PHONE.ends_with(&pin) && !OTHER_PHONE.ends_with(&pin) {
        env.remember_secret(&pin);
    }
    pin
}

/// A 4-digit PIN that is not `pin`.
fn other_pin(pin: &str) -> String {
    format!("{:04}", (pin.parse::<u32>().unwrap() + 1) % 10_000)
}

fn sms_device(env: &mut TestEnv, user: &str) -> Option<(bool, String)> {
    env.devices(user).into_iter().find_map(|d| match d.factor {
        Factor::Sms { phone } => Some((d.verified, phone)),
        Factor::Totp { .. } => None,
    })
}

// ---- enrollment ---------------------------------------------------------

#[test]
fn invalid_phone_numbers_are_refused_with_a_message_saying_what_is_valid() {
    let bad = [
        "",
        " ",
        "555 123 4567",
        "555-123-4567",
        "(555)1234567",
        "555.123.4567",
        "555123456x",
        "CALL-ME-NOW",
        "555123456",
        "55512345678",
        "+1234567",
        "+1234567890123456",
        "+0123456789",
        "+05551234567",
        "+1 5551234567",
        "++15551234567",
        "+",
        "５５５１２３４５６７",
        "٥٥٥١٢٣٤٥٦٧",
        "5551234567\n",
        " 5551234567",
        "5551234567;reboot",
        "{phone}",
    ];
    let mut env = with_gateway();
    for phone in bad {
        match start(&mut env, "alice", phone) {
            Err(CliError::Usage(m)) => {
                assert_eq!(m, INVALID_PHONE, "{phone:?}");
                assert!(m.contains("phone number"));
                assert!(m.contains("10-digit") && m.contains("country code"));
            }
            other => panic!("{phone:?} gave {other:?}"),
        }
    }
    assert!(env.devices("alice").is_empty());
    assert_eq!(env.sms.count(), 0);
    assert!(env.audit(None).is_empty());
}

#[test]
fn ten_digits_and_international_numbers_are_accepted() {
    let good = [
        "5551234567",
        "0551234567",
        "+15551234567",
        "+12345678",
        "+123456789012345",
    ];
    let mut env = with_gateway();
    for (i, phone) in good.iter().enumerate() {
        let user = format!("user{i}");
        start(&mut env, &user, phone).unwrap();
        assert_eq!(
            sms_device(&mut env, &user),
            Some((false, phone.to_string()))
        );
        assert_eq!(env.sms.sent.borrow()[i].0, *phone);
        env.sms.last_code(4);
    }
}

#[test]
fn the_pin_is_texted_and_works_in_its_tenth_minute() {
    let mut env = with_gateway();
    start(&mut env, "alice", PHONE).unwrap();
    let pin = texted_pin(&mut env);
    assert_eq!(
        *env.sms.sent.borrow(),
        [(
            PHONE.to_owned(),
            format!("Your PIN to confirm this phone is {pin}. It expires in 10 minutes.")
        )]
    );
    assert_eq!(sms_device(&mut env, "alice"), Some((false, PHONE.into())));
    let live = env.live_codes("alice", OneTimePurpose::SmsEnroll);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].expires, T0 + PIN_LIFETIME);
    assert_eq!(live[0].attempts_left, onetime::PIN_TRIES);

    env.clock.advance(PIN_LIFETIME - 1);
    verify(&mut env, "alice", &pin).unwrap();
    assert_eq!(sms_device(&mut env, "alice"), Some((true, PHONE.into())));
    assert_eq!(env.live_one_time_codes("alice"), 0);
    assert_eq!(
        env.audit_events("alice"),
        ["device-pending", "sms-pin-sent", "device-enrolled"]
    );
    assert_eq!(
        env.audit(Some("alice")).pop().unwrap().detail,
        "device=sms kind=sms phone=***-***-4567"
    );
    // Verified is final: the PIN is spent and cannot verify again.
    let e = verify(&mut env, "alice", &pin).unwrap_err();
    assert!(matches!(e, CliError::Conflict(_)), "{e:?}");
}

#[test]
fn the_pin_is_refused_once_ten_minutes_have_passed() {
    let mut env = with_gateway();
    start(&mut env, "alice", PHONE).unwrap();
    let pin = texted_pin(&mut env);
    env.clock.advance(PIN_LIFETIME);
    match verify(&mut env, "alice", &pin) {
        Err(CliError::NotFound(m)) => assert!(m.contains("expired"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sms_device(&mut env, "alice"), Some((false, PHONE.into())));
    assert_eq!(env.live_one_time_codes("alice"), 0);
}

#[test]
fn three_wrong_pins_void_it_and_the_right_one_is_refused_after() {
    let mut env = with_gateway();
    start(&mut env, "alice", PHONE).unwrap();
    let pin = texted_pin(&mut env);
    let wrong = other_pin(&pin);
    let mut messages = Vec::new();
    for _ in 0..3 {
        match verify(&mut env, "alice", &wrong) {
            Err(CliError::WrongCode(m)) => messages.push(m),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        messages,
        [
            format!("{INVALID_PIN} (2 tries left)"),
            format!("{INVALID_PIN} (1 try left)"),
            format!(
                "{INVALID_PIN}; that was the last try: delete the device with \
                 `mfa device delete sms` and add it again"
            ),
        ]
    );
    for m in &messages {
        assert!(m.contains("invalid PIN") && m.contains("4-digit"), "{m}");
    }
    assert_eq!(env.live_one_time_codes("alice"), 0);
    match verify(&mut env, "alice", &pin) {
        Err(CliError::NotFound(m)) => assert!(m.contains("used up"), "{m}"),
        other => panic!("the fourth try, though right, gave {other:?}"),
    }
    assert_eq!(sms_device(&mut env, "alice"), Some((false, PHONE.into())));
}

#[test]
fn anything_but_the_four_digits_is_a_wrong_pin() {
    let mut env = with_gateway();
    start(&mut env, "alice", PHONE).unwrap();
    let pin = texted_pin(&mut env);
    // The PIN followed by a digit, and the PIN with a letter.
    for typed in [format!("{pin}0"), format!("{}x", &pin[..3])] {
        env.remember_secret(&typed);
        let e = verify(&mut env, "alice", &typed).unwrap_err();
        assert!(matches!(e, CliError::WrongCode(_)), "{typed}: {e:?}");
        assert!(e.to_string().starts_with(INVALID_PIN), "{e}");
    }
    // Spaces are forgiven, as in every numeric code.
    let spaced = format!("{} {}", &pin[..2], &pin[2..]);
    verify(&mut env, "alice", &spaced).unwrap();
    assert_eq!(sms_device(&mut env, "alice"), Some((true, PHONE.into())));
}

#[test]
fn a_second_phone_is_refused_while_the_first_is_pending_or_verified() {
    let mut env = with_gateway();
    start(&mut env, "alice", PHONE).unwrap();
    let pin = texted_pin(&mut env);
    let e = start(&mut env, "alice", OTHER_PHONE).unwrap_err();
    assert!(matches!(e, CliError::Conflict(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "alice already has an SMS device; delete it first with `mfa device delete sms`"
    );
    assert_eq!(env.sms.count(), 1, "nothing texted to the second phone");
    // The first PIN is not replaced by the refused attempt.
    verify(&mut env, "alice", &pin).unwrap();

    let e = start(&mut env, "alice", OTHER_PHONE).unwrap_err();
    assert!(matches!(e, CliError::Conflict(_)), "{e:?}");
    assert_eq!(env.sms.count(), 1);
    assert_eq!(sms_device(&mut env, "alice"), Some((true, PHONE.into())));
    assert_eq!(env.devices("alice").len(), 1);
}

#[test]
fn deleting_the_phone_voids_its_pending_pin() {
    let mut env = with_gateway();
    start(&mut env, "alice", PHONE).unwrap();
    let old = texted_pin(&mut env);
    // What `mfa device delete sms` does.
    {
        let tx = env.store.begin().unwrap();
        assert!(tx.delete_device("alice", "sms").unwrap());
        tx.delete_one_time_codes("alice", OneTimePurpose::SmsLogin)
            .unwrap();
        tx.delete_one_time_codes("alice", OneTimePurpose::SmsEnroll)
            .unwrap();
        tx.commit().unwrap();
    }
    assert_eq!(env.live_one_time_codes("alice"), 0);
    let e = verify(&mut env, "alice", &old).unwrap_err();
    assert!(matches!(e, CliError::NotFound(_)), "{e:?}");

    // Added again: only the new PIN works.
    start(&mut env, "alice", OTHER_PHONE).unwrap();
    let new = texted_pin(&mut env);
    assert_eq!(env.sms.sent.borrow()[1].0, OTHER_PHONE);
    if new != old {
        let e = verify(&mut env, "alice", &old).unwrap_err();
        assert!(matches!(e, CliError::WrongCode(_)), "{e:?}");
    }
    verify(&mut env, "alice", &new).unwrap();
    assert_eq!(
        sms_device(&mut env, "alice"),
        Some((true, OTHER_PHONE.into()))
    );
}

#[test]
fn a_locked_account_cannot_verify_a_phone() {
    let mut env = with_gateway();
    start(&mut env, "alice", PHONE).unwrap();
    let pin = texted_pin(&mut env);
    env.lock_out(&user("alice"));
    let e = verify(&mut env, "alice", &pin).unwrap_err();
    assert!(matches!(e, CliError::Locked(_)), "{e:?}");
    assert_eq!(sms_device(&mut env, "alice"), Some((false, PHONE.into())));
    assert_eq!(env.live_codes("alice", OneTimePurpose::SmsEnroll).len(), 1);
}

#[test]
fn without_a_gateway_no_phone_is_added() {
    let mut env = TestEnv::new();
    let e = start(&mut env, "alice", PHONE).unwrap_err();
    assert!(matches!(e, CliError::Failed(_)), "{e:?}");
    assert!(
        e.to_string().contains("no SMS gateway is configured"),
        "{e}"
    );
    assert!(env.devices("alice").is_empty());
}

#[test]
fn when_the_pin_cannot_be_texted_nothing_is_kept() {
    let mut env = with_gateway();
    env.sms.fail.set(true);
    let e = start(&mut env, "alice", PHONE).unwrap_err();
    assert!(matches!(e, CliError::Failed(_)), "{e:?}");
    assert!(e.to_string().contains("HTTP 402"), "{e}");
    assert!(e.to_string().contains("the phone was not added"), "{e}");
    assert!(env.devices("alice").is_empty(), "no phone left pending");
    assert_eq!(env.live_one_time_codes("alice"), 0);
    assert_eq!(
        env.audit_events("alice"),
        [
            "device-pending",
            "sms-pin-sent",
            "sms-send-failed",
            "device-deleted"
        ]
    );
    // Once the gateway works, adding the phone again just works.
    env.sms.fail.set(false);
    start(&mut env, "alice", PHONE).unwrap();
    let pin = texted_pin(&mut env);
    verify(&mut env, "alice", &pin).unwrap();
}

// ---- setup at login -----------------------------------------------------

fn required_with_gateway() -> TestEnv {
    let env = TestEnv::with(|c| c.policy = Policy::Required);
    env.sms.gateway.set(true);
    env
}

/// A PIN that is not the one just texted.
fn wrong_pin(env: &TestEnv) -> Answer {
    let outbox = std::rc::Rc::clone(&env.sms.sent);
    Answer::Computed(Box::new(move |_| {
        other_pin(&last_code_in(&outbox, 4)).into_bytes()
    }))
}

#[test]
fn setup_at_login_can_enroll_a_phone() {
    let mut env = required_with_gateway();
    let alice = user("alice");
    let pin = texted_code(&env.sms.sent, 4);
    let answers = vec![typed("2"), typed("555-123-4567"), typed(PHONE), pin];
    let (outcome, p) = env.second_factor(&alice, answers);
    assert_eq!(outcome, Outcome::Enrolled);
    assert_eq!(
        p.shown,
        [
            Shown::Info(SETUP_INTRO.into()),
            Shown::Prompt(CHOICE_PROMPT.into()),
            Shown::Prompt(PHONE_PROMPT.into()),
            Shown::Error(INVALID_PHONE.into()),
            Shown::Prompt(PHONE_PROMPT.into()),
            Shown::Prompt(PIN_PROMPT.into()),
            Shown::Info(PHONE_SET_UP.into()),
        ]
    );
    assert_eq!(env.sms.count(), 1);
    assert_eq!(env.sms.sent.borrow()[0].0, PHONE);
    texted_pin(&mut env);
    let devices = env.devices("alice");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].name, "sms");
    assert_eq!(sms_device(&mut env, "alice"), Some((true, PHONE.into())));
    assert_eq!(env.live_one_time_codes("alice"), 0);

    // The next login texts a 7-digit code to it.
    let code = texted_code(&env.sms.sent, 7);
    let (outcome, p) = env.second_factor(&alice, vec![code]);
    assert_eq!(outcome, Outcome::Verified(Accepted::Sms));
    assert_eq!(p.prompts(), ["Code sent by text to ***-***-4567: "]);
    assert_eq!(env.sms.count(), 2);
}

#[test]
fn setting_up_a_phone_at_login_ends_a_run_of_failures() {
    let mut env = required_with_gateway();
    let alice = user("alice");
    env.authfail(&alice);
    env.authfail(&alice);
    assert_eq!(env.account("alice").failures, 2);
    let pin = texted_code(&env.sms.sent, 4);
    let (outcome, _) = env.second_factor(&alice, vec![typed("2"), typed(PHONE), pin]);
    assert_eq!(outcome, Outcome::Enrolled);
    texted_pin(&mut env);
    // As after setting up an app: the login succeeded.
    assert_eq!(env.account("alice"), Account::default());
}

#[test]
fn three_wrong_pins_at_login_end_the_setup_and_keep_nothing() {
    let mut env = required_with_gateway();
    let answers = vec![
        typed("2"),
        typed(PHONE),
        wrong_pin(&env),
        wrong_pin(&env),
        wrong_pin(&env),
    ];
    let (outcome, p) = env.second_factor(&user("alice"), answers);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(
        p.prompts(),
        [
            CHOICE_PROMPT,
            PHONE_PROMPT,
            PIN_PROMPT,
            PIN_PROMPT,
            PIN_PROMPT
        ]
    );
    assert_eq!(p.errors(), [INVALID_PIN, INVALID_PIN, INVALID_PIN]);
    texted_pin(&mut env);
    assert!(env.devices("alice").is_empty());
    assert_eq!(env.live_one_time_codes("alice"), 0);
}

/// Fails the first snapshot taken after a text went out (the one the
/// PIN's check starts with); every other transaction works.
struct FailsTheCheckAfterTheText<'a> {
    inner: &'a mut crate::store::SqliteStore,
    outbox: Outbox,
    failed: bool,
}

impl Store for FailsTheCheckAfterTheText<'_> {
    fn begin(&mut self) -> crate::store::StoreResult<Box<dyn crate::store::Tx + '_>> {
        self.inner.begin()
    }

    fn begin_read(&mut self) -> crate::store::StoreResult<Box<dyn crate::store::Tx + '_>> {
        if !self.failed && !self.outbox.borrow().is_empty() {
            self.failed = true;
            return Err(crate::store::StoreError::Faulty(
                "database: disk I/O error".into(),
            ));
        }
        self.inner.begin_read()
    }
}

#[test]
fn a_store_failing_during_phone_setup_at_login_is_unavailable_not_a_wrong_code() {
    let mut env = required_with_gateway();
    let alice = user("alice");
    let answers = vec![typed("2"), typed(PHONE), texted_code(&env.sms.sent, 4)];
    let mut prompter = FakePrompter::new(answers);
    let mut store = FailsTheCheckAfterTheText {
        inner: &mut env.store,
        outbox: std::rc::Rc::clone(&env.sms.sent),
        failed: false,
    };
    let result = crate::login::Login {
        config: &env.config,
        store: &mut store,
        clock: &env.clock,
        sms: &env.sms,
        prompter: &mut prompter,
    }
    .second_factor(&crate::login::Request {
        info: Some(&alice),
        password: None,
        service: SERVICE,
        rhost: RHOST,
    });
    // An error of the store: the adapter says "MFA unavailable" and
    // applies `on_unavailable`; a wrong code would be counted and logged.
    assert!(
        matches!(&result, Err(crate::store::StoreError::Faulty(_))),
        "{result:?}"
    );
    assert!(
        !prompter.errors().contains(&INVALID_PIN),
        "{:?}",
        prompter.errors()
    );
    texted_pin(&mut env);
    assert!(!env
        .audit_events("alice")
        .contains(&"device-verify-failed".to_owned()));
}

#[test]
fn three_invalid_phone_numbers_at_login_end_the_setup() {
    let mut env = required_with_gateway();
    let answers = vec![typed("2"), typed("555"), typed("phone"), typed("+0")];
    let (outcome, p) = env.second_factor(&user("alice"), answers);
    assert_eq!(outcome, Outcome::Denied(Denial::NotEnrolled));
    assert_eq!(p.errors(), [INVALID_PHONE, INVALID_PHONE, INVALID_PHONE]);
    assert_eq!(env.sms.count(), 0);
    assert!(env.devices("alice").is_empty());
}

#[test]
fn the_first_choice_at_login_is_still_the_app() {
    for choice in ["1", ""] {
        let mut env = required_with_gateway();
        let answers = vec![typed(choice), setup_code_at(T0)];
        let (outcome, p) = env.second_factor(&user("alice"), answers);
        assert_eq!(outcome, Outcome::Enrolled, "{choice:?}");
        assert_eq!(p.prompts(), [CHOICE_PROMPT, ENROLL_PROMPT]);
        let secret = shown_secret(&p.shown);
        env.remember_secret(crate::secret::base32_encode(&secret).as_str());
        assert_eq!(env.devices("alice")[0].name, "login");
        assert_eq!(env.sms.count(), 0);
    }
}

#[test]
fn when_the_pin_cannot_be_texted_at_login_setup_ends_and_keeps_nothing() {
    let mut env = required_with_gateway();
    env.sms.fail.set(true);
    let (outcome, p) = env.second_factor(&user("alice"), vec![typed("2"), typed(PHONE)]);
    assert_eq!(outcome, Outcome::Denied(Denial::Internal));
    assert_eq!(
        p.errors(),
        ["The text message could not be sent. Ask an administrator."]
    );
    assert!(env.devices("alice").is_empty());
    assert_eq!(env.live_one_time_codes("alice"), 0);
}

// ---- temporary codes ----------------------------------------------------

/// alice with a verified phone and a working gateway.
fn alice_with_phone() -> TestEnv {
    let mut env = with_gateway();
    env.add_sms("alice", PHONE);
    env
}

fn temp_from_text(env: &mut TestEnv) -> String {
    let code = env.sms.last_code(8);
    env.remember_secret(&code);
    code
}

#[test]
fn a_temporary_code_is_texted_to_the_verified_phone_and_works_once() {
    let mut env = alice_with_phone();
    let alice = user("alice");
    match issue(&mut env, "alice", false).unwrap() {
        TempCode::Texted(to) => assert_eq!(to, "***-***-4567"),
        TempCode::Shown(_) => panic!("shown, not texted"),
    }
    let code = temp_from_text(&mut env);
    assert_eq!(
        *env.sms.sent.borrow(),
        [(
            PHONE.to_owned(),
            format!("Your temporary login code is {code}. It expires in 5 minutes.")
        )]
    );
    let live = env.live_codes("alice", OneTimePurpose::Temporary);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].expires, T0 + TEMP_LIFETIME);
    let issued = env.audit(Some("alice")).pop().unwrap();
    assert_eq!(
        (issued.event.as_str(), issued.detail.as_str()),
        ("temp-code-issued", "delivery=texted by=root")
    );

    // The login texts its own code too; the temporary one stands in for it.
    let (outcome, _) = env.second_factor(&alice, vec![typed(&code)]);
    assert_eq!(outcome, Outcome::Verified(Accepted::Temporary));
    assert_eq!(env.sms.count(), 2);
    let (outcome, _) = env.second_factor(&alice, vec![typed(&code)]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.account("alice").failures, 1);
}

#[test]
fn a_shown_temporary_code_has_eight_digits_and_is_not_texted() {
    let mut env = alice_with_phone();
    let code = match issue(&mut env, "alice", true).unwrap() {
        TempCode::Shown(code) => code.to_string(),
        TempCode::Texted(to) => panic!("texted to {to}"),
    };
    env.remember_secret(&code);
    assert_eq!(code.len(), 8);
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert_eq!(env.sms.count(), 0);
    let issued = env.audit(Some("alice")).pop().unwrap();
    assert_eq!(issued.detail, "delivery=shown by=root");
    assert_eq!(
        env.attempt(&user("alice"), code.as_bytes()),
        AttemptResult::Accepted(Accepted::Temporary)
    );
}

#[test]
fn a_temporary_code_works_for_five_minutes_and_not_a_second_more() {
    let mut env = alice_with_phone();
    let alice = user("alice");
    issue(&mut env, "alice", false).unwrap();
    let first = temp_from_text(&mut env);
    env.clock.advance(TEMP_LIFETIME - 1);
    assert_eq!(
        env.attempt(&alice, first.as_bytes()),
        AttemptResult::Accepted(Accepted::Temporary)
    );

    issue(&mut env, "alice", false).unwrap();
    let second = temp_from_text(&mut env);
    env.clock.advance(TEMP_LIFETIME);
    assert_eq!(
        env.attempt(&alice, second.as_bytes()),
        AttemptResult::Wrong {
            failures: 1,
            locked_now: false
        }
    );
    assert_eq!(env.live_one_time_codes("alice"), 0);
}

#[test]
fn a_new_temporary_code_replaces_the_unused_one() {
    let mut env = alice_with_phone();
    let alice = user("alice");
    let shown = |issued: Result<TempCode, CliError>| match issued {
        Ok(TempCode::Shown(code)) => code.to_string(),
        _ => panic!("not shown"),
    };
    let first = shown(issue(&mut env, "alice", true));
    let second = shown(issue(&mut env, "alice", true));
    env.remember_secret(&first);
    env.remember_secret(&second);
    assert_eq!(env.live_codes("alice", OneTimePurpose::Temporary).len(), 1);
    if first != second {
        assert!(matches!(
            env.attempt(&alice, first.as_bytes()),
            AttemptResult::Wrong { failures: 1, .. }
        ));
    }
    assert_eq!(
        env.attempt(&alice, second.as_bytes()),
        AttemptResult::Accepted(Accepted::Temporary)
    );
}

#[test]
fn no_temporary_code_for_a_locked_account() {
    let mut env = alice_with_phone();
    env.lock_out(&user("alice"));
    for show in [false, true] {
        match issue(&mut env, "alice", show) {
            Err(CliError::Locked(m)) => {
                assert!(m.contains("unlock it first"), "{m}");
                assert!(m.contains("`mfa admin unlock alice`"), "{m}");
            }
            Err(e) => panic!("show={show}: {e:?}"),
            Ok(_) => panic!("show={show}: a code was issued"),
        }
    }
    assert_eq!(env.sms.count(), 0);
    assert_eq!(env.live_one_time_codes("alice"), 0);
    // Unlocked, it can be sent.
    env.admin_unlock("alice");
    assert!(matches!(
        issue(&mut env, "alice", false),
        Ok(TempCode::Texted(_))
    ));
    temp_from_text(&mut env);
}

#[test]
fn without_a_verified_phone_the_code_must_be_shown() {
    let mut env = with_gateway();
    env.add_totp("alice", "app", SECRET);
    start(&mut env, "bob", PHONE).unwrap();
    texted_pin(&mut env);
    for user in ["alice", "bob", "carol"] {
        match issue(&mut env, user, false) {
            Err(CliError::NotFound(m)) => assert!(m.contains("--show"), "{m}"),
            Err(e) => panic!("{user}: {e:?}"),
            Ok(_) => panic!("{user}: a code was issued"),
        }
        assert!(env.live_codes(user, OneTimePurpose::Temporary).is_empty());
    }
    assert_eq!(env.sms.count(), 1, "only bob's PIN");
    assert!(matches!(
        issue(&mut env, "bob", true),
        Ok(TempCode::Shown(_))
    ));
}

#[test]
fn when_the_temporary_code_cannot_be_texted_none_is_left() {
    let mut env = alice_with_phone();
    env.sms.fail.set(true);
    let Err(e) = issue(&mut env, "alice", false) else {
        panic!("issued though the text failed");
    };
    assert!(matches!(e, CliError::Failed(_)), "{e:?}");
    assert_eq!(env.live_one_time_codes("alice"), 0);
    let last = env.audit(Some("alice")).pop().unwrap();
    assert_eq!(
        (last.event.as_str(), last.detail.as_str()),
        ("sms-send-failed", "purpose=temporary")
    );
}
