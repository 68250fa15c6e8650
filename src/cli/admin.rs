//! `mfa admin policy|users|unlock|import-google-authenticator` (`admin show`
//! shares `status`'s view).

use super::context::{self, Ctx};
use super::output::{self, printable};
use crate::audit::{self, AuditEvent};
use crate::cli::error::{CliError, Result};
use crate::config::{Algorithm, Policy};
use crate::google_auth::{self, MAX_FILE_BYTES};
use crate::lockout;
use crate::policy;
use crate::seal::{KeyError, SealKey};
use crate::store::{Account, Device, Factor, Store, UserSummary};
use crate::totp::{StepWindow, TotpParams};
use serde::Serialize;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// The device an import creates.
pub const IMPORTED_NAME: &str = "google-authenticator";

#[derive(Serialize)]
struct PolicyView {
    policy: Policy,
    /// "database" once an administrator set it, else "config".
    source: &'static str,
    changed: bool,
}

#[derive(Serialize)]
struct InitView {
    database: String,
    created: bool,
    schema_version: i64,
}

/// `mfa admin init`: the store exists once `Ctx::open` returns; say
/// whether this run made it (the packages run it at every upgrade).
pub fn init(ctx: &mut Ctx) -> Result<()> {
    let view = InitView {
        database: ctx.store.describe(),
        created: ctx.created,
        schema_version: ctx.store.schema_version()?,
    };
    if ctx.created {
        let detail = format!("database={:?} {}", view.database, ctx.by());
        let now = ctx.now();
        let tx = ctx.store.begin()?;
        audit::record(&*tx, now, &ctx.invoker, AuditEvent::StoreCreated, &detail)?;
        tx.commit()?;
    }
    if ctx.json {
        return output::json(&view);
    }
    output::text(&if view.created {
        format!("Created the database {}.", view.database)
    } else {
        format!(
            "The database {} exists already (schema version {}).",
            view.database, view.schema_version
        )
    })
}

pub fn policy(ctx: &mut Ctx, new: Option<Policy>) -> Result<()> {
    let now = ctx.now();
    let by = ctx.by();
    let tx = ctx.store.begin()?;
    let old = policy::current(&*tx, &ctx.config)?;
    let stored = tx.setting("policy")?.is_some();
    let view = match new {
        None => PolicyView {
            policy: old,
            source: if stored { "database" } else { "config" },
            changed: false,
        },
        Some(new) => {
            policy::set(&*tx, new)?;
            let detail = format!("policy={} previous={} {by}", new.as_str(), old.as_str());
            audit::record(&*tx, now, &ctx.invoker, AuditEvent::PolicyChanged, &detail)?;
            tx.commit()?;
            PolicyView {
                policy: new,
                source: "database",
                changed: new != old,
            }
        }
    };
    if ctx.json {
        return output::json(&view);
    }
    output::text(&match (new, view.source) {
        (Some(_), _) => format!("The account policy is now {}.", view.policy.as_str()),
        (None, "config") => format!(
            "The account policy is {} (from the config file; set it with `mfa admin policy required|optional`).",
            view.policy.as_str()
        ),
        (None, _) => format!("The account policy is {}.", view.policy.as_str()),
    })
}

pub fn users(ctx: &mut Ctx, only_locked: bool) -> Result<()> {
    let now = ctx.now();
    let tx = ctx.store.begin_read()?;
    let mut list: Vec<UserSummary> = Vec::new();
    for mut summary in tx.users()? {
        // The summary's flag ignores `unlock_after`; judge the lock as logins do.
        let account = lockout::current(tx.account(&summary.user)?, &ctx.config.lockout, now);
        summary.locked = lockout::is_locked(&account, &ctx.config.lockout, now);
        summary.failures = account.failures;
        if summary.locked || !only_locked {
            list.push(summary);
        }
    }
    drop(tx);
    if ctx.json {
        return output::json(&list);
    }
    if list.is_empty() {
        return output::text(if only_locked {
            "No account is locked."
        } else {
            "No account has devices, codes or failures."
        });
    }
    let mut text = format!("{:<24} {:>7} {:>8}  LOCKED", "USER", "DEVICES", "FAILURES");
    for u in &list {
        text.push_str(&format!(
            "\n{:<24} {:>7} {:>8}  {}",
            printable(&u.user),
            u.devices,
            u.failures,
            if u.locked { "yes" } else { "no" }
        ));
    }
    output::text(&text)
}

