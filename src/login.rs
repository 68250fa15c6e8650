//! The login flow, free of PAM types: it talks to the user through a
//! [`Prompter`], reads time from a [`Clock`] and texts through an
//! [`SmsSender`], so every rule is tested with fakes and a fixed clock.
//!
//! States: Start → (locked? → Denied) → (exempt / no factor → Passed or
//! Enrolling) → Prompting → Verifying → Verified | Denied.

use crate::attempt::{self, Accepted, AttemptResult, Context};
use crate::audit::{self, AuditEvent};
use crate::codes;
use crate::config::Config;
use crate::enroll::{self, NewTotp};
use crate::lockout;
use crate::onetime::{self, OnetimeError};
use crate::policy::{self, NoFactor};
use crate::secret::{constant_time_eq, SecretBytes};
use crate::sms::SmsSender;
use crate::sms::{check_phone, mask_phone};
use crate::store::{DeviceKind, Factor};
use crate::store::{Store, StoreError, StoreResult};
use crate::totp;
use crate::users::UserInfo;
use crate::Clock;
use zeroize::Zeroizing;

pub const CODE_PROMPT: &str = "Verification code: ";
pub const CODE_OR_SMS_PROMPT: &str = "Verification code (or type sms to get one by text): ";
pub const PHONE_PROMPT: &str = "Mobile phone number: ";
pub const PIN_PROMPT: &str = "PIN from the text message: ";
pub const CHOICE_PROMPT: &str = "Set up (1) an authenticator app or (2) text messages? [1]: ";
pub const ENROLL_PROMPT: &str = "Code shown by the app: ";
pub const OFFER_PROMPT: &str = "Set up a second factor for this account now? [y/N]: ";
pub const MSG_OPTIONAL_HINT: &str =
    "Protect this account with a second factor: run `mfa device add totp`.";
pub const MSG_SETUP_RETRY: &str = "That code does not match; check the app and try the next code.";
pub const MSG_SETUP_KEPT: &str = "Wrong verification code. The device is not set up; \
log in again within 10 minutes to go on with the same secret.";
pub const MSG_SETUP_SAME: &str =
    "Go on with the setup you started: the secret is the same as at your last login.";
pub const MSG_WRONG: &str = "Wrong verification code.";
pub const MSG_LOCKED: &str =
    "This account is locked after too many failed attempts. An administrator must unlock it.";
pub const MSG_UNAVAILABLE: &str =
    "Multi-factor authentication is unavailable on this host; contact your administrator.";
pub const MSG_NOT_ENROLLED: &str = "Multi-factor authentication is required for this account, \
but no device is set up. Ask an administrator to set one up for you.";
const ENROLL_TRIES: u32 = 3;

/// The conversation could not be held (client gone, PAM error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationFailed;

/// Why a flow stops before a verdict: the conversation failed (the outcome
/// is [`Outcome::ConversationFailed`]) or the store did (the caller reports
/// "MFA unavailable", as `on_unavailable` says). `?` turns either into one.
#[derive(Debug)]
enum Stop {
    Hangup,
    Store(StoreError),
}

