//! The engine the config names, behind one type: callers open, pool and
//! begin transactions without knowing which database holds the accounts.

use super::postgres::{PgStore, PgTarget};
use super::{OpenMode, SqliteStore, Store, StoreError, StoreResult, Tx};
use crate::config::{Config, StoreLocation};
use crate::seal::SealKey;
use crate::{Clock, SystemClock};
use std::sync::Arc;

pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    /// Opens the configured store. `seal_key` is the loaded
    /// `secrets_key_file`: optional with SQLite, required with PostgreSQL
    /// (a shared database must never hold a secret in the clear).
    pub fn open(
        config: &Config,
        mode: OpenMode,
        seal_key: Option<Arc<SealKey>>,
    ) -> StoreResult<AnyStore> {
        match config.store_location() {
            StoreLocation::Sqlite(path) => {
                Ok(AnyStore::Sqlite(SqliteStore::open(path, mode, seal_key)?))
            }
            StoreLocation::Postgres(url) => {
                let key = seal_key.ok_or_else(|| {
                    StoreError::Unavailable(
                        "PostgreSQL needs secrets_key_file: make one with \
                         `mfa admin generate-key FILE`, copy it to every host, and name it \
                         in the config"
                            .into(),
                    )
                })?;
                let target = Arc::new(PgTarget::from_config(config, url)?);
                Ok(AnyStore::Postgres(PgStore::open(target, mode, key)?))
            }
        }
    }

    /// The key the store seals with, to tell a stale pooled store.
    pub fn seal_key(&self) -> Option<&Arc<SealKey>> {
        match self {
            AnyStore::Sqlite(s) => s.seal_key(),
            AnyStore::Postgres(s) => Some(s.seal_key()),
        }
    }

    /// Whether a kept store may serve another request (see the engines').
    pub fn still_usable(&self) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(s) => s.still_usable(),
            AnyStore::Postgres(s) => s.still_usable(),
        }
    }

    /// The clock lock and expiry times are measured by: the database's for
    /// PostgreSQL, so that hosts with skewed clocks agree on them.
    pub fn clock(&self) -> StoreClock {
        StoreClock {
            offset: match self {
                AnyStore::Sqlite(_) => 0,
                AnyStore::Postgres(s) => s.clock_offset(),
            },
        }
    }

    /// The schema version the store is at.
    pub fn schema_version(&self) -> StoreResult<i64> {
        match self {
            AnyStore::Sqlite(s) => s.schema_version(),
            AnyStore::Postgres(s) => s.schema_version().map(i64::from),
        }
    }

    /// Where the accounts are, for messages: a path or `role@host:port/db`.
    pub fn describe(&self) -> String {
        match self {
            AnyStore::Sqlite(s) => s.path().display().to_string(),
            AnyStore::Postgres(s) => s.describe().to_owned(),
        }
    }
}

impl Store for AnyStore {
    fn begin(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        match self {
            AnyStore::Sqlite(s) => s.begin(),
            AnyStore::Postgres(s) => s.begin(),
        }
    }

    fn begin_read(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        match self {
            AnyStore::Sqlite(s) => s.begin_read(),
            AnyStore::Postgres(s) => s.begin_read(),
        }
    }
}

/// This host's clock moved to the store's.
#[derive(Debug, Clone, Copy)]
pub struct StoreClock {
    offset: i64,
}

impl Clock for StoreClock {
    fn now(&self) -> i64 {
        SystemClock.now() + self.offset
    }
}
