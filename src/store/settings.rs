use super::sqlite::SqliteTx;
use super::{Settings, StoreResult};
use rusqlite::OptionalExtension;

impl Settings for SqliteTx<'_> {
    fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self
            .row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn all_settings(&self) -> StoreResult<Vec<(String, String)>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT key, value FROM settings ORDER BY key")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        self.run(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = ?2",
            [key, value],
        )?;
        Ok(())
    }
}
