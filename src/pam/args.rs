//! Module arguments, in the manner of pam_faillock: a mode word plus options.

use crate::config::DEFAULT_PATH;
pub use crate::protocol::Mode;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub mode: Mode,
    pub config: PathBuf,
    /// `socket=PATH`; None: the config's `socket` key, or the default.
    pub socket: Option<PathBuf>,
    pub debug: bool,
}

/// Parses the arguments of an `auth` line (`account` lines take only
/// `config=`, `socket=` and `debug`). Anything unknown is an error: a typo must not
/// silently change what the module enforces.
pub fn parse(args: &[String], account_phase: bool) -> Result<Args, BadArgument> {
    let mut parsed = Args {
        mode: if account_phase {
            Mode::Account
        } else {
            Mode::SecondFactor
        },
        config: PathBuf::from(DEFAULT_PATH),
        socket: None,
        debug: false,
    };
    let mut mode_word = None;
    for arg in args {
        match arg.as_str() {
            "debug" => parsed.debug = true,
            "preauth" | "authfail" if account_phase => {
                return Err(BadArgument::AuthOnly(arg.clone()))
            }
            "preauth" | "authfail" if mode_word.is_some() => return Err(BadArgument::TwoModes),
            "preauth" => {
                mode_word = Some(arg);
                parsed.mode = Mode::Preauth;
            }
            "authfail" => {
                mode_word = Some(arg);
                parsed.mode = Mode::Authfail;
            }
            _ => {
                if let Some(path) = arg.strip_prefix("config=") {
                    parsed.config = absolute(arg, path)?;
                } else if let Some(path) = arg.strip_prefix("socket=") {
                    parsed.socket = Some(absolute(arg, path)?);
                } else {
                    return Err(BadArgument::Unknown(arg.clone()));
                }
            }
        }
    }
    Ok(parsed)
}

fn absolute(arg: &str, path: &str) -> Result<PathBuf, BadArgument> {
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(BadArgument::Relative(arg.to_owned()))
    }
}

/// A module argument that is refused (logged, and the login denied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadArgument {
    /// `preauth` or `authfail` on an account line.
    AuthOnly(String),
    /// Both `preauth` and `authfail`, or one twice.
    TwoModes,
    /// `config=` or `socket=` with a relative path.
    Relative(String),
    Unknown(String),
}

impl std::fmt::Display for BadArgument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadArgument::AuthOnly(arg) => {
                write!(f, "argument {arg:?} is for auth lines, not account lines")
            }
            BadArgument::TwoModes => f.write_str("give at most one of preauth and authfail"),
            BadArgument::Relative(arg) => write!(f, "{arg:?}: needs an absolute path"),
            BadArgument::Unknown(arg) => write!(f, "unknown argument {arg:?}"),
        }
    }
}

impl std::error::Error for BadArgument {}

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
        assert_eq!(a.socket, None);
        let a = parse(&args(&["socket=/run/x.sock"]), true).unwrap();
        assert_eq!(a.socket, Some(PathBuf::from("/run/x.sock")));
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
            &["socket=mfa.sock"],
            &["socket"],
            &["Preauth"],
            &[""],
        ] {
            assert!(parse(&args(bad), false).is_err(), "{bad:?}");
        }
        assert!(parse(&args(&["preauth"]), true).is_err());
    }
}
