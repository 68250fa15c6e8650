//! The audit trail: every security event goes to syslog (facility authpriv)
//! and to the database's audit table. Callers pass fixed words and names
//! only; no code, PIN or secret is ever an argument here.
#![forbid(unsafe_code)]

use crate::store::{AuditEntry, AuditLog, StoreResult};
use std::sync::{Mutex, OnceLock};
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

static IDENT: OnceLock<&'static str> = OnceLock::new();
static LOGGER: Mutex<Option<Logger<LoggerBackend, Formatter3164>>> = Mutex::new(None);

/// Sets the syslog ident (`pam_mfa` in the module, `mfa` in the command).
pub fn set_ident(ident: &'static str) {
    let _ = IDENT.set(ident);
}

/// Sends one line to syslog. Logging must never fail a login, so errors
/// (no syslog daemon, full socket) are dropped after one reconnect attempt.
pub fn syslog(level: Level, message: &str) {
    let mut guard = LOGGER.lock().unwrap_or_else(|poisoned| {
        // A panic while logging (caught at the PAM boundary) must not
        // silence this process for good, the line saying "panic" included.
        // The connection may be mid-message: start a new one.
        let mut guard = poisoned.into_inner();
        *guard = None;
        LOGGER.clear_poison();
        guard
    });
    for _ in 0..2 {
        if guard.is_none() {
            *guard = syslog::unix(Formatter3164 {
                facility: Facility::LOG_AUTHPRIV,
                hostname: None,
                process: IDENT.get().copied().unwrap_or("pam_mfa").into(),
                pid: std::process::id(),
            })
            .ok();
        }
        let Some(logger) = guard.as_mut() else {
            return;
        };
        let sent = match level {
            Level::Error => logger.err(message),
            Level::Warning => logger.warning(message),
            Level::Notice => logger.notice(message),
            Level::Info => logger.info(message),
            Level::Debug => logger.debug(message),
        };
        if sent.is_ok() {
            return;
        }
        *guard = None;
    }
}

/// Records an event in the audit table (inside the caller's transaction, so
/// it commits or rolls back with the change it describes) and in syslog.
pub fn record(
    log: &dyn AuditLog,
    now: i64,
    user: &str,
    event: &str,
    detail: &str,
) -> StoreResult<()> {
    let level = match event {
        "locked" | "failure" | "sms-limited" => Level::Notice,
        _ => Level::Info,
    };
    syslog(level, &format_line(user, event, detail));
    log.append_audit(&AuditEntry {
        time: now,
        user: user.to_owned(),
        event: event.to_owned(),
        detail: detail.to_owned(),
    })
}

/// `user=alice event=wrong-code service=sshd ...`; user names are quoted
/// when they hold anything unusual so a log line cannot be forged.
pub fn format_line(user: &str, event: &str, detail: &str) -> String {
    let user = if crate::users::plausible_name(user) {
        user.to_owned()
    } else {
        format!("{user:?}")
    };
    if detail.is_empty() {
        format!("user={user} event={event}")
    } else {
        format!("user={user} event={event} {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_logging_does_not_silence_later_lines() {
        let _ = std::panic::catch_unwind(|| {
            let _held = LOGGER.lock();
            panic!("a panic while logging");
        });
        assert!(LOGGER.is_poisoned());
        syslog(Level::Debug, "after a panic");
        assert!(!LOGGER.is_poisoned());
    }

    #[test]
    fn odd_user_names_cannot_forge_lines() {
        let line = format_line("evil\nuser=root event=unlock", "wrong-code", "");
        assert!(!line.contains('\n'));
        assert!(line.starts_with("user=\"evil\\nuser=root"));
    }
}
