//! `mfa device list|add totp|verify|delete|remove-all`.

use super::context::{self, Ctx};
use super::output::{self, printable};
use super::status::{device_lines, DeviceView};
use crate::audit::{self, AuditEvent};
use crate::cli::error::{CliError, Result};
use crate::codes::OneTimePurpose;
use crate::enroll::{self, NewTotp};
use crate::login::ENROLL_PROMPT;
use crate::store::{Device, Factor, Store, Tx};
use serde::Serialize;

/// Tries at a terminal before the new device is left pending.
const ADD_TRIES: u32 = 3;

pub fn list(ctx: &mut Ctx, user: &str) -> Result<()> {
    let devices: Vec<DeviceView> = ctx
        .store
        .begin_read()?
        .devices(user)?
        .iter()
        .map(DeviceView::from)
        .collect();
    if ctx.json {
        return output::json(&devices);
    }
    if devices.is_empty() {
        return output::text(&format!(
            "{} has no devices. Add one with `mfa {}device add totp`.",
            printable(user),
            user_flag(ctx, user)
        ));
    }
    output::text(&device_lines(&devices))
}

fn find(tx: &dyn Tx, user: &str, nick: &str) -> Result<Device> {
    tx.devices(user)?
        .into_iter()
        .find(|d| d.name == nick)
        .ok_or_else(|| {
            CliError::NotFound(format!(
                "{} has no device named \"{}\"; see `mfa device list`",
                printable(user),
                printable(nick)
            ))
        })
}

use context::user_flag;

#[derive(Serialize)]
struct Added<'a> {
    user: &'a str,
    name: &'a str,
    kind: &'static str,
    verified: bool,
    secret: &'a str,
    otpauth_uri: &'a str,
}

pub fn add_totp(ctx: &mut Ctx, user: &str, name: &str, no_verify: bool) -> Result<()> {
    enroll::check_nickname(name).map_err(|e| CliError::Usage(e.to_string()))?;
    context::require_system_user(user)?;
    // Refuse a taken nickname before showing a secret nobody could keep.
    if ctx
        .store
        .begin()?
        .devices(user)?
        .iter()
        .any(|d| d.name == name)
    {
        return Err(CliError::Conflict(format!(
            "{user} already has a device named \"{name}\"; choose another with --name, \
             or delete the old one with `mfa {}device delete {name}`",
            user_flag(ctx, user)
        )));
    }
    let new = NewTotp::generate(&ctx.config, user)?;
    let setup = format!(
        "Scan this QR code with an authenticator app:\n{}\nOr type this secret: {}\nURI: {}",
        new.qr().as_str(),
        new.secret_grouped().as_str(),
        new.uri.as_str()
    );
    let setup = zeroize::Zeroizing::new(setup);
    let step = if no_verify {
        if !ctx.json {
            output::text(&setup)?;
        }
        None
    } else {
        // With --json stdout carries only the final object; the person
        // entering the code reads the setup on stderr.
        if ctx.json {
            output::note(setup.as_str());
        } else {
            output::text(&setup)?;
        }
        Some(ask_first_code(ctx, &new)?)
    };
    let verified_step = match step {
        Some(Ok(step)) => Some(step),
        _ => None,
    };
    let now = ctx.now();
    let detail = ctx.by();
    let tx = ctx.store.begin()?;
    enroll::store_totp(&*tx, user, name, &new, verified_step, now, &detail)?;
    if let Some(Err(NoCode::Wrong)) = step {
        let failed = format!("device={name} {detail}");
        audit::record(&*tx, now, user, AuditEvent::DeviceVerifyFailed, &failed)?;
    }
    tx.commit()?;
    let verified = verified_step.is_some();
    if let Some(Err(e)) = step {
        let how = format!(
            "the device \"{name}\" is saved as pending: finish with `mfa {0}device verify {name}`, \
             or delete it with `mfa {0}device delete {name}`",
            user_flag(ctx, user)
        );
        return Err(match e {
            NoCode::Wrong => CliError::WrongCode(format!("the code does not match; {how}")),
            NoCode::Eof => CliError::Usage(format!("no code was entered; {how}")),
        });
    }
    if ctx.json {
        return output::json(&Added {
            user,
            name,
            kind: "totp",
            verified,
            secret: &new.secret_base32(),
            otpauth_uri: &new.uri,
        });
    }
    output::text(&if verified {
        format!("Device \"{name}\" is set up for {user}.")
    } else {
        format!(
            "Device \"{name}\" is pending. Finish with `mfa {}device verify {name}` and a code from the app.",
            user_flag(ctx, user)
        )
    })
}

#[derive(Clone, Copy)]
enum NoCode {
    Wrong,
    Eof,
}