#[derive(Serialize)]
struct Unlocked<'a> {
    user: &'a str,
    was_locked: bool,
    failures_cleared: u32,
}

pub fn unlock(ctx: &mut Ctx, user: &str) -> Result<()> {
    context::check_user_name(user)?;
    let now = ctx.now();
    let by = ctx.by();
    let tx = ctx.store.begin()?;
    let account = tx.account(user)?;
    context::require_known_account(user, account != Account::default())?;
    let was_locked = lockout::is_locked(&account, &ctx.config.lockout, now);
    if account != Account::default() {
        tx.put_account(user, &Account::default())?;
        let detail = format!("was_locked={was_locked} failures={} {by}", account.failures);
        audit::record(&*tx, now, user, AuditEvent::Unlocked, &detail)?;
        tx.commit()?;
    }
    if ctx.json {
        return output::json(&Unlocked {
            user,
            was_locked,
            failures_cleared: account.failures,
        });
    }
    output::text(&if was_locked {
        format!(
            "{} is unlocked; its failure count is cleared.",
            printable(user)
        )
    } else if account.failures > 0 {
        format!(
            "{} was not locked; its {} failure(s) are cleared.",
            printable(user),
            account.failures
        )
    } else {
        format!("{} was not locked and had no failures.", printable(user))
    })
}

/// Reads at most `MAX_FILE_BYTES` (+1 to notice a larger file).
fn read_small_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CliError::NotFound(format!("{shown} does not exist")),
        _ => CliError::Failed(format!("cannot open {shown}: {e}")),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| CliError::Failed(format!("cannot read {shown}: {e}")))?;
    let too_large = || {
        CliError::Usage(format!(
            "{shown} is larger than {MAX_FILE_BYTES} bytes; it is not a google-authenticator file"
        ))
    };
    if !meta.is_file() {
        return Err(CliError::Usage(format!("{shown} is not a regular file")));
    }
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(too_large());
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_FILE_BYTES + 1));
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::Failed(format!("cannot read {shown}: {e}")))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

#[derive(Serialize)]
struct Imported<'a> {
    user: &'a str,
    name: &'static str,
    step: u32,
    /// Steps accepted behind now (+ clock_offset), and ahead.
    window: u32,
    window_ahead: u32,
    /// The phone's clock against the host's, in steps (TIME_SKEW).
    clock_offset: i64,
    /// The newest step used with pam_google_authenticator (DISALLOW_REUSE):
    /// codes up to it are refused.
    last_used_step: Option<i64>,
    bypass_codes_imported: usize,
    /// What pam_mfa does differently from the file's settings.
    notes: Vec<String>,
}

/// What the import does not carry over or does differently, one sentence
/// each, for the administrator (printed and in `--json`).
fn import_notes(ga: &google_auth::GaFile, config: &crate::config::Config) -> Vec<String> {
    let mut notes = Vec::new();
    if !ga.disallow_reuse {
        notes.push(
            "the file let a code be used more than once (it has no DISALLOW_REUSE line); \
             pam_mfa accepts each code once, so a user logging in twice within a step \
             waits for the next code"
                .to_owned(),
        );
    }
    if let Some((logins, seconds)) = ga.rate_limit {
        let unlock = match config.lockout.unlock_after {
            0 => "until an administrator unlocks it with `mfa admin unlock`".to_owned(),
            s => format!("for {s} seconds"),
        };
        notes.push(format!(
            "RATE_LIMIT ({logins} logins in {seconds} seconds) is not carried over: pam_mfa \
             locks the account after {} failed attempts in a row ([lockout] deny), {unlock}",
            config.lockout.deny
        ));
    }
    if ga.grace_lines > 0 {
        notes.push(format!(
            "{} LAST0..LAST9 line(s) ignored: they served pam_google_authenticator's \
             grace_period; pam_mfa asks for a code at every login",
            ga.grace_lines
        ));
    }
    if ga.skew_adjustment_pending {
        notes.push(
            "RESETTING_TIME_SKEW ignored: pam_google_authenticator was part way through \
             learning the phone's clock error, and pam_mfa does not learn it; if codes are \
             refused, set the phone's clock to automatic time"
                .to_owned(),
        );
    }
    notes
}

