#![forbid(unsafe_code)]

use super::sqlite::SqliteTx;
use super::{Device, Devices, Factor, StoreError, StoreResult};
use crate::config::Algorithm;
use crate::totp::TotpParams;
use rusqlite::{params, Row};
use zeroize::Zeroizing;

fn device_from_row(r: &Row<'_>) -> rusqlite::Result<Device> {
    let kind: String = r.get("kind")?;
    let factor = if kind == "sms" {
        Factor::Sms {
            phone: r.get("phone")?,
        }
    } else {
        let algorithm: String = r.get("algorithm")?;
        Factor::Totp {
            secret: Zeroizing::new(r.get("secret")?),
            params: TotpParams {
                algorithm: Algorithm::parse(&algorithm).unwrap_or(Algorithm::SHA1),
                digits: r.get("digits")?,
                period: r.get("period")?,
            },
            window: r.get("window")?,
            last_step: r.get("last_step")?,
        }
    };
    Ok(Device {
        id: r.get("id")?,
        user: r.get("user")?,
        name: r.get("name")?,
        verified: r.get("verified")?,
        created: r.get("created")?,
        factor,
    })
}

impl Devices for SqliteTx<'_> {
    fn devices(&self, user: &str) -> StoreResult<Vec<Device>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT * FROM devices WHERE user = ?1 ORDER BY created, id")?;
        let rows = stmt.query_map([user], device_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_device(&self, d: &Device) -> StoreResult<i64> {
        let result = match &d.factor {
            Factor::Totp {
                secret,
                params,
                window,
                last_step,
            } => self.run(
                "INSERT INTO devices (user, name, kind, secret, algorithm, digits, period, window,
                                      last_step, verified, created)
                 VALUES (?1, ?2, 'totp', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    d.user,
                    d.name,
                    secret.as_slice(),
                    params.algorithm.as_str(),
                    params.digits,
                    params.period,
                    window,
                    last_step,
                    d.verified,
                    d.created
                ],
            ),
            Factor::Sms { phone } => self.run(
                "INSERT INTO devices (user, name, kind, phone, verified, created)
                 VALUES (?1, ?2, 'sms', ?3, ?4, ?5)",
                params![d.user, d.name, phone, d.verified, d.created],
            ),
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
}
