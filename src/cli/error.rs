//! The `mfa` command's errors: each says what went wrong and what to do, and
//! maps to a documented exit code.

use crate::config::ConfigError;
use crate::lockout::{self, Remedy};
use crate::onetime::OnetimeError;
use crate::store::StoreError;
use std::fmt;

#[derive(Debug)]
pub enum CliError {
    /// Bad arguments or input (exit 2).
    Usage(String),
    /// A code or PIN was wrong (exit 3).
    WrongCode(String),
    /// The caller may not do this (exit 4).
    Permission(String),
    /// The account is locked (exit 5).
    Locked(String),
    /// No such user, device or code (exit 6).
    NotFound(String),
    /// It already exists (exit 7).
    Conflict(String),
    /// The config file cannot be used (exit 8).
    Config(ConfigError),
    /// The database or daemon cannot be used (exit 8).
    Unavailable(String),
    /// A rate limit was hit, e.g. too many text messages (exit 9).
    Limited(String),
    /// Anything else that failed (exit 1).
    Failed(String),
}

pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const WRONG_CODE: i32 = 3;
    pub const PERMISSION: i32 = 4;
    pub const LOCKED: i32 = 5;
    pub const NOT_FOUND: i32 = 6;
    pub const CONFLICT: i32 = 7;
    pub const UNAVAILABLE: i32 = 8;
    pub const LIMITED: i32 = 9;
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::WrongCode(_) => exit::WRONG_CODE,
            CliError::Permission(_) => exit::PERMISSION,
            CliError::Locked(_) => exit::LOCKED,
            CliError::NotFound(_) => exit::NOT_FOUND,
            CliError::Conflict(_) => exit::CONFLICT,
            CliError::Config(_) | CliError::Unavailable(_) => exit::UNAVAILABLE,
            CliError::Limited(_) => exit::LIMITED,
            CliError::Failed(_) => exit::FAILED,
        }
    }

    /// A short word for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Usage(_) => "usage",
            CliError::WrongCode(_) => "wrong-code",
            CliError::Permission(_) => "permission",
            CliError::Locked(_) => "locked",
            CliError::NotFound(_) => "not-found",
            CliError::Conflict(_) => "conflict",
            CliError::Config(_) => "config",
            CliError::Unavailable(_) => "unavailable",
            CliError::Limited(_) => "limited",
            CliError::Failed(_) => "failed",
        }
    }

    /// The same error with its message rewritten (a config error is kept).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> CliError {
        match self {
            CliError::Config(e) => CliError::Config(e),
            CliError::Usage(m) => CliError::Usage(f(m)),
            CliError::WrongCode(m) => CliError::WrongCode(f(m)),
            CliError::Permission(m) => CliError::Permission(f(m)),
            CliError::Locked(m) => CliError::Locked(f(m)),
            CliError::NotFound(m) => CliError::NotFound(f(m)),
            CliError::Conflict(m) => CliError::Conflict(f(m)),
            CliError::Unavailable(m) => CliError::Unavailable(f(m)),
            CliError::Limited(m) => CliError::Limited(f(m)),
            CliError::Failed(m) => CliError::Failed(f(m)),
        }
    }

    /// `locked` as a user who is not an administrator reads it.
    pub fn locked_for_user(user: &str) -> CliError {
        CliError::Locked(lockout::locked_message(user, Remedy::AskAdministrator))
    }

    pub fn locked(user: &str) -> CliError {
        CliError::Locked(lockout::locked_message(user, Remedy::Unlock))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Config(e) => e.fmt(f),
            CliError::Usage(m)
            | CliError::WrongCode(m)
            | CliError::Permission(m)
            | CliError::Locked(m)
            | CliError::NotFound(m)
            | CliError::Conflict(m)
            | CliError::Unavailable(m)
            | CliError::Limited(m)
            | CliError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Config(e)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Missing(m) | StoreError::Unavailable(m) | StoreError::Faulty(m) => {
                CliError::Unavailable(m)
            }
            StoreError::Conflict(m) => CliError::Conflict(m),
            e @ StoreError::Failed(_) => CliError::Failed(e.to_string()),
        }
    }
}

impl From<OnetimeError> for CliError {
    /// Each kind keeps the exit code and words `mfa` always had.
    fn from(e: OnetimeError) -> Self {
        let m = e.to_string();
        match e {
            OnetimeError::Store(e) => e.into(),
            OnetimeError::Random(e) => e.into(),
            OnetimeError::BadPhone(_) => CliError::Usage(m),
            OnetimeError::Locked { .. } | OnetimeError::LockedTempCode { .. } => {
                CliError::Locked(m)
            }
            OnetimeError::NoSmsDevice { .. }
            | OnetimeError::NoPhoneForTempCode { .. }
            | OnetimeError::PinGone => CliError::NotFound(m),
            OnetimeError::HasSmsDevice { .. } | OnetimeError::AlreadyVerified { .. } => {
                CliError::Conflict(m)
            }
            OnetimeError::WrongPin { .. } => CliError::WrongCode(m),
            OnetimeError::Limited { .. } => CliError::Limited(m),
            OnetimeError::Sms(_)
            | OnetimeError::PinNotSent(_)
            | OnetimeError::PinChanging { .. } => CliError::Failed(m),
        }
    }
}

impl From<getrandom::Error> for CliError {
    fn from(e: getrandom::Error) -> Self {
        CliError::Failed(format!("the system random number generator failed: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, CliError>;
