//! pam_mfa: a second factor (TOTP, SMS, bypass and temporary codes) with
//! lockout for PAM logins, and the core shared with the `mfa` command.
//!
//! Everything that decides is safe Rust in this crate's modules; only `pam`
//! touches raw PAM pointers, and only it may hold `unsafe` code.
#![deny(unsafe_code)]

pub mod attempt;
pub mod audit;
pub mod codes;
pub mod commands;
pub mod config;
pub mod enroll;
pub mod error;
pub mod google_auth;
pub mod lockout;
pub mod login;
pub mod onetime;
pub mod policy;
pub mod protocol;
pub mod seal;
pub mod secret;
pub mod sms;
pub mod store;
pub mod totp;
pub mod trust;
pub mod users;

#[allow(unsafe_code)]
pub mod pam;

/// Seconds since the Unix epoch; injected so every time rule is testable.
pub trait Clock {
    fn now(&self) -> i64;
    /// Waits (root's pause after a failure); a test clock only notes it.
    fn sleep(&self, duration: std::time::Duration) {
        std::thread::sleep(duration);
    }
}

/// The real wall clock.
pub struct SystemClock;

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
