//! One guess-limited attempt: inside a single exclusive transaction, check
//! the lock, verify the code, record the result. Parallel attempts therefore
//! never get more guesses than `lockout.deny`, nor use one code twice.
#![forbid(unsafe_code)]

use crate::audit;
use crate::codes::{self, OneTimePurpose};
use crate::config::Config;
use crate::lockout;
use crate::secret::constant_time_eq;
use crate::store::{Factor, Store, StoreResult, Tx};
use crate::totp;
use crate::users::UserInfo;

/// Longest input we even look at; anything longer is simply wrong.
pub const MAX_CODE_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Totp { device: String },
    Bypass { left: usize },
    Sms,
    Temporary,
}

impl Accepted {
    pub fn method(&self) -> &'static str {
        match self {
            Accepted::Totp { .. } => "totp",
            Accepted::Bypass { .. } => "bypass",
            Accepted::Sms => "sms",
            Accepted::Temporary => "temporary",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Accepted(Accepted),
    /// Wrong code, counted. `locked_now` when this failure locked the account.
    Wrong {
        failures: u32,
        locked_now: bool,
    },
    /// Refused without looking at the code, and not counted.
    Locked,
}

/// What the caller is doing, for the audit trail (e.g. `service=sshd rhost=...`).
pub struct Context<'a> {
    pub detail: &'a str,
}

/// Verifies `typed` against every factor of `user` and records the outcome.
/// `password` is the first factor just entered: a code equal to it is wrong
/// (sshd's password method answers every prompt with the password).
pub fn attempt_code(
    store: &mut dyn Store,
    config: &Config,
    user: &UserInfo,
    typed: &[u8],
    password: Option<&[u8]>,
    now: i64,
    ctx: &Context<'_>,
) -> StoreResult<AttemptResult> {
    let tx = store.begin()?;
    let account = lockout::current(tx.account(&user.name)?, &config.lockout, now);
    if lockout::is_locked(&account, &config.lockout, now) {
        return Ok(AttemptResult::Locked);
    }
    let equals_password = password.is_some_and(|p| !p.is_empty() && constant_time_eq(p, typed));
    let accepted = if equals_password || typed.len() > MAX_CODE_BYTES {
        None
    } else {
        match std::str::from_utf8(typed) {
            Ok(text) => match_code(&*tx, config, &user.name, text.trim(), now)?,
            Err(_) => None,
        }
    };
    match accepted {
        Some(accepted) => {
            tx.put_account(&user.name, &Default::default())?;
            let detail = format!("method={} {}", accepted.method(), ctx.detail);
            audit::record(&*tx, now, &user.name, "code-accepted", detail.trim_end())?;
            // A TOTP success spends nothing and only lowers the failure
            // count, so it skips the fsync every login would otherwise pay.
            // Losing it to a power cut within seconds would re-open its
            // replay step (for an observer who is already inside the
            // window) and keep the failures it reset, which errs safe. A
            // spent bypass, SMS or temporary code must stay spent: synced.
            if matches!(accepted, Accepted::Totp { .. }) {
                tx.commit_unsynced()?;
            } else {
                tx.commit()?;
            }
            Ok(AttemptResult::Accepted(accepted))
        }
        None => {
            let why = if equals_password {
                "reason=code-equals-password "
            } else {
                ""
            };
            let result =
                record_failure_in(&*tx, config, user, now, &format!("{why}{}", ctx.detail))?;
            tx.commit()?;
            Ok(result)
        }
    }
}

/// Counts a failure that happened elsewhere (a wrong password, in `authfail`
/// mode). A locked account stays locked and is not counted further.
pub fn record_failure(
    store: &mut dyn Store,
    config: &Config,
    user: &UserInfo,
    now: i64,
    ctx: &Context<'_>,
) -> StoreResult<AttemptResult> {
    let tx = store.begin()?;
    let account = lockout::current(tx.account(&user.name)?, &config.lockout, now);
    if lockout::is_locked(&account, &config.lockout, now) {
        return Ok(AttemptResult::Locked);
    }
    let result = record_failure_in(&*tx, config, user, now, ctx.detail)?;
    tx.commit()?;
    Ok(result)
}

pub(crate) fn record_failure_in(
    tx: &dyn Tx,
    config: &Config,
    user: &UserInfo,
    now: i64,
    detail: &str,
) -> StoreResult<AttemptResult> {
    let account = lockout::current(tx.account(&user.name)?, &config.lockout, now);
    let (next, locked_now) =
        lockout::record_failure(&account, &config.lockout, now, user.is_root());
    tx.put_account(&user.name, &next)?;
    let detail = format!("failures={} {detail}", next.failures);
    audit::record(tx, now, &user.name, "failure", detail.trim_end())?;
    if locked_now {
        audit::record(
            tx,
            now,
            &user.name,
            "locked",
            &format!("failures={}", next.failures),
        )?;
    }
    Ok(AttemptResult::Wrong {
        failures: next.failures,
        locked_now,
    })
}

/// Whether the account is locked now (read inside a transaction of its own).
pub fn is_locked(
    store: &mut dyn Store,
    config: &Config,
    user: &str,
    now: i64,
) -> StoreResult<bool> {
    let tx = store.begin()?;
    let account = tx.account(user)?;
    Ok(lockout::is_locked(&account, &config.lockout, now))
}

/// Finds the factor a code belongs to and consumes it (replay step, single
/// use). Cheap checks first: a six-digit code never costs a PBKDF2 run.
fn match_code(
    tx: &dyn Tx,
    config: &Config,
    user: &str,
    text: &str,
    now: i64,
) -> StoreResult<Option<Accepted>> {
    if let Some(digits) = codes::normalize_digits(text) {
        for device in tx.devices(user)?.iter().filter(|d| d.verified) {
            if let Factor::Totp {
                secret,
                params,
                window,
                last_step,
            } = &device.factor
            {
                let window = window.unwrap_or(config.totp.window);
                if let Some(step) = totp::verify(secret, *params, &digits, now, window, *last_step)
                {
                    tx.set_last_step(device.id, step)?;
                    return Ok(Some(Accepted::Totp {
                        device: device.name.clone(),
                    }));
                }
            }
        }
        let live = tx.one_time_codes(user, now)?;
        for (purpose, kind) in [
            (OneTimePurpose::SmsLogin, Accepted::Sms),
            (OneTimePurpose::Temporary, Accepted::Temporary),
        ] {
            if digits.len() != purpose.shape().0 {
                continue;
            }
            let mut codes = live.iter().filter(|c| c.purpose == purpose).peekable();
            if codes.peek().is_none() {
                // The same work as with a live code: how long a wrong code
                // takes must not tell whether a text or a temporary code
                // is waiting for the account.
                let _ = codes::decoy_hash().matches(&digits);
                continue;
            }
            for code in codes {
                if code.hash.matches(&digits) {
                    tx.delete_one_time_code(code.id)?;
                    return Ok(Some(kind));
                }
                // A wrong guess of this shape is one of the code's tries;
                // at none left the code is void (a temporary code has one).
                match code.attempts_left.saturating_sub(1) {
                    0 => tx.delete_one_time_code(code.id)?,
                    left => tx.set_attempts_left(code.id, left)?,
                }
            }
        }
    }
    if let Some(normalized) = codes::normalize_bypass(text) {
        let stored = tx.bypass_codes(user)?;
        if let Some(i) = codes::find_match(&normalized, stored.iter().map(|c| &c.hash)) {
            tx.delete_bypass_code(stored[i].id)?;
            return Ok(Some(Accepted::Bypass {
                left: stored.len() - 1,
            }));
        }
    }
    Ok(None)
}