/// "codes from 1 step before to 2 steps after now", or "... after the
/// phone's time, 5 steps ahead of this host's (TIME_SKEW)".
fn describe_window(w: StepWindow) -> String {
    let steps = |n: u64| format!("{n} step{}", if n == 1 { "" } else { "s" });
    let mut text = format!(
        "codes from {} before to {} after ",
        steps(w.behind.into()),
        steps(w.ahead.into())
    );
    match w.offset {
        0 => text.push_str("now"),
        o => text.push_str(&format!(
            "the phone's time, {} {} this host's (TIME_SKEW)",
            steps(o.unsigned_abs()),
            if o > 0 { "ahead of" } else { "behind" }
        )),
    }
    text
}

pub fn import_google_authenticator(ctx: &mut Ctx, user: &str, path: &Path) -> Result<()> {
    context::check_user_name(user)?;
    // As `device add`: a typo must not leave a device nobody logs in with.
    context::require_system_user(user)?;
    let bytes = read_small_file(path)?;
    let ga = google_auth::parse(&bytes)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    // Scratch codes get one fresh salt, like a generated set.
    let salt = crate::codes::new_salt()?;
    let scratch: Vec<_> = ga
        .scratch_codes
        .iter()
        .map(|c| crate::codes::hash_with_salt(c, &salt))
        .collect();
    // pam_google_authenticator's own window (3 codes when the file names
    // none) around the phone's clock, and the last step it accepted.
    let window = ga.step_window();
    let notes = import_notes(&ga, &ctx.config);
    let now = ctx.now();
    let by = ctx.by();
    let tx = ctx.store.begin()?;
    tx.insert_device(&Device {
        id: 0,
        user: user.to_owned(),
        name: IMPORTED_NAME.to_owned(),
        verified: true,
        created: now,
        factor: Factor::Totp {
            secret: ga.secret.clone(),
            // pam_google_authenticator's codes are always SHA1, six digits.
            params: TotpParams {
                algorithm: Algorithm::SHA1,
                digits: 6,
                period: ga.step,
            },
            window: Some(window),
            last_step: ga.last_used_step,
        },
    })
    .map_err(|e| match CliError::from(e) {
        CliError::Conflict(_) => CliError::Conflict(format!(
            "{user} already has a device named \"{IMPORTED_NAME}\" (imported before?); to import \
             again, delete it first with `mfa --user {user} device delete {IMPORTED_NAME}`"
        )),
        e => e,
    })?;
    if !scratch.is_empty() {
        // Keep any codes the user already has: an import must not void them.
        let mut all: Vec<_> = tx.bypass_codes(user)?.into_iter().map(|c| c.hash).collect();
        all.extend(scratch.iter().cloned());
        tx.replace_bypass_codes(user, &all, now)?;
    }
    let last_used = ga
        .last_used_step
        .map_or_else(|| "none".to_owned(), |s| s.to_string());
    let detail = format!(
        "device={IMPORTED_NAME} kind=totp step={} window={} window_ahead={} clock_offset={} \
         last_used_step={last_used} scratch_codes={} {by}",
        ga.step,
        window.behind,
        window.ahead,
        window.offset,
        scratch.len()
    );
    audit::record(&*tx, now, user, AuditEvent::DeviceImported, &detail)?;
    tx.commit()?;
    if ctx.json {
        return output::json(&Imported {
            user,
            name: IMPORTED_NAME,
            step: ga.step,
            window: window.behind,
            window_ahead: window.ahead,
            clock_offset: window.offset,
            last_used_step: ga.last_used_step,
            bypass_codes_imported: scratch.len(),
            notes,
        });
    }
    let mut text = format!(
        "Imported {} as device \"{IMPORTED_NAME}\" of {} ({}-second codes; {}), \
         with {} scratch code(s) as bypass codes. The user's app keeps working; \
         remove {} once logins work.",
        path.display(),
        printable(user),
        ga.step,
        describe_window(window),
        scratch.len(),
        path.display()
    );
    if let Some(step) = ga.last_used_step {
        text.push_str(&format!(
            "\nCodes already used with pam_google_authenticator (up to step {step}) are refused."
        ));
    }
    for note in &notes {
        text.push_str(&format!("\nNote: {note}."));
    }
    output::text(&text)
}

