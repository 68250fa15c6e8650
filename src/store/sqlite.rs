//! SQLite engine: safe open (owner and mode checks), WAL, busy timeout, and
//! schema migrations by `PRAGMA user_version`.

use super::{Store, StoreError, StoreResult, Tx};
use crate::seal::SealKey;
use crate::trust::{self, Distrust, Expect};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const SCHEMA_VERSION: i64 = 4;

/// How long a login waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// WAL size above which closing the store checkpoints and empties it (see
/// `Drop`). About ten logins' worth of 4 KiB pages.
const WAL_TRUNCATE_BYTES: u64 = 32 * (4096 + 24);

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
    wal_path: PathBuf,
    /// (device, inode) of the file opened: a file deleted or replaced under
    /// an open connection would take every later write with it, unseen.
    identity: (u64, u64),
    /// Seals new secrets and opens sealed ones; None: plaintext as in
    /// schema version 1 (a sealed row then makes the store unavailable).
    seal_key: Option<Arc<SealKey>>,
}

pub(super) struct SqliteTx<'c> {
    pub(super) tx: rusqlite::Transaction<'c>,
    pub(super) seal_key: Option<&'c SealKey>,
    wal_path: &'c Path,
    /// `total_changes()` at BEGIN: equal at COMMIT means nothing to sync.
    changes_at_begin: u64,
    /// A snapshot from `begin_read`: a write in it would wait for the
    /// write lock that it was meant never to take.
    pub(super) read_only: bool,
    _write_mark: Option<super::WriteMark>,
    /// Syslog lines of audit events, sent once the commit succeeded.
    pub(super) after_commit: std::cell::RefCell<Vec<(crate::audit::Level, String)>>,
}

impl SqliteTx<'_> {
    /// Runs one statement, prepared once per connection: the daemon keeps
    /// its connections, and parsing SQL was a third of a login's work.
    pub(super) fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        if self.read_only {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                Some("a write in a read transaction".into()),
            ));
        }
        self.tx.prepare_cached(sql)?.execute(params)
    }

    /// The one row a query returns, through the statement cache.
    pub(super) fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.tx.prepare_cached(sql)?.query_row(params, f)
    }
}

/// SQLite's errors in the store's terms: corrupt is unavailable; busy,
/// read-only, full or unopenable is faulty; the rest failed.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                StoreError::Unavailable(format!(
                    "the database is corrupt ({e}); restore it from a backup"
                ))
            }
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) | Some(ErrorCode::DiskFull) => {
                StoreError::Faulty(format!("the database cannot be written: {e}"))
            }
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                StoreError::Faulty(format!("the database is busy: {e}"))
            }
            _ => StoreError::Failed(e.to_string()),
        }
    }
}

/// Refused as it stands (owner, mode, type): the admin must fix it.
fn unavailable(path: &Path, what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("database {}: {what}", path.display()))
}

/// There but failing (I/O, limits, read-only): never a reason to allow.
fn faulty(path: &Path, what: impl std::fmt::Display) -> StoreError {
    StoreError::Faulty(format!("database {}: {what}", path.display()))
}

/// Not there at all: only `mfa admin init` creates it.
fn missing(path: &Path) -> StoreError {
    StoreError::Missing(format!(
        "database {}: it does not exist; create it with `mfa admin init` (as root)",
        path.display()
    ))
}

/// A failed stat: "not there" is missing, anything else (EACCES, ENOMEM,
/// EIO) is a fault.
fn stat_error(path: &Path, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        missing(path)
    } else {
        faulty(path, e)
    }
}

/// The database's directory: nobody else may add, remove or swap files in it.
const DIR: Expect = Expect::dir(trust::OTHERS_WRITE);
/// The file holds TOTP secrets: nobody else may even read it. Judged by
/// lstat, so a symbolic link is not a regular file.
const FILE: Expect = Expect::file(trust::OTHERS_ANY);

