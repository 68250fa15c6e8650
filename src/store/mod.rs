//! Persistent state behind a small trait, so that a second engine (PostgreSQL
//! for fleets) can stand beside SQLite. Every method of [`Tx`] runs inside one
//! transaction: a write transaction ([`Store::begin`]), in which callers
//! check the lock, verify and record, or a read snapshot
//! ([`Store::begin_read`]) for phases that only look.

mod accounts;
mod any;
mod audit;
mod codes;
mod devices;
pub mod postgres;
pub mod sealing;
mod settings;
mod sqlite;
mod texts;

pub use any::AnyStore;
pub use postgres::url_check as postgres_url_check;
pub use sealing::SecretsAtRest;
pub use sqlite::{OpenMode, SqliteStore, SCHEMA_VERSION};

use crate::codes::{CodeHash, OneTimePurpose};
use crate::secret::SecretBytes;
use crate::totp::{StepWindow, TotpParams};
use std::fmt;

/// What went wrong with the store, in words that hold for every engine:
/// each engine (`sqlite`, `postgres`) maps its driver's errors to these.
/// The split matters for `on_unavailable = "allow"`: only a store that is
/// not there ([`StoreError::Missing`]) or that pam_mfa refuses to use
/// ([`StoreError::Unavailable`]) may let the password decide. A store that
/// is there but fails ([`StoreError::Faulty`], [`StoreError::Failed`])
/// always denies: busy, timeouts, I/O errors, a full or read-only disk and
/// resource limits (EFBIG, EMFILE, ENOMEM) can be provoked by a caller, and
/// a failure that cannot be recorded must not become a way in.
#[derive(Debug)]
pub enum StoreError {
    /// No database at the configured place: not created yet (`mfa admin
    /// init` creates it) or moved away.
    Missing(String),
    /// The database is refused as it stands (wrong owner or mode, not a
    /// regular file, corrupt, newer schema). The text says what and how to
    /// fix it.
    Unavailable(String),
    /// The database is there and acceptable but an operation on it failed
    /// (busy, I/O error, full or read-only filesystem, a resource limit).
    Faulty(String),
    /// A row that must be unique already exists.
    Conflict(String),
    /// Anything else the engine reported about a statement mid-transaction
    /// (treated as faulty): the engine's message, shown after "database
    /// error: ". Reaching the engine is not this: that is `Unavailable` or
    /// `Faulty`.
    Failed(String),
}

