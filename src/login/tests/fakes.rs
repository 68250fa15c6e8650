//! Fakes for the login flow's seams (prompter, clock, SMS sender), and the
//! fixed secret, time and users the tests share.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use zeroize::Zeroizing;

use crate::config::TotpConfig;
use crate::login::{ConversationFailed, Prompter};
use crate::secret::{base32_decode, SecretBytes};
use crate::sms::{SmsError, SmsSender};
use crate::totp::{self, TotpParams};
use crate::users::UserInfo;
use crate::Clock;

/// The first second of a 30-second step, so offsets read as whole steps.
pub const T0: i64 = 1_700_000_010;
pub const PERIOD: i64 = 30;
/// RFC 6238's SHA1 seed: a fixed secret keeps every code reproducible.
pub const SECRET: &[u8] = b"12345678901234567890";
pub const SERVICE: &str = "sshd";
pub const RHOST: &str = "192.0.2.7";

pub fn user(name: &str) -> UserInfo {
    user_in(name, &["users"])
}

pub fn user_in(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.to_owned(),
        uid: 1000,
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

pub fn root() -> UserInfo {
    UserInfo {
        name: "root".into(),
        uid: 0,
        groups: vec!["root".into()],
    }
}

pub fn params() -> TotpParams {
    TotpParams::from(&TotpConfig::default())
}

pub fn step_at(t: i64) -> i64 {
    totp::step_at(t, PERIOD as u32)
}

/// What an authenticator app holding `secret` shows at time `t`.
pub fn code_at(secret: &[u8], t: i64) -> String {
    totp::code_for_step(secret, params(), step_at(t)).to_string()
}

/// A six-digit code that no step within five of `t` produces for `secret`.
pub fn wrong_code(secret: &[u8], t: i64) -> String {
    let near: Vec<String> = (-5..=5).map(|d| code_at(secret, t + d * PERIOD)).collect();
    (0..100)
        .map(|n| format!("{:06}", n * 10_101))
        .find(|c| !near.contains(c))
        .expect("eleven codes cannot cover a hundred candidates")
}

/// What the user saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    Info(String),
    Error(String),
    Prompt(String),
}

/// Works out an answer from what the user was shown so far.
pub type Reply = dyn Fn(&[Shown]) -> Vec<u8>;

/// One scripted reply to a hidden prompt.
pub enum Answer {
    Typed(Vec<u8>),
    /// Worked out from what the user was shown so far (the setup secret).
    Computed(Box<Reply>),
}

pub fn typed(bytes: impl AsRef<[u8]>) -> Answer {
    Answer::Typed(bytes.as_ref().to_vec())
}

/// The code an app shows at `t` for the secret offered during setup.
pub fn setup_code_at(t: i64) -> Answer {
    Answer::Computed(Box::new(move |shown| {
        code_at(&shown_secret(shown), t).into_bytes()
    }))
}

/// The secret from the `Secret: ABCD EFGH ...` line, typed as a user would.
pub fn shown_secret(shown: &[Shown]) -> SecretBytes {
    let grouped = shown
        .iter()
        .rev()
        .find_map(|s| match s {
            Shown::Info(text) => text.strip_prefix("Secret: "),
            _ => None,
        })
        .expect("the setup showed a \"Secret: \" line");
    let compact: String = grouped.chars().filter(|c| *c != ' ').collect();
    base32_decode(&compact).expect("the shown secret is base32")
}

/// A conversation partner with scripted answers; it hangs up (as a client
/// that went away) when the script runs out.
pub struct FakePrompter {
    answers: VecDeque<Answer>,
    pub shown: Vec<Shown>,
    pub typed: Vec<Vec<u8>>,
}

impl FakePrompter {
    pub fn new(answers: Vec<Answer>) -> Self {
        FakePrompter {
            answers: answers.into(),
            shown: Vec::new(),
            typed: Vec::new(),
        }
    }

    pub fn prompts(&self) -> Vec<&str> {
        self.pick(|s| match s {
            Shown::Prompt(t) => Some(t),
            _ => None,
        })
    }

    pub fn errors(&self) -> Vec<&str> {
        self.pick(|s| match s {
            Shown::Error(t) => Some(t),
            _ => None,
        })
    }

