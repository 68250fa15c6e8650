//! `mfa device add sms`, `device verify sms` and `admin temp-code`.

use super::context::{self, Ctx};
use super::output::{self, printable};
use crate::cli::error::{CliError, Result};
use crate::onetime::{self, OnetimeError, TempCode, PIN_TRIES};
use crate::sms::{self, check_phone, mask_phone};
use crate::store::Store;
use serde::Serialize;

#[derive(Serialize)]
struct SmsAdded<'a> {
    user: &'a str,
    name: &'static str,
    kind: &'static str,
    phone: String,
    verified: bool,
}

pub fn add(ctx: &mut Ctx, user: &str, phone: &str, no_verify: bool) -> Result<()> {
    check_phone(phone).map_err(|m| CliError::Usage(m.into()))?;
    context::require_system_user(user)?;
    let sender = sms::from_config(&ctx.config.sms);
    let now = ctx.now();
    onetime::start_sms_enrollment(
        &mut ctx.store,
        &ctx.config,
        sender.as_ref(),
        user,
        phone,
        now,
    )?;
    let masked = mask_phone(phone);
    if no_verify {
        if ctx.json {
            return output::json(&SmsAdded {
                user,
                name: "sms",
                kind: "sms",
                phone: masked,
                verified: false,
            });
        }
        return output::text(&format!(
            "A 4-digit PIN was texted to {masked}; finish with `mfa {}device verify sms PIN` within 10 minutes.",
            context::user_flag(ctx, user)
        ));
    }
    output::note(&format!("A 4-digit PIN was texted to {masked}."));
    let later = format!(
        "the phone stays pending: finish with `mfa {}device verify sms PIN`",
        context::user_flag(ctx, user)
    );
    ask_pin(ctx, user, &later)?;
    added(ctx, user, masked)
}

