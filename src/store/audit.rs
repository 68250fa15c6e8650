use super::sqlite::SqliteTx;
use super::{AuditEntry, AuditLog, StoreResult};
use rusqlite::params;

impl AuditLog for SqliteTx<'_> {
    fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        self.run(
            "INSERT INTO audit (time, host, user, event, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.time, e.host, e.user, e.event, e.detail],
        )?;
        Ok(())
    }

    fn purge_audit(&self, before: i64) -> StoreResult<u32> {
        Ok(self.run("DELETE FROM audit WHERE time < ?1", [before])? as u32)
    }

    fn syslog_after_commit(&self, level: crate::audit::Level, line: String) {
        self.after_commit.borrow_mut().push((level, line));
    }

    fn audit_entries(
        &self,
        user: Option<&str>,
        host: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>> {
        // Newest `limit` entries, returned oldest first like a log.
        let mut stmt = self.tx.prepare_cached(
            "SELECT time, host, user, event, detail FROM (
                 SELECT id, time, host, user, event, detail FROM audit
                 WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR host = ?2)
                 ORDER BY id DESC LIMIT ?3)
             ORDER BY id",
        )?;
        let rows = stmt.query_map(params![user, host, limit], |r| {
            Ok(AuditEntry {
                time: r.get(0)?,
                host: r.get(1)?,
                user: r.get(2)?,
                event: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
