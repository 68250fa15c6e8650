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
pub fn parse(args: &[String], account_phase: bool) -> Result<Args, String> {
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
            _ => {
                if let Some(path) = arg.strip_prefix("config=") {
                    parsed.config = absolute(arg, path)?;
                } else if let Some(path) = arg.strip_prefix("socket=") {
                    parsed.socket = Some(absolute(arg, path)?);
                } else {
                    return Err(format!("unknown argument {arg:?}"));
                }
            }
        }
    }
    Ok(parsed)
}

fn absolute(arg: &str, path: &str) -> Result<PathBuf, String> {
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(format!("{arg:?}: needs an absolute path"))
    }
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
