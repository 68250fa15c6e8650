//! `mfa`: the pam_mfa command. Everything it decides lives in the library;
//! the command line is in `cli`.
#![forbid(unsafe_code)]

mod cli;

fn main() {
    std::process::exit(cli::main())
}
