//! `mfa admin policy|users|unlock|import-google-authenticator` (`admin show`
//! shares `status`'s view).
#![forbid(unsafe_code)]

use super::context::{self, Ctx};
use super::output::{self, printable};
use pam_mfa::audit;
use pam_mfa::config::{Algorithm, Policy};
use pam_mfa::error::{Error, Result};
use pam_mfa::google_auth::{self, MAX_FILE_BYTES};
use pam_mfa::lockout;
use pam_mfa::policy;
use pam_mfa::seal::{KeyError, SealKey};
use pam_mfa::store::{Account, Device, Factor, Store, UserSummary};
use pam_mfa::totp::TotpParams;
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
        audit::record(&*tx, now, &ctx.invoker, "store-created", &detail)?;
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
            audit::record(&*tx, now, &ctx.invoker, "policy-changed", &detail)?;
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
    // A typo is refused as `temp-code` refuses it, not "unlocked"; a name
    // the system no longer knows can still be cleared while it has a count.
    if account == Account::default() && pam_mfa::users::lookup(user).is_none() {
        return Err(context::no_such_user(user));
    }
    let was_locked = lockout::is_locked(&account, &ctx.config.lockout, now);
    if account != Account::default() {
        tx.put_account(user, &Account::default())?;
        let detail = format!("was_locked={was_locked} failures={} {by}", account.failures);
        audit::record(&*tx, now, user, "unlocked", &detail)?;
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
        std::io::ErrorKind::NotFound => Error::NotFound(format!("{shown} does not exist")),
        _ => Error::Failed(format!("cannot open {shown}: {e}")),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::Failed(format!("cannot read {shown}: {e}")))?;
    let too_large = || {
        Error::Usage(format!(
            "{shown} is larger than {MAX_FILE_BYTES} bytes; it is not a google-authenticator file"
        ))
    };
    if !meta.is_file() {
        return Err(Error::Usage(format!("{shown} is not a regular file")));
    }
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(too_large());
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_FILE_BYTES + 1));
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Failed(format!("cannot read {shown}: {e}")))?;
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
    window: u32,
    bypass_codes_imported: usize,
}

pub fn import_google_authenticator(ctx: &mut Ctx, user: &str, path: &Path) -> Result<()> {
    context::check_user_name(user)?;
    let bytes = read_small_file(path)?;
    let ga =
        google_auth::parse(&bytes).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    // Scratch codes get one fresh salt, like a generated set.
    let salt = pam_mfa::codes::new_salt()?;
    let scratch: Vec<_> = ga
        .scratch_codes
        .iter()
        .map(|c| pam_mfa::codes::hash_with_salt(c, &salt))
        .collect();
    let window = ga.window.unwrap_or(ctx.config.totp.window);
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
            window: ga.window,
            last_step: None,
        },
    })
    .map_err(|e| match Error::from(e) {
        Error::Conflict(_) => Error::Conflict(format!(
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
    let detail = format!(
        "device={IMPORTED_NAME} kind=totp step={} window={window} scratch_codes={} {by}",
        ga.step,
        scratch.len()
    );
    audit::record(&*tx, now, user, "device-imported", &detail)?;
    tx.commit()?;
    if ctx.json {
        return output::json(&Imported {
            user,
            name: IMPORTED_NAME,
            step: ga.step,
            window,
            bypass_codes_imported: scratch.len(),
        });
    }
    output::text(&format!(
        "Imported {} as device \"{IMPORTED_NAME}\" of {} ({}-second codes, window {window}), \
         with {} scratch code(s) as bypass codes. The user's app keeps working; \
         remove {} once logins work.",
        path.display(),
        printable(user),
        ga.step,
        scratch.len(),
        path.display()
    ))
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
    let key = SealKey::generate().map_err(|e| Error::Failed(e.to_string()))?;
    key.write_new(file).map_err(|e| match e {
        KeyError::Exists(_) => Error::Conflict(e.to_string()),
        _ => Error::Failed(e.to_string()),
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
        let dir = std::env::temp_dir().join(format!("mfa_cli_admin_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok");
        std::fs::write(&ok, vec![b'A'; MAX_FILE_BYTES]).unwrap();
        assert_eq!(read_small_file(&ok).unwrap().len(), MAX_FILE_BYTES);
        let big = dir.join("big");
        std::fs::write(&big, vec![b'A'; MAX_FILE_BYTES + 1]).unwrap();
        let e = read_small_file(&big).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("larger than 4096 bytes"), "{e}");
        assert_eq!(
            read_small_file(&dir.join("none")).unwrap_err().exit_code(),
            6
        );
        assert_eq!(read_small_file(&dir).unwrap_err().exit_code(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn policy_change_and_unlock_are_stored_and_audited() {
        let (mut ctx, dir) = context::test_ctx("admin");
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
        // Nothing to clear: nothing written.
        unlock(&mut ctx, "bob").unwrap();
        assert_eq!(
            ctx.store
                .begin()
                .unwrap()
                .audit_entries(None, None, 10)
                .unwrap()
                .len(),
            2
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod import_tests {
    use super::*;
    use pam_mfa::attempt::{self, Accepted, AttemptResult, Context};
    use pam_mfa::totp;
    use pam_mfa::users::UserInfo;

    #[test]
    fn an_imported_file_works_at_login_and_keeps_existing_bypass_codes() {
        let (mut ctx, dir) = context::test_ctx("import");
        let (_, old) = crate::cli::bypass::new_set(1).unwrap();
        let now = ctx.now();
        let tx = ctx.store.begin().unwrap();
        tx.replace_bypass_codes("alice", &old, now).unwrap();
        tx.commit().unwrap();
        let file = dir.join("ga");
        std::fs::write(
            &file,
            "JBSWY3DPEHPK3PXP\n\" WINDOW_SIZE 5\n\" TOTP_AUTH\n12345678\n87654321\n",
        )
        .unwrap();
        import_google_authenticator(&mut ctx, "alice", &file).unwrap();
        let e = import_google_authenticator(&mut ctx, "alice", &file).unwrap_err();
        assert_eq!(e.exit_code(), 7, "{e}");
        assert_eq!(
            ctx.store
                .begin()
                .unwrap()
                .bypass_codes("alice")
                .unwrap()
                .len(),
            3
        );

        let alice = UserInfo {
            name: "alice".into(),
            uid: 1000,
            groups: vec![],
        };
        let secret = pam_mfa::secret::base32_decode("JBSWY3DPEHPK3PXP").unwrap();
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
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hotp_files_are_refused_with_the_parsers_message() {
        let (mut ctx, dir) = context::test_ctx("import_hotp");
        let file = dir.join("ga");
        std::fs::write(&file, "JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n").unwrap();
        let e = import_google_authenticator(&mut ctx, "alice", &file).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("HOTP (counter-based)"), "{e}");
        assert!(ctx
            .store
            .begin()
            .unwrap()
            .devices("alice")
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
