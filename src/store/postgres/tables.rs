//! The store traits over PostgreSQL's tables. Each method that reads or
//! changes one account's state locks that account's row first
//! (`PgTx::lock_account`); methods by row id follow a read by user in the
//! same transaction, which took the lock.

use super::PgTx;
use crate::codes::{CodeHash, OneTimePurpose};
use crate::config::Algorithm;
use crate::secret::SecretBytes;
use crate::store::devices::{window_columns, window_from_columns};
use crate::store::sealing::{open_factor_field, seal_factor_field, FactorField};
use crate::store::{
    Account, Accounts, AuditEntry, AuditLog, Codes, Device, Devices, Factor, OneTimeCode, Settings,
    StoreError, StoreResult, StoredCode, UserSummary,
};
use crate::store::{SecretsAtRest, Texts};
use crate::totp::TotpParams;
use tokio_postgres::Row;

fn malformed(what: &str) -> StoreError {
    StoreError::Unavailable(format!("the database holds a malformed {what}"))
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn account_from_row(r: &Row) -> Account {
    Account {
        failures: count(r.get(0)),
        locked_at: r.get(1),
        last_failure: r.get(2),
        locked_until: r.get(3),
    }
}

fn hash_from(text: &str) -> StoreResult<CodeHash> {
    CodeHash::decode(text).ok_or_else(|| malformed("code hash"))
}

impl Accounts for PgTx<'_> {
    fn account(&self, user: &str) -> StoreResult<Account> {
        if let Some(row) = self.lock_account(user)? {
            return Ok(account_from_row(&row));
        }
        let row = self.pg().query_opt(
            "SELECT failures, locked_at, last_failure, locked_until FROM accounts
             WHERE username = $1",
            &[&user],
        )?;
        Ok(row.map(|r| account_from_row(&r)).unwrap_or_default())
    }

    fn put_account(&self, user: &str, a: &Account) -> StoreResult<()> {
        // The row stays even when clean: it is what later transactions lock.
        self.lock_account(user)?;
        let failures = i32::try_from(a.failures).unwrap_or(i32::MAX);
        self.pg().execute(
            "UPDATE accounts SET failures = $2, locked_at = $3, last_failure = $4,
                                 locked_until = $5
             WHERE username = $1",
            &[
                &user,
                &failures,
                &a.locked_at,
                &a.last_failure,
                &a.locked_until,
            ],
        )?;
        Ok(())
    }

    fn users(&self) -> StoreResult<Vec<UserSummary>> {
        let rows = self.pg().query(
            "SELECT u.username,
                    (SELECT COUNT(*) FROM devices d WHERE d.username = u.username)::int4,
                    COALESCE(a.failures, 0), a.locked_at IS NOT NULL
             FROM (SELECT username FROM devices
                   UNION SELECT username FROM accounts
                         WHERE failures > 0 OR locked_at IS NOT NULL
                   UNION SELECT username FROM bypass_codes) u
             LEFT JOIN accounts a ON a.username = u.username
             ORDER BY u.username",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| UserSummary {
                user: r.get(0),
                devices: count(r.get(1)),
                failures: count(r.get(2)),
                locked: r.get(3),
            })
            .collect())
    }
}

