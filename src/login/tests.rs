//! Login flow rules, with a fake prompter, a fixed clock and a real SQLite
//! store in a temporary directory.
//!
//! Every test environment checks, when it is dropped, that no code, password
//! or secret the test used reached the audit table.

mod audit_trail;
mod bypass_codes;
mod concurrency;
mod env;
mod fakes;
mod lock_holding;
mod lockout_rules;
mod odd_input;
mod policy_rules;
mod sealed_store;
mod sms_codes;
mod sms_login;
mod temporary_codes;
mod totp_login;
