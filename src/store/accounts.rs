use super::sqlite::SqliteTx;
use super::{Account, Accounts, StoreResult, UserSummary};
use rusqlite::{params, OptionalExtension};

impl Accounts for SqliteTx<'_> {
    fn account(&self, user: &str) -> StoreResult<Account> {
        Ok(self
            .row(
                "SELECT failures, locked_at, last_failure, locked_until FROM accounts WHERE user = ?1",
                [user],
                |r| {
                    Ok(Account {
                        failures: r.get(0)?,
                        locked_at: r.get(1)?,
                        last_failure: r.get(2)?,
                        locked_until: r.get(3)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    fn put_account(&self, user: &str, a: &Account) -> StoreResult<()> {
        if *a == Account::default() {
            self.run("DELETE FROM accounts WHERE user = ?1", [user])?;
        } else {
            self.run(
                "INSERT INTO accounts (user, failures, locked_at, last_failure, locked_until)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user) DO UPDATE SET failures = ?2, locked_at = ?3,
                     last_failure = ?4, locked_until = ?5",
                params![
                    user,
                    a.failures,
                    a.locked_at,
                    a.last_failure,
                    a.locked_until
                ],
            )?;
        }
        Ok(())
    }

    fn users(&self) -> StoreResult<Vec<UserSummary>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT u.user,
                    (SELECT COUNT(*) FROM devices d WHERE d.user = u.user),
                    COALESCE(a.failures, 0), a.locked_at IS NOT NULL
             FROM (SELECT user FROM devices UNION SELECT user FROM accounts
                   UNION SELECT user FROM bypass_codes) u
             LEFT JOIN accounts a ON a.user = u.user
             ORDER BY u.user",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(UserSummary {
                user: r.get(0)?,
                devices: r.get(1)?,
                failures: r.get(2)?,
                locked: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