fn check_dir(dir: &Path) -> StoreResult<()> {
    match trust::check_path(dir, DIR) {
        Ok(_) => Ok(()),
        Err(Distrust::Stat(e)) => Err(stat_error(dir, e)),
        Err(Distrust::Owner { uid }) => Err(unavailable(
            dir,
            format_args!(
                "its directory is owned by uid {uid}, not root; fix with: chown root:root {}",
                dir.display()
            ),
        )),
        Err(Distrust::Mode { mode }) => Err(unavailable(
            dir,
            format_args!(
                "its directory is writable by group or others (mode {mode:04o}); fix with: chmod 0700 {}",
                dir.display()
            ),
        )),
        Err(Distrust::NotAFile | Distrust::Symlink) => {
            Err(unavailable(dir, "its directory is not a directory"))
        }
    }
}

fn check_file(path: &Path, meta: &std::fs::Metadata) -> StoreResult<()> {
    match trust::check(meta, FILE) {
        Ok(()) => Ok(()),
        Err(Distrust::NotAFile | Distrust::Symlink) => {
            Err(unavailable(path, "it is not a regular file"))
        }
        Err(Distrust::Owner { uid }) => Err(unavailable(
            path,
            format_args!(
                "it is owned by uid {uid}, not root; fix with: chown root:root {}",
                path.display()
            ),
        )),
        Err(Distrust::Mode { mode }) => Err(unavailable(
            path,
            format_args!(
                "it is accessible to group or others (mode {mode:04o}); fix with: chmod 0600 {}",
                path.display()
            ),
        )),
        Err(Distrust::Stat(e)) => Err(faulty(path, e)),
    }
}