#[derive(Serialize)]
struct KeyView {
    file: String,
    config_line: String,
}

/// `admin generate-key FILE`: a new key for `secrets_key_file`, written
/// 0600 by whoever runs it (root, for the daemon to accept it), never over
/// an existing file. The key itself is never printed.
pub fn generate_key(file: &Path, json: bool) -> Result<i32> {
    let key = SealKey::generate().map_err(|e| CliError::Failed(e.to_string()))?;
    key.write_new(file).map_err(|e| match e {
        KeyError::Exists(_) => CliError::Conflict(e.to_string()),
        _ => CliError::Failed(e.to_string()),
    })?;
    // The config wants an absolute path.
    let path = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    let path = path.to_string_lossy().into_owned();
    let config_line = format!("secrets_key_file = {}", toml::Value::String(path.clone()));
    if json {
        output::json(&KeyView {
            file: path,
            config_line,
        })?;
    } else {
        output::text(&format!(
            "Wrote a new secrets key to {path} (mode 0600).\n\
             To seal TOTP secrets and phone numbers with it, put this line in the config \
             (/etc/security/pam_mfa.toml):\n\n    {config_line}\n\n\
             Keep a copy of the key file in a safe place apart from the database backups: \
             sealed secrets cannot be read without it, and a backup holding both reveals them."
        ))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_file_limits() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, vec![b'A'; MAX_FILE_BYTES]).unwrap();
        assert_eq!(read_small_file(&ok).unwrap().len(), MAX_FILE_BYTES);
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'A'; MAX_FILE_BYTES + 1]).unwrap();
        let e = read_small_file(&big).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("larger than 4096 bytes"), "{e}");
        assert_eq!(
            read_small_file(&dir.path().join("none"))
                .unwrap_err()
                .exit_code(),
            6
        );
        assert_eq!(read_small_file(dir.path()).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn policy_change_and_unlock_are_stored_and_audited() {
        let (mut ctx, _dir) = context::test_ctx("admin");
        policy(&mut ctx, Some(Policy::Required)).unwrap();
        let locked = Account {
            failures: 6,
            locked_at: Some(ctx.now()),
            last_failure: Some(ctx.now()),
            locked_until: None,
        };
        let tx = ctx.store.begin().unwrap();
        assert_eq!(
            policy::current(&*tx, &ctx.config).unwrap(),
            Policy::Required
        );
        tx.put_account("bob", &locked).unwrap();
        tx.commit().unwrap();
        unlock(&mut ctx, "bob").unwrap();
        let tx = ctx.store.begin().unwrap();
        assert_eq!(tx.account("bob").unwrap(), Account::default());
        let events: Vec<String> = tx
            .audit_entries(None, None, 10)
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {} {}", e.user, e.event, e.detail))
            .collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[0].contains("policy-changed policy=required previous=optional"));
        assert!(events[1].starts_with("bob unlocked was_locked=true failures=6 by="));
        drop(tx);
        // Nothing to clear: a known name is told so, an unknown one is
        // refused as `temp-code` refuses it; neither writes anything.
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap()
            .name;
        unlock(&mut ctx, &me).unwrap();
        assert_eq!(unlock(&mut ctx, "bob").unwrap_err().exit_code(), 6);
        assert_eq!(
            ctx.store
                .begin()
                .unwrap()
                .audit_entries(None, None, 10)
                .unwrap()
                .len(),
            2
        );
    }
}

