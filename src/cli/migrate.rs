//! `mfa admin migrate --to URL`: every account of the configured store
//! copied into another (SQLite to a fleet's PostgreSQL, usually), secrets
//! sealed on the way by the destination engine.
//!
//! Safe to re-run: each account is replaced as a whole in the destination,
//! and audit rows already there are not copied twice. All of it is one
//! transaction in the destination, so a failure leaves it as it was.

use super::context::Ctx;
use super::output;
use crate::audit::{self, AuditEvent};
use crate::cli::error::{CliError, Result};
use crate::codes::OneTimePurpose;
use crate::config::Config;
use crate::store::{AnyStore, AuditEntry, OpenMode, Store, Tx};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Serialize, Default, Debug)]
struct Copied {
    to: String,
    accounts: u32,
    devices: u32,
    bypass_codes: u32,
    one_time_codes: u32,
    settings: u32,
    audit_rows: u32,
    audit_rows_already_there: u32,
}

type AuditKey = (i64, String, String, String, String);

fn key_of(e: &AuditEntry) -> AuditKey {
    (
        e.time,
        e.host.clone(),
        e.user.clone(),
        e.event.clone(),
        e.detail.clone(),
    )
}

pub fn migrate(ctx: &mut Ctx, to: &str) -> Result<()> {
    if to == ctx.config.database.as_os_str() {
        return Err(CliError::Usage(
            "--to names the store this config already uses; name the new one".into(),
        ));
    }
    // The destination as the config would name it: the same key and
    // password file, so the result is what hosts will open afterwards.
    let mut target = ctx.config.clone();
    target.database = PathBuf::from(to);
    Config::parse(&toml_of(&target)?, std::path::Path::new("--to"))?;
    let key = target
        .load_seal_key()
        .map_err(|e| CliError::Unavailable(e.to_string()))?;
    let mut dest = AnyStore::open(&target, OpenMode::Create, key)?;
    let now = ctx.now();
    let mut copied = Copied {
        to: dest.describe(),
        ..Copied::default()
    };
    let (by, invoker) = (ctx.by(), ctx.invoker.clone());
    let source = ctx.store.begin()?;
    {
        let tx = dest.begin()?;
        copy(&*source, &*tx, now, &mut copied)?;
        let detail = format!(
            "accounts={} devices={} audit_rows={} {}",
            copied.accounts, copied.devices, copied.audit_rows, by
        );
        audit::record(&*tx, now, &invoker, AuditEvent::StoreMigrated, &detail)?;
        tx.commit()?;
    }
    check(&*source, &mut dest, now)?;
    drop(source);
    if ctx.json {
        return output::json(&copied);
    }
    output::text(&format!(
        "Copied to {}: {} accounts, {} devices, {} bypass codes, {} one-time codes, {} settings, \
         {} audit rows ({} were there already). Counts checked.",
        copied.to,
        copied.accounts,
        copied.devices,
        copied.bypass_codes,
        copied.one_time_codes,
        copied.settings,
        copied.audit_rows,
        copied.audit_rows_already_there
    ))
}

fn toml_of(config: &Config) -> Result<String> {
    toml::to_string(config).map_err(|e| CliError::Failed(format!("cannot check the target: {e}")))
}

fn copy(source: &dyn Tx, dest: &dyn Tx, now: i64, copied: &mut Copied) -> Result<()> {
    for (key, value) in source.all_settings()? {
        dest.put_setting(&key, &value)?;
        copied.settings += 1;
    }
    for summary in source.users()? {
        let user = summary.user.as_str();
        copied.accounts += 1;
        dest.put_account(user, &source.account(user)?)?;
        dest.delete_devices(user)?;
        for device in source.devices(user)? {
            dest.insert_device(&device)?;
            copied.devices += 1;
        }
        let bypass: Vec<_> = source
            .bypass_codes(user)?
            .into_iter()
            .map(|c| c.hash)
            .collect();
        dest.replace_bypass_codes(user, &bypass, now)?;
        copied.bypass_codes += bypass.len() as u32;
        for purpose in [
            OneTimePurpose::SmsLogin,
            OneTimePurpose::SmsEnroll,
            OneTimePurpose::Temporary,
        ] {
            dest.delete_one_time_codes(user, purpose)?;
        }
        for code in source.one_time_codes(user, now)? {
            dest.put_one_time_code(
                user,
                code.purpose,
                &code.hash,
                code.expires,
                code.attempts_left,
            )?;
            copied.one_time_codes += 1;
        }
    }
    let there: HashSet<AuditKey> = dest
        .audit_entries(None, None, u32::MAX)?
        .iter()
        .map(key_of)
        .collect();
    for entry in source.audit_entries(None, None, u32::MAX)? {
        if there.contains(&key_of(&entry)) {
            copied.audit_rows_already_there += 1;
        } else {
            dest.append_audit(&entry)?;
            copied.audit_rows += 1;
        }
    }
    Ok(())
}

/// Reads the destination back: every account with the same devices (whose
/// secrets open), codes and lock state as the source.
fn check(source: &dyn Tx, dest: &mut AnyStore, now: i64) -> Result<()> {
    let tx = dest.begin()?;
    for summary in source.users()? {
        let user = summary.user.as_str();
        let mismatch = |what: &str| {
            CliError::Failed(format!(
                "after copying, {user}'s {what} differ in the destination; it was left as \
                 copied: run the migration again, and report it if this repeats"
            ))
        };
        let names = |devices: Vec<crate::store::Device>| -> Vec<(String, bool)> {
            devices.into_iter().map(|d| (d.name, d.verified)).collect()
        };
        if names(source.devices(user)?) != names(tx.devices(user)?) {
            return Err(mismatch("devices"));
        }
        if source.bypass_codes(user)?.len() != tx.bypass_codes(user)?.len() {
            return Err(mismatch("bypass codes"));
        }
        if source.one_time_codes(user, now)?.len() != tx.one_time_codes(user, now)?.len() {
            return Err(mismatch("one-time codes"));
        }
        if source.account(user)? != tx.account(user)? {
            return Err(mismatch("failure count and lock"));
        }
    }
    Ok(())
}