    pub fn infos(&self) -> Vec<&str> {
        self.pick(|s| match s {
            Shown::Info(t) => Some(t),
            _ => None,
        })
    }

    fn pick<'a>(&'a self, f: impl Fn(&'a Shown) -> Option<&'a String>) -> Vec<&'a str> {
        self.shown
            .iter()
            .filter_map(f)
            .map(String::as_str)
            .collect()
    }
}

impl Prompter for FakePrompter {
    fn info(&mut self, text: &str) {
        self.shown.push(Shown::Info(text.to_owned()));
    }

    fn error(&mut self, text: &str) {
        self.shown.push(Shown::Error(text.to_owned()));
    }

    fn ask_hidden(&mut self, prompt: &str) -> Result<SecretBytes, ConversationFailed> {
        self.shown.push(Shown::Prompt(prompt.to_owned()));
        let bytes = match self.answers.pop_front().ok_or(ConversationFailed)? {
            Answer::Typed(bytes) => bytes,
            Answer::Computed(f) => f(&self.shown),
        };
        self.typed.push(bytes.clone());
        Ok(Zeroizing::new(bytes))
    }
}

/// The time, and the seconds the flow asked to sleep (not slept).
pub struct FixedClock(Cell<i64>, Cell<u64>);

impl FixedClock {
    pub fn at(t: i64) -> Self {
        FixedClock(Cell::new(t), Cell::new(0))
    }

    /// Seconds of pauses asked for so far.
    pub fn slept(&self) -> u64 {
        self.1.get()
    }

    pub fn set(&self, t: i64) {
        self.0.set(t);
    }

    pub fn advance(&self, seconds: i64) {
        self.0.set(self.0.get() + seconds);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0.get()
    }

    fn sleep(&self, duration: std::time::Duration) {
        self.1.set(self.1.get() + duration.as_secs());
    }
}

/// Records every text instead of sending it. Like `backend = "none"` until
/// a test turns the gateway on; with `fail` set it is a configured gateway
/// whose every send fails (an expired account at the SMS provider).
#[derive(Default)]
pub struct FakeSms {
    /// Shared, so a scripted answer can read the text sent during a login.
    pub sent: Outbox,
    pub gateway: Cell<bool>,
    pub fail: Cell<bool>,
}

pub type Outbox = Rc<RefCell<Vec<(String, String)>>>;

impl FakeSms {
    /// How many texts went out.
    pub fn count(&self) -> usize {
        self.sent.borrow().len()
    }

    /// The code in the last text, checked to have `digits` digits.
    pub fn last_code(&self, digits: usize) -> String {
        last_code_in(&self.sent, digits)
    }
}

/// The only run of digits in the last message, which must have `digits` of them.
pub fn last_code_in(outbox: &Outbox, digits: usize) -> String {
    let sent = outbox.borrow();
    let (_, message) = sent.last().expect("a text was sent");
    let runs: Vec<&str> = message
        .split(|c: char| !c.is_ascii_digit())
        .filter(|r| !r.is_empty())
        .collect();
    // "It expires in 5 minutes." holds a number too: the code is the first run.
    let code = runs.first().expect("the text holds a code");
    assert_eq!(code.len(), digits, "{message}");
    code.to_string()
}

/// Types the code of the last text, read when the prompt appears (the text
/// is sent during the login, just before the prompt).
pub fn texted_code(outbox: &Outbox, digits: usize) -> Answer {
    let outbox = Rc::clone(outbox);
    Answer::Computed(Box::new(move |_| {
        last_code_in(&outbox, digits).into_bytes()
    }))
}

impl SmsSender for FakeSms {
    fn send(&self, phone: &str, message: &str) -> Result<(), SmsError> {
        if !self.gateway.get() {
            return Err(SmsError::NotConfigured);
        }
        if self.fail.get() {
            return Err(SmsError::Gateway(
                "/usr/local/bin/send-sms failed (exit status: 1): HTTP 402".into(),
            ));
        }
        self.sent
            .borrow_mut()
            .push((phone.to_owned(), message.to_owned()));
        Ok(())
    }
    fn available(&self) -> bool {
        self.gateway.get()
    }
}