impl PgTx<'_> {
    fn device_from_row(&self, r: &Row) -> StoreResult<Device> {
        let user: String = r.get("username");
        let name: String = r.get("name");
        let kind: String = r.get("kind");
        let factor = match kind.as_str() {
            "sms" => {
                let sealed: Vec<u8> = r
                    .get::<_, Option<Vec<u8>>>("phone")
                    .ok_or_else(|| malformed("phone device"))?;
                let phone = self.open_field(&user, &name, FactorField::SmsPhone, &sealed)?;
                Factor::Sms {
                    phone: String::from_utf8(phone.to_vec())
                        .map_err(|_| malformed("phone number"))?,
                }
            }
            "totp" => {
                let sealed: Vec<u8> = r
                    .get::<_, Option<Vec<u8>>>("secret")
                    .ok_or_else(|| malformed("TOTP device"))?;
                let algorithm: Option<String> = r.get("algorithm");
                let digits: Option<i32> = r.get("digits");
                let period: Option<i32> = r.get("period");
                let window: Option<i32> = r.get("totp_window");
                let ahead: Option<i32> = r.get("totp_window_ahead");
                Factor::Totp {
                    secret: self.open_field(&user, &name, FactorField::TotpSecret, &sealed)?,
                    params: TotpParams {
                        algorithm: algorithm
                            .as_deref()
                            .and_then(Algorithm::parse)
                            .ok_or_else(|| malformed("TOTP algorithm"))?,
                        digits: digits
                            .and_then(|d| u8::try_from(d).ok())
                            .ok_or_else(|| malformed("TOTP digit count"))?,
                        period: period
                            .and_then(|p| u32::try_from(p).ok())
                            .ok_or_else(|| malformed("TOTP period"))?,
                    },
                    window: window_from_columns(
                        window.map(i64::from),
                        ahead.map(i64::from),
                        r.get("clock_offset"),
                    ),
                    last_step: r.get("last_step"),
                }
            }
            _ => return Err(malformed("device kind")),
        };
        Ok(Device {
            id: r.get("id"),
            user,
            name,
            verified: r.get("verified"),
            created: r.get("created"),
            factor,
        })
    }

    fn seal_field(
        &self,
        user: &str,
        device: &str,
        field: FactorField,
        plain: &[u8],
    ) -> StoreResult<Vec<u8>> {
        seal_factor_field(self.pg().seal_key(), user, device, field, plain)
    }

    fn open_field(
        &self,
        user: &str,
        device: &str,
        field: FactorField,
        sealed: &[u8],
    ) -> StoreResult<SecretBytes> {
        open_factor_field(Some(self.pg().seal_key()), user, device, field, sealed)
    }
}