/// Asks for the texted PIN; at a terminal a wrong one is asked again until
/// the PIN's tries are used up (the error then says what to do).
fn ask_pin(ctx: &mut Ctx, user: &str, later: &str) -> Result<()> {
    let tries = if context::interactive() { PIN_TRIES } else { 1 };
    for left in (0..tries).rev() {
        let Some(pin) = context::read_code(crate::login::PIN_PROMPT)? else {
            return Err(CliError::Usage(format!("no PIN was entered; {later}")));
        };
        let now = ctx.now();
        match onetime::verify_sms_pin(&mut ctx.store, &ctx.config, user, &pin, now) {
            Ok(()) => return Ok(()),
            Err(e @ OnetimeError::WrongPin { left: pin_left }) if left > 0 && pin_left > 0 => {
                output::note(&format!("mfa: {e}"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::WrongCode(onetime::INVALID_PIN.into()))
}

fn added(ctx: &Ctx, user: &str, masked: String) -> Result<()> {
    if ctx.json {
        return output::json(&SmsAdded {
            user,
            name: "sms",
            kind: "sms",
            phone: masked,
            verified: true,
        });
    }
    output::text(&format!(
        "Phone {masked} is verified: codes will be texted to it at login."
    ))
}

pub fn verify(ctx: &mut Ctx, user: &str, pin: Option<String>) -> Result<()> {
    match pin {
        Some(p) => {
            let pin = zeroize::Zeroizing::new(p);
            let now = ctx.now();
            onetime::verify_sms_pin(&mut ctx.store, &ctx.config, user, &pin, now)?;
        }
        None => {
            let later = format!(
                "the phone stays pending: finish with `mfa {}device verify sms PIN`",
                context::user_flag(ctx, user)
            );
            ask_pin(ctx, user, &later)?;
        }
    }
    let phone = {
        let tx = ctx.store.begin()?;
        onetime::sms_device(&*tx, user)?.map(|(_, p)| mask_phone(&p))
    };
    added(ctx, user, phone.unwrap_or_default())
}

#[derive(Serialize)]
struct Temp<'a> {
    user: &'a str,
    expires_in: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    texted_to: Option<&'a str>,
}

pub fn temp_code(ctx: &mut Ctx, user: &str, show: bool) -> Result<()> {
    context::require_system_user(user)?;
    let sender = sms::from_config(&ctx.config.sms);
    let now = ctx.now();
    let by = ctx.by();
    let issued = onetime::issue_temp_code(
        &mut ctx.store,
        &ctx.config,
        sender.as_ref(),
        user,
        show,
        now,
        &by,
    )?;
    let (code, texted_to) = match &issued {
        TempCode::Shown(code) => (Some(code.as_str()), None),
        TempCode::Texted(masked) => (None, Some(masked.as_str())),
    };
    if ctx.json {
        return output::json(&Temp {
            user,
            expires_in: 300,
            code,
            texted_to,
        });
    }
    match (code, texted_to) {
        (Some(code), _) => output::text(&format!(
            "Temporary code for {}: {code}\nIt works once, within 5 minutes, in place of a device code.",
            printable(user)
        )),
        (_, Some(to)) => output::text(&format!(
            "A temporary code was texted to {} at {to}; it works once, within 5 minutes.",
            printable(user)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::{self, Accepted, AttemptResult, Context};
    use crate::cli::device;
    use crate::codes::OneTimePurpose;
    use crate::store::Account;
    use crate::users::UserInfo;
    use std::path::{Path, PathBuf};

    const PHONE: &str = "5551234567";

    fn me() -> String {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap()
            .name
    }

    /// A private instance whose texts go to `sms.log` in its directory.
    fn file_backend_ctx(tag: &str) -> (Ctx, tempfile::TempDir, PathBuf) {
        let (ctx, dir) = context::test_ctx(tag);
        let db = ctx.config.database.clone();
        drop(ctx);
        let outbox = dir.path().join("sms.log");
        let config = dir.path().join("pam_mfa.toml");
        std::fs::write(
            &config,
            format!(
                "database = \"{}\"\n\n[sms]\nbackend = \"file\"\npath = \"{}\"\n",
                db.display(),
                outbox.display()
            ),
        )
        .unwrap();
        (Ctx::open(&config, true, true).unwrap(), dir, outbox)
    }

    /// The lines of the outbox: (phone, message).
    fn texts(outbox: &Path) -> Vec<(String, String)> {
        let Ok(text) = std::fs::read_to_string(outbox) else {
            return Vec::new();
        };
        text.lines()
            .map(|l| {
                let (phone, message) = l.split_once('\t').expect("phone<TAB>message");
                (phone.to_owned(), message.to_owned())
            })
            .collect()
    }

    /// The code in the last text, which must have `digits` digits.
    fn last_code(outbox: &Path, digits: usize) -> String {
        let (_, message) = texts(outbox).pop().expect("a text was sent");
        let code: String = message
            .split(|c: char| !c.is_ascii_digit())
            .find(|r| !r.is_empty())
            .expect("a code in the text")
            .to_owned();
        assert_eq!(code.len(), digits, "{message}");
        code
    }

    fn sms_state(ctx: &mut Ctx, user: &str) -> Option<(bool, String)> {
        let tx = ctx.store.begin().unwrap();
        onetime::sms_device(&*tx, user)
            .unwrap()
            .map(|(d, phone)| (d.verified, phone))
    }

    fn live(ctx: &mut Ctx, user: &str) -> Vec<OneTimePurpose> {
        let now = ctx.now();
        let tx = ctx.store.begin().unwrap();
        let codes = tx.one_time_codes(user, now).unwrap();
        codes.into_iter().map(|c| c.purpose).collect()
    }

    fn audit_of(ctx: &mut Ctx, user: &str) -> Vec<(String, String)> {
        let entries = ctx
            .store
            .begin()
            .unwrap()
            .audit_entries(Some(user), None, 100)
            .unwrap();
        entries.into_iter().map(|e| (e.event, e.detail)).collect()
    }

    fn attempt(ctx: &mut Ctx, user: &str, typed: &str) -> AttemptResult {
        let info = UserInfo {
            name: user.to_owned(),
            uid: 1000,
            groups: vec![],
        };
        let now = ctx.now();
        let detail = Context {
            detail: "service=test",
        };
        attempt::attempt_code(
            &mut ctx.store,
            &ctx.config,
            &info,
            typed.as_bytes(),
            None,
            now,
            &detail,
        )
        .unwrap()
    }

    /// `mfa device add sms PHONE --no-verify`, then `device verify sms PIN`.
    fn add_verified_phone(ctx: &mut Ctx, user: &str, outbox: &Path) {
        add(ctx, user, PHONE, true).unwrap();
        verify(ctx, user, Some(last_code(outbox, 4))).unwrap();
    }

    #[test]
    fn device_add_sms_texts_a_pin_that_device_verify_sms_takes() {
        let (mut ctx, _dir, outbox) = file_backend_ctx("sms_add");
        let user = me();

        let e = add(&mut ctx, &user, "555 123 4567", true).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains("phone number"), "{e}");
        assert!(!outbox.exists(), "nothing texted");
        assert_eq!(sms_state(&mut ctx, &user), None);

        add(&mut ctx, &user, PHONE, true).unwrap();
        let pin = last_code(&outbox, 4);
        assert_eq!(
            texts(&outbox),
            [(
                PHONE.to_owned(),
                format!("Your PIN to confirm this phone is {pin}. It expires in 10 minutes.")
            )]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&outbox).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(sms_state(&mut ctx, &user), Some((false, PHONE.into())));

        let e = add(&mut ctx, &user, "+4930123456", true).unwrap_err();
        assert_eq!(e.exit_code(), 7, "{e}");
        assert_eq!(texts(&outbox).len(), 1);

        let wrong = format!("{:04}", (pin.parse::<u32>().unwrap() + 1) % 10_000);
        let e = verify(&mut ctx, &user, Some(wrong)).unwrap_err();
        assert_eq!(e.exit_code(), 3, "{e}");
        assert_eq!(
            e.to_string(),
            "invalid PIN: enter the 4-digit PIN from the text message (2 tries left)"
        );
        verify(&mut ctx, &user, Some(pin.clone())).unwrap();
        assert_eq!(sms_state(&mut ctx, &user), Some((true, PHONE.into())));
        let e = verify(&mut ctx, &user, Some(pin)).unwrap_err();
        assert_eq!(e.exit_code(), 7, "{e}");

        let events: Vec<String> = audit_of(&mut ctx, &user)
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        assert_eq!(
            events,
            [
                "device-pending",
                "sms-pin-sent",
                "device-verify-failed",
                "device-enrolled"
            ]
        );
    }

    #[test]
    fn device_delete_sms_voids_the_codes_on_their_way_to_the_phone() {
        let (mut ctx, _dir, outbox) = file_backend_ctx("sms_delete");
        let user = me();
        add_verified_phone(&mut ctx, &user, &outbox);
        let sender = sms::from_config(&ctx.config.sms);
        let now = ctx.now();
        onetime::send_login_code(
            &mut ctx.store,
            &ctx.config,
            sender.as_ref(),
            &user,
            PHONE,
            now,
        )
        .unwrap();
        let login_code = last_code(&outbox, 7);
        temp_code(&mut ctx, &user, true).unwrap();
        assert_eq!(
            live(&mut ctx, &user),
            [OneTimePurpose::SmsLogin, OneTimePurpose::Temporary]
        );

        device::delete(&mut ctx, &user, "sms").unwrap();
        assert_eq!(sms_state(&mut ctx, &user), None);
        // The administrator's temporary code is not tied to the phone.
        assert_eq!(live(&mut ctx, &user), [OneTimePurpose::Temporary]);
        assert!(matches!(
            attempt(&mut ctx, &user, &login_code),
            AttemptResult::Wrong { failures: 1, .. }
        ));
    }

    #[test]
    fn admin_temp_code_texts_or_shows_a_code_and_refuses_a_locked_account() {
        let (mut ctx, _dir, outbox) = file_backend_ctx("sms_temp");
        let user = me();

        let e = temp_code(&mut ctx, &user, false).unwrap_err();
        assert_eq!(e.exit_code(), 6, "{e}");
        assert!(e.to_string().contains("--show"), "{e}");
        assert!(live(&mut ctx, &user).is_empty());

        temp_code(&mut ctx, &user, true).unwrap();
        assert!(!outbox.exists(), "--show texts nothing");
        assert_eq!(live(&mut ctx, &user), [OneTimePurpose::Temporary]);
        let (event, detail) = audit_of(&mut ctx, &user).pop().unwrap();
        assert_eq!(event, "temp-code-issued");
        assert_eq!(detail, format!("delivery=shown by={}", ctx.invoker));

        add_verified_phone(&mut ctx, &user, &outbox);
        temp_code(&mut ctx, &user, false).unwrap();
        let code = last_code(&outbox, 8);
        assert_eq!(
            texts(&outbox).pop().unwrap(),
            (
                PHONE.to_owned(),
                format!("Your temporary login code is {code}. It expires in 5 minutes.")
            )
        );
        assert_eq!(
            attempt(&mut ctx, &user, &code),
            AttemptResult::Accepted(Accepted::Temporary)
        );
        assert!(matches!(
            attempt(&mut ctx, &user, &code),
            AttemptResult::Wrong { .. }
        ));

        let now = ctx.now();
        let tx = ctx.store.begin().unwrap();
        let locked = Account {
            failures: 6,
            locked_at: Some(now),
            last_failure: Some(now),
            locked_until: None,
        };
        tx.put_account(&user, &locked).unwrap();
        tx.commit().unwrap();
        let sent = texts(&outbox).len();
        for show in [true, false] {
            let e = temp_code(&mut ctx, &user, show).unwrap_err();
            assert_eq!(e.exit_code(), 5, "{e}");
            assert!(e.to_string().contains("unlock it first"), "{e}");
        }
        assert_eq!(texts(&outbox).len(), sent);
        assert!(live(&mut ctx, &user).is_empty());

        let unknown = temp_code(&mut ctx, "no-such-user-mfa-test", true).unwrap_err();
        assert_eq!(unknown.exit_code(), 6, "{unknown}");
    }

    #[test]
    fn without_a_gateway_device_add_sms_says_what_to_configure() {
        let (mut ctx, _dir) = context::test_ctx("sms_none");
        let e = add(&mut ctx, &me(), PHONE, true).unwrap_err();
        assert_eq!(e.exit_code(), 1, "{e}");
        assert!(e.to_string().contains("[sms] backend"), "{e}");
        assert_eq!(sms_state(&mut ctx, &me()), None);
    }
}