impl StoreError {
    /// Whether `on_unavailable = "allow"` may apply: the store is missing
    /// or refused, not merely failing.
    pub fn permits_allow(&self) -> bool {
        matches!(self, StoreError::Missing(_) | StoreError::Unavailable(_))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Missing(m)
            | StoreError::Unavailable(m)
            | StoreError::Faulty(m)
            | StoreError::Conflict(m) => f.write_str(m),
            StoreError::Failed(m) => write!(f, "database error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<crate::seal::KeyError> for StoreError {
    /// A configured key that cannot be loaded: nothing sealed can be read
    /// nor written, so the store is unavailable.
    fn from(e: crate::seal::KeyError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Failure count and lock of one account. No row means a clean account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub failures: u32,
    pub locked_at: Option<i64>,
    pub last_failure: Option<i64>,
    /// A lock that ends by itself at this time, whatever `unlock_after`
    /// says: root's, under `lock_root = false` (`root_unlock_time`).
    pub locked_until: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Totp,
    Sms,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Totp => "totp",
            DeviceKind::Sms => "sms",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Factor {
    Totp {
        secret: SecretBytes,
        params: TotpParams,
        /// Per-device window and clock offset (imported files keep
        /// theirs); None = the config's window, no offset.
        window: Option<StepWindow>,
        last_step: Option<i64>,
    },
    Sms {
        phone: String,
    },
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: i64,
    pub user: String,
    pub name: String,
    pub verified: bool,
    pub created: i64,
    pub factor: Factor,
}

impl Device {
    pub fn kind(&self) -> DeviceKind {
        match self.factor {
            Factor::Totp { .. } => DeviceKind::Totp,
            Factor::Sms { .. } => DeviceKind::Sms,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredCode {
    pub id: i64,
    pub hash: CodeHash,
}

#[derive(Debug, Clone)]
pub struct OneTimeCode {
    pub id: i64,
    pub purpose: OneTimePurpose,
    pub hash: CodeHash,
    pub expires: i64,
    pub attempts_left: u32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub time: i64,
    /// The host whose daemon or root `mfa` recorded it ('' for rows older
    /// than schema version 2).
    pub host: String,
    pub user: String,
    pub event: String,
    pub detail: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UserSummary {
    pub user: String,
    pub devices: u32,
    pub failures: u32,
    pub locked: bool,
}

pub trait Accounts {
    fn account(&self, user: &str) -> StoreResult<Account>;
    fn put_account(&self, user: &str, account: &Account) -> StoreResult<()>;
    /// Everyone with any state, sorted by name.
    fn users(&self) -> StoreResult<Vec<UserSummary>>;
}

pub trait Devices {
    fn devices(&self, user: &str) -> StoreResult<Vec<Device>>;
    /// Fails with [`StoreError::Conflict`] when the nickname is taken.
    fn insert_device(&self, device: &Device) -> StoreResult<i64>;
    fn mark_verified(&self, id: i64) -> StoreResult<()>;
    fn set_last_step(&self, id: i64, step: i64) -> StoreResult<()>;
    fn delete_device(&self, user: &str, name: &str) -> StoreResult<bool>;
    fn delete_devices(&self, user: &str) -> StoreResult<u32>;
    /// How many devices hold their secret sealed and how many in plaintext
    /// (rows written before a key was configured), for `mfa doctor`.
    fn secrets_at_rest(&self) -> StoreResult<SecretsAtRest>;
}

pub trait Codes {
    fn bypass_codes(&self, user: &str) -> StoreResult<Vec<StoredCode>>;
    /// Replaces the user's unused set with a new one.
    fn replace_bypass_codes(&self, user: &str, hashes: &[CodeHash], now: i64) -> StoreResult<()>;
    fn delete_bypass_code(&self, id: i64) -> StoreResult<()>;
    fn delete_all_bypass_codes(&self, user: &str) -> StoreResult<u32>;
    /// Live codes only: expired ones are purged first.
    fn one_time_codes(&self, user: &str, now: i64) -> StoreResult<Vec<OneTimeCode>>;
    /// Replaces any earlier live code of the same purpose.
    fn put_one_time_code(
        &self,
        user: &str,
        purpose: OneTimePurpose,
        hash: &CodeHash,
        expires: i64,
        attempts: u32,
    ) -> StoreResult<()>;
    fn delete_one_time_code(&self, id: i64) -> StoreResult<()>;
    fn delete_one_time_codes(&self, user: &str, purpose: OneTimePurpose) -> StoreResult<()>;
    fn set_attempts_left(&self, id: i64, attempts: u32) -> StoreResult<()>;
}

pub trait Settings {
    fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    fn put_setting(&self, key: &str, value: &str) -> StoreResult<()>;
    /// Every setting, sorted by key (for `mfa admin migrate`).
    fn all_settings(&self) -> StoreResult<Vec<(String, String)>>;
}

pub trait AuditLog {
    fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// The newest `limit` entries, oldest first; only `user`'s and only
    /// `host`'s when given.
    fn audit_entries(
        &self,
        user: Option<&str>,
        host: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>>;
    /// Deletes audit rows older than `before`; returns how many.
    fn purge_audit(&self, before: i64) -> StoreResult<u32>;
    /// Sends `line` to syslog once this transaction has committed, and
    /// never if it rolls back (dropped, or the commit fails): the log must
    /// not tell of a failure counted or a code spent that the store lost.
    fn syslog_after_commit(&self, level: crate::audit::Level, line: String);
}

/// Text messages sent, counted for the per-user and per-host limits
/// (`[sms] max_per_user_hour`, `max_per_host_hour`).
pub trait Texts {
    /// Records one text about to go to `user`'s phone from `host`.
    fn record_text(&self, user: &str, host: &str, purpose: &str, now: i64) -> StoreResult<()>;
    /// How many texts went to `user` at or after `since`, and the oldest's time.
    fn user_texts_since(&self, user: &str, since: i64) -> StoreResult<(u32, Option<i64>)>;
    /// How many texts `host` sent at or after `since`, and the oldest's time.
    fn host_texts_since(&self, host: &str, since: i64) -> StoreResult<(u32, Option<i64>)>;
    /// Forgets texts sent before `before` (they no longer count).
    fn purge_texts(&self, before: i64) -> StoreResult<u32>;
}

/// One exclusive transaction. Dropping it without `commit` rolls back.
pub trait Tx: Accounts + Devices + Codes + Settings + AuditLog + Texts {
    /// Commits and waits until the change is on disk: it survives a power
    /// loss, not only a crash. Failures, locks, spent codes and every admin
    /// change go through here.
    fn commit(self: Box<Self>) -> StoreResult<()>;
    /// Commits without waiting for the disk: a crash keeps the change, a
    /// power loss within seconds may undo it. Only for changes whose loss
    /// is harmless enough not to pay an fsync at every login (see
    /// `attempt_code`).
    fn commit_unsynced(self: Box<Self>) -> StoreResult<()>;
}

thread_local! {
    /// Write transactions open on this thread (see [`WriteMark`]).
    static WRITE_TRANSACTIONS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Held by every write transaction while it lives, so that tests can show
/// the slow work (PBKDF2) never runs under the store's write lock.
pub(crate) struct WriteMark(());

impl WriteMark {
    pub(crate) fn new() -> Self {
        WRITE_TRANSACTIONS.with(|n| n.set(n.get() + 1));
        WriteMark(())
    }
}

impl Drop for WriteMark {
    fn drop(&mut self) {
        WRITE_TRANSACTIONS.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Whether this thread has a write transaction open.
pub fn write_transaction_open() -> bool {
    WRITE_TRANSACTIONS.with(|n| n.get() > 0)
}

pub trait Store {
    /// Starts an exclusive write transaction (SQLite: `BEGIN IMMEDIATE`), so
    /// that check, verify and record can never interleave with another login.
    fn begin(&mut self) -> StoreResult<Box<dyn Tx + '_>>;
    /// Starts a read snapshot: it neither waits for writers nor holds them
    /// up (SQLite: a deferred transaction in WAL mode; PostgreSQL: `READ
    /// ONLY`, no row locks). For phases that only look (preauth, the
    /// account phase, which factors a user has, status) and for the slow
    /// hashing done before a write transaction. Any write in it fails as
    /// [`StoreError::Faulty`]; what it read may be stale by the time a
    /// write transaction runs, so nothing may be decided on it that a
    /// write transaction does not check again.
    fn begin_read(&mut self) -> StoreResult<Box<dyn Tx + '_>>;
}
