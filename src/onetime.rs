//! Codes sent by text or handed out by an administrator: the 7-digit SMS
//! login code, the 4-digit enrollment PIN and the 8-digit temporary code.
//! Stored only as salted hashes; texted after the transaction commits, so a
//! slow gateway never holds the database lock.

use crate::audit::{self, AuditEvent};
use crate::codes::{self, OneTimePurpose};
use crate::config::Config;
use crate::enroll::SMS_NAME;
use crate::lockout;
use crate::sms::{check_phone, mask_phone, SmsError, SmsSender};
use crate::store::{Device, Factor, Store, StoreError, StoreResult, Tx};
use std::fmt;
use zeroize::Zeroizing;

/// Wrong PINs before an enrollment PIN is void.
pub const PIN_TRIES: u32 = 3;

/// Wrong 8-digit guesses before a temporary code is void (a typo is
/// forgiven; each guess also counts toward the account's lockout).
pub const TEMP_CODE_TRIES: u32 = 3;

pub const INVALID_PIN: &str = "invalid PIN: enter the 4-digit PIN from the text message";

/// How long a text counts against `[sms] max_per_user_hour` and
/// `max_per_host_hour`.
pub const TEXT_WINDOW: i64 = 3600;

/// Why a one-time code could not be made, sent or accepted. Each says what
/// to do; `mfa` maps them to its exit codes (see `cli::error`).
#[derive(Debug)]
pub enum OnetimeError {
    /// Not a phone number pam_mfa texts (the text says why).
    BadPhone(&'static str),
    /// The user's account is locked; only an administrator unlocks it.
    Locked { user: String },
    /// A temporary code was asked for a locked account: unlock it first.
    LockedTempCode { user: String },
    /// The user has no SMS device (pending or verified).
    NoSmsDevice { user: String },
    /// The user has no verified SMS device to text a temporary code to.
    NoPhoneForTempCode { user: String },
    /// The enrollment PIN expired or its tries were used up.
    PinGone,
    /// The user already has an SMS device.
    HasSmsDevice { user: String },
    /// The user's SMS device is verified already.
    AlreadyVerified { user: String },
    /// A wrong PIN; `left` tries remain (0: the PIN is void).
    WrongPin { left: u32 },
    /// A text would pass `max_per_user_hour` or `max_per_host_hour`; the
    /// next may go in `minutes`.
    Limited { minutes: i64 },
    /// The text could not be sent (or no gateway is configured).
    Sms(SmsError),
    /// The enrollment PIN could not be texted, so the phone was dropped.
    PinNotSent(SmsError),
    /// The PIN kept changing while it was being checked.
    PinChanging { user: String },
    /// The store failed.
    Store(StoreError),
    /// The system random number generator failed.
    Random(getrandom::Error),
}

impl fmt::Display for OnetimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnetimeError::BadPhone(m) => f.write_str(m),
            OnetimeError::Locked { user } => {
                f.write_str(&lockout::locked_message(user, lockout::Remedy::Unlock))
            }
            OnetimeError::LockedTempCode { user } => write!(
                f,
                "the account {user} is locked; unlock it first with `mfa admin unlock {user}`, then send the temporary code"
            ),
            OnetimeError::NoSmsDevice { user } => write!(
                f,
                "{user} has no SMS device; add one with `mfa device add sms PHONE`"
            ),
            OnetimeError::NoPhoneForTempCode { user } => write!(
                f,
                "{user} has no verified SMS device to text the code to; use --show to see it and pass it on"
            ),
            OnetimeError::PinGone => f.write_str(
                "the PIN has expired or was used up: delete the device with `mfa device delete sms` and add it again",
            ),
            OnetimeError::HasSmsDevice { user } => write!(
                f,
                "{user} already has an SMS device; delete it first with `mfa device delete sms`"
            ),
            OnetimeError::AlreadyVerified { user } => {
                write!(f, "the SMS device of {user} is already verified")
            }
            OnetimeError::WrongPin { left: 0 } => write!(
                f,
                "{INVALID_PIN}; that was the last try: delete the device with `mfa device delete sms` and add it again"
            ),
            OnetimeError::WrongPin { left } => write!(
                f,
                "{INVALID_PIN} ({left} {} left)",
                if *left == 1 { "try" } else { "tries" }
            ),
            OnetimeError::Limited { minutes } => f.write_str(&too_many_texts(*minutes)),
            OnetimeError::Sms(e) => e.fmt(f),
            OnetimeError::PinNotSent(e) => write!(
                f,
                "{e}; the phone was not added: add it again once text messages can be sent"
            ),
            OnetimeError::PinChanging { user } => {
                write!(f, "the PIN of {user} changed during each check; try again")
            }
            OnetimeError::Store(e) => e.fmt(f),
            OnetimeError::Random(e) => {
                write!(f, "the system random number generator failed: {e}")
            }
        }
    }
}

