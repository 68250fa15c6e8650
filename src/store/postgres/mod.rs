//! PostgreSQL engine, for a fleet of hosts on one database.
//!
//! One store is one connection with its own single-threaded runtime, and
//! every round trip has a deadline: a server that stops answering makes the
//! store unavailable within seconds instead of hanging a login. A
//! transaction locks the row of each account it touches (`FOR UPDATE`) the
//! first time it touches it, so logins of one user serialize across hosts
//! while logins of other users never wait for them.

mod connect;
mod schema;
mod tables;

pub use connect::{url_check, PgTarget};
pub use schema::SCHEMA_VERSION;

use super::{OpenMode, Store, StoreError, StoreResult, Tx};
use crate::seal::SealKey;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

/// Longest wait for one round trip. A login makes about ten; a database
/// that stalls longer than this is unavailable, not slow. Longer than the
/// server's own statement and lock timeouts (3 s), so those report first.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(4);

pub struct PgStore {
    rt: Runtime,
    client: Client,
    target: Arc<PgTarget>,
    statements: RefCell<HashMap<&'static str, Statement>>,
    /// Database clock minus ours, in seconds: lock and expiry times come
    /// from one clock for the whole fleet (see `clock_offset`).
    clock_offset: i64,
    /// Set when a round trip failed in a way that leaves the connection in
    /// doubt; such a connection is never used again.
    broken: Cell<bool>,
    /// Statements run that may change rows (see `PgTx::commit`).
    writes: Cell<u64>,
    /// The open transaction is a snapshot (`begin_read`): writes are
    /// refused here, before the server aborts the transaction for them.
    in_snapshot: Cell<bool>,
    mode: OpenMode,
    seal_key: Arc<SealKey>,
}

pub(super) struct PgTx<'c> {
    store: &'c PgStore,
    /// Accounts whose row this transaction holds locked.
    locked: RefCell<HashSet<String>>,
    /// `PgStore::writes` when the transaction began.
    writes_at_begin: u64,
    /// A snapshot from `begin_read`: no row locks, no writes.
    read_only: bool,
    _write_mark: Option<crate::store::WriteMark>,
    /// Syslog lines held back until the commit succeeds.
    after_commit: RefCell<Vec<(crate::audit::Level, String)>>,
    done: bool,
}

/// The server failed us once connected (timeouts, a connection closed
/// mid-way, resource limits): always a denial, never `on_unavailable`.
fn connection_lost(describe: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Faulty(format!("PostgreSQL {describe}: {e}"))
}

/// Why a connection could not be made: a server that cannot be reached at
/// all is "missing" (like an SQLite file that is not there, so
/// `on_unavailable` applies); one that refuses our role or password is
/// "unavailable" (refused as configured); a server that accepted us and
/// then failed is faulty.
fn connect_error(describe: &str, e: tokio_postgres::Error) -> StoreError {
    let text = format!("PostgreSQL {describe}: {}", explain(&e));
    match e.code() {
        None => StoreError::Missing(text),
        Some(s) if s.code().starts_with("28") || s.code().starts_with("3D") => {
            StoreError::Unavailable(text)
        }
        Some(_) => StoreError::Faulty(text),
    }
}

/// The driver's error with what the server said: its own `Display` is
/// only "db error" for everything the server reports.
fn explain(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Maps a driver error on an open connection to the store's: a unique
/// violation is a conflict; the connection failing, timeouts and resource
/// limits are faults (which deny, whatever `on_unavailable` says); the rest
/// is an error of the statement.
fn store_error(describe: &str, e: tokio_postgres::Error) -> StoreError {
    let state = e.code().cloned();
    match state {
        Some(s) if s == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(explain(&e)),
        None => connection_lost(describe, explain(&e)),
        Some(s)
            if s.code().starts_with("08") // connection exception
                || s.code().starts_with("57") // operator intervention: shutdown, cancel, timeout
                || s.code().starts_with("53") // insufficient resources
                || s == SqlState::LOCK_NOT_AVAILABLE
                || s == SqlState::INVALID_PASSWORD
                || s == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            connection_lost(describe, explain(&e))
        }
        Some(_) => StoreError::Failed(explain(&e)),
    }
}

