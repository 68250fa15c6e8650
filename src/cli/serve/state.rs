//! What the daemon keeps between requests: the config, read again only
//! when the file changes, the secrets key likewise, and open stores,
//! checked before each use.

use crate::config::{Config, ConfigError};
use crate::seal::SealKey;
use crate::store::{AnyStore, OpenMode, StoreResult};
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
    /// The key file the idle stores were opened with, as it was then
    /// (None: no key configured).
    key_file: Option<(PathBuf, Stamp)>,
    key: Option<Arc<SealKey>>,
    idle: Vec<AnyStore>,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().map(|m| Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
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
        let stamp = Stamp::of(&self.config_path);
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
    /// A key file that is replaced, edited, chmodded or removed is read
    /// again (and checked) before the next store is handed out.
    pub fn store(&self, config: &Config) -> StoreResult<AnyStore> {
        let key_file = config
            .secrets_key_path()
            .map(|path| (path.to_owned(), Stamp::of(path)));
        let (kept, key) = {
            let mut pool = self.stores.lock().unwrap_or_else(|e| e.into_inner());
            let same_key = match (&key_file, &pool.key_file) {
                (None, None) => true,
                (Some((path, Some(now))), Some((seen_path, seen))) => {
                    path == seen_path && now == seen
                }
                _ => false,
            };
            if pool.path != config.database || !same_key {
                pool.idle.clear();
                pool.path = config.database.clone();
                pool.key_file = None;
                // A key that does not load is not remembered: asked again
                // at the next request, so a fixed file takes effect at once.
                pool.key = config.load_seal_key()?;
                pool.key_file = key_file.and_then(|(path, stamp)| Some((path, stamp?)));
            }
            (pool.idle.pop(), pool.key.clone())
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
        AnyStore::open(config, OpenMode::Existing, key)
    }

    /// Gives a store back after a request that went well.
    pub fn put_back(&self, store: AnyStore, config: &Config) {
        let mut pool = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        // A store opened with a key since replaced is not kept either.
        let same_key = match (store.seal_key(), &pool.key) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if pool.path == config.database && same_key && pool.idle.len() < IDLE_STORES {
            pool.idle.push(store);
        }
    }
}
