//! The audit trail: every security event goes to syslog (facility authpriv)
//! and to the database's audit table. Callers pass fixed words and names
//! only; no code, PIN or secret is ever an argument here.

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

/// What an audit row or log line is about. The words are stored in the
/// audit table and logged as `event=`; they never change (see pam_mfa(8),
/// LOGGING).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvent {
    /// A command the daemon refused to run for its caller.
    AdminRefused,
    /// Old audit rows were deleted (`audit_days`).
    AuditPurged,
    /// A new set of bypass codes.
    BypassGenerated,
    /// A code was accepted at login or step-up.
    CodeAccepted,
    /// A command the daemon ran (syslog only).
    Command,
    /// A device was deleted.
    DeviceDeleted,
    /// A device was set up and verified at once.
    DeviceEnrolled,
    /// An unfinished setup was removed.
    DeviceExpired,
    /// A device was imported from another tool.
    DeviceImported,
    /// A device waits for its first code or PIN.
    DevicePending,
    /// A pending device was proved with a code.
    DeviceVerified,
    /// A wrong code or PIN for a pending device.
    DeviceVerifyFailed,
    /// Every device of an account was removed.
    DevicesRemoved,
    /// A failed attempt, counted toward the lockout.
    Failure,
    /// A run of failures ended without a code.
    FailuresReset,
    /// The failure that locked the account.
    Locked,
    /// A login asked of the daemon (syslog only).
    Login,
    /// An attempt on an account already locked.
    LoginLocked,
    /// A program asked about an account not its own.
    LoginRefused,
    /// The policy was changed.
    PolicyChanged,
    /// The offer to set up a device was declined.
    SetupDeclined,
    /// A login code was texted.
    SmsCodeSent,
    /// A text was refused by the hourly limits.
    SmsLimited,
    /// An enrollment PIN was texted.
    SmsPinSent,
    /// A text could not be sent.
    SmsSendFailed,
    /// A step-up for a command (syslog only).
    StepUp,
    /// The database was created.
    StoreCreated,
    /// The database was copied to another engine.
    StoreMigrated,
    /// An administrator issued a temporary code.
    TempCodeIssued,
    /// An administrator unlocked the account.
    Unlocked,
}

impl AuditEvent {
    /// The word stored and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::AdminRefused => "admin-refused",
            AuditEvent::AuditPurged => "audit-purged",
            AuditEvent::BypassGenerated => "bypass-generated",
            AuditEvent::CodeAccepted => "code-accepted",
            AuditEvent::Command => "command",
            AuditEvent::DeviceDeleted => "device-deleted",
            AuditEvent::DeviceEnrolled => "device-enrolled",
            AuditEvent::DeviceExpired => "device-expired",
            AuditEvent::DeviceImported => "device-imported",
            AuditEvent::DevicePending => "device-pending",
            AuditEvent::DeviceVerified => "device-verified",
            AuditEvent::DeviceVerifyFailed => "device-verify-failed",
            AuditEvent::DevicesRemoved => "devices-removed",
            AuditEvent::Failure => "failure",
            AuditEvent::FailuresReset => "failures-reset",
            AuditEvent::Locked => "locked",
            AuditEvent::Login => "login",
            AuditEvent::LoginLocked => "login-locked",
            AuditEvent::LoginRefused => "login-refused",
            AuditEvent::PolicyChanged => "policy-changed",
            AuditEvent::SetupDeclined => "setup-declined",
            AuditEvent::SmsCodeSent => "sms-code-sent",
            AuditEvent::SmsLimited => "sms-limited",
            AuditEvent::SmsPinSent => "sms-pin-sent",
            AuditEvent::SmsSendFailed => "sms-send-failed",
            AuditEvent::StepUp => "step-up",
            AuditEvent::StoreCreated => "store-created",
            AuditEvent::StoreMigrated => "store-migrated",
            AuditEvent::TempCodeIssued => "temp-code-issued",
            AuditEvent::Unlocked => "unlocked",
        }
    }

    /// The syslog level of its line: what may need a look (a failure, a
    /// lock, a refusal, a limit) is a notice, the rest information.
    pub fn level(self) -> Level {
        match self {
            AuditEvent::Locked
            | AuditEvent::Failure
            | AuditEvent::LoginLocked
            | AuditEvent::AdminRefused
            | AuditEvent::SmsLimited => Level::Notice,
            _ => Level::Info,
        }
    }
}

static IDENT: OnceLock<&'static str> = OnceLock::new();
static HOST: OnceLock<String> = OnceLock::new();
static LOGGER: Mutex<Option<Logger<LoggerBackend, Formatter3164>>> = Mutex::new(None);

/// A panic while logging (caught at the PAM boundary) must not silence this
/// process for good, the line saying "panic" included. The connection may
/// be mid-message: a poisoned lock hands back `None`, so a new one is made.
fn lock_or_reset<T>(lock: &Mutex<Option<T>>) -> std::sync::MutexGuard<'_, Option<T>> {
    lock.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        *guard = None;
        lock.clear_poison();
        guard
    })
}

/// Sets the syslog ident (`pam_mfa` in the module, `mfa` in the command).
pub fn set_ident(ident: &'static str) {
    let _ = IDENT.set(ident);
}