impl Devices for PgTx<'_> {
    fn devices(&self, user: &str) -> StoreResult<Vec<Device>> {
        self.lock_account(user)?;
        let rows = self.pg().query(
            "SELECT * FROM devices WHERE username = $1 ORDER BY created, id",
            &[&user],
        )?;
        rows.iter().map(|r| self.device_from_row(r)).collect()
    }

    fn insert_device(&self, d: &Device) -> StoreResult<i64> {
        self.lock_account(&d.user)?;
        // ON CONFLICT rather than catching the violation: an error would
        // abort the whole transaction here, unlike SQLite.
        let row = match &d.factor {
            Factor::Totp {
                secret,
                params,
                window,
                last_step,
            } => {
                let sealed = self.seal_field(&d.user, &d.name, FactorField::TotpSecret, secret)?;
                let digits = i32::from(params.digits);
                let period = i32::try_from(params.period).unwrap_or(i32::MAX);
                let (window, ahead, clock_offset) = window_columns(window);
                let int = |v: i64| i32::try_from(v).unwrap_or(i32::MAX);
                let (window, ahead) = (window.map(int), ahead.map(int));
                self.pg().query_opt(
                    "INSERT INTO devices (username, name, kind, secret, algorithm, digits, period,
                                          totp_window, totp_window_ahead, clock_offset, last_step,
                                          verified, created)
                     VALUES ($1, $2, 'totp', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (username, name) DO NOTHING RETURNING id",
                    &[
                        &d.user,
                        &d.name,
                        &sealed,
                        &params.algorithm.as_str(),
                        &digits,
                        &period,
                        &window,
                        &ahead,
                        &clock_offset,
                        last_step,
                        &d.verified,
                        &d.created,
                    ],
                )?
            }
            Factor::Sms { phone } => {
                let sealed =
                    self.seal_field(&d.user, &d.name, FactorField::SmsPhone, phone.as_bytes())?;
                self.pg().query_opt(
                    "INSERT INTO devices (username, name, kind, phone, verified, created)
                     VALUES ($1, $2, 'sms', $3, $4, $5)
                     ON CONFLICT (username, name) DO NOTHING RETURNING id",
                    &[&d.user, &d.name, &sealed, &d.verified, &d.created],
                )?
            }
        };
        row.map(|r| r.get(0)).ok_or_else(|| {
            StoreError::Conflict(format!(
                "{} already has a device named \"{}\"",
                d.user, d.name
            ))
        })
    }

    fn mark_verified(&self, id: i64) -> StoreResult<()> {
        self.pg()
            .execute("UPDATE devices SET verified = true WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn set_last_step(&self, id: i64, step: i64) -> StoreResult<()> {
        self.pg().execute(
            "UPDATE devices SET last_step = $2 WHERE id = $1",
            &[&id, &step],
        )?;
        Ok(())
    }

    fn delete_device(&self, user: &str, name: &str) -> StoreResult<bool> {
        self.lock_account(user)?;
        Ok(self.pg().execute(
            "DELETE FROM devices WHERE username = $1 AND name = $2",
            &[&user, &name],
        )? > 0)
    }

    fn secrets_at_rest(&self) -> StoreResult<SecretsAtRest> {
        // Every row is sealed: this engine has no plaintext columns.
        let rows = self
            .pg()
            .query_opt("SELECT count(*)::int4 FROM devices", &[])?;
        Ok(SecretsAtRest {
            sealed: rows.map_or(0, |r| count(r.get(0))),
            plaintext: 0,
        })
    }

    fn delete_devices(&self, user: &str) -> StoreResult<u32> {
        self.lock_account(user)?;
        let n = self
            .pg()
            .execute("DELETE FROM devices WHERE username = $1", &[&user])?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

impl Codes for PgTx<'_> {
    fn bypass_codes(&self, user: &str) -> StoreResult<Vec<StoredCode>> {
        self.lock_account(user)?;
        let rows = self.pg().query(
            "SELECT id, hash FROM bypass_codes WHERE username = $1 ORDER BY id",
            &[&user],
        )?;
        rows.iter()
            .map(|r| {
                Ok(StoredCode {
                    id: r.get(0),
                    hash: hash_from(r.get(1))?,
                })
            })
            .collect()
    }

    fn replace_bypass_codes(&self, user: &str, hashes: &[CodeHash], now: i64) -> StoreResult<()> {
        self.lock_account(user)?;
        self.pg()
            .execute("DELETE FROM bypass_codes WHERE username = $1", &[&user])?;
        let encoded: Vec<String> = hashes.iter().map(CodeHash::encode).collect();
        self.pg().execute(
            "INSERT INTO bypass_codes (username, hash, created)
             SELECT $1, h, $3 FROM unnest($2::text[]) AS h",
            &[&user, &encoded, &now],
        )?;
        Ok(())
    }

    fn delete_bypass_code(&self, id: i64) -> StoreResult<()> {
        self.pg()
            .execute("DELETE FROM bypass_codes WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn delete_all_bypass_codes(&self, user: &str) -> StoreResult<u32> {
        self.lock_account(user)?;
        let n = self
            .pg()
            .execute("DELETE FROM bypass_codes WHERE username = $1", &[&user])?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn one_time_codes(&self, user: &str, now: i64) -> StoreResult<Vec<OneTimeCode>> {
        self.lock_account(user)?;
        // A snapshot leaves the purge to the next write transaction.
        if !self.read_only() {
            self.pg().execute(
                "DELETE FROM one_time_codes
                 WHERE username = $1 AND (expires <= $2 OR attempts_left <= 0)",
                &[&user, &now],
            )?;
        }
        let rows = self.pg().query(
            "SELECT id, purpose, hash, expires, attempts_left FROM one_time_codes
             WHERE username = $1 AND expires > $2 AND attempts_left > 0 ORDER BY id",
            &[&user, &now],
        )?;
        rows.iter()
            .map(|r| {
                let purpose: String = r.get(1);
                Ok(OneTimeCode {
                    id: r.get(0),
                    purpose: OneTimePurpose::parse(&purpose)
                        .ok_or_else(|| malformed("one-time code purpose"))?,
                    hash: hash_from(r.get(2))?,
                    expires: r.get(3),
                    attempts_left: count(r.get(4)),
                })
            })
            .collect()
    }

    fn put_one_time_code(
        &self,
        user: &str,
        purpose: OneTimePurpose,
        hash: &CodeHash,
        expires: i64,
        attempts: u32,
    ) -> StoreResult<()> {
        self.delete_one_time_codes(user, purpose)?;
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.pg().execute(
            "INSERT INTO one_time_codes (username, purpose, hash, expires, attempts_left)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &user,
                &purpose.as_str(),
                &hash.encode(),
                &expires,
                &attempts,
            ],
        )?;
        Ok(())
    }

    fn delete_one_time_code(&self, id: i64) -> StoreResult<()> {
        self.pg()
            .execute("DELETE FROM one_time_codes WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn delete_one_time_codes(&self, user: &str, purpose: OneTimePurpose) -> StoreResult<()> {
        self.lock_account(user)?;
        self.pg().execute(
            "DELETE FROM one_time_codes WHERE username = $1 AND purpose = $2",
            &[&user, &purpose.as_str()],
        )?;
        Ok(())
    }

    fn set_attempts_left(&self, id: i64, attempts: u32) -> StoreResult<()> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.pg().execute(
            "UPDATE one_time_codes SET attempts_left = $2 WHERE id = $1",
            &[&id, &attempts],
        )?;
        Ok(())
    }
}

impl Settings for PgTx<'_> {
    fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self
            .pg()
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    fn all_settings(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = self
            .pg()
            .query("SELECT key, value FROM settings ORDER BY key", &[])?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        self.pg().execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        )?;
        Ok(())
    }
}