impl From<ConversationFailed> for Stop {
    fn from(_: ConversationFailed) -> Self {
        Stop::Hangup
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

type Flow<T> = Result<T, Stop>;

/// A flow's end as the adapters take it.
fn settle(flow: Flow<Outcome>) -> StoreResult<Outcome> {
    match flow {
        Ok(outcome) => Ok(outcome),
        Err(Stop::Hangup) => Ok(Outcome::ConversationFailed),
        Err(Stop::Store(e)) => Err(e),
    }
}

/// A one-time code step that failed otherwise than by a wrong PIN, a lock
/// or a limit ends as the store failing would: "MFA unavailable", never
/// as a wrong code. Errors that are not the store's deny whatever
/// `on_unavailable` says (they are faults, not a missing store).
fn unavailable(e: OnetimeError) -> Stop {
    match e {
        OnetimeError::Store(e) => Stop::Store(e),
        other => Stop::Store(StoreError::Faulty(other.to_string())),
    }
}

pub trait Prompter {
    /// Shows a line of information (it may travel with the next prompt).
    fn info(&mut self, text: &str);
    /// Shows an error line.
    fn error(&mut self, text: &str);
    /// Asks a question with echo off; the answer is wiped when dropped.
    fn ask_hidden(&mut self, prompt: &str) -> Result<SecretBytes, ConversationFailed>;
    /// Asks a question with echo on (choices, phone numbers).
    fn ask_visible(&mut self, prompt: &str) -> Result<SecretBytes, ConversationFailed> {
        self.ask_hidden(prompt)
    }
}

pub struct Request<'a> {
    /// None when NSS does not know the user.
    pub info: Option<&'a UserInfo>,
    /// The first factor just entered, if the stack has one.
    pub password: Option<&'a [u8]>,
    pub service: &'a str,
    pub rhost: &'a str,
}

impl Request<'_> {
    fn detail(&self) -> String {
        let mut d = format!("service={}", sanitize(self.service));
        if !self.rhost.is_empty() {
            d.push_str(&format!(" rhost={}", sanitize(self.rhost)));
        }
        d
    }
}

fn sanitize(s: &str) -> String {
    audit::quote(s)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A second factor was verified.
    Verified(Accepted),
    /// A device was set up during this login and proved with a code.
    Enrolled,
    /// Let through without a second factor; the reason is for the log.
    Passed(PassReason),
    Denied(Denial),
    ConversationFailed,
}

/// Why a login passed without a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassReason {
    /// `preauth` for a name NSS does not know: the password module decides.
    UnknownUserPreauth,
    /// `preauth` or the account phase: the account is not locked.
    NotLocked,
    /// A member of an exempt group.
    ExemptGroup,
    /// Under `optional`, an account without a device.
    OptionalNoDevice,
    /// Under `optional`, the offer to set one up was declined.
    OptionalOfferDeclined,
    /// Under `optional`, a setup at login was not finished.
    OptionalSetupUnfinished,
}

impl PassReason {
    /// The word syslog gives as `reason=` (see pam_mfa(8), LOGGING).
    pub fn as_str(self) -> &'static str {
        match self {
            PassReason::UnknownUserPreauth => "unknown-user-preauth",
            PassReason::NotLocked => "not-locked",
            PassReason::ExemptGroup => "exempt-group",
            PassReason::OptionalNoDevice => "optional-no-device",
            PassReason::OptionalOfferDeclined => "optional-offer-declined",
            PassReason::OptionalSetupUnfinished => "optional-setup-unfinished",
        }
    }

    /// The routine passes of `preauth` and the account phase, which would
    /// flood the log: logged only with `debug`.
    pub fn is_routine(self) -> bool {
        matches!(self, PassReason::NotLocked | PassReason::UnknownUserPreauth)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Denial {
    WrongCode,
    Locked,
    NotEnrolled,
    UnknownUser,
    /// Setup was needed but could not be done (no randomness, etc.).
    Internal,
}

impl Denial {
    /// The word syslog gives as `reason=` (see pam_mfa(8), LOGGING).
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::WrongCode => "wrong-code",
            Denial::Locked => "locked",
            Denial::NotEnrolled => "not-enrolled",
            Denial::UnknownUser => "unknown-user",
            Denial::Internal => "internal",
        }
    }
}

pub struct Login<'a> {
    pub config: &'a Config,
    pub store: &'a mut dyn Store,
    pub clock: &'a dyn Clock,
    pub sms: &'a dyn SmsSender,
    pub prompter: &'a mut dyn Prompter,
}

/// What a known user has that can serve as a second factor.
struct Factors {
    locked: bool,
    failures: u32,
    any: bool,
    has_totp: bool,
    /// The verified SMS device's number.
    sms_phone: Option<String>,
}