/// Asks for a code from the new device; at a terminal a typo gets another try.
fn ask_first_code(ctx: &Ctx, new: &NewTotp) -> Result<std::result::Result<i64, NoCode>> {
    let tries = if context::interactive() { ADD_TRIES } else { 1 };
    for i in 0..tries {
        let Some(typed) = context::read_code(ENROLL_PROMPT)? else {
            return Ok(Err(NoCode::Eof));
        };
        let window = ctx.config.totp.window;
        match context::check_totp(&new.secret, new.params, window, None, &typed, ctx.now()) {
            Some(step) => return Ok(Ok(step)),
            None if i + 1 < tries => {
                output::note("That code does not match; check the app and try the next code.")
            }
            None => {}
        }
    }
    Ok(Err(NoCode::Wrong))
}

#[derive(Serialize)]
struct Verified<'a> {
    user: &'a str,
    name: &'a str,
    verified: bool,
}

pub fn verify(ctx: &mut Ctx, user: &str, nick: &str, code: Option<String>) -> Result<()> {
    // Wiped however this ends (the daemon got it in a request).
    let code = code.map(zeroize::Zeroizing::new);
    // Check before asking, and ask before the transaction: BEGIN IMMEDIATE
    // must never wait for a person to type.
    ensure_pending(&find(&*ctx.store.begin()?, user, nick)?)?;
    let typed = match code {
        Some(code) => code,
        None => context::read_code(ENROLL_PROMPT)?
            .ok_or_else(|| CliError::Usage("no code was entered".into()))?,
    };
    let now = ctx.now();
    let detail = ctx.by();
    let tx = ctx.store.begin()?;
    let device = find(&*tx, user, nick)?;
    ensure_pending(&device)?;
    let Factor::Totp {
        secret,
        params,
        window,
        last_step,
    } = &device.factor
    else {
        return Err(not_totp(nick));
    };
    let window = window.unwrap_or_else(|| ctx.config.totp.window.into());
    match context::check_totp(secret, *params, window, *last_step, &typed, now) {
        Some(step) => {
            tx.mark_verified(device.id)?;
            tx.set_last_step(device.id, step)?;
            audit::record(
                &*tx,
                now,
                user,
                AuditEvent::DeviceVerified,
                &format!("device={nick} {detail}"),
            )?;
            tx.commit()?;
        }
        None => {
            audit::record(
                &*tx,
                now,
                user,
                AuditEvent::DeviceVerifyFailed,
                &format!("device={nick} {detail}"),
            )?;
            tx.commit()?;
            return Err(CliError::WrongCode(format!(
                "the code does not match device \"{nick}\"; check that the app's clock is right \
                 and try the next code"
            )));
        }
    }
    if ctx.json {
        return output::json(&Verified {
            user,
            name: nick,
            verified: true,
        });
    }
    output::text(&format!("Device \"{nick}\" is verified."))
}

fn ensure_pending(device: &Device) -> Result<()> {
    if !matches!(device.factor, Factor::Totp { .. }) {
        return Err(not_totp(&device.name));
    }
    if device.verified {
        return Err(CliError::Conflict(format!(
            "device \"{}\" is verified already",
            printable(&device.name)
        )));
    }
    Ok(())
}

fn not_totp(nick: &str) -> CliError {
    CliError::Usage(format!(
        "device \"{}\" is an SMS device; this version of mfa verifies authenticator-app devices only",
        printable(nick)
    ))
}

#[derive(Serialize)]
struct Deleted<'a> {
    user: &'a str,
    deleted: &'a str,
}

pub fn delete(ctx: &mut Ctx, user: &str, nick: &str) -> Result<()> {
    let now = ctx.now();
    let detail = ctx.by();
    let tx = ctx.store.begin()?;
    if !tx.delete_device(user, nick)? {
        return Err(find(&*tx, user, nick).err().unwrap_or_else(|| {
            CliError::Failed(format!(
                "device \"{}\" could not be deleted",
                printable(nick)
            ))
        }));
    }
    if nick == enroll::SMS_NAME {
        // Codes on their way to the phone die with it.
        tx.delete_one_time_codes(user, OneTimePurpose::SmsLogin)?;
        tx.delete_one_time_codes(user, OneTimePurpose::SmsEnroll)?;
    }
    audit::record(
        &*tx,
        now,
        user,
        AuditEvent::DeviceDeleted,
        &format!("device={nick} {detail}"),
    )?;
    tx.commit()?;
    if ctx.json {
        return output::json(&Deleted {
            user,
            deleted: nick,
        });
    }
    output::text(&format!("Device \"{nick}\" is deleted."))
}

#[derive(Serialize)]
struct Removed<'a> {
    user: &'a str,
    devices_removed: u32,
    bypass_codes_removed: u32,
}

