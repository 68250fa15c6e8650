//! Printing: human text or one JSON value on stdout, errors on stderr (and as
//! JSON on stdout with --json), and the small formatting helpers.

use crate::cli::error::{exit, CliError, Result};
use serde::Serialize;
use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::OsString;
use std::io::Write;
use zeroize::Zeroizing;

/// What a command printed while the daemon ran it for a caller.
#[derive(Default)]
pub struct Captured {
    pub stdout: Zeroizing<String>,
    pub stderr: String,
}

thread_local! {
    /// Set while this thread runs a command for the daemon: its output goes
    /// to the caller, not to the daemon's own stdout and stderr.
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// Runs `f` with everything the command functions print collected.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Captured) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Captured::default()));
    // Taken even when `f` panics: the next command on this thread starts clean.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CAPTURE.with(|c| c.borrow_mut().take());
        }
    }
    let reset = Reset;
    let result = f();
    let captured = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    drop(reset);
    (result, captured)
}

pub fn capturing() -> bool {
    CAPTURE.with(|c| c.borrow().is_some())
}

/// Appends to the captured output, if this thread captures; false if not.
fn captured(stdout: bool, text: &str) -> bool {
    CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(out) if stdout => {
            out.stdout.push_str(text);
            true
        }
        Some(out) => {
            out.stderr.push_str(text);
            true
        }
        None => false,
    })
}

/// A line for the person at the terminal (stderr): setup hints, retries.
pub fn note(text: &str) {
    if !captured(false, &format!("{text}\n")) {
        eprintln!("{text}");
    }
}

fn write_stdout(text: &str) -> Result<()> {
    if captured(true, text) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))
}

/// Prints human text (a newline is added).
pub fn text(text: &str) -> Result<()> {
    let mut line = Zeroizing::new(String::with_capacity(text.len() + 1));
    line.push_str(text);
    line.push('\n');
    write_stdout(&line)
}

/// Prints one JSON value on a line. The buffer is wiped afterwards: enrollment
/// output carries secrets and bypass codes.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut line = Zeroizing::new(
        serde_json::to_string(value)
            .map_err(|e| CliError::Failed(format!("cannot encode the JSON output: {e}")))?,
    );
    line.push('\n');
    write_stdout(&line)
}

#[derive(Serialize)]
struct JsonError<'a> {
    error: &'a str,
    message: &'a str,
}

pub fn error(e: &CliError, json_too: bool) {
    note(&format!("mfa: {e}"));
    if json_too {
        let message = e.to_string();
        let _ = json(&JsonError {
            error: e.kind(),
            message: &message,
        });
    }
}

/// Reports an argument error the way clap does (usage and hint on stderr),
/// plus the JSON error object when --json was among the arguments.
pub fn clap_error(e: &clap::Error, args: impl Iterator<Item = OsString>) -> i32 {
    use clap::error::ErrorKind;
    let _ = e.print();
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return exit::OK;
    }
    if args.take_while(|a| a != "--").any(|a| a == "--json") {
        let rendered = e.to_string();
        let message = match e.kind() {
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                "a command is missing; see `mfa --help`"
            }
            _ => {
                let first = rendered.lines().next().unwrap_or_default();
                first.strip_prefix("error: ").unwrap_or(first)
            }
        };
        let _ = json(&JsonError {
            error: "usage",
            message,
        });
    }
    exit::USAGE
}

/// Text from the database made safe for a terminal: control characters
/// (an escape sequence in a name, say) are shown escaped.
pub fn printable(s: &str) -> Cow<'_, str> {
    if s.chars().any(crate::audit::invisible) {
        Cow::Owned(crate::audit::defang(s))
    } else {
        Cow::Borrowed(s)
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a Unix time.
pub fn utc(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("alice"), "alice");
        assert_eq!(printable("a\x1b[2Jb"), "a\\u{1b}[2Jb");
    }
}
