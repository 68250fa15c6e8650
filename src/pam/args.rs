//! Module arguments, in the manner of pam_faillock: a mode word plus options.
#![forbid(unsafe_code)]

use crate::config::DEFAULT_PATH;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Before the password: refuse a locked account.
    Preauth,
    /// After a failed password: count it.
    Authfail,
    /// The second factor.
    SecondFactor,
    /// The account phase (`account` lines): refuse a locked account.
    Account,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Preauth => "preauth",
            Mode::Authfail => "authfail",
            Mode::SecondFactor => "auth",
            Mode::Account => "account",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub mode: Mode,
    pub config: PathBuf,
    pub debug: bool,
}

/// Parses the arguments of an `auth` line (`account` lines take only
/// `config=` and `debug`). Anything unknown is an error: a typo must not
/// silently change what the module enforces.
pub fn parse(args: &[String], account_phase: bool) -> Result<Args, String> {
    let mut parsed = Args {
        mode: if account_phase {
            Mode::Account
        } else {
            Mode::SecondFactor
        },
        config: PathBuf::from(DEFAULT_PATH),
        debug: false,
    };
    let mut mode_word = None;
    for arg in args {
        match arg.as_str() {
            "debug" => parsed.debug = true,
            "preauth" | "authfail" if account_phase => {
                return Err(format!(
                    "argument {arg:?} is for auth lines, not account lines"
                ))
            }
            "preauth" | "authfail" if mode_word.is_some() => {
                return Err("give at most one of preauth and authfail".into())
            }
            "preauth" => {
                mode_word = Some(arg);
                parsed.mode = Mode::Preauth;
            }
            "authfail" => {
                mode_word = Some(arg);
                parsed.mode = Mode::Authfail;
            }
            _ => match arg.strip_prefix("config=") {
                Some(path) if path.starts_with('/') => parsed.config = PathBuf::from(path),
                Some(_) => return Err(format!("{arg:?}: config= needs an absolute path")),
                None => return Err(format!("unknown argument {arg:?}")),
            },
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modes_and_options() {
        let a = parse(&args(&["preauth", "config=/etc/x.toml", "debug"]), false).unwrap();
        assert_eq!(a.mode, Mode::Preauth);
        assert_eq!(a.config, PathBuf::from("/etc/x.toml"));
        assert!(a.debug);
        assert_eq!(parse(&[], false).unwrap().mode, Mode::SecondFactor);
        assert_eq!(parse(&[], true).unwrap().mode, Mode::Account);
        assert_eq!(
            parse(&[], false).unwrap().config,
            PathBuf::from(DEFAULT_PATH)
        );
    }

    #[test]
    fn mistakes_are_errors() {
        for bad in [
            &["nullok"][..],
            &["preauth", "authfail"],
            &["config=relative.toml"],
            &["Preauth"],
            &[""],
        ] {
            assert!(parse(&args(bad), false).is_err(), "{bad:?}");
        }
        assert!(parse(&args(&["preauth"]), true).is_err());
    }
}
