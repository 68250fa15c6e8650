//! What the daemon keeps between requests: the config, read again only
//! when the file changes, and open stores, checked before each use.
#![forbid(unsafe_code)]

use pam_mfa::config::{Config, ConfigError};
use pam_mfa::store::{AnyStore, OpenMode, StoreResult};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Open stores kept for the next request; more are opened when needed.
const IDLE_STORES: usize = 8;

pub struct Shared {
    config_path: PathBuf,
    config: Mutex<Option<(Stamp, Arc<Config>)>>,
    stores: Mutex<Pool>,
}

/// What changes when a file is edited, replaced, chmodded or chowned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

#[derive(Default)]
struct Pool {
    path: PathBuf,
    idle: Vec<AnyStore>,
}

impl Shared {
    pub fn new(config_path: &Path) -> Shared {
        Shared {
            config_path: config_path.to_owned(),
            config: Mutex::new(None),
            stores: Mutex::new(Pool::default()),
        }
    }

    /// The config as the file says now: an edit takes effect at the next
    /// request, without a restart.
    pub fn config(&self) -> Result<Arc<Config>, ConfigError> {
        let stamp = std::fs::metadata(&self.config_path).ok().map(|m| Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        });
        let mut cached = self.config.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(stamp), Some((seen, config))) = (stamp, cached.as_ref()) {
            if *seen == stamp {
                return Ok(Arc::clone(config));
            }
        }
        let config = Arc::new(Config::load(&self.config_path)?);
        *cached = stamp.map(|s| (s, Arc::clone(&config)));
        Ok(config)
    }

    /// An open store for `config`'s database. Never creates one: a missing
    /// database is "unavailable" (only an administrator makes it).
    pub fn store(&self, config: &Config) -> StoreResult<AnyStore> {
        let kept = {
            let mut pool = self.stores.lock().unwrap_or_else(|e| e.into_inner());
            if pool.path != config.database {
                pool.idle.clear();
                pool.path = config.database.clone();
            }
            pool.idle.pop()
        };
        if let Some(store) = kept {
            if store.still_usable().is_ok() {
                return Ok(store);
            }
            // Replaced, removed or loosened: every kept store is stale.
            self.stores
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .idle
                .clear();
        }
        AnyStore::open(config, OpenMode::Existing)
    }

    /// Gives a store back after a request that went well.
    pub fn put_back(&self, store: AnyStore, config: &Config) {
        let mut pool = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if pool.path == config.database && pool.idle.len() < IDLE_STORES {
            pool.idle.push(store);
        }
    }
}
