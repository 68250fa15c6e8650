//! Hardening through the real module and the real `mfa` command: parallel
//! logins, killed logins, a broken database, hostile input and a panic
//! inside the module. Figures are printed (`cargo test -- --nocapture`).
//!
//! One test binary, several files: each test binary is linked separately,
//! and linking is most of the build time.

mod common;

#[path = "hardening/support.rs"]
mod support;

#[path = "hardening/availability.rs"]
mod availability;
#[path = "hardening/bad_input.rs"]
mod bad_input;
#[path = "hardening/concurrency.rs"]
mod concurrency;
#[path = "hardening/crash.rs"]
mod crash;
#[path = "hardening/durability.rs"]
mod durability;
#[path = "hardening/faults.rs"]
mod faults;
#[path = "hardening/fuzz_smoke.rs"]
mod fuzz_smoke;
#[path = "hardening/panic.rs"]
mod panic;