impl std::error::Error for OnetimeError {}

impl From<StoreError> for OnetimeError {
    fn from(e: StoreError) -> Self {
        OnetimeError::Store(e)
    }
}

impl From<getrandom::Error> for OnetimeError {
    fn from(e: getrandom::Error) -> Self {
        OnetimeError::Random(e)
    }
}

pub type Result<T> = std::result::Result<T, OnetimeError>;

/// What the user reads when a text would pass a limit.
pub fn too_many_texts(minutes: i64) -> String {
    format!(
        "Too many text messages; try again in {minutes} minute{} or use another method",
        if minutes == 1 { "" } else { "s" }
    )
}

/// This host's name, which the per-host limit counts by (a fleet's hosts
/// share one store).
pub fn this_host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// In `tx`, the transaction that stores the code to be texted: refuses the
/// text when the user's phone or this host had their hour's worth (audited
/// as `sms-limited`: the caller commits and returns the error), else counts
/// it. So a loop of `device add sms` / `device delete sms`, or of "type
/// sms" at login, cannot text a number without end.
fn count_text(
    tx: &dyn Tx,
    config: &Config,
    user: &str,
    purpose: OneTimePurpose,
    now: i64,
) -> StoreResult<Result<()>> {
    tx.purge_texts(now - TEXT_WINDOW)?;
    let host = this_host();
    let since = now - TEXT_WINDOW + 1;
    let limits = [
        (
            "user",
            config.sms.max_per_user_hour,
            tx.user_texts_since(user, since)?,
        ),
        (
            "host",
            config.sms.max_per_host_hour,
            tx.host_texts_since(&host, since)?,
        ),
    ];
    for (scope, max, (count, oldest)) in limits {
        if max == 0 || count < max {
            continue;
        }
        let wait = oldest.map_or(TEXT_WINDOW, |t| t + TEXT_WINDOW - now).max(1);
        audit::record(
            tx,
            now,
            user,
            AuditEvent::SmsLimited,
            &format!(
                "purpose={} scope={scope} sent={count} max={max}",
                purpose.as_str()
            ),
        )?;
        return Ok(Err(OnetimeError::Limited {
            minutes: (wait + 59) / 60,
        }));
    }
    tx.record_text(user, &host, purpose.as_str(), now)?;
    Ok(Ok(()))
}

/// The user's SMS device, verified or pending.
pub fn sms_device(tx: &dyn Tx, user: &str) -> StoreResult<Option<(Device, String)>> {
    Ok(tx.devices(user)?.into_iter().find_map(|d| match &d.factor {
        Factor::Sms { phone } => {
            let phone = phone.clone();
            Some((d, phone))
        }
        Factor::Totp { .. } => None,
    }))
}

/// Stores a new code; with `texted`, first counts the text against the
/// limits (see `count_text`) in the same transaction.
#[allow(clippy::too_many_arguments)]
fn store_code(
    store: &mut dyn Store,
    texted: Option<&Config>,
    user: &str,
    purpose: OneTimePurpose,
    attempts: u32,
    now: i64,
    event: AuditEvent,
    detail: &str,
) -> Result<Zeroizing<String>> {
    let code = codes::new_numeric_code(purpose)?;
    let hash = codes::hash_with_salt(&code, &codes::new_salt()?);
    let tx = store.begin()?;
    if let Some(config) = texted {
        if let Err(limited) = count_text(&*tx, config, user, purpose, now)? {
            tx.commit()?;
            return Err(limited);
        }
    }
    tx.put_one_time_code(user, purpose, &hash, now + purpose.shape().1, attempts)?;
    audit::record(&*tx, now, user, event, detail)?;
    tx.commit()?;
    Ok(code)
}

/// Voids a code that could not be texted. The audit trail already says it
/// was sent (recorded with the code, before sending), so say it was not.
fn void_code(store: &mut dyn Store, user: &str, purpose: OneTimePurpose, now: i64) {
    let Ok(tx) = store.begin() else { return };
    if void_code_in(&*tx, user, purpose, now).is_ok() {
        let _ = tx.commit();
    }
}

