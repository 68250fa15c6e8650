//! The engine the config names, behind one type: callers open, pool and
//! begin transactions without knowing which database holds the accounts.
#![forbid(unsafe_code)]

use super::postgres::{PgStore, PgTarget};
use super::{OpenMode, SqliteStore, Store, StoreResult, Tx};
use crate::config::{Config, StoreLocation};
use crate::{Clock, SystemClock};
use std::sync::Arc;

pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    pub fn open(config: &Config, mode: OpenMode) -> StoreResult<AnyStore> {
        match config.store_location() {
            StoreLocation::Sqlite(path) => Ok(AnyStore::Sqlite(SqliteStore::open(path, mode)?)),
            StoreLocation::Postgres(url) => {
                let target = Arc::new(PgTarget::from_config(config, url)?);
                Ok(AnyStore::Postgres(PgStore::open(target, mode)?))
            }
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