impl Login<'_> {
    /// `preauth` mode: before the password. A locked account is not told
    /// so here: a message (or a missing password prompt) before the
    /// password would show which names exist, since only they can be
    /// locked. It meets the password prompt like any name and is denied
    /// after it (`authfail` quietly, the second factor and the account
    /// phase with the locked message). What this mode still does is to
    /// fail early, for everyone's account alike, when the store cannot be read.
    pub fn preauth(&mut self, req: &Request<'_>) -> StoreResult<Outcome> {
        let Some(user) = req.info else {
            // Unknown users meet the password module like everyone else.
            return Ok(Outcome::Passed(PassReason::UnknownUserPreauth));
        };
        let now = self.clock.now();
        attempt::is_locked(self.store, self.config, &user.name, now)?;
        Ok(Outcome::Passed(PassReason::NotLocked))
    }

    /// `authfail` mode: the password was wrong; count it. Nothing is said
    /// about a lock here, not even by the failure that locks the account:
    /// after a wrong password a known name and an unknown one must look
    /// the same, and only known names can be locked.
    pub fn authfail(&mut self, req: &Request<'_>) -> StoreResult<Outcome> {
        let Some(user) = req.info else {
            return Ok(Outcome::Denied(Denial::UnknownUser));
        };
        let now = self.clock.now();
        let ctx = format!("factor=password {}", req.detail());
        let result = attempt::record_failure(
            self.store,
            self.config,
            user,
            now,
            &Context { detail: &ctx },
        )?;
        self.pause_after(user, &result);
        match result {
            AttemptResult::Locked => {
                self.audit_locked(&user.name, "authfail", req)?;
                Ok(Outcome::Denied(Denial::Locked))
            }
            AttemptResult::Wrong {
                locked_now: true, ..
            } => Ok(Outcome::Denied(Denial::Locked)),
            _ => Ok(Outcome::Denied(Denial::WrongCode)),
        }
    }

    /// An attempt on an account that was already locked: refused without
    /// looking at what was typed and not counted, but in the audit trail
    /// as `login-locked` (the failure that locked it is there already).
    fn audit_locked(&mut self, user: &str, mode: &str, req: &Request<'_>) -> StoreResult<()> {
        let now = self.clock.now();
        let tx = self.store.begin()?;
        let detail = format!("mode={mode} {}", req.detail());
        audit::record(&*tx, now, user, AuditEvent::LoginLocked, &detail)?;
        tx.commit()
    }

    /// Account phase: a locked account may not log in by any route.
    pub fn account(&mut self, req: &Request<'_>) -> StoreResult<Outcome> {
        let Some(user) = req.info else {
            return Ok(Outcome::Denied(Denial::UnknownUser));
        };
        if attempt::is_locked(self.store, self.config, &user.name, self.clock.now())? {
            return self.refuse_locked(&user.name, "account", req);
        }
        Ok(Outcome::Passed(PassReason::NotLocked))
    }

    /// An account found locked: audited (see `audit_locked`) and told so.
    fn refuse_locked(&mut self, user: &str, mode: &str, req: &Request<'_>) -> StoreResult<Outcome> {
        self.audit_locked(user, mode, req)?;
        Ok(self.locked_now())
    }

    /// The locked message, and the verdict that goes with it.
    fn locked_now(&mut self) -> Outcome {
        self.prompter.error(MSG_LOCKED);
        Outcome::Denied(Denial::Locked)
    }

    /// The second factor.
    pub fn second_factor(&mut self, req: &Request<'_>) -> StoreResult<Outcome> {
        settle(self.second_factor_flow(req))
    }

    fn second_factor_flow(&mut self, req: &Request<'_>) -> Flow<Outcome> {
        let Some(user) = req.info else {
            // Same prompt as a real user, then the same refusal.
            self.prompter.ask_hidden(CODE_PROMPT)?;
            self.prompter.error(MSG_WRONG);
            return Ok(Outcome::Denied(Denial::UnknownUser));
        };
        let now = self.clock.now();
        let factors = self.factors(&user.name, now)?;
        if factors.locked {
            return Ok(self.refuse_locked(&user.name, "auth", req)?);
        }
        if policy::is_exempt(user, self.config) {
            self.reset_failures(&user.name, factors.failures, now)?;
            return Ok(Outcome::Passed(PassReason::ExemptGroup));
        }
        if !factors.any {
            let policy = {
                let tx = self.store.begin_read()?;
                policy::current(&*tx, self.config)?
            };
            return match policy::without_factor(policy, self.config) {
                NoFactor::PasswordOnly => {
                    self.reset_failures(&user.name, factors.failures, now)?;
                    self.optional_hint();
                    Ok(Outcome::Passed(PassReason::OptionalNoDevice))
                }
                NoFactor::Refuse => {
                    self.prompter.error(MSG_NOT_ENROLLED);
                    Ok(Outcome::Denied(Denial::NotEnrolled))
                }
                NoFactor::EnrollNow => {
                    self.prompter.info(
                        "Multi-factor authentication is required for this account and no device is set up yet.",
                    );
                    self.enroll(user, req)
                }
                NoFactor::Offer => self.offer(user, req, factors.failures),
            };
        }
        let sms_phone = factors.sms_phone.filter(|_| self.sms.available());
        let prompt = match (&sms_phone, factors.has_totp) {
            (Some(phone), false) => self.text_login_code(&user.name, phone)?,
            (Some(_), true) => CODE_OR_SMS_PROMPT.to_owned(),
            (None, _) => CODE_PROMPT.to_owned(),
        };
        let mut typed = self.prompter.ask_hidden(&prompt)?;
        if let (Some(phone), true) = (&sms_phone, factors.has_totp) {
            if typed.trim_ascii().eq_ignore_ascii_case(b"sms") {
                let prompt = self.text_login_code(&user.name, phone)?;
                typed = self.prompter.ask_hidden(&prompt)?;
            }
        }
        Ok(self.verify(user, req, &typed)?)
    }

    /// Texts a login code and returns the prompt naming the masked number.
    /// A failed text is reported, and the user may still type a bypass code
    /// at the plain prompt (not one claiming a code was sent). A store that
    /// fails is not a failed text: the login is unavailable, as anywhere.
    fn text_login_code(&mut self, user: &str, phone: &str) -> Flow<String> {
        let now = self.clock.now();
        match onetime::send_login_code(self.store, self.config, self.sms, user, phone, now) {
            Ok(()) => Ok(format!("Code sent by text to {}: ", mask_phone(phone))),
            Err(e @ OnetimeError::Limited { .. }) => {
                // Audited as sms-limited; a code from an app or a bypass
                // code still works at the plain prompt.
                self.prompter.error(&format!("{e}."));
                Ok(CODE_PROMPT.to_owned())
            }
            Err(OnetimeError::Store(e)) => Err(Stop::Store(e)),
            Err(e) => {
                audit::syslog(
                    audit::Level::Error,
                    &format!(
                        "{} could not text a login code: {}",
                        audit::format_line(user, AuditEvent::SmsSendFailed, ""),
                        audit::escape(&e.to_string())
                    ),
                );
                self.prompter.error(
                    "The text message could not be sent; use a bypass code or ask an administrator.",
                );
                Ok(CODE_PROMPT.to_owned())
            }
        }
    }

    /// A login that succeeded without a code still ends a run of failures:
    /// the lockout counts failures in a row.
    fn reset_failures(&mut self, user: &str, failures: u32, now: i64) -> StoreResult<()> {
        if failures == 0 {
            return Ok(());
        }
        let tx = self.store.begin()?;
        let account = tx.account(user)?;
        if !lockout::is_locked(&account, &self.config.lockout, now) {
            tx.put_account(user, &Default::default())?;
            audit::record(
                &*tx,
                now,
                user,
                AuditEvent::FailuresReset,
                "reason=login-without-code",
            )?;
        }
        tx.commit()
    }

    /// Read from a snapshot: the verdict comes later, from `attempt_code`,
    /// which checks the lock again in its own write transaction.
    fn factors(&mut self, user: &str, now: i64) -> StoreResult<Factors> {
        let tx = self.store.begin_read()?;
        let account = tx.account(user)?;
        let locked = lockout::is_locked(&account, &self.config.lockout, now);
        let devices = tx.devices(user)?;
        let verified = || devices.iter().filter(|d| d.verified);
        let has_totp = verified().any(|d| d.kind() == DeviceKind::Totp);
        let sms_phone = verified().find_map(|d| match &d.factor {
            Factor::Sms { phone } => Some(phone.clone()),
            Factor::Totp { .. } => None,
        });
        let any = verified().next().is_some()
            || !tx.bypass_codes(user)?.is_empty()
            || tx
                .one_time_codes(user, now)?
                .iter()
                .any(|c| c.purpose == codes::OneTimePurpose::Temporary);
        tx.commit()?;
        Ok(Factors {
            locked,
            failures: account.failures,
            any,
            has_totp,
            sms_phone,
        })
    }

    fn verify(&mut self, user: &UserInfo, req: &Request<'_>, typed: &[u8]) -> StoreResult<Outcome> {
        let now = self.clock.now();
        let detail = format!("factor=code {}", req.detail());
        let result = attempt::attempt_code(
            self.store,
            self.config,
            user,
            typed,
            req.password,
            now,
            &Context { detail: &detail },
        )?;
        self.pause_after(user, &result);
        Ok(match result {
            AttemptResult::Accepted(accepted) => {
                if let Accepted::Bypass { left } = accepted {
                    self.prompter.info(&format!(
                        "Bypass code accepted; {left} left. Generate new ones with `mfa bypass generate`."
                    ));
                }
                Outcome::Verified(accepted)
            }
            AttemptResult::Wrong {
                locked_now: true, ..
            } => self.locked_now(),
            AttemptResult::Wrong { .. } => {
                self.prompter.error(MSG_WRONG);
                Outcome::Denied(Denial::WrongCode)
            }
            AttemptResult::Locked => self.refuse_locked(&user.name, "auth", req)?,
        })
    }

    /// Root's growing pause after a failure (see `lockout::failure_delay`),
    /// before the verdict. The failure is committed by now: nothing is
    /// held but this login's own connection.
    fn pause_after(&self, user: &UserInfo, result: &AttemptResult) {
        if let AttemptResult::Wrong { failures, .. } = result {
            let delay = lockout::failure_delay(*failures, &self.config.lockout, user.is_root());
            if !delay.is_zero() {
                self.clock.sleep(delay);
            }
        }
    }

    /// Under `optional`, the line telling a user without a device how to
    /// add one (`optional_hint = false` turns it off).
    fn optional_hint(&mut self) {
        if self.config.optional_hint {
            self.prompter.info(MSG_OPTIONAL_HINT);
        }
    }

    /// `enroll_at_login = "offer"` under `optional`: a y/N question, not
    /// asked again once declined. The password alone is enough under this
    /// policy, so a setup that is declined or not finished still lets the
    /// user in; only a lock or a hang-up refuses.
    fn offer(&mut self, user: &UserInfo, req: &Request<'_>, failures: u32) -> Flow<Outcome> {
        let now = self.clock.now();
        let declined = {
            let tx = self.store.begin_read()?;
            policy::offer_declined(&*tx, &user.name)?
        };
        if declined {
            self.reset_failures(&user.name, failures, now)?;
            self.optional_hint();
            return Ok(Outcome::Passed(PassReason::OptionalNoDevice));
        }
        let answer = self.prompter.ask_visible(OFFER_PROMPT)?;
        // sshd's password method answers every question with the password:
        // that is nobody's answer, so nothing is remembered.
        if req
            .password
            .is_some_and(|p| !p.is_empty() && constant_time_eq(p, &answer))
        {
            self.reset_failures(&user.name, failures, now)?;
            self.optional_hint();
            return Ok(Outcome::Passed(PassReason::OptionalNoDevice));
        }
        let yes = matches!(
            answer.trim_ascii().to_ascii_lowercase().as_slice(),
            b"y" | b"yes"
        );
        if !yes {
            {
                let tx = self.store.begin()?;
                policy::decline_offer(&*tx, &user.name, now)?;
                audit::record(
                    &*tx,
                    now,
                    &user.name,
                    AuditEvent::SetupDeclined,
                    &req.detail(),
                )?;
                tx.commit()?;
            }
            self.reset_failures(&user.name, failures, now)?;
            self.prompter.info(
                "No second factor for now; you will not be asked again. \
                 Add one at any time with `mfa device add totp`.",
            );
            return Ok(Outcome::Passed(PassReason::OptionalOfferDeclined));
        }
        match self.enroll(user, req)? {
            Outcome::Denied(Denial::WrongCode | Denial::Internal | Denial::NotEnrolled) => {
                // Under `optional` the password alone lets the user in.
                self.reset_failures(&user.name, failures, self.clock.now())?;
                Ok(Outcome::Passed(PassReason::OptionalSetupUnfinished))
            }
            outcome => Ok(outcome),
        }
    }

    /// Setup at login: show the secret, and verify the device only once
    /// the user proves it with a code. Wrong codes here are setup mistakes,
    /// not guesses at a secret the user already has: they do not count
    /// toward the lockout; three end the login (audited as
    /// `device-verify-failed`), and the same secret is shown again at a
    /// login within [`enroll::SETUP_LIFETIME`].
    fn enroll(&mut self, user: &UserInfo, req: &Request<'_>) -> Flow<Outcome> {
        if self.sms.available() {
            let choice = self.prompter.ask_visible(CHOICE_PROMPT)?;
            if choice.trim_ascii() == b"2" {
                return self.enroll_sms(user);
            }
        }
        self.enroll_totp(user, req)
    }

    /// SMS setup at login: a phone number, a texted PIN, three tries each.
    /// Only wrong PINs end it as a wrong code; a store that fails is "MFA
    /// unavailable", as anywhere else in the login.
    fn enroll_sms(&mut self, user: &UserInfo) -> Flow<Outcome> {
        let mut started = false;
        for _ in 0..ENROLL_TRIES {
            let typed = self.prompter.ask_visible(PHONE_PROMPT)?;
            let phone = String::from_utf8_lossy(&typed).trim().to_owned();
            if let Err(m) = check_phone(&phone) {
                self.prompter.error(m);
                continue;
            }
            self.void_pending_sms(&user.name)?;
            match onetime::start_sms_enrollment(
                self.store,
                self.config,
                self.sms,
                &user.name,
                &phone,
                self.clock.now(),
            ) {
                Ok(()) => {
                    started = true;
                    break;
                }
                Err(e @ OnetimeError::Limited { .. }) => {
                    self.prompter.error(&format!("{e}."));
                    return Ok(Outcome::Denied(Denial::Internal));
                }
                Err(OnetimeError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    audit::syslog(
                        audit::Level::Error,
                        &format!(
                            "{} SMS setup at login failed: {}",
                            audit::format_line(&user.name, AuditEvent::SmsSendFailed, ""),
                            audit::escape(&e.to_string())
                        ),
                    );
                    self.prompter
                        .error("The text message could not be sent. Ask an administrator.");
                    return Ok(Outcome::Denied(Denial::Internal));
                }
            }
        }
        if !started {
            return Ok(Outcome::Denied(Denial::NotEnrolled));
        }
        for _ in 0..onetime::PIN_TRIES {
            let typed = self.prompter.ask_hidden(PIN_PROMPT)?;
            let pin = Zeroizing::new(String::from_utf8_lossy(&typed).into_owned());
            match onetime::verify_sms_pin(
                self.store,
                self.config,
                &user.name,
                &pin,
                self.clock.now(),
            ) {
                Ok(()) => {
                    self.end_failure_run(&user.name)?;
                    self.prompter
                        .info("Your phone is set up. A code will be texted to it at each login.");
                    return Ok(Outcome::Enrolled);
                }
                Err(OnetimeError::WrongPin { .. }) => self.prompter.error(onetime::INVALID_PIN),
                Err(OnetimeError::Locked { .. }) => return Ok(self.locked_now()),
                Err(e) => return Err(unavailable(e)),
            }
        }
        self.void_pending_sms(&user.name)?;
        Ok(Outcome::Denied(Denial::WrongCode))
    }

    /// The login succeeded by setting up a phone: as with an app, the run of
    /// failures ends (unless another login locked the account meanwhile).
    fn end_failure_run(&mut self, user: &str) -> StoreResult<()> {
        let now = self.clock.now();
        let tx = self.store.begin()?;
        if !lockout::is_locked(&tx.account(user)?, &self.config.lockout, now) {
            tx.put_account(user, &Default::default())?;
        }
        tx.commit()
    }

    /// A pending (never verified) SMS device from an abandoned setup.
    fn void_pending_sms(&mut self, user: &str) -> StoreResult<()> {
        let tx = self.store.begin()?;
        if let Some((device, _)) = onetime::sms_device(&*tx, user)? {
            if !device.verified {
                tx.delete_device(user, &device.name)?;
                tx.delete_one_time_codes(user, codes::OneTimePurpose::SmsEnroll)?;
            }
        }
        tx.commit()
    }

    fn enroll_totp(&mut self, user: &UserInfo, req: &Request<'_>) -> Flow<Outcome> {
        let now = self.clock.now();
        let detail = format!("setup-at-login {}", req.detail());
        let (setup, same) = match self.pending_setup(user, now, &detail)? {
            Ok(found) => found,
            Err(why) => {
                self.prompter.error(&why.to_string());
                return Ok(Outcome::Denied(Denial::Internal));
            }
        };
        if same {
            self.prompter.info(MSG_SETUP_SAME);
        }
        self.prompter
            .info("Set up an authenticator app now: scan this QR code, or type the secret below.");
        self.prompter.info(&setup.new.qr());
        self.prompter
            .info(&format!("Secret: {}", setup.new.secret_grouped().as_str()));
        self.prompter
            .info(&format!("URI: {}", setup.new.uri.as_str()));
        for attempt in 1..=ENROLL_TRIES {
            let typed = self.prompter.ask_hidden(ENROLL_PROMPT)?;
            match self.finish_enrollment(user, req, &setup, &typed, &detail)? {
                Some(outcome) => return Ok(outcome),
                // After the last try there is no next code to try: the login
                // ends, and the next one goes on with the same secret.
                None if attempt == ENROLL_TRIES => self.prompter.error(MSG_SETUP_KEPT),
                None => self.prompter.error(MSG_SETUP_RETRY),
            }
        }
        Ok(Outcome::Denied(Denial::WrongCode))
    }

    /// The pending device of a setup at login started less than
    /// [`enroll::SETUP_LIFETIME`] ago (true: shown before), or a new one,
    /// stored pending now so that a retry sees the same secret. Older
    /// unfinished setups are removed. Err: why no device can be made.
    fn pending_setup(
        &mut self,
        user: &UserInfo,
        now: i64,
        detail: &str,
    ) -> StoreResult<Result<(PendingSetup, bool), NoSetup>> {
        let tx = self.store.begin()?;
        let mut live = None;
        for device in tx.devices(&user.name)? {
            if device.verified || !enroll::is_setup_name(&device.name) {
                continue;
            }
            let Factor::Totp { secret, params, .. } = &device.factor else {
                continue;
            };
            if device.created > now - enroll::SETUP_LIFETIME {
                if live.is_none() {
                    let uri =
                        totp::otpauth_uri(secret, *params, &self.config.issuer_label(), &user.name);
                    live = Some(PendingSetup {
                        id: device.id,
                        name: device.name.clone(),
                        new: NewTotp {
                            secret: secret.clone(),
                            params: *params,
                            uri,
                        },
                    });
                }
                continue;
            }
            tx.delete_device(&user.name, &device.name)?;
            audit::record(
                &*tx,
                now,
                &user.name,
                AuditEvent::DeviceExpired,
                &format!("device={} kind=totp setup-at-login", device.name),
            )?;
        }
        if let Some(setup) = live {
            tx.commit()?;
            return Ok(Ok((setup, true)));
        }
        let Ok(new) = NewTotp::generate(self.config, &user.name) else {
            return Ok(Err(NoSetup::NoSecret));
        };
        let name = enroll::free_nickname(&*tx, &user.name, "login")?;
        let id = match enroll::store_totp(&*tx, &user.name, &name, &new, None, now, detail) {
            Ok(id) => id,
            // Too many devices waiting for verification: said as it is.
            Err(StoreError::Conflict(m)) => {
                drop(tx);
                return Ok(Err(NoSetup::Refused(m)));
            }
            Err(e) => return Err(e),
        };
        tx.commit()?;
        Ok(Ok((PendingSetup { id, name, new }, false)))
    }

    /// One setup code in one transaction; None means wrong, try again.
    fn finish_enrollment(
        &mut self,
        user: &UserInfo,
        req: &Request<'_>,
        setup: &PendingSetup,
        typed: &[u8],
        detail: &str,
    ) -> StoreResult<Option<Outcome>> {
        let now = self.clock.now();
        let tx = self.store.begin()?;
        let account = lockout::current(tx.account(&user.name)?, &self.config.lockout, now);
        if lockout::is_locked(&account, &self.config.lockout, now) {
            // Nothing goes to the client while the write lock is held: a
            // client that stops reading must not stall other logins.
            drop(tx);
            return Ok(Some(self.refuse_locked(&user.name, "auth", req)?));
        }
        let still_pending = tx
            .devices(&user.name)?
            .iter()
            .any(|d| d.id == setup.id && !d.verified);
        if !still_pending {
            // Removed meanwhile (`mfa device delete`, or set up elsewhere).
            drop(tx);
            self.prompter
                .error("This setup was ended elsewhere; log in again to start over.");
            return Ok(Some(Outcome::Denied(Denial::Internal)));
        }
        // sshd's password method answers every prompt with the password.
        let equals_password = req
            .password
            .is_some_and(|p| !p.is_empty() && constant_time_eq(p, typed));
        let step = std::str::from_utf8(typed)
            .ok()
            .filter(|_| typed.len() <= attempt::MAX_CODE_BYTES && !equals_password)
            .and_then(codes::normalize_digits)
            .and_then(|d| {
                totp::verify(
                    &setup.new.secret,
                    setup.new.params,
                    &d,
                    now,
                    self.config.totp.window,
                    None,
                )
            });
        let device = format!("device={} {detail}", setup.name);
        match step {
            Some(step) => {
                tx.mark_verified(setup.id)?;
                tx.set_last_step(setup.id, step)?;
                audit::record(&*tx, now, &user.name, AuditEvent::DeviceVerified, &device)?;
                tx.put_account(&user.name, &Default::default())?;
                tx.commit()?;
                self.prompter.info(&format!(
                    "Device \"{}\" is set up. Use a code from it at your next login.",
                    setup.name
                ));
                Ok(Some(Outcome::Enrolled))
            }
            None => {
                audit::record(
                    &*tx,
                    now,
                    &user.name,
                    AuditEvent::DeviceVerifyFailed,
                    &device,
                )?;
                tx.commit()?;
                Ok(None)
            }
        }
    }
}