#[cfg(test)]
mod import_tests {
    use super::*;
    use crate::attempt::{self, Accepted, AttemptResult, Context};
    use crate::totp;
    use crate::users::UserInfo;

    #[test]
    fn an_imported_file_works_at_login_and_keeps_existing_bypass_codes() {
        let (mut ctx, dir) = context::test_ctx("import");
        // The import wants a user the system knows: whoever runs the test.
        let me = ctx.invoker.clone();
        let (_, old) = crate::cli::bypass::new_set(1).unwrap();
        let now = ctx.now();
        let tx = ctx.store.begin().unwrap();
        tx.replace_bypass_codes(&me, &old, now).unwrap();
        tx.commit().unwrap();
        let file = dir.path().join("ga");
        std::fs::write(
            &file,
            "JBSWY3DPEHPK3PXP\n\" WINDOW_SIZE 5\n\" TOTP_AUTH\n12345678\n87654321\n",
        )
        .unwrap();
        import_google_authenticator(&mut ctx, &me, &file).unwrap();
        let e = import_google_authenticator(&mut ctx, &me, &file).unwrap_err();
        assert_eq!(e.exit_code(), 7, "{e}");
        assert_eq!(
            ctx.store.begin().unwrap().bypass_codes(&me).unwrap().len(),
            3
        );

        let alice = UserInfo {
            name: me.clone(),
            uid: 1000,
            groups: vec![],
        };
        let secret = crate::secret::base32_decode("JBSWY3DPEHPK3PXP").unwrap();
        let params = TotpParams {
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
        };
        // WINDOW_SIZE 5 means two steps either side.
        let code = totp::code_for_step(&secret, params, totp::step_at(now, 30) - 2);
        let ctx_detail = Context { detail: "test" };
        let mut try_code = |typed: &str| {
            attempt::attempt_code(
                &mut ctx.store,
                &ctx.config,
                &alice,
                typed.as_bytes(),
                None,
                now,
                &ctx_detail,
            )
            .unwrap()
        };
        assert!(matches!(
            try_code(&code),
            AttemptResult::Accepted(Accepted::Totp { .. })
        ));
        assert!(matches!(
            try_code("87654321"),
            AttemptResult::Accepted(Accepted::Bypass { left: 2 })
        ));
        assert!(matches!(try_code("87654321"), AttemptResult::Wrong { .. }));
    }

