//! The `mfa` command's errors: each says what went wrong and what to do, and
//! maps to a documented exit code.

use crate::config::ConfigError;
use crate::lockout::{self, Remedy};
use crate::onetime::OnetimeError;
use crate::store::StoreError;
use std::fmt;

#[derive(Debug)]
pub enum Error {
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

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::WrongCode(_) => exit::WRONG_CODE,
            Error::Permission(_) => exit::PERMISSION,
            Error::Locked(_) => exit::LOCKED,
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::Conflict(_) => exit::CONFLICT,
            Error::Config(_) | Error::Unavailable(_) => exit::UNAVAILABLE,
            Error::Limited(_) => exit::LIMITED,
            Error::Failed(_) => exit::FAILED,
        }
    }

    /// A short word for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::WrongCode(_) => "wrong-code",
            Error::Permission(_) => "permission",
            Error::Locked(_) => "locked",
            Error::NotFound(_) => "not-found",
            Error::Conflict(_) => "conflict",
            Error::Config(_) => "config",
            Error::Unavailable(_) => "unavailable",
            Error::Limited(_) => "limited",
            Error::Failed(_) => "failed",
        }
    }

    /// The same error with its message rewritten (a config error is kept).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Error {
        match self {
            Error::Config(e) => Error::Config(e),
            Error::Usage(m) => Error::Usage(f(m)),
            Error::WrongCode(m) => Error::WrongCode(f(m)),
            Error::Permission(m) => Error::Permission(f(m)),
            Error::Locked(m) => Error::Locked(f(m)),
            Error::NotFound(m) => Error::NotFound(f(m)),
            Error::Conflict(m) => Error::Conflict(f(m)),
            Error::Unavailable(m) => Error::Unavailable(f(m)),
            Error::Limited(m) => Error::Limited(f(m)),
            Error::Failed(m) => Error::Failed(f(m)),
        }
    }

    /// `locked` as a user who is not an administrator reads it.
    pub fn locked_for_user(user: &str) -> Error {
        Error::Locked(lockout::locked_message(user, Remedy::AskAdministrator))
    }

    pub fn locked(user: &str) -> Error {
        Error::Locked(lockout::locked_message(user, Remedy::Unlock))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Usage(m)
            | Error::WrongCode(m)
            | Error::Permission(m)
            | Error::Locked(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::Unavailable(m)
            | Error::Limited(m)
            | Error::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Missing(m) | StoreError::Unavailable(m) | StoreError::Faulty(m) => {
                Error::Unavailable(m)
            }
            StoreError::Conflict(m) => Error::Conflict(m),
            e @ StoreError::Failed(_) => Error::Failed(e.to_string()),
        }
    }
}

impl From<OnetimeError> for Error {
    /// Each kind keeps the exit code and words `mfa` always had.
    fn from(e: OnetimeError) -> Self {
        let m = e.to_string();
        match e {
            OnetimeError::Store(e) => e.into(),
            OnetimeError::Random(e) => e.into(),
            OnetimeError::BadPhone(_) => Error::Usage(m),
            OnetimeError::Locked { .. } | OnetimeError::LockedTempCode { .. } => Error::Locked(m),
            OnetimeError::NoSmsDevice { .. }
            | OnetimeError::NoPhoneForTempCode { .. }
            | OnetimeError::PinGone => Error::NotFound(m),
            OnetimeError::HasSmsDevice { .. } | OnetimeError::AlreadyVerified { .. } => {
                Error::Conflict(m)
            }
            OnetimeError::WrongPin { .. } => Error::WrongCode(m),
            OnetimeError::Limited { .. } => Error::Limited(m),
            OnetimeError::Sms(_)
            | OnetimeError::PinNotSent(_)
            | OnetimeError::PinChanging { .. } => Error::Failed(m),
        }
    }
}

impl From<getrandom::Error> for Error {
    fn from(e: getrandom::Error) -> Self {
        Error::Failed(format!("the system random number generator failed: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