fn void_code_in(tx: &dyn Tx, user: &str, purpose: OneTimePurpose, now: i64) -> StoreResult<()> {
    tx.delete_one_time_codes(user, purpose)?;
    let detail = format!("purpose={}", purpose.as_str());
    audit::record(tx, now, user, AuditEvent::SmsSendFailed, &detail)
}

/// Texts a 7-digit login code (valid 5 minutes, single use) to `phone`.
pub fn send_login_code(
    store: &mut dyn Store,
    config: &Config,
    sender: &dyn SmsSender,
    user: &str,
    phone: &str,
    now: i64,
) -> Result<()> {
    // Wrong codes are limited by the lockout, like any code.
    let attempts = config.lockout.deny;
    let code = store_code(
        store,
        Some(config),
        user,
        OneTimePurpose::SmsLogin,
        attempts,
        now,
        AuditEvent::SmsCodeSent,
        "",
    )?;
    let text = Zeroizing::new(format!(
        "Your login code is {}. It expires in 5 minutes.",
        code.as_str()
    ));
    sender.send(phone, &text).map_err(|e| {
        void_code(store, user, OneTimePurpose::SmsLogin, now);
        OnetimeError::Sms(e)
    })
}

/// Adds a pending SMS device and texts it a 4-digit PIN (valid 10 minutes,
/// three tries). One SMS device per user.
pub fn start_sms_enrollment(
    store: &mut dyn Store,
    config: &Config,
    sender: &dyn SmsSender,
    user: &str,
    phone: &str,
    now: i64,
) -> Result<()> {
    check_phone(phone).map_err(OnetimeError::BadPhone)?;
    if !sender.available() {
        return Err(OnetimeError::Sms(SmsError::NotConfigured));
    }
    {
        let tx = store.begin()?;
        crate::enroll::purge_stale_pending(&*tx, user, now)?;
        if sms_device(&*tx, user)?.is_some() {
            return Err(OnetimeError::HasSmsDevice { user: user.into() });
        }
        // Counted with the pending device: over the limit, no device is
        // left behind to delete.
        if let Err(limited) = count_text(&*tx, config, user, OneTimePurpose::SmsEnroll, now)? {
            tx.commit()?;
            return Err(limited);
        }
        tx.insert_device(&Device {
            id: 0,
            user: user.to_owned(),
            name: SMS_NAME.to_owned(),
            verified: false,
            created: now,
            factor: Factor::Sms {
                phone: phone.to_owned(),
            },
        })?;
        audit::record(
            &*tx,
            now,
            user,
            AuditEvent::DevicePending,
            &format!("device=sms phone={}", mask_phone(phone)),
        )?;
        tx.commit()?;
    }
    let pin = store_code(
        store,
        None,
        user,
        OneTimePurpose::SmsEnroll,
        PIN_TRIES,
        now,
        AuditEvent::SmsPinSent,
        "",
    )?;
    let text = Zeroizing::new(format!(
        "Your PIN to confirm this phone is {}. It expires in 10 minutes.",
        pin.as_str()
    ));
    sender.send(phone, &text).map_err(|e| {
        drop_unsent_phone(store, user, now);
        OnetimeError::PinNotSent(e)
    })
}

/// A phone whose PIN never left could never be verified, and as a pending
/// device it would block adding it again: remove it with its PIN.
fn drop_unsent_phone(store: &mut dyn Store, user: &str, now: i64) {
    let Ok(tx) = store.begin() else { return };
    let dropped = (|| -> StoreResult<()> {
        void_code_in(&*tx, user, OneTimePurpose::SmsEnroll, now)?;
        if let Some((device, _)) = sms_device(&*tx, user)?.filter(|(d, _)| !d.verified) {
            tx.delete_device(user, &device.name)?;
            audit::record(
                &*tx,
                now,
                user,
                AuditEvent::DeviceDeleted,
                "device=sms reason=pin-not-sent",
            )?;
        }
        Ok(())
    })();
    if dropped.is_ok() {
        let _ = tx.commit();
    }
}

/// Finishes SMS enrollment with the texted PIN. The PIN's PBKDF2 run
/// happens on a snapshot, before the write transaction that checks the
/// lock, verifies and records (see `attempt::attempt_code`).
pub fn verify_sms_pin(
    store: &mut dyn Store,
    config: &Config,
    user: &str,
    typed: &str,
    now: i64,
) -> Result<()> {
    let pin = codes::normalize_digits(typed).filter(|d| d.len() == 4);
    let mut derived = pin.as_deref().map(|p| codes::Derivations::new(p));
    for _ in 0..crate::attempt::PREPARE_ROUNDS {
        if let Some(derived) = &mut derived {
            let snapshot = store.begin_read()?;
            let pending = snapshot.one_time_codes(user, now)?;
            if let Some(pin) = pending
                .iter()
                .find(|c| c.purpose == OneTimePurpose::SmsEnroll)
            {
                derived.prepare(&pin.hash);
            }
        }
        if let Ok(done) = verify_sms_pin_in(store, config, user, derived.as_ref(), now)? {
            return Ok(done);
        }
    }
    Err(OnetimeError::PinChanging { user: user.into() })
}

