//! `mfa`: the pam_mfa command. Everything it does lives in the library, so
//! the compiler sees one crate and reports what nothing uses.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(pam_mfa::mfa_main())
}