impl AuditLog for PgTx<'_> {
    fn purge_audit(&self, before: i64) -> StoreResult<u32> {
        let n = self
            .pg()
            .execute("DELETE FROM audit WHERE time < $1", &[&before])?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn syslog_after_commit(&self, level: crate::audit::Level, line: String) {
        self.after_commit.borrow_mut().push((level, line));
    }

    fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        self.pg().execute(
            "INSERT INTO audit (time, username, host, event, detail) VALUES ($1, $2, $3, $4, $5)",
            &[&e.time, &e.user, &e.host, &e.event, &e.detail],
        )?;
        Ok(())
    }

    fn audit_entries(
        &self,
        user: Option<&str>,
        host: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>> {
        let limit = i64::from(limit);
        let rows = self.pg().query(
            "SELECT time, host, username, event, detail FROM (
                 SELECT id, time, host, username, event, detail FROM audit
                 WHERE ($1::text IS NULL OR username = $1) AND ($2::text IS NULL OR host = $2)
                 ORDER BY id DESC LIMIT $3) newest
             ORDER BY id",
            &[&user, &host, &limit],
        )?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                time: r.get(0),
                host: r.get(1),
                user: r.get(2),
                event: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }
}

impl Texts for PgTx<'_> {
    fn record_text(&self, user: &str, host: &str, purpose: &str, now: i64) -> StoreResult<()> {
        self.pg().execute(
            "INSERT INTO texts (time, username, host, purpose) VALUES ($1, $2, $3, $4)",
            &[&now, &user, &host, &purpose],
        )?;
        Ok(())
    }

    fn user_texts_since(&self, user: &str, since: i64) -> StoreResult<(u32, Option<i64>)> {
        let row = self.pg().query_opt(
            "SELECT COUNT(*)::int4, MIN(time) FROM texts WHERE username = $1 AND time >= $2",
            &[&user, &since],
        )?;
        Ok(row.map_or((0, None), |r| (count(r.get(0)), r.get(1))))
    }

    fn host_texts_since(&self, host: &str, since: i64) -> StoreResult<(u32, Option<i64>)> {
        let row = self.pg().query_opt(
            "SELECT COUNT(*)::int4, MIN(time) FROM texts WHERE host = $1 AND time >= $2",
            &[&host, &since],
        )?;
        Ok(row.map_or((0, None), |r| (count(r.get(0)), r.get(1))))
    }

    fn purge_texts(&self, before: i64) -> StoreResult<u32> {
        let n = self
            .pg()
            .execute("DELETE FROM texts WHERE time < $1", &[&before])?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}