impl PgStore {
    /// Connects and checks the schema. `Create` (root's `mfa admin` and
    /// `mfa admin migrate`) creates or upgrades it; `Existing` (the daemon)
    /// only uses a schema it understands.
    pub fn open(
        target: Arc<PgTarget>,
        mode: OpenMode,
        seal_key: Arc<SealKey>,
    ) -> StoreResult<PgStore> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| connection_lost(&target.describe, format_args!("runtime: {e}")))?;
        let client = rt.block_on(async {
            let connecting = async {
                match &target.tls {
                    None => {
                        let (client, connection) =
                            target.config.connect(tokio_postgres::NoTls).await?;
                        tokio::spawn(connection);
                        Ok(client)
                    }
                    Some(tls) => {
                        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone());
                        let (client, connection) = target.config.connect(tls).await?;
                        tokio::spawn(connection);
                        Ok(client)
                    }
                }
            };
            match tokio::time::timeout(connect::CONNECT_TIMEOUT, connecting).await {
                Ok(Ok(client)) => Ok(client),
                Ok(Err(e)) => Err(connect_error(&target.describe, e)),
                Err(_) => Err(StoreError::Missing(format!(
                    "PostgreSQL {}: no answer to connect",
                    target.describe
                ))),
            }
        })?;
        let mut store = PgStore {
            rt,
            client,
            target,
            statements: RefCell::new(HashMap::new()),
            clock_offset: 0,
            broken: Cell::new(false),
            writes: Cell::new(0),
            in_snapshot: Cell::new(false),
            mode,
            seal_key,
        };
        store.clock_offset = store.measure_clock_offset()?;
        schema::prepare(&store, mode)?;
        Ok(store)
    }

    pub fn seal_key(&self) -> &Arc<SealKey> {
        &self.seal_key
    }

    pub fn describe(&self) -> &str {
        &self.target.describe
    }

    pub fn target(&self) -> &Arc<PgTarget> {
        &self.target
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> StoreResult<i32> {
        Ok(self
            .query_opt("SELECT version FROM pam_mfa_schema", &[])?
            .map_or(0, |r| r.get(0)))
    }

    /// Seconds to add to this host's clock to get the database's.
    pub fn clock_offset(&self) -> i64 {
        self.clock_offset
    }

    fn measure_clock_offset(&self) -> StoreResult<i64> {
        let before = crate::SystemClock::now_f64();
        let row = self.wait(
            self.client
                .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[]),
        )?;
        let after = crate::SystemClock::now_f64();
        let theirs: f64 = row.get(0);
        Ok((theirs - (before + after) / 2.0).round() as i64)
    }

    /// Whether a pooled store may serve another request: the connection
    /// is open and nothing failed on it.
    pub fn still_usable(&self) -> StoreResult<()> {
        // Lets the connection task read what arrived while the store sat
        // idle: a server that restarted has closed this connection.
        self.rt.block_on(tokio::task::yield_now());
        if self.broken.get() || self.client.is_closed() {
            return Err(connection_lost(&self.target.describe, "connection closed"));
        }
        Ok(())
    }

    /// Runs one round trip under the deadline.
    fn wait<T>(&self, f: impl Future<Output = Result<T, tokio_postgres::Error>>) -> StoreResult<T> {
        match self
            .rt
            .block_on(async { tokio::time::timeout(ROUND_TRIP_TIMEOUT, f).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let e = store_error(&self.target.describe, e);
                if matches!(e, StoreError::Faulty(_)) {
                    self.broken.set(true);
                }
                Err(e)
            }
            Err(_) => {
                self.broken.set(true);
                Err(connection_lost(
                    &self.target.describe,
                    format_args!("no answer within {} s", ROUND_TRIP_TIMEOUT.as_secs()),
                ))
            }
        }
    }

    /// A statement prepared once per connection.
    fn statement(&self, sql: &'static str) -> StoreResult<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.wait(self.client.prepare(sql))?;
        self.statements.borrow_mut().insert(sql, prepared.clone());
        Ok(prepared)
    }

    pub(super) fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<u64> {
        if self.in_snapshot.get() {
            return Err(StoreError::Faulty(format!(
                "{}: a write in a read transaction",
                self.target.describe
            )));
        }
        let s = self.statement(sql)?;
        self.writes.set(self.writes.get() + 1);
        self.wait(self.client.execute(&s, params))
    }

    pub(super) fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Row>> {
        let s = self.statement(sql)?;
        self.wait(self.client.query(&s, params))
    }

    pub(super) fn query_opt(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Option<Row>> {
        let s = self.statement(sql)?;
        self.wait(self.client.query_opt(&s, params))
    }

    pub(super) fn batch(&self, sql: &str) -> StoreResult<()> {
        self.wait(self.client.batch_execute(sql))
    }
}

