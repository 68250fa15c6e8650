//! SQLite engine: safe open (owner and mode checks), WAL, busy timeout, and
//! schema migrations by `PRAGMA user_version`.
#![forbid(unsafe_code)]

use super::{Store, StoreError, StoreResult, Tx};
use crate::config::trusted_owner;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SCHEMA_VERSION: i64 = 1;

/// How long a login waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The `mfa` command: create the directory, file and schema if missing.
    Create,
    /// The PAM module: a missing database means MFA is unavailable.
    Existing,
}

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

pub(super) struct SqliteTx<'c> {
    pub(super) tx: rusqlite::Transaction<'c>,
}

fn unavailable(path: &Path, what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("database {}: {what}", path.display()))
}

fn check_dir(dir: &Path) -> StoreResult<()> {
    let meta = std::fs::metadata(dir).map_err(|e| unavailable(dir, e))?;
    if !trusted_owner(meta.uid()) {
        return Err(unavailable(
            dir,
            format_args!(
                "its directory is owned by uid {}, not root; fix with: chown root:root {}",
                meta.uid(),
                dir.display()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unavailable(
            dir,
            format_args!(
                "its directory is writable by group or others (mode {:04o}); fix with: chmod 0700 {}",
                meta.mode() & 0o7777,
                dir.display()
            ),
        ));
    }
    Ok(())
}

fn check_file(path: &Path, meta: &std::fs::Metadata) -> StoreResult<()> {
    if !meta.is_file() {
        return Err(unavailable(path, "it is not a regular file"));
    }
    if !trusted_owner(meta.uid()) {
        return Err(unavailable(
            path,
            format_args!(
                "it is owned by uid {}, not root; fix with: chown root:root {}",
                meta.uid(),
                path.display()
            ),
        ));
    }
    // It holds TOTP secrets: nobody else may even read it.
    if meta.mode() & 0o077 != 0 {
        return Err(unavailable(
            path,
            format_args!(
                "it is accessible to group or others (mode {:04o}); fix with: chmod 0600 {}",
                meta.mode() & 0o7777,
                path.display()
            ),
        ));
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path, mode: OpenMode) -> StoreResult<SqliteStore> {
        let dir = path
            .parent()
            .ok_or_else(|| unavailable(path, "path has no directory"))?;
        if mode == OpenMode::Create && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| unavailable(path, format_args!("cannot create its directory: {e}")))?;
        }
        check_dir(dir)?;
        match std::fs::symlink_metadata(path) {
            Ok(meta) => check_file(path, &meta)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if mode == OpenMode::Existing {
                    return Err(unavailable(
                        path,
                        "it does not exist; create it with `mfa admin policy` or any mfa command run as root",
                    ));
                }
                // Create it 0600 ourselves: SQLite would honour the umask.
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| unavailable(path, format_args!("cannot create it: {e}")))?;
            }
            Err(e) => return Err(unavailable(path, e)),
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| unavailable(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| unavailable(path, e))?;
        let mut store = SqliteStore {
            conn,
            path: path.to_owned(),
        };
        store.prepare().map_err(|e| match e {
            StoreError::Sql(e) => unavailable(path, e),
            StoreError::Unavailable(m) => unavailable(path, m),
            other => other,
        })?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn prepare(&mut self) -> StoreResult<()> {
        // WAL lets readers (status, doctor) run beside a login's write, and
        // survives a killed process without losing committed counts.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "cannot switch to WAL journal (got {mode})"
            )));
        }
        self.conn
            .execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
        self.migrate()
    }

    fn migrate(&mut self) -> StoreResult<()> {
        // Every login opens the database: when the schema is current, a read
        // must do. Taking the write lock and rewriting user_version here cost
        // each login a write transaction and one more turn at the lock.
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        check_not_newer(version)?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated since the read above.
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        check_not_newer(version)?;
        if version < 1 {
            tx.execute_batch(SCHEMA_V1)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        tx.commit()?;
        Ok(())
    }

    /// `PRAGMA integrity_check`, for `mfa doctor` and the crash tests.
    pub fn integrity_check(&self) -> StoreResult<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    pub fn schema_version(&self) -> StoreResult<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

fn check_not_newer(version: i64) -> StoreResult<()> {
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "schema version {version} is newer than this pam_mfa understands ({SCHEMA_VERSION}); upgrade pam_mfa"
        )));
    }
    Ok(())
}

impl Store for SqliteStore {
    fn begin(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Ok(Box::new(SqliteTx { tx }))
    }
}

impl Tx for SqliteTx<'_> {
    fn commit(self: Box<Self>) -> StoreResult<()> {
        Ok(self.tx.commit()?)
    }
}

const SCHEMA_V1: &str = "
CREATE TABLE accounts (
    user TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_at INTEGER,
    last_failure INTEGER
) WITHOUT ROWID;
CREATE TABLE devices (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('totp', 'sms')),
    secret BLOB,
    algorithm TEXT,
    digits INTEGER,
    period INTEGER,
    window INTEGER,
    last_step INTEGER,
    phone TEXT,
    verified INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    UNIQUE (user, name)
);
CREATE TABLE bypass_codes (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    hash TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX bypass_codes_user ON bypass_codes (user);
CREATE TABLE one_time_codes (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    purpose TEXT NOT NULL,
    hash TEXT NOT NULL,
    expires INTEGER NOT NULL,
    attempts_left INTEGER NOT NULL
);
CREATE INDEX one_time_codes_user ON one_time_codes (user);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    user TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_user ON audit (user, id);
";