/// Why no device can be set up at login (told to the user as it is).
enum NoSetup {
    /// No secret could be made (no randomness).
    NoSecret,
    /// The store refused the device (too many waiting for verification).
    Refused(String),
}

impl std::fmt::Display for NoSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoSetup::NoSecret => f.write_str("No secret could be made; ask an administrator."),
            NoSetup::Refused(m) => write!(f, "No device can be set up now: {m}."),
        }
    }
}

/// A setup at login in progress: its pending device and secret.
struct PendingSetup {
    id: i64,
    name: String,
    new: NewTotp,
}

/// "MFA unavailable" (no daemon, no usable config or store): logged with
/// the admin's choice, and, when the login is denied for it, told to the
/// user, except after a wrong password (`quiet`), where it would only
/// confuse. One wording for the module and the daemon.
pub fn report_unavailable(
    prompter: &mut dyn Prompter,
    error: &dyn std::fmt::Display,
    allow: bool,
    quiet: bool,
    who: &str,
) {
    let verdict = if allow {
        "allowing (on_unavailable = \"allow\")"
    } else {
        "denying"
    };
    audit::syslog(
        audit::Level::Error,
        &format!("MFA unavailable: {error}; {verdict} ({who})"),
    );
    if !allow && !quiet {
        prompter.error(MSG_UNAVAILABLE);
    }
}

#[cfg(test)]
mod tests;
