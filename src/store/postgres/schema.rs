//! Versioned schema for PostgreSQL.
//!
//! Hosts of a fleet upgrade one by one, so a schema change must never break
//! a host still running the older pam_mfa: migrations only add (tables,
//! nullable columns or columns with defaults), and the schema records the
//! oldest version of pam_mfa's schema code that can still use it
//! (`oldest_reader`). The upgrade order (docs/admin-guide.md, "Many hosts"):
//! one host runs `mfa admin init`, which migrates; the others keep working
//! and are upgraded afterwards.

use super::PgStore;
use crate::store::{OpenMode, StoreError, StoreResult};

pub const SCHEMA_VERSION: i32 = 2;

/// One key for every host's migration, so two hosts upgrading at once
/// take turns instead of both creating tables.
const MIGRATION_LOCK_KEY: i64 = 0x0070_616d_5f6d_6661; // "pam_mfa"

/// (version, oldest schema code that can read the result, statements)
/// Version 2 only adds columns with defaults, and a host still at version 1
/// reads them as absent: it checks an imported device's codes within
/// `totp_window` steps either side of its own clock, not the phone's, so it
/// refuses a phone whose clock is off by more than that until upgraded (the
/// replay step still holds there).
const MIGRATIONS: &[(i32, i32, &str)] = &[(1, 1, SCHEMA_V1), (2, 1, SCHEMA_V2)];

pub(super) fn prepare(store: &PgStore, mode: OpenMode) -> StoreResult<()> {
    match (read_version(store)?, mode) {
        (Some((version, oldest_reader)), _) if oldest_reader > SCHEMA_VERSION => {
            Err(StoreError::Unavailable(format!(
                "PostgreSQL {}: schema version {version} needs a newer pam_mfa on this host (this one understands {SCHEMA_VERSION}); upgrade pam_mfa",
                store.describe()
            )))
        }
        (Some((version, _)), _) if version >= SCHEMA_VERSION => Ok(()),
        (found, OpenMode::Existing) => Err(StoreError::Unavailable(match found {
            None => format!(
                "PostgreSQL {}: the database has no pam_mfa schema; run `mfa admin init` as root on one host",
                store.describe()
            ),
            Some((version, _)) => format!(
                "PostgreSQL {}: schema version {version} is older than this pam_mfa needs ({SCHEMA_VERSION}); run `mfa admin init` as root",
                store.describe()
            ),
        })),
        (_, OpenMode::Create) => migrate(store),
    }
}

fn read_version(store: &PgStore) -> StoreResult<Option<(i32, i32)>> {
    let exists = store
        .query_opt("SELECT to_regclass('pam_mfa_schema')::text", &[])?
        .and_then(|r| r.get::<_, Option<String>>(0));
    if exists.is_none() {
        return Ok(None);
    }
    Ok(store
        .query_opt("SELECT version, oldest_reader FROM pam_mfa_schema", &[])?
        .map(|r| (r.get(0), r.get(1))))
}

fn migrate(store: &PgStore) -> StoreResult<()> {
    store.batch("BEGIN")?;
    let result = (|| {
        store.batch(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY});
             CREATE TABLE IF NOT EXISTS pam_mfa_schema (
                 version INTEGER NOT NULL,
                 oldest_reader INTEGER NOT NULL
             )"
        ))?;
        let current: i32 = store
            .query_opt("SELECT version FROM pam_mfa_schema", &[])?
            .map_or(0, |r| r.get(0));
        if current == 0 {
            store.execute(
                "INSERT INTO pam_mfa_schema (version, oldest_reader) VALUES (0, 0)",
                &[],
            )?;
        }
        for (version, oldest_reader, sql) in MIGRATIONS {
            if *version > current {
                store.batch(sql)?;
                store.execute(
                    "UPDATE pam_mfa_schema SET version = $1, oldest_reader = $2",
                    &[version, oldest_reader],
                )?;
            }
        }
        store.batch("COMMIT")
    })();
    if result.is_err() {
        let _ = store.batch("ROLLBACK");
    }
    result
}

/// Times are seconds since the epoch from the database's clock (see
/// `PgStore::clock_offset`). `username` because `user` is reserved here.
/// Secrets and phone numbers are sealed (`store::sealing`): the columns
/// hold ciphertext only.
const SCHEMA_V1: &str = "
CREATE TABLE accounts (
    username TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_at BIGINT,
    last_failure BIGINT,
    -- root's lock that ends by itself (lockout.root_unlock_time)
    locked_until BIGINT
);
CREATE TABLE devices (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('totp', 'sms')),
    secret BYTEA,
    algorithm TEXT,
    digits INTEGER,
    period INTEGER,
    totp_window INTEGER,
    last_step BIGINT,
    phone BYTEA,
    verified BOOLEAN NOT NULL DEFAULT false,
    created BIGINT NOT NULL,
    UNIQUE (username, name)
);
CREATE TABLE bypass_codes (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    hash TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX bypass_codes_username ON bypass_codes (username);
CREATE TABLE one_time_codes (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    purpose TEXT NOT NULL,
    hash TEXT NOT NULL,
    expires BIGINT NOT NULL,
    attempts_left INTEGER NOT NULL
);
CREATE INDEX one_time_codes_username ON one_time_codes (username);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    time BIGINT NOT NULL,
    username TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_username ON audit (username, id);
-- texts sent, counted for the per-user and per-host limits
CREATE TABLE texts (
    id BIGSERIAL PRIMARY KEY,
    time BIGINT NOT NULL,
    username TEXT NOT NULL,
    host TEXT NOT NULL,
    purpose TEXT NOT NULL
);
CREATE INDEX texts_username ON texts (username, time);
CREATE INDEX texts_host ON texts (host, time);
CREATE INDEX audit_host ON audit (host, id);
";

/// A device's own window shape and clock offset, as imported from a
/// google-authenticator file (WINDOW_SIZE, TIME_SKEW); as SQLite's version 4.
const SCHEMA_V2: &str = "
ALTER TABLE devices ADD COLUMN totp_window_ahead INTEGER;
ALTER TABLE devices ADD COLUMN clock_offset BIGINT NOT NULL DEFAULT 0;
";
