use super::sqlite::SqliteTx;
use super::{Codes, OneTimeCode, StoreError, StoreResult, StoredCode};
use crate::codes::{CodeHash, OneTimePurpose};
use rusqlite::params;

fn decode(text: String) -> rusqlite::Result<CodeHash> {
    // A mangled hash must not become "no code": surface it as corruption.
    CodeHash::decode(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            "stored code hash is malformed".into(),
        )
    })
}

fn corrupt(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..) => {
            StoreError::Unavailable(format!("the database holds a malformed code hash ({e})"))
        }
        e => e.into(),
    }
}

impl Codes for SqliteTx<'_> {
    fn bypass_codes(&self, user: &str) -> StoreResult<Vec<StoredCode>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT id, hash FROM bypass_codes WHERE user = ?1 ORDER BY id")?;
        let rows = stmt.query_map([user], |r| {
            Ok(StoredCode {
                id: r.get(0)?,
                hash: decode(r.get(1)?)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(corrupt)
    }

    fn replace_bypass_codes(&self, user: &str, hashes: &[CodeHash], now: i64) -> StoreResult<()> {
        self.run("DELETE FROM bypass_codes WHERE user = ?1", [user])?;
        let mut stmt = self
            .tx
            .prepare_cached("INSERT INTO bypass_codes (user, hash, created) VALUES (?1, ?2, ?3)")?;
        for h in hashes {
            stmt.execute(params![user, h.encode(), now])?;
        }
        Ok(())
    }

    fn delete_bypass_code(&self, id: i64) -> StoreResult<()> {
        self.run("DELETE FROM bypass_codes WHERE id = ?1", [id])?;
        Ok(())
    }

    fn delete_all_bypass_codes(&self, user: &str) -> StoreResult<u32> {
        Ok(self.run("DELETE FROM bypass_codes WHERE user = ?1", [user])? as u32)
    }

    fn one_time_codes(&self, user: &str, now: i64) -> StoreResult<Vec<OneTimeCode>> {
        // A snapshot leaves the purge to the next write transaction.
        if !self.read_only {
            self.run(
                "DELETE FROM one_time_codes WHERE user = ?1 AND (expires <= ?2 OR attempts_left <= 0)",
                params![user, now],
            )?;
        }
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, purpose, hash, expires, attempts_left FROM one_time_codes
             WHERE user = ?1 AND expires > ?2 AND attempts_left > 0 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![user, now], |r| {
            let purpose: String = r.get(1)?;
            Ok(OneTimeCode {
                id: r.get(0)?,
                purpose: OneTimePurpose::parse(&purpose).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        "unknown one-time code purpose".into(),
                    )
                })?,
                hash: decode(r.get(2)?)?,
                expires: r.get(3)?,
                attempts_left: r.get(4)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(corrupt)
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
        self.run(
            "INSERT INTO one_time_codes (user, purpose, hash, expires, attempts_left)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user, purpose.as_str(), hash.encode(), expires, attempts],
        )?;
        Ok(())
    }

    fn delete_one_time_code(&self, id: i64) -> StoreResult<()> {
        self.run("DELETE FROM one_time_codes WHERE id = ?1", [id])?;
        Ok(())
    }

    fn delete_one_time_codes(&self, user: &str, purpose: OneTimePurpose) -> StoreResult<()> {
        self.run(
            "DELETE FROM one_time_codes WHERE user = ?1 AND purpose = ?2",
            [user, purpose.as_str()],
        )?;
        Ok(())
    }

    fn set_attempts_left(&self, id: i64, attempts: u32) -> StoreResult<()> {
        self.run(
            "UPDATE one_time_codes SET attempts_left = ?2 WHERE id = ?1",
            params![id, attempts],
        )?;
        Ok(())
    }
}