impl SqliteStore {
    /// Opens (or with `Create`, creates) the database. `seal_key` is the
    /// config's `secrets_key_file`, loaded: with it, secrets written are
    /// sealed; without, they are stored in plaintext.
    pub fn open(
        path: &Path,
        mode: OpenMode,
        seal_key: Option<Arc<SealKey>>,
    ) -> StoreResult<SqliteStore> {
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
                    return Err(missing(path));
                }
                // Create it 0600 ourselves: SQLite would honour the umask.
                let created = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path);
                match created {
                    Ok(_) => {}
                    // Another `admin init` (or daemon start) made it between
                    // our stat and our create: judge theirs as any file.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let meta = std::fs::symlink_metadata(path).map_err(|e| faulty(path, e))?;
                        check_file(path, &meta)?;
                    }
                    Err(e) => return Err(faulty(path, format_args!("cannot create it: {e}"))),
                }
            }
            Err(e) => return Err(faulty(path, e)),
        }
        // From here on the file is there and acceptable: whatever fails
        // (EMFILE, ENOMEM, I/O, a read-only mount) is a fault, not a refusal.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| faulty(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| faulty(path, e))?;
        // Every statement the store runs stays prepared (see `SqliteTx::run`).
        conn.set_prepared_statement_cache_capacity(64);
        // SQLite quietly opens read-only what it cannot open for writing (a
        // read-only mount). Every login writes, so say so now, not after
        // the user has typed a code.
        if conn
            .is_readonly(rusqlite::DatabaseName::Main)
            .map_err(|e| faulty(path, e))?
        {
            return Err(faulty(
                path,
                "it cannot be opened for writing (read-only filesystem?)",
            ));
        }
        // Each login is a process that opens, writes once and closes. By
        // default the last connection to close checkpoints the WAL into the
        // database and deletes it: four fsyncs per login. `Drop` does that
        // only once the WAL has grown, and the next opener scans the rest.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|e| faulty(path, e))?;
        let meta = std::fs::metadata(path).map_err(|e| stat_error(path, e))?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let mut store = SqliteStore {
            conn,
            path: path.to_owned(),
            wal_path: wal_path.into(),
            identity: (meta.dev(), meta.ino()),
            seal_key,
        };
        store.prepare().map_err(|e| match e {
            StoreError::Failed(e) => faulty(path, e),
            StoreError::Unavailable(m) => unavailable(path, m),
            StoreError::Faulty(m) => faulty(path, m),
            other => other,
        })?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a store kept open (the daemon's) may still be used: the same
    /// file at the path, with owner and mode as `open` requires. A store
    /// that fails this is dropped and the path opened afresh.
    pub fn still_usable(&self) -> StoreResult<()> {
        let meta = std::fs::symlink_metadata(&self.path).map_err(|e| stat_error(&self.path, e))?;
        if (meta.dev(), meta.ino()) != self.identity {
            return Err(faulty(&self.path, "it was replaced or removed"));
        }
        check_file(&self.path, &meta)?;
        match self.path.parent() {
            Some(dir) => check_dir(dir),
            None => Ok(()),
        }
    }

    fn prepare(&mut self) -> StoreResult<()> {
        // WAL lets readers (status, doctor) run beside a login's write, and
        // survives a killed process without losing committed counts.
        let mode = self.switch_to_wal()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Faulty(format!(
                "cannot switch to WAL journal (got {mode})"
            )));
        }
        // NORMAL: a commit is not synced by SQLite; `SqliteTx::commit` syncs
        // the WAL itself, so each transaction chooses (see `Tx`).
        self.conn
            .execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
        self.migrate()
    }

    /// The switch needs the file to itself, and SQLite answers "busy" at
    /// once, without its busy handler, while another connection switches
    /// the same new file (two `admin init` at once). Once the file is in
    /// WAL mode this is a read and never busy.
    fn switch_to_wal(&self) -> StoreResult<String> {
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match self
                .conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return Ok(other?),
            }
        }
    }

    fn migrate(&mut self) -> StoreResult<()> {
        // Every login opens the database: the common case must not write.
        if self.schema_version()? == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "schema version {version} is newer than this pam_mfa understands ({SCHEMA_VERSION}); upgrade pam_mfa"
            )));
        }
        if version < 1 {
            tx.execute_batch(SCHEMA_V1)?;
        }
        if version < 2 {
            tx.execute_batch(SCHEMA_V2)?;
        }
        // Version 3 (root's timed lock, texts counted) needs nothing of 2.
        if version < 3 {
            tx.execute_batch(SCHEMA_V3)?;
        }
        if version < 4 {
            tx.execute_batch(SCHEMA_V4)?;
        }
        if version < SCHEMA_VERSION {
            tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// `PRAGMA integrity_check`, for `mfa doctor` and the crash tests.
    pub fn integrity_check(&self) -> StoreResult<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// The key this store seals with (None: it writes plaintext).
    pub fn seal_key(&self) -> Option<&Arc<SealKey>> {
        self.seal_key.as_ref()
    }

    pub fn schema_version(&self) -> StoreResult<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Another process's recovery cannot tell which WAL frames were
        // already checkpointed, so it would copy them all again at the next
        // checkpoint and the WAL would never restart: empty it here, once
        // it is worth the fsyncs. Without waiting: a login ending must not
        // sit out other logins' transactions for this; a busy result leaves
        // the emptying to the next store to close.
        let wal_len = std::fs::metadata(&self.wal_path).map_or(0, |m| m.len());
        if wal_len > WAL_TRUNCATE_BYTES && self.conn.busy_timeout(Duration::ZERO).is_ok() {
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }
}

impl SqliteStore {
    fn start(&mut self, behavior: TransactionBehavior) -> StoreResult<Box<dyn Tx + '_>> {
        let tx = self.conn.transaction_with_behavior(behavior)?;
        // A login can wait minutes at a prompt with the database open. If
        // the file was deleted or replaced (a restored backup) meanwhile,
        // this connection would read and write a file nobody else sees:
        // failures counted nowhere, a code spent twice. Checked under the
        // write lock; dropping `tx` rolls back.
        let same = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if !same {
            return Err(faulty(
                &self.path,
                "the file was removed or replaced while in use; try again",
            ));
        }
        Ok(Box::new(SqliteTx {
            changes_at_begin: tx.total_changes(),
            read_only: matches!(behavior, TransactionBehavior::Deferred),
            _write_mark: (!matches!(behavior, TransactionBehavior::Deferred))
                .then(super::WriteMark::new),
            tx,
            seal_key: self.seal_key.as_deref(),
            wal_path: &self.wal_path,
            after_commit: Default::default(),
        }))
    }
}

