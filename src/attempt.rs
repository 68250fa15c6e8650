//! One guess-limited attempt: inside a single exclusive transaction, check
//! the lock, verify the code, record the result. Parallel attempts therefore
//! never get more guesses than `lockout.deny`, nor use one code twice. The
//! slow hashing comes before, outside that transaction.

use crate::audit::{self, AuditEvent};
use crate::codes::{self, Derivations, NotPrepared, OneTimePurpose};
use crate::config::Config;
use crate::lockout;
use crate::secret::constant_time_eq;
use crate::store::{Factor, Store, StoreError, StoreResult, Tx};
use crate::totp;
use crate::users::UserInfo;
use zeroize::Zeroizing;

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

/// How often the codes may change under an attempt (a text sent, a set
/// generated, a code spent by a parallel login) before it gives up.
pub(crate) const PREPARE_ROUNDS: usize = 3;

/// Verifies `typed` against every factor of `user` and records the outcome.
/// `password` is the first factor just entered: a code equal to it is wrong
/// (sshd's password method answers every prompt with the password).
///
/// The PBKDF2 runs a bypass-, SMS- or temporary-shaped code needs happen
/// first, on a read snapshot: the write transaction that checks the lock,
/// verifies and records then only compares bytes. If the stored codes
/// changed in between, it starts again from the snapshot.
pub fn attempt_code(
    store: &mut dyn Store,
    config: &Config,
    user: &UserInfo,
    typed: &[u8],
    password: Option<&[u8]>,
    now: i64,
    ctx: &Context<'_>,
) -> StoreResult<AttemptResult> {
    let equals_password = password.is_some_and(|p| !p.is_empty() && constant_time_eq(p, typed));
    let mut candidate = if equals_password || typed.len() > MAX_CODE_BYTES {
        None
    } else {
        std::str::from_utf8(typed)
            .ok()
            .map(|text| Candidate::new(text.trim()))
    };
    for _ in 0..PREPARE_ROUNDS {
        if let Some(candidate) = candidate.as_mut().filter(|c| c.may_need_pbkdf2()) {
            let snapshot = store.begin_read()?;
            let account = lockout::current(snapshot.account(&user.name)?, &config.lockout, now);
            if lockout::is_locked(&account, &config.lockout, now) {
                return Ok(AttemptResult::Locked);
            }
            candidate.prepare(&*snapshot, config, &user.name, now)?;
        }
        let tx = store.begin()?;
        let account = lockout::current(tx.account(&user.name)?, &config.lockout, now);
        if lockout::is_locked(&account, &config.lockout, now) {
            return Ok(AttemptResult::Locked);
        }
        let accepted = match &candidate {
            None => None,
            Some(candidate) => match match_code(&*tx, config, &user.name, candidate, now)? {
                Ok(accepted) => accepted,
                // Dropping `tx` undoes any try it took off a code.
                Err(NotPrepared) => continue,
            },
        };
        return finish_attempt(tx, config, user, accepted, equals_password, now, ctx);
    }
    Err(StoreError::Faulty(format!(
        "the codes of {} changed during each of {PREPARE_ROUNDS} checks; try again",
        user.name
    )))
}