    #[test]
    fn hotp_files_are_refused_with_the_parsers_message() {
        let (mut ctx, dir) = context::test_ctx("import_hotp");
        let me = ctx.invoker.clone();
        let file = dir.path().join("ga");
        std::fs::write(&file, "JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n").unwrap();
        let e = import_google_authenticator(&mut ctx, &me, &file).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("HOTP (counter-based)"), "{e}");
        assert!(ctx.store.begin().unwrap().devices(&me).unwrap().is_empty());
    }

    /// As `device add`: a name the system does not know is refused (exit 6)
    /// before the file is read, and nothing is written.
    #[test]
    fn an_unknown_user_is_refused_like_device_add() {
        let (mut ctx, dir) = context::test_ctx("import_unknown");
        let file = dir.path().join("ga");
        std::fs::write(&file, "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n").unwrap();
        let typo = "no-such-user-pam-mfa-test";
        let e = import_google_authenticator(&mut ctx, typo, &file).unwrap_err();
        let by_device_add = context::require_system_user(typo).unwrap_err();
        assert_eq!(e.exit_code(), 6, "{e}");
        assert_eq!(e.to_string(), by_device_add.to_string());
        let tx = ctx.store.begin().unwrap();
        assert!(tx.devices(typo).unwrap().is_empty());
        assert!(tx.audit_entries(None, None, 10).unwrap().is_empty());
        drop(tx);
    }

    /// The state pam_google_authenticator leaves: the steps it accepted
    /// and the phone's learnt skew. The last code used with it is refused,
    /// the next accepted, and both count on the phone's clock.
    #[test]
    fn the_last_used_step_and_the_skew_are_imported() {
        let (mut ctx, dir) = context::test_ctx("import_state");
        let me = ctx.invoker.clone();
        let now = ctx.now();
        let phone = totp::step_at(now, 30) + 7;
        let file = dir.path().join("ga");
        std::fs::write(
            &file,
            format!(
                "JBSWY3DPEHPK3PXP\n\" TIME_SKEW 7\n\" RESETTING_TIME_SKEW \n\
                 \" DISALLOW_REUSE {} {phone}\n\" WINDOW_SIZE 4\n\" TOTP_AUTH\n",
                phone - 1
            ),
        )
        .unwrap();
        import_google_authenticator(&mut ctx, &me, &file).unwrap();
        let tx = ctx.store.begin().unwrap();
        let devices = tx.devices(&me).unwrap();
        let Factor::Totp {
            window, last_step, ..
        } = &devices[0].factor
        else {
            panic!("{:?}", devices[0].factor)
        };
        assert_eq!(
            *window,
            Some(StepWindow {
                behind: 1,
                ahead: 2,
                offset: 7
            })
        );
        assert_eq!(*last_step, Some(phone));
        let audit = tx.audit_entries(None, None, 1).unwrap();
        assert!(
            audit[0].detail.contains(&format!(
                "window=1 window_ahead=2 clock_offset=7 last_used_step={phone} scratch_codes=0"
            )),
            "{}",
            audit[0].detail
        );
        drop(tx);
        let user = UserInfo {
            name: me.clone(),
            uid: 0,
            groups: vec![],
        };
        let secret = crate::secret::base32_decode("JBSWY3DPEHPK3PXP").unwrap();
        let params = TotpParams {
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
        };
        let mut try_step = |step: i64| {
            let code = totp::code_for_step(&secret, params, step);
            attempt::attempt_code(
                &mut ctx.store,
                &ctx.config,
                &user,
                code.as_bytes(),
                None,
                now,
                &Context { detail: "test" },
            )
            .unwrap()
        };
        // Used with pam_google_authenticator: refused here.
        assert!(matches!(try_step(phone), AttemptResult::Wrong { .. }));
        // The host's own step is far outside a phone 7 steps fast.
        assert!(matches!(try_step(phone - 7), AttemptResult::Wrong { .. }));
        // WINDOW_SIZE 4 reaches two steps ahead of the phone's time.
        assert!(matches!(
            try_step(phone + 2),
            AttemptResult::Accepted(Accepted::Totp { .. })
        ));
    }

    #[test]
    fn notes_say_what_is_not_carried_over() {
        let (ctx, _dir) = context::test_ctx("import_notes");
        let quiet = google_auth::parse(b"JBSWY3DPEHPK3PXP\n\" DISALLOW_REUSE\n").unwrap();
        assert!(import_notes(&quiet, &ctx.config).is_empty());
        let all = google_auth::parse(
            b"JBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3 30 1700000000\n\" LAST0 192.0.2.1 1700000000\n\
              \" RESETTING_TIME_SKEW 56666666+9\n\" TOTP_AUTH\n",
        )
        .unwrap();
        let notes = import_notes(&all, &ctx.config);
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(notes[0].contains("no DISALLOW_REUSE") && notes[0].contains("each code once"));
        assert!(notes[1].contains("RATE_LIMIT (3 logins in 30 seconds)"));
        assert!(notes[1].contains("after 6 failed attempts in a row"));
        assert!(notes[2].starts_with("1 LAST0..LAST9 line(s) ignored"));
        assert!(notes[3].starts_with("RESETTING_TIME_SKEW ignored"));
    }

    #[test]
    fn windows_are_described_as_the_module_used_them() {
        assert_eq!(
            describe_window(StepWindow::google_authenticator(3, 0)),
            "codes from 1 step before to 1 step after now"
        );
        assert_eq!(
            describe_window(StepWindow::google_authenticator(4, -2)),
            "codes from 1 step before to 2 steps after the phone's time, 2 steps behind \
             this host's (TIME_SKEW)"
        );
    }
}