impl PgStore {
    fn start(&mut self, begin: &'static str) -> StoreResult<Box<dyn Tx + '_>> {
        // A kept connection may have died while idle (the server restarted
        // or failed over): nothing has happened in this transaction yet, so
        // one fresh connection may take its place. Not when the server is
        // there but silent: a second wait would only double the login's.
        let begun = !self.broken.get()
            && !self.client.is_closed()
            && match self.batch(begin) {
                Ok(()) => true,
                Err(e) if !self.client.is_closed() => return Err(e),
                Err(_) => false,
            };
        if !begun {
            *self = PgStore::open(
                Arc::clone(&self.target),
                self.mode,
                Arc::clone(&self.seal_key),
            )?;
            self.batch(begin)?;
        }
        self.in_snapshot.set(begin != BEGIN_WRITE);
        Ok(Box::new(PgTx {
            writes_at_begin: self.writes.get(),
            read_only: begin != BEGIN_WRITE,
            _write_mark: (begin == BEGIN_WRITE).then(crate::store::WriteMark::new),
            store: self,
            locked: RefCell::new(HashSet::new()),
            after_commit: RefCell::new(Vec::new()),
            done: false,
        }))
    }
}

const BEGIN_WRITE: &str = "BEGIN";
/// One snapshot for the whole transaction (a user's account, devices and
/// codes as of one moment), and the server refuses any write in it.
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

impl Store for PgStore {
    fn begin(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        self.start(BEGIN_WRITE)
    }

    /// No row locks: a reader never waits for a login on the same account
    /// on another host, nor makes it wait.
    fn begin_read(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        self.start(BEGIN_READ)
    }
}

impl PgTx<'_> {
    pub(super) fn pg(&self) -> &PgStore {
        self.store
    }

    pub(super) fn read_only(&self) -> bool {
        self.read_only
    }

    /// Locks `user`'s account row for the rest of the transaction, creating
    /// the row if needed. Everything that reads or changes an account's
    /// state comes here first, so check-verify-record is serialized per
    /// account across every host, and only per account. A snapshot locks
    /// nothing: its reads come from the snapshot.
    pub(super) fn lock_account(&self, user: &str) -> StoreResult<Option<Row>> {
        if self.read_only || self.locked.borrow().contains(user) {
            return Ok(None);
        }
        const LOCK: &str = "SELECT failures, locked_at, last_failure, locked_until
                            FROM accounts WHERE username = $1 FOR UPDATE";
        let row = match self.store.query_opt(LOCK, &[&user])? {
            Some(row) => row,
            None => {
                self.store.execute(
                    "INSERT INTO accounts (username) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&user],
                )?;
                self.store.query_opt(LOCK, &[&user])?.ok_or_else(|| {
                    StoreError::Unavailable(format!("account row of {user:?} vanished"))
                })?
            }
        };
        self.locked.borrow_mut().insert(user.to_owned());
        Ok(Some(row))
    }

    fn finish(&mut self, sql: &str) -> StoreResult<()> {
        self.done = true;
        self.store.in_snapshot.set(false);
        self.store.batch(sql)?;
        for (level, line) in self.after_commit.take() {
            crate::audit::syslog(level, &line);
        }
        Ok(())
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        self.store.in_snapshot.set(false);
        if !self.done && !self.store.broken.get() && self.store.batch("ROLLBACK").is_err() {
            self.store.broken.set(true);
        }
    }
}

impl Tx for PgTx<'_> {
    /// PostgreSQL's default `synchronous_commit = on`: the commit returns
    /// once the WAL is flushed (and, with synchronous replication, on the
    /// standby as its admin configured).
    fn commit(mut self: Box<Self>) -> StoreResult<()> {
        // A transaction that only read and locked rows (a row lock writes
        // WAL too) has nothing worth a flush: without this, every login's
        // read-only phase waited for one.
        if self.store.writes.get() == self.writes_at_begin {
            return self.finish("SET LOCAL synchronous_commit = off; COMMIT");
        }
        self.finish("COMMIT")
    }

    /// The same trade as SQLite's unsynced commit: a server crash within
    /// a fraction of a second may lose this transaction, never corrupt.
    fn commit_unsynced(mut self: Box<Self>) -> StoreResult<()> {
        self.finish("SET LOCAL synchronous_commit = off; COMMIT")
    }
}