pub fn remove_all(ctx: &mut Ctx, user: &str) -> Result<()> {
    let now = ctx.now();
    let detail = ctx.by();
    let tx = ctx.store.begin()?;
    let devices = tx.delete_devices(user)?;
    let codes = tx.delete_all_bypass_codes(user)?;
    for purpose in [
        OneTimePurpose::SmsLogin,
        OneTimePurpose::SmsEnroll,
        OneTimePurpose::Temporary,
    ] {
        tx.delete_one_time_codes(user, purpose)?;
    }
    audit::record(
        &*tx,
        now,
        user,
        AuditEvent::DevicesRemoved,
        &format!("devices={devices} bypass_codes={codes} {detail}"),
    )?;
    tx.commit()?;
    if ctx.json {
        return output::json(&Removed {
            user,
            devices_removed: devices,
            bypass_codes_removed: codes,
        });
    }
    output::text(&format!(
        "Removed {devices} device(s), {codes} bypass code(s) and any pending one-time codes of {}.",
        printable(user)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totp;

    fn me() -> String {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap()
            .name
    }

    fn current_code(ctx: &mut Ctx, user: &str, nick: &str) -> String {
        let device = find(&*ctx.store.begin().unwrap(), user, nick).unwrap();
        let Factor::Totp { secret, params, .. } = &device.factor else {
            panic!("not totp")
        };
        let step = totp::step_at(ctx.now(), params.period);
        totp::code_for_step(secret, *params, step).to_string()
    }

    #[test]
    fn pending_device_is_verified_once_with_a_right_code() {
        let (mut ctx, _dir) = context::test_ctx("device");
        let user = me();
        add_totp(&mut ctx, &user, "phone", true).unwrap();
        let e = add_totp(&mut ctx, &user, "phone", true).unwrap_err();
        assert_eq!(e.exit_code(), 7, "{e}");
        let e = verify(&mut ctx, &user, "phone", Some("000000x".into())).unwrap_err();
        assert_eq!(e.exit_code(), 3, "{e}");
        let code = current_code(&mut ctx, &user, "phone");
        verify(&mut ctx, &user, "phone", Some(code.clone())).unwrap();
        let device = find(&*ctx.store.begin().unwrap(), &user, "phone").unwrap();
        assert!(device.verified);
        assert!(matches!(
            device.factor,
            Factor::Totp {
                last_step: Some(_),
                ..
            }
        ));
        let e = verify(&mut ctx, &user, "phone", Some(code)).unwrap_err();
        assert_eq!(e.exit_code(), 7, "{e}");
        assert_eq!(
            verify(&mut ctx, &user, "tablet", None)
                .unwrap_err()
                .exit_code(),
            6
        );
        delete(&mut ctx, &user, "phone").unwrap();
        assert_eq!(delete(&mut ctx, &user, "phone").unwrap_err().exit_code(), 6);
    }

    #[test]
    fn add_refuses_bad_nicknames_and_unknown_users_before_showing_a_secret() {
        let (mut ctx, _dir) = context::test_ctx("device_refuse");
        let e = add_totp(&mut ctx, &me(), "sms", true).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = add_totp(&mut ctx, "no-such-user-mfa-test", "phone", true).unwrap_err();
        assert_eq!(e.exit_code(), 6);
        let tx = ctx.store.begin().unwrap();
        assert!(tx.devices("no-such-user-mfa-test").unwrap().is_empty());
        assert!(tx.audit_entries(None, None, 10).unwrap().is_empty());
        drop(tx);
    }

    #[test]
    fn remove_all_clears_devices_codes_and_one_time_codes() {
        let (mut ctx, _dir) = context::test_ctx("device_remove_all");
        let user = me();
        add_totp(&mut ctx, &user, "a", true).unwrap();
        add_totp(&mut ctx, &user, "b", true).unwrap();
        let (_, hashes) = super::super::bypass::new_set(2).unwrap();
        let now = ctx.now();
        let tx = ctx.store.begin().unwrap();
        tx.replace_bypass_codes(&user, &hashes, now).unwrap();
        tx.put_one_time_code(&user, OneTimePurpose::Temporary, &hashes[0], now + 300, 3)
            .unwrap();
        tx.commit().unwrap();
        remove_all(&mut ctx, &user).unwrap();
        let tx = ctx.store.begin().unwrap();
        assert!(tx.devices(&user).unwrap().is_empty());
        assert!(tx.bypass_codes(&user).unwrap().is_empty());
        assert!(tx.one_time_codes(&user, now).unwrap().is_empty());
        let last = tx.audit_entries(Some(&user), None, 1).unwrap();
        assert_eq!(last[0].event, "devices-removed");
        assert!(last[0].detail.starts_with("devices=2 bypass_codes=2 "));
        drop(tx);
    }
}
