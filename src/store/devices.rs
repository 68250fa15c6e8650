use super::sealing::{read_factor_field, store_factor_field, FactorField, SecretsAtRest};
use super::sqlite::SqliteTx;
use super::{Device, Devices, Factor, StoreError, StoreResult};
use crate::config::Algorithm;
use crate::seal::SealKey;
use crate::totp::{StepWindow, TotpParams};
use rusqlite::{params, Row};
use zeroize::Zeroizing;

/// A row as stored: the secret still in one of its two columns.
struct StoredDevice {
    device: Device,
    /// The TOTP secret (kind totp) or phone (kind sms), plaintext column.
    plain: Option<Zeroizing<Vec<u8>>>,
    sealed: Option<Vec<u8>>,
}

fn stored_device_from_row(r: &Row<'_>) -> rusqlite::Result<StoredDevice> {
    let kind: String = r.get("kind")?;
    let (factor, plain, sealed) = if kind == "sms" {
        let phone: Option<String> = r.get("phone")?;
        (
            Factor::Sms {
                phone: String::new(),
            },
            phone.map(|p| Zeroizing::new(p.into_bytes())),
            r.get("phone_sealed")?,
        )
    } else {
        let algorithm: String = r.get("algorithm")?;
        let secret: Option<Vec<u8>> = r.get("secret")?;
        (
            Factor::Totp {
                secret: Zeroizing::new(Vec::new()),
                params: TotpParams {
                    algorithm: Algorithm::parse(&algorithm).unwrap_or(Algorithm::SHA1),
                    digits: r.get("digits")?,
                    period: r.get("period")?,
                },
                window: window_from_columns(
                    r.get("window")?,
                    r.get("window_ahead")?,
                    r.get("clock_offset")?,
                ),
                last_step: r.get("last_step")?,
            },
            secret.map(Zeroizing::new),
            r.get("secret_sealed")?,
        )
    };
    Ok(StoredDevice {
        device: Device {
            id: r.get("id")?,
            user: r.get("user")?,
            name: r.get("name")?,
            verified: r.get("verified")?,
            created: r.get("created")?,
            factor,
        },
        plain,
        sealed,
    })
}

/// A device's window from its columns (both engines): `window` NULL means
/// the config's; `window_ahead` NULL means as many steps ahead as behind.
/// Negative values (an altered database) count as none.
pub(super) fn window_from_columns(
    behind: Option<i64>,
    ahead: Option<i64>,
    offset: i64,
) -> Option<StepWindow> {
    let steps = |v: i64| u32::try_from(v).unwrap_or(0);
    let behind = steps(behind?);
    Some(StepWindow {
        behind,
        ahead: ahead.map_or(behind, steps),
        offset,
    })
}

/// A device's window as its columns: (window, window_ahead, clock_offset).
pub(super) fn window_columns(window: &Option<StepWindow>) -> (Option<i64>, Option<i64>, i64) {
    match window {
        None => (None, None, 0),
        Some(w) => (
            Some(i64::from(w.behind)),
            (w.ahead != w.behind).then_some(i64::from(w.ahead)),
            w.offset,
        ),
    }
}

/// The device with its secret in place: unsealed, or as stored in plaintext.
fn open_device(key: Option<&SealKey>, stored: StoredDevice) -> StoreResult<Device> {
    let StoredDevice {
        mut device,
        plain,
        sealed,
    } = stored;
    let field = match device.factor {
        Factor::Totp { .. } => FactorField::TotpSecret,
        Factor::Sms { .. } => FactorField::SmsPhone,
    };
    let value = read_factor_field(
        key,
        &device.user,
        &device.name,
        field,
        plain,
        sealed.as_deref(),
    )?;
    match &mut device.factor {
        Factor::Totp { secret, .. } => *secret = value,
        Factor::Sms { phone } => {
            *phone = String::from_utf8(value.to_vec()).map_err(|_| {
                StoreError::Unavailable(format!(
                    "the phone number of {}'s device \"{}\" is not text: the database was \
                     altered; delete the device and add it again",
                    device.user, device.name
                ))
            })?
        }
    }
    Ok(device)
}

impl Devices for SqliteTx<'_> {
    fn devices(&self, user: &str) -> StoreResult<Vec<Device>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT * FROM devices WHERE user = ?1 ORDER BY created, id")?;
        let rows = stmt.query_map([user], stored_device_from_row)?;
        let mut devices = Vec::new();
        for row in rows {
            devices.push(open_device(self.seal_key, row?)?);
        }
        Ok(devices)
    }

    fn insert_device(&self, d: &Device) -> StoreResult<i64> {
        let result = match &d.factor {
            Factor::Totp {
                secret,
                params,
                window,
                last_step,
            } => {
                let stored = store_factor_field(
                    self.seal_key,
                    &d.user,
                    &d.name,
                    FactorField::TotpSecret,
                    secret,
                )?;
                let (plain, sealed) = stored.columns();
                let (window, window_ahead, clock_offset) = window_columns(window);
                self.run(
                    "INSERT INTO devices (user, name, kind, secret, secret_sealed, algorithm, digits,
                                          period, window, window_ahead, clock_offset, last_step,
                                          verified, created)
                     VALUES (?1, ?2, 'totp', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        d.user,
                        d.name,
                        plain,
                        sealed,
                        params.algorithm.as_str(),
                        params.digits,
                        params.period,
                        window,
                        window_ahead,
                        clock_offset,
                        last_step,
                        d.verified,
                        d.created
                    ],
                )
            }
            Factor::Sms { phone } => {
                let stored = store_factor_field(
                    self.seal_key,
                    &d.user,
                    &d.name,
                    FactorField::SmsPhone,
                    phone.as_bytes(),
                )?;
                let (plain, sealed) = stored.columns();
                // The plaintext column is TEXT, as in version 1.
                let plain = plain.map(|_| phone.as_str());
                self.run(
                    "INSERT INTO devices (user, name, kind, phone, phone_sealed, verified, created)
                     VALUES (?1, ?2, 'sms', ?3, ?4, ?5, ?6)",
                    params![d.user, d.name, plain, sealed, d.verified, d.created],
                )
            }
        };
        match result {
            Ok(_) => Ok(self.tx.last_insert_rowid()),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                Err(StoreError::Conflict(format!(
                    "{} already has a device named \"{}\"",
                    d.user, d.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn mark_verified(&self, id: i64) -> StoreResult<()> {
        self.run("UPDATE devices SET verified = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    fn set_last_step(&self, id: i64, step: i64) -> StoreResult<()> {
        self.run(
            "UPDATE devices SET last_step = ?2 WHERE id = ?1",
            params![id, step],
        )?;
        Ok(())
    }

    fn delete_device(&self, user: &str, name: &str) -> StoreResult<bool> {
        Ok(self.run(
            "DELETE FROM devices WHERE user = ?1 AND name = ?2",
            [user, name],
        )? > 0)
    }

    fn delete_devices(&self, user: &str) -> StoreResult<u32> {
        Ok(self.run("DELETE FROM devices WHERE user = ?1", [user])? as u32)
    }

    fn secrets_at_rest(&self) -> StoreResult<SecretsAtRest> {
        let (sealed, plaintext): (u32, u32) = self.row(
            "SELECT
                 coalesce(sum(secret_sealed IS NOT NULL OR phone_sealed IS NOT NULL), 0),
                 coalesce(sum(secret_sealed IS NULL AND phone_sealed IS NULL
                              AND (secret IS NOT NULL OR phone IS NOT NULL)), 0)
             FROM devices",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(SecretsAtRest { sealed, plaintext })
    }
}