/// This host's name, asked once per process: every audit row carries it,
/// so that rows of many hosts sharing one store can be told apart.
pub fn host_name() -> &'static str {
    HOST.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty() && !h.chars().any(char::is_control))
            .unwrap_or_else(|| "unknown".into())
    })
}

/// Sends one line to syslog. Logging must never fail a login, so errors
/// (no syslog daemon, full socket) are dropped after one reconnect attempt.
pub fn syslog(level: Level, message: &str) {
    let mut guard = lock_or_reset(&LOGGER);
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
/// it commits or rolls back with the change it describes) and in syslog,
/// once the transaction has committed: a line for a failure that was
/// rolled back would claim a count that never happened.
pub fn record(
    log: &dyn AuditLog,
    now: i64,
    user: &str,
    event: AuditEvent,
    detail: &str,
) -> StoreResult<()> {
    let detail = defang(detail);
    log.append_audit(&AuditEntry {
        time: now,
        host: host_name().to_owned(),
        user: user.to_owned(),
        event: event.as_str().to_owned(),
        detail: detail.clone(),
    })?;
    log.syslog_after_commit(event.level(), format_line(user, event, &detail));
    Ok(())
}

/// Deletes audit rows older than `audit_days` (none when 0) and records
/// the purge itself, so a trail that shrank says why. Returns the count.
pub fn purge_old(log: &dyn AuditLog, audit_days: u32, now: i64, by: &str) -> StoreResult<u32> {
    if audit_days == 0 {
        return Ok(0);
    }
    let before = now - i64::from(audit_days) * 86_400;
    let purged = log.purge_audit(before)?;
    if purged > 0 {
        record(
            log,
            now,
            by,
            AuditEvent::AuditPurged,
            &format!("rows={purged} before={before} audit_days={audit_days}"),
        )?;
    }
    Ok(purged)
}

/// `user=alice event=wrong-code service=sshd ...`; user names are quoted
/// when they hold anything unusual so a log line cannot be forged, nor
/// shown in another order (bidi controls such as U+202E).
pub fn format_line(user: &str, event: AuditEvent, detail: &str) -> String {
    let user = quote(user);
    let event = event.as_str();
    if detail.is_empty() {
        format!("user={user} event={event}")
    } else {
        format!("user={user} event={event} {}", defang(detail))
    }
}

/// A field of a log line as it is when it is plain printable ASCII
/// without quotes, `\\` or `=`; otherwise in double quotes, with control
/// and format characters (newlines, U+202E and the other bidi controls,
/// zero-width characters) escaped.
pub fn quote(field: &str) -> String {
    let plain = !field.is_empty()
        && field
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '='));
    if plain {
        field.to_owned()
    } else {
        format!("\"{}\"", escape(field))
    }
}

/// `field` in double quotes, escaped as [`quote`] does.
pub fn quoted(field: &str) -> String {
    format!("\"{}\"", escape(field))
}

/// `text` with every character that could hide or reorder what a reader
/// sees (controls, format characters, line separators) and every `"` and
/// `\\` escaped; the rest, non-ASCII letters included, as it is.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if invisible(c) || matches!(c, '"' | '\\') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A detail made of `key=value` words, some values already quoted: only
/// what could hide or reorder text is escaped, so quotes stay quotes.
pub fn defang(text: &str) -> String {
    if !text.chars().any(invisible) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if invisible(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Controls, and the format characters (Unicode category Cf) and
/// separators that display as nothing or change the order of what follows.
pub fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}'
            | '\u{17b5}' | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_logging_does_not_silence_later_lines() {
        // A lock of its own: tests on other threads log through LOGGER and
        // would clear its poison under this test's feet.
        let connection = Mutex::new(Some("mid-message"));
        let _ = std::panic::catch_unwind(|| {
            let _held = connection.lock();
            panic!("a panic while logging");
        });
        assert!(connection.is_poisoned());
        assert_eq!(*lock_or_reset(&connection), None, "a fresh connection");
        assert!(!connection.is_poisoned());
        syslog(Level::Debug, "after a panic");
    }

    #[test]
    fn odd_user_names_cannot_forge_lines() {
        let line = format_line("evil\nuser=root event=unlock", AuditEvent::Failure, "");
        assert!(!line.contains('\n'));
        assert!(line.starts_with("user=\"evil\\nuser=root"), "{line}");
    }

    #[test]
    fn bidi_and_invisible_characters_are_escaped() {
        let line = format_line(
            "mal\u{202e}txt.exe",
            AuditEvent::Failure,
            "service=\"su\u{2066}\"",
        );
        assert!(!line.chars().any(invisible), "{line}");
        assert!(line.contains("user=\"mal\\u{202e}txt.exe\""), "{line}");
        assert!(line.contains("service=\"su\\u{2066}\""), "{line}");
        assert_eq!(quote("alice"), "alice");
        assert_eq!(quote("first.last@example.com"), "first.last@example.com");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("j\u{f6}rg"), "\"j\u{f6}rg\"");
        assert_eq!(defang("x=\"a\u{200b}\""), "x=\"a\\u{200b}\"");
    }
}
