use super::sqlite::SqliteTx;
use super::{StoreResult, Texts};
use rusqlite::params;

impl Texts for SqliteTx<'_> {
    fn record_text(&self, user: &str, host: &str, purpose: &str, now: i64) -> StoreResult<()> {
        self.run(
            "INSERT INTO texts (time, user, host, purpose) VALUES (?1, ?2, ?3, ?4)",
            params![now, user, host, purpose],
        )?;
        Ok(())
    }

    fn user_texts_since(&self, user: &str, since: i64) -> StoreResult<(u32, Option<i64>)> {
        Ok(self.row(
            "SELECT COUNT(*), MIN(time) FROM texts WHERE user = ?1 AND time >= ?2",
            params![user, since],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    fn host_texts_since(&self, host: &str, since: i64) -> StoreResult<(u32, Option<i64>)> {
        Ok(self.row(
            "SELECT COUNT(*), MIN(time) FROM texts WHERE host = ?1 AND time >= ?2",
            params![host, since],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    fn purge_texts(&self, before: i64) -> StoreResult<u32> {
        Ok(self.run("DELETE FROM texts WHERE time < ?1", [before])? as u32)
    }
}
