//! Text messages: the [`SmsSender`] trait the login flow and the command use.
#![forbid(unsafe_code)]

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsError {
    /// `sms.backend = "none"`.
    NotConfigured,
    /// The gateway ran and failed; the text says how (never the message).
    Gateway(String),
}

impl fmt::Display for SmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmsError::NotConfigured => f.write_str(
                "no SMS gateway is configured: set [sms] backend in pam_mfa.toml (see pam_mfa.toml(5))",
            ),
            SmsError::Gateway(m) => write!(f, "the SMS gateway failed: {m}"),
        }
    }
}

impl std::error::Error for SmsError {}

pub trait SmsSender {
    fn send(&self, phone: &str, message: &str) -> Result<(), SmsError>;
}

/// `backend = "none"`: every SMS action is refused with a clear message.
pub struct NoSms;

impl SmsSender for NoSms {
    fn send(&self, _phone: &str, _message: &str) -> Result<(), SmsError> {
        Err(SmsError::NotConfigured)
    }
}
