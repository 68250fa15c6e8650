//! pam_mfa: a second factor (TOTP, SMS, bypass and temporary codes) with
//! lockout for PAM logins, and the core shared with the `mfa` command.
//!
//! Everything that decides is safe Rust in this crate's modules; only `pam`
//! touches raw PAM pointers, and only it may hold `unsafe` code.
#![deny(unsafe_code)]

pub(crate) mod attempt;
pub(crate) mod audit;
pub(crate) mod codes;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod enroll;
pub(crate) mod google_auth;
pub(crate) mod lockout;
pub(crate) mod login;
pub(crate) mod onetime;
pub(crate) mod policy;
pub(crate) mod protocol;
pub(crate) mod seal;
pub(crate) mod secret;
pub(crate) mod sms;
pub(crate) mod store;
pub(crate) mod totp;
pub(crate) mod trust;
pub(crate) mod users;

#[allow(unsafe_code)]
mod pam;

mod cli;

/// The `mfa` command: parses the arguments, runs the command, and returns
/// the process exit code. `src/main.rs` is only this call.
pub fn mfa_main() -> i32 {
    cli::main()
}

/// What the integration tests, the fuzz targets and the benchmark reach
/// into. Not an API: it is listed item by item so that the compiler still
/// reports everything else in the crate that nothing uses.
#[doc(hidden)]
pub mod internals {
    pub mod audit {
        pub use crate::audit::{record, AuditEvent};
    }
    pub mod codes {
        pub use crate::codes::{
            hash_with_salt, normalize_bypass, normalize_digits, CodeHash, OneTimePurpose,
        };
    }
    pub mod commands {
        pub use crate::commands::{AddCmd, AdminCmd, BypassCmd, Command, DeviceCmd, PolicyArg};
    }
    pub mod config {
        pub use crate::config::{Algorithm, Config};
    }
    pub mod error {
        pub use crate::cli::error::{exit, CliError};
    }
    pub mod google_auth {
        pub use crate::google_auth::{parse, MAX_FILE_BYTES, MAX_TIME_SKEW, MAX_WINDOW_SIZE};
    }
    pub mod login {
        pub use crate::login::{
            Denial, CHOICE_PROMPT, ENROLL_PROMPT, MSG_LOCKED, MSG_UNAVAILABLE, PIN_PROMPT,
        };
    }
    pub mod onetime {
        pub use crate::onetime::INVALID_PIN;
    }
    pub mod protocol {
        pub use crate::protocol::{
            encode_command, encode_line, parse_reply, parse_request, ClientReply, CommandRequest,
            Envelope, LoginRequest, Mode, Request, Response, ServerMessage, Verdict,
            MAX_FIELD_BYTES, MAX_LINE_BYTES, VERSION,
        };
    }
    pub mod seal {
        pub use crate::seal::SealKey;
    }
    pub mod secret {
        pub use crate::secret::{base32_decode, base32_encode};
    }
    pub mod sms {
        pub use crate::sms::{check_phone, mask_phone};
    }
    pub mod store {
        pub use crate::store::{
            Account, AnyStore, AuditEntry, Device, Factor, OpenMode, SqliteStore, Store, StoreError,
        };
    }
    pub mod totp {
        pub use crate::totp::{code_for_step, step_at, verify, StepWindow, TotpParams};
    }
}

/// Seconds since the Unix epoch; injected so every time rule is testable.
pub(crate) trait Clock {
    fn now(&self) -> i64;
    /// Waits (root's pause after a failure); a test clock only notes it.
    fn sleep(&self, duration: std::time::Duration) {
        std::thread::sleep(duration);
    }
}

/// The real wall clock.
pub(crate) struct SystemClock;

impl SystemClock {
    /// With the fraction, for measuring another clock's offset.
    pub fn now_f64() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}
