//! Enrolling a TOTP device: the secret, the otpauth URI, the terminal QR
//! code, nickname rules, and storing the device. Shared by the login flow
//! (setup at next login) and the `mfa device add totp` command.

use crate::audit::{self, AuditEvent};
use crate::config::Config;
use crate::secret::{base32_encode, group4, SecretBytes};
use crate::store::{Device, Factor, StoreResult, Tx};
use crate::totp::{self, TotpParams};
use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;
use zeroize::Zeroizing;

pub const MAX_NICKNAME: usize = 32;
/// The SMS device's fixed name; TOTP devices may not take it.
pub const SMS_NAME: &str = "sms";

/// A freshly generated TOTP device, not yet stored.
pub struct NewTotp {
    pub secret: SecretBytes,
    pub params: TotpParams,
    pub uri: Zeroizing<String>,
}

impl NewTotp {
    pub fn generate(config: &Config, user: &str) -> Result<NewTotp, getrandom::Error> {
        let secret = totp::new_secret()?;
        let params = TotpParams::from(&config.totp);
        let uri = totp::otpauth_uri(&secret, params, &config.issuer_label(), user);
        Ok(NewTotp {
            secret,
            params,
            uri,
        })
    }

    /// The secret in base32, for apps that want it typed.
    pub fn secret_base32(&self) -> Zeroizing<String> {
        base32_encode(&self.secret)
    }

    pub fn secret_grouped(&self) -> Zeroizing<String> {
        group4(&self.secret_base32())
    }

    /// The QR code as Unicode half blocks, light on dark-agnostic.
    pub fn qr(&self) -> Zeroizing<String> {
        qr_text(&self.uri)
    }
}

pub fn qr_text(data: &str) -> Zeroizing<String> {
    match QrCode::new(data.as_bytes()) {
        Ok(code) => Zeroizing::new(
            code.render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build(),
        ),
        Err(_) => Zeroizing::new(String::new()),
    }
}

/// Why a device nickname is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadNickname {
    Length,
    Characters,
    /// `sms`, the SMS device's own name.
    Reserved,
}

impl std::fmt::Display for BadNickname {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadNickname::Length => write!(
                f,
                "a device nickname must be 1 to {MAX_NICKNAME} characters"
            ),
            BadNickname::Characters => {
                f.write_str("a device nickname may contain only letters, digits, '-', '_' and '.'")
            }
            BadNickname::Reserved => {
                f.write_str("\"sms\" is the name of the SMS device; choose another nickname")
            }
        }
    }
}

impl std::error::Error for BadNickname {}

/// Nicknames: 1–32 letters, digits, `-`, `_` or `.`; not `sms`.
pub fn check_nickname(name: &str) -> Result<(), BadNickname> {
    if name.is_empty() || name.len() > MAX_NICKNAME {
        return Err(BadNickname::Length);
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(BadNickname::Characters);
    }
    if name.eq_ignore_ascii_case(SMS_NAME) {
        return Err(BadNickname::Reserved);
    }
    Ok(())
}

/// A nickname not yet used by the user: `base`, `base-2`, `base-3`, ...
pub fn free_nickname(tx: &dyn Tx, user: &str, base: &str) -> StoreResult<String> {
    let taken: Vec<String> = tx.devices(user)?.into_iter().map(|d| d.name).collect();
    let mut name = base.to_owned();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    Ok(name)
}

/// Most devices one account may have waiting for verification: each is a
/// row anyone can make for their own account, so the count is bounded.
pub const MAX_PENDING: usize = 10;

/// A pending device not verified within this long is removed.
pub const PENDING_LIFETIME: i64 = 86_400;

/// How long a setup at login keeps its secret: a login within this time
/// of the first shows the same one again.
pub const SETUP_LIFETIME: i64 = 600;

/// Whether `name` is one setup at login gives its pending device:
/// `login`, `login-2`, `login-3`, ... (see [`free_nickname`]).
pub fn is_setup_name(name: &str) -> bool {
    match name.strip_prefix("login") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Removes `user`'s pending devices older than [`PENDING_LIFETIME`] (each
/// removal audited as `device-expired`); returns how many are left pending.
pub fn purge_stale_pending(tx: &dyn Tx, user: &str, now: i64) -> StoreResult<usize> {
    let mut left = 0;
    for device in tx.devices(user)?.into_iter().filter(|d| !d.verified) {
        if device.created <= now - PENDING_LIFETIME {
            tx.delete_device(user, &device.name)?;
            audit::record(
                tx,
                now,
                user,
                AuditEvent::DeviceExpired,
                &format!("device={} kind={}", device.name, device.kind().as_str()),
            )?;
        } else {
            left += 1;
        }
    }
    Ok(left)
}

/// Stores a TOTP device. `verified_step` is the step of the code that proved
/// the user holds it (None leaves it pending).
pub fn store_totp(
    tx: &dyn Tx,
    user: &str,
    name: &str,
    new: &NewTotp,
    verified_step: Option<i64>,
    now: i64,
    detail: &str,
) -> StoreResult<i64> {
    if verified_step.is_none() && purge_stale_pending(tx, user, now)? >= MAX_PENDING {
        return Err(crate::store::StoreError::Conflict(format!(
            "{user} already has {MAX_PENDING} devices waiting for verification; verify or \
             delete one first (`mfa device list` shows them; they expire after a day)"
        )));
    }
    let id = tx.insert_device(&Device {
        id: 0,
        user: user.to_owned(),
        name: name.to_owned(),
        verified: verified_step.is_some(),
        created: now,
        factor: Factor::Totp {
            secret: new.secret.clone(),
            params: new.params,
            window: None,
            last_step: verified_step,
        },
    })?;
    let event = if verified_step.is_some() {
        AuditEvent::DeviceEnrolled
    } else {
        AuditEvent::DevicePending
    };
    audit::record(
        tx,
        now,
        user,
        event,
        format!("device={name} kind=totp {detail}").trim_end(),
    )?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames() {
        assert!(check_nickname("phone").is_ok());
        assert!(check_nickname("work-phone_2.old").is_ok());
        for bad in ["", "sms", "SMS", "a b", "x/y", "ü", &"n".repeat(33)] {
            assert!(check_nickname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_secret_is_160_bits_and_uri_carries_it() {
        let config = Config::default();
        let t = NewTotp::generate(&config, "alice").unwrap();
        assert_eq!(t.secret.len(), 20);
        assert_eq!(t.secret_base32().len(), 32);
        assert!(t.uri.contains(t.secret_base32().as_str()));
        let qr = t.qr();
        assert!(qr.lines().count() > 10);
    }
}
