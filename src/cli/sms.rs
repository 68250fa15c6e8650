//! `mfa device add sms`, `device verify sms` and `admin temp-code`.
#![forbid(unsafe_code)]

use super::context::{self, Ctx};
use super::output::{self, printable};
use pam_mfa::error::{Error, Result};
use pam_mfa::onetime::{self, TempCode, PIN_TRIES};
use pam_mfa::sms::{self, check_phone, mask_phone};
use pam_mfa::store::Store;
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
    check_phone(phone).map_err(|m| Error::Usage(m.into()))?;
    context::require_system_user(user)?;
    let sender = sms::from_config(&ctx.config.sms);
    let now = ctx.now();
    onetime::start_sms_enrollment(&mut ctx.store, sender.as_ref(), user, phone, now)?;
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
            "A 4-digit PIN was texted to {masked}; finish with `mfa device verify sms PIN` within 10 minutes."
        ));
    }
    eprintln!("A 4-digit PIN was texted to {masked}.");
    let tries = if context::interactive() { PIN_TRIES } else { 1 };
    for left in (0..tries).rev() {
        let Some(pin) = context::read_code("PIN from the text message: ")? else {
            return Err(Error::Usage(
                "no PIN was entered; the phone stays pending: finish with `mfa device verify sms PIN`".into(),
            ));
        };
        let now = ctx.now();
        match onetime::verify_sms_pin(&mut ctx.store, &ctx.config, user, &pin, now) {
            Ok(()) => return added(ctx, user, masked),
            Err(Error::WrongCode(m)) if left > 0 => eprintln!("mfa: {m}"),
            Err(e) => return Err(e),
        }
    }
    Err(Error::WrongCode(onetime::INVALID_PIN.into()))
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
    let pin = match pin {
        Some(p) => zeroize::Zeroizing::new(p),
        None => context::read_code("PIN from the text message: ")?
            .ok_or_else(|| Error::Usage("no PIN was entered".into()))?,
    };
    let now = ctx.now();
    onetime::verify_sms_pin(&mut ctx.store, &ctx.config, user, &pin, now)?;
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
    let issued = onetime::issue_temp_code(
        &mut ctx.store,
        &ctx.config,
        sender.as_ref(),
        user,
        show,
        now,
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
