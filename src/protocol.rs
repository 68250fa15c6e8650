//! The self-service socket's protocol: one JSON object per line each way.
//!
//! Request:  `{"version":1,"args":["device","list"],"user":null,"json":false,"code":null}`
//! Response: `{"exit":0,"stdout":"...","stderr":"..."}`
//!
//! `args` are the command's words without global flags; the daemon passes
//! its own `--config` and the caller's account. Who is calling comes only
//! from the socket's peer credentials, never from the request.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

pub const VERSION: u32 = 1;
/// A request larger than this is refused unread.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
pub const MAX_ARGS: usize = 32;
pub const MAX_ARG_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub version: u32,
    pub args: Vec<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub json: bool,
    /// A current code for step-up; wiped after use by the daemon.
    #[serde(default)]
    pub code: Option<String>,
}

impl Drop for Request {
    fn drop(&mut self) {
        // A code travels as the step-up `code`, or as an argument
        // (`device verify NICK CODE`).
        self.code.zeroize();
        self.args.zeroize();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub exit: i32,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// Set when the daemon itself refused (`permission`, `step-up`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Drop for Response {
    fn drop(&mut self) {
        // The output of `device add totp` or `bypass generate`.
        self.stdout.zeroize();
    }
}

impl Response {
    pub fn refused(exit: i32, kind: &str, message: &str) -> Response {
        Response {
            exit,
            stdout: String::new(),
            stderr: format!("mfa: {message}\n"),
            error: Some(kind.to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    TooLarge,
    NotJson(String),
    Version(u32),
    TooManyArgs,
    BadArg,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::TooLarge => write!(f, "request larger than {MAX_REQUEST_BYTES} bytes"),
            ProtocolError::NotJson(e) => write!(f, "malformed request: {e}"),
            ProtocolError::Version(v) => {
                write!(f, "protocol version {v} is not supported (this daemon speaks {VERSION}); use the mfa of the same package")
            }
            ProtocolError::TooManyArgs => write!(f, "more than {MAX_ARGS} arguments"),
            ProtocolError::BadArg => write!(
                f,
                "an argument is longer than {MAX_ARG_BYTES} bytes or holds control characters"
            ),
        }
    }
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(ProtocolError::TooLarge);
    }
    let request: Request =
        serde_json::from_slice(line).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    if request.version != VERSION {
        return Err(ProtocolError::Version(request.version));
    }
    if request.args.len() > MAX_ARGS {
        return Err(ProtocolError::TooManyArgs);
    }
    let bad = |s: &str| s.len() > MAX_ARG_BYTES || s.chars().any(char::is_control);
    if request.args.iter().any(|a| bad(a))
        || request.user.as_deref().is_some_and(bad)
        || request.code.as_deref().is_some_and(bad)
    {
        return Err(ProtocolError::BadArg);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_request_parses() {
        let r = parse_request(br#"{"version":1,"args":["device","list"],"json":true}"#).unwrap();
        assert_eq!(r.args, vec!["device", "list"]);
        assert!(r.json && r.user.is_none() && r.code.is_none());
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"{",
            b"null",
            b"[]",
            b"\xff\xfe",
            br#"{"version":2,"args":[]}"#,
            br#"{"version":1}"#,
            br#"{"version":1,"args":[1]}"#,
            br#"{"version":1,"args":[],"uid":0}"#,
            br#"{"version":1,"args":["a\nb"]}"#,
            br#"{"version":1,"args":[],"code":"1\u0000"}"#,
        ];
        for c in cases {
            assert!(
                parse_request(c).is_err(),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        let many = format!(
            r#"{{"version":1,"args":[{}]}}"#,
            vec!["\"x\""; 40].join(",")
        );
        assert_eq!(
            parse_request(many.as_bytes()),
            Err(ProtocolError::TooManyArgs)
        );
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(parse_request(&big), Err(ProtocolError::TooLarge));
    }
}