/// Records the verdict of `match_code` and commits.
fn finish_attempt(
    tx: Box<dyn Tx + '_>,
    config: &Config,
    user: &UserInfo,
    accepted: Option<Accepted>,
    equals_password: bool,
    now: i64,
    ctx: &Context<'_>,
) -> StoreResult<AttemptResult> {
    match accepted {
        Some(accepted) => {
            tx.put_account(&user.name, &Default::default())?;
            let detail = format!("method={} {}", accepted.method(), ctx.detail);
            audit::record(
                &*tx,
                now,
                &user.name,
                AuditEvent::CodeAccepted,
                detail.trim_end(),
            )?;
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
    audit::record(tx, now, &user.name, AuditEvent::Failure, detail.trim_end())?;
    if locked_now {
        audit::record(
            tx,
            now,
            &user.name,
            AuditEvent::Locked,
            &format!("failures={}", next.failures),
        )?;
    }
    Ok(AttemptResult::Wrong {
        failures: next.failures,
        locked_now,
    })
}

/// Whether the account is locked now, read from a snapshot: it waits for
/// no login in progress and holds none up.
pub fn is_locked(
    store: &mut dyn Store,
    config: &Config,
    user: &str,
    now: i64,
) -> StoreResult<bool> {
    let snapshot = store.begin_read()?;
    let account = snapshot.account(user)?;
    Ok(lockout::is_locked(&account, &config.lockout, now))
}

/// What was typed, in each shape a code can have, with the PBKDF2 work it
/// needs done ahead of the write transaction.
struct Candidate {
    digits: Option<Derivable>,
    bypass: Option<Derivable>,
}

struct Derivable {
    normalized: Zeroizing<String>,
    derived: Derivations,
}

impl Derivable {
    fn new(normalized: Zeroizing<String>) -> Self {
        Derivable {
            derived: Derivations::new(&normalized),
            normalized,
        }
    }
}

impl Candidate {
    fn new(text: &str) -> Self {
        Candidate {
            digits: codes::normalize_digits(text).map(Derivable::new),
            bypass: codes::normalize_bypass(text).map(Derivable::new),
        }
    }

    /// Whether the code has a shape that is checked with PBKDF2: six digits,
    /// the usual TOTP code, is not, and skips the snapshot altogether.
    fn may_need_pbkdf2(&self) -> bool {
        let one_time_shape = |d: &Derivable| {
            [OneTimePurpose::SmsLogin, OneTimePurpose::Temporary]
                .iter()
                .any(|p| p.shape().0 == d.normalized.len())
        };
        self.bypass.is_some() || self.digits.as_ref().is_some_and(one_time_shape)
    }

    /// Derives the code under every salt `match_code` will meet, as the
    /// snapshot has them. The same work whether or not a live SMS or
    /// temporary code waits: the number of PBKDF2 runs must not tell.
    fn prepare(
        &mut self,
        snapshot: &dyn Tx,
        config: &Config,
        user: &str,
        now: i64,
    ) -> StoreResult<()> {
        if let Some(digits) = &mut self.digits {
            if totp_match(snapshot, config, user, &digits.normalized, now)?.is_some() {
                // As in `match_code`: a TOTP code never costs a PBKDF2 run.
                return Ok(());
            }
            let live = snapshot.one_time_codes(user, now)?;
            for purpose in [OneTimePurpose::SmsLogin, OneTimePurpose::Temporary] {
                if digits.normalized.len() != purpose.shape().0 {
                    continue;
                }
                let mut hashes = live
                    .iter()
                    .filter(|c| c.purpose == purpose)
                    .map(|c| &c.hash)
                    .peekable();
                if hashes.peek().is_none() {
                    digits.derived.prepare(codes::decoy_hash());
                }
                digits.derived.prepare_all(hashes);
            }
        }
        if let Some(bypass) = &mut self.bypass {
            let stored = snapshot.bypass_codes(user)?;
            bypass.derived.prepare_all(stored.iter().map(|c| &c.hash));
        }
        Ok(())
    }
}

/// The verified TOTP device `digits` is a fresh code of, and its step.
fn totp_match(
    tx: &dyn Tx,
    config: &Config,
    user: &str,
    digits: &str,
    now: i64,
) -> StoreResult<Option<(i64, String, i64)>> {
    for device in tx.devices(user)?.iter().filter(|d| d.verified) {
        if let Factor::Totp {
            secret,
            params,
            window,
            last_step,
        } = &device.factor
        {
            let window = window.unwrap_or_else(|| config.totp.window.into());
            if let Some(step) = totp::verify_in(secret, *params, digits, now, window, *last_step) {
                return Ok(Some((device.id, device.name.clone(), step)));
            }
        }
    }
    Ok(None)
}

/// Finds the factor a code belongs to and consumes it (replay step, single
/// use). Cheap checks first: a six-digit code never costs a PBKDF2 run, and
/// the PBKDF2 runs were made beforehand (`Candidate::prepare`); a code
/// whose salt was not prepared means the codes changed since.
fn match_code(
    tx: &dyn Tx,
    config: &Config,
    user: &str,
    candidate: &Candidate,
    now: i64,
) -> StoreResult<Result<Option<Accepted>, NotPrepared>> {
    if let Some(digits) = &candidate.digits {
        if let Some((id, device, step)) = totp_match(tx, config, user, &digits.normalized, now)? {
            tx.set_last_step(id, step)?;
            return Ok(Ok(Some(Accepted::Totp { device })));
        }
        let live = tx.one_time_codes(user, now)?;
        for (purpose, kind) in [
            (OneTimePurpose::SmsLogin, Accepted::Sms),
            (OneTimePurpose::Temporary, Accepted::Temporary),
        ] {
            if digits.normalized.len() != purpose.shape().0 {
                continue;
            }
            for code in live.iter().filter(|c| c.purpose == purpose) {
                let matched = match digits.derived.matches(&code.hash) {
                    Ok(m) => m,
                    Err(NotPrepared) => return Ok(Err(NotPrepared)),
                };
                if matched {
                    tx.delete_one_time_code(code.id)?;
                    return Ok(Ok(Some(kind)));
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
    if let Some(bypass) = &candidate.bypass {
        let stored = tx.bypass_codes(user)?;
        match bypass.derived.find(stored.iter().map(|c| &c.hash)) {
            Err(NotPrepared) => return Ok(Err(NotPrepared)),
            Ok(Some(i)) => {
                tx.delete_bypass_code(stored[i].id)?;
                return Ok(Ok(Some(Accepted::Bypass {
                    left: stored.len() - 1,
                })));
            }
            Ok(None) => {}
        }
    }
    Ok(Ok(None))
}