/// `verify_sms_pin`'s write transaction; `NotPrepared` when the PIN
/// changed since the snapshot.
fn verify_sms_pin_in(
    store: &mut dyn Store,
    config: &Config,
    user: &str,
    derived: Option<&codes::Derivations>,
    now: i64,
) -> Result<std::result::Result<(), codes::NotPrepared>> {
    let tx = store.begin()?;
    if lockout::is_locked(&tx.account(user)?, &config.lockout, now) {
        return Err(OnetimeError::Locked { user: user.into() });
    }
    let Some((device, phone)) = sms_device(&*tx, user)? else {
        return Err(OnetimeError::NoSmsDevice { user: user.into() });
    };
    if device.verified {
        return Err(OnetimeError::AlreadyVerified { user: user.into() });
    }
    let pending = tx
        .one_time_codes(user, now)?
        .into_iter()
        .find(|c| c.purpose == OneTimePurpose::SmsEnroll);
    let Some(pending) = pending else {
        tx.commit()?; // keep the purge of the expired PIN
        return Err(OnetimeError::PinGone);
    };
    let matches = match derived.map(|d| d.matches(&pending.hash)) {
        None => false,
        Some(Ok(matches)) => matches,
        Some(Err(changed)) => return Ok(Err(changed)),
    };
    if !matches {
        let left = pending.attempts_left.saturating_sub(1);
        if left == 0 {
            tx.delete_one_time_code(pending.id)?;
        } else {
            tx.set_attempts_left(pending.id, left)?;
        }
        audit::record(
            &*tx,
            now,
            user,
            AuditEvent::DeviceVerifyFailed,
            &format!("device=sms tries_left={left}"),
        )?;
        tx.commit()?;
        return Err(OnetimeError::WrongPin { left });
    }
    tx.delete_one_time_code(pending.id)?;
    tx.mark_verified(device.id)?;
    audit::record(
        &*tx,
        now,
        user,
        AuditEvent::DeviceEnrolled,
        &format!("device=sms kind=sms phone={}", mask_phone(&phone)),
    )?;
    tx.commit()?;
    Ok(Ok(()))
}

/// What `mfa admin temp-code` did.
pub enum TempCode {
    /// Shown to the administrator (`--show`).
    Shown(Zeroizing<String>),
    /// Texted to the user's phone (masked number).
    Texted(String),
}

/// Makes an 8-digit code, valid five minutes, single use. Refused for a
/// locked account: the administrator unlocks it first, deliberately.
/// `by` names the administrator for the audit trail (`by=NAME`).
pub fn issue_temp_code(
    store: &mut dyn Store,
    config: &Config,
    sender: &dyn SmsSender,
    user: &str,
    show: bool,
    now: i64,
    by: &str,
) -> Result<TempCode> {
    let phone = {
        let tx = store.begin()?;
        if lockout::is_locked(&tx.account(user)?, &config.lockout, now) {
            return Err(OnetimeError::LockedTempCode { user: user.into() });
        }
        sms_device(&*tx, user)?
            .filter(|(d, _)| d.verified)
            .map(|(_, phone)| phone)
    };
    let phone = match (show, phone) {
        (true, _) => None,
        (false, Some(phone)) => Some(phone),
        (false, None) => return Err(OnetimeError::NoPhoneForTempCode { user: user.into() }),
    };
    let how = if show { "shown" } else { "texted" };
    let code = store_code(
        store,
        phone.is_some().then_some(config),
        user,
        OneTimePurpose::Temporary,
        TEMP_CODE_TRIES,
        now,
        AuditEvent::TempCodeIssued,
        &format!("delivery={how} {by}"),
    )?;
    let Some(phone) = phone else {
        return Ok(TempCode::Shown(code));
    };
    let text = Zeroizing::new(format!(
        "Your temporary login code is {}. It expires in 5 minutes.",
        code.as_str()
    ));
    sender.send(&phone, &text).map_err(|e| {
        void_code(store, user, OneTimePurpose::Temporary, now);
        OnetimeError::Sms(e)
    })?;
    Ok(TempCode::Texted(mask_phone(&phone)))
}