impl Store for SqliteStore {
    fn begin(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        self.start(TransactionBehavior::Immediate)
    }

    /// Deferred: in WAL mode its first read takes a snapshot and no lock
    /// that a writer waits for, so a login waiting at a prompt, or hashing,
    /// holds nobody up.
    fn begin_read(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        self.start(TransactionBehavior::Deferred)
    }
}

impl Tx for SqliteTx<'_> {
    fn commit(self: Box<Self>) -> StoreResult<()> {
        let wrote = self.tx.total_changes() != self.changes_at_begin;
        let logged = self.after_commit.take();
        self.tx.commit()?;
        for (level, line) in logged {
            crate::audit::syslog(level, &line);
        }
        if !wrote {
            return Ok(());
        }
        // What `PRAGMA synchronous=FULL` does in WAL mode: fsync the WAL
        // after the commit. Any descriptor of the file flushes its pages.
        // No WAL file means a checkpoint moved everything into the
        // database, and a checkpoint syncs the database.
        let synced = match std::fs::File::open(self.wal_path) {
            Ok(wal) => wal.sync_data(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        synced.map_err(|e| {
            faulty(
                self.wal_path,
                format_args!("committed but not synced to disk: {e}"),
            )
        })
    }

    fn commit_unsynced(self: Box<Self>) -> StoreResult<()> {
        let logged = self.after_commit.take();
        self.tx.commit()?;
        for (level, line) in logged {
            crate::audit::syslog(level, &line);
        }
        Ok(())
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

/// Version 2: secrets sealed at rest (a device keeps either the plaintext
/// column of version 1 or the sealed one; see `store::sealing`), and the
/// host that wrote each audit row.
pub const SCHEMA_V2: &str = "
ALTER TABLE devices ADD COLUMN secret_sealed BLOB;
ALTER TABLE devices ADD COLUMN phone_sealed BLOB;
ALTER TABLE audit ADD COLUMN host TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_host ON audit (host, id);
";

/// Version 3: root's lock that ends by itself (`root_unlock_time`), and the
/// texts sent, counted for the per-user and per-host limits.
const SCHEMA_V3: &str = "
ALTER TABLE accounts ADD COLUMN locked_until INTEGER;
CREATE TABLE texts (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    purpose TEXT NOT NULL
);
CREATE INDEX texts_user ON texts (user, time);
CREATE INDEX texts_host ON texts (host, time);
";

/// Version 4: a device's own window shape and clock offset, as imported
/// from a google-authenticator file (WINDOW_SIZE, TIME_SKEW): accepted
/// steps run from now + clock_offset - window to now + clock_offset +
/// window_ahead (NULL: as many as `window`).
const SCHEMA_V4: &str = "
ALTER TABLE devices ADD COLUMN window_ahead INTEGER;
ALTER TABLE devices ADD COLUMN clock_offset INTEGER NOT NULL DEFAULT 0;
";

#[cfg(test)]
mod tests {
    use super::*;

    /// Two `admin init` at once: both stat "no file", one creates it, and
    /// the other must open that one instead of failing with "File exists".
    #[test]
    fn two_creators_at_once_both_open_the_one_file() {
        let temp = tempfile::tempdir().unwrap();
        for round in 0..50 {
            let path = temp.path().join(format!("mfa-{round}.sqlite3"));
            let start = std::sync::Barrier::new(2);
            let results: Vec<StoreResult<()>> = std::thread::scope(|s| {
                let open = || {
                    start.wait();
                    SqliteStore::open(&path, OpenMode::Create, None).map(drop)
                };
                let a = s.spawn(open);
                let b = s.spawn(open);
                vec![a.join().unwrap(), b.join().unwrap()]
            });
            for r in &results {
                assert!(r.is_ok(), "round {round}: {r:?}");
            }
        }
    }

    #[test]
    fn a_file_replaced_or_removed_under_an_open_store_is_unavailable() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let path = dir.join("mfa.sqlite3");
        let mut store = SqliteStore::open(&path, OpenMode::Create, None).unwrap();
        store.begin().unwrap().commit().unwrap();

        // A backup restored by rename, as careful admins do.
        let restored = dir.join("restored");
        std::fs::copy(&path, &restored).unwrap();
        std::fs::rename(&restored, &path).unwrap();
        let e = store.begin().err().expect("a replaced file is refused");
        assert!(
            matches!(&e, StoreError::Faulty(m) if m.contains("replaced")),
            "{e}"
        );

        std::fs::remove_file(&path).unwrap();
        assert!(store.begin().is_err(), "a removed file is refused");
    }

    #[test]
    fn a_version_1_database_migrates_to_3_and_its_rows_still_read() {
        use crate::store::Factor;
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.join("mfa.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO devices (user, name, kind, secret, algorithm, digits, period,
                                      verified, created)
                 VALUES ('alice', 'phone', 'totp', x'3132333435', 'SHA1', 6, 30, 1, 1);
                 INSERT INTO devices (user, name, kind, phone, verified, created)
                 VALUES ('bob', 'sms', 'sms', '+15551234567', 1, 1);
                 INSERT INTO audit (time, user, event) VALUES (1, 'alice', 'device-enrolled');
                 INSERT INTO accounts (user, failures, locked_at, last_failure) VALUES ('bob', 6, 5, 5);",
            )
            .unwrap();
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

        let key = Arc::new(SealKey::generate().unwrap());
        let mut store = SqliteStore::open(&path, OpenMode::Existing, Some(key)).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let tx = store.begin().unwrap();
        match &tx.devices("alice").unwrap()[0].factor {
            Factor::Totp { secret, window, .. } => {
                assert_eq!(secret.as_slice(), b"12345");
                // Version 4's columns: the config's window, no offset.
                assert_eq!(*window, None);
            }
            other => panic!("{other:?}"),
        }
        match &tx.devices("bob").unwrap()[0].factor {
            Factor::Sms { phone } => assert_eq!(phone, "+15551234567"),
            other => panic!("{other:?}"),
        }
        let old = tx.audit_entries(None, Some(""), 10).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(
            (old[0].host.as_str(), old[0].event.as_str()),
            ("", "device-enrolled")
        );
        assert!(tx
            .audit_entries(None, Some("elsewhere"), 10)
            .unwrap()
            .is_empty());
        assert_eq!(tx.secrets_at_rest().unwrap().plaintext, 2);
        let bob = tx.account("bob").unwrap();
        assert_eq!(
            (bob.failures, bob.locked_at, bob.locked_until),
            (6, Some(5), None)
        );
        drop(tx);
        drop(store);
    }

    #[test]
    fn closing_a_store_empties_a_grown_wal_and_keeps_a_small_one() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let path = dir.join("mfa.sqlite3");
        let wal = dir.join("mfa.sqlite3-wal");
        // A value equal to the stored one would write no page at all.
        let write = |n: usize, fill: &str| {
            let mut store = SqliteStore::open(&path, OpenMode::Create, None).unwrap();
            for i in 0..n {
                let tx = store.begin().unwrap();
                tx.put_setting(&format!("k{i}"), &fill.repeat(3000))
                    .unwrap();
                tx.commit().unwrap();
            }
        };
        write(1, "a");
        let small = std::fs::metadata(&wal).unwrap().len();
        assert!(small > 0 && small <= WAL_TRUNCATE_BYTES, "{small}");
        write(40, "b");
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);

        // The database deleted, its WAL left behind: the new database must
        // not inherit the old one's pages (SQLite drops a WAL found beside
        // an empty database file).
        write(1, "c");
        std::fs::remove_file(&path).unwrap();
        let left = std::fs::metadata(&wal).unwrap().len();
        assert!(left > 0, "{left}");
        let mut store = SqliteStore::open(&path, OpenMode::Create, None).unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        assert_eq!(store.begin().unwrap().setting("k0").unwrap(), None);
        drop(store);
        let store = SqliteStore::open(&path, OpenMode::Existing, None).unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        drop(store);
    }
}
