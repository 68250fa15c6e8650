//! Reading a `~/.google_authenticator` file (pam_google_authenticator's
//! format) so users keep their phones when a site migrates to pam_mfa.

use crate::secret::{base32_decode, SecretBytes};
use crate::totp::StepWindow;
use zeroize::Zeroizing;

/// Files bigger than this are not google-authenticator files.
pub const MAX_FILE_BYTES: usize = 4096;

pub struct GaFile {
    pub secret: SecretBytes,
    pub step: u32,
    /// WINDOW_SIZE: how many codes are accepted at once (1..=100); 3 when
    /// the file has none, as in pam_google_authenticator.
    pub window_size: u32,
    /// TIME_SKEW: the phone's clock against the host's, in steps, as the
    /// module learnt it from codes typed in a row.
    pub time_skew: i64,
    /// DISALLOW_REUSE is present: each code logs in once there too.
    pub disallow_reuse: bool,
    /// The newest step DISALLOW_REUSE lists as used (the module appends the
    /// step of each code accepted).
    pub last_used_step: Option<i64>,
    /// RATE_LIMIT n m: at most n logins in m seconds.
    pub rate_limit: Option<(u32, u32)>,
    /// RESETTING_TIME_SKEW holds codes of a skew adjustment not finished.
    pub skew_adjustment_pending: bool,
    /// LAST0..LAST9 lines: hosts and times of recent logins, for the
    /// module's `grace_period`.
    pub grace_lines: usize,
    pub scratch_codes: Vec<Zeroizing<String>>,
}

impl GaFile {
    /// The steps pam_google_authenticator accepts for this file: −(W−1)/2 …
    /// W/2 around now + TIME_SKEW.
    pub fn step_window(&self) -> StepWindow {
        StepWindow::google_authenticator(self.window_size, self.time_skew)
    }
}

/// pam_google_authenticator accepts WINDOW_SIZE 1 to 100.
pub const MAX_WINDOW_SIZE: u32 = 100;
/// pam_google_authenticator looks for a skewed code 1,499 steps either
/// side of now, so the skew it learns from three such codes is within
/// this; a larger TIME_SKEW was not written by it.
pub const MAX_TIME_SKEW: i64 = 1500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaError {
    NotText,
    TooLarge,
    NoSecret,
    BadSecret,
    Hotp,
    BadOption {
        line: usize,
        text: String,
    },
    /// A known option with a value pam_google_authenticator would not take.
    BadValue {
        line: usize,
        option: &'static str,
        expected: &'static str,
        found: String,
    },
    BadScratchCode {
        line: usize,
    },
}

impl std::fmt::Display for GaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GaError::NotText => f.write_str("the file is not text"),
            GaError::TooLarge => write!(f, "the file is larger than {MAX_FILE_BYTES} bytes"),
            GaError::NoSecret => {
                f.write_str("the file is empty: its first line must be the secret")
            }
            GaError::BadSecret => {
                f.write_str("the first line is not a base32 secret of at least 80 bits")
            }
            GaError::Hotp => f.write_str(
                "this is an HOTP (counter-based) file; pam_mfa supports time-based codes only: \
                 enroll a new device with `mfa device add totp`",
            ),
            GaError::BadOption { line, text } => write!(f, "line {line}: unknown option {text:?}"),
            GaError::BadValue {
                line,
                option,
                expected,
                found,
            } => write!(
                f,
                "line {line}: {option} must be followed by {expected} (found {found:?}); \
                 fix the line or enroll a new device with `mfa device add totp`"
            ),
            GaError::BadScratchCode { line } => {
                write!(f, "line {line}: a scratch code must be 8 digits")
            }
        }
    }
}

impl std::error::Error for GaError {}

/// Reads the file as pam_google_authenticator (1.0x, Debian's
/// libpam-google-authenticator) writes it: the `google-authenticator`
/// command's options, and the state the module itself adds after logins
/// (DISALLOW_REUSE steps, RATE_LIMIT times, TIME_SKEW and
/// RESETTING_TIME_SKEW, LAST0..LAST9).
pub fn parse(bytes: &[u8]) -> Result<GaFile, GaError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(GaError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| GaError::NotText)?;
    let mut lines = text.lines().enumerate();
    let (_, first) = lines.next().ok_or(GaError::NoSecret)?;
    let secret = base32_decode(first.trim()).ok_or(GaError::BadSecret)?;
    if secret.len() < 10 {
        return Err(GaError::BadSecret);
    }
    let mut file = GaFile {
        secret,
        step: 30,
        window_size: 3,
        time_skew: 0,
        disallow_reuse: false,
        last_used_step: None,
        rate_limit: None,
        skew_adjustment_pending: false,
        grace_lines: 0,
        scratch_codes: Vec::new(),
    };
    for (i, line) in lines {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(option) = line.strip_prefix('"') {
            let mut words = option.split_whitespace();
            let name = words.next();
            let rest = || -> String {
                let rest = option.trim_start();
                let rest = rest[name.map_or(0, str::len)..].trim();
                rest.chars().take(40).collect()
            };
            let bad = |option: &'static str, expected: &'static str| GaError::BadValue {
                line: line_no,
                option,
                expected,
                found: rest(),
            };
            match name {
                Some("HOTP_COUNTER") => return Err(GaError::Hotp),
                Some("STEP_SIZE") => {
                    file.step = words
                        .next()
                        .and_then(|w| w.parse().ok())
                        .filter(|s| (1..=300).contains(s))
                        .ok_or_else(|| bad("STEP_SIZE", "a number of seconds from 1 to 300"))?
                }
                Some("WINDOW_SIZE") => {
                    file.window_size = words
                        .next()
                        .and_then(|w| w.parse().ok())
                        .filter(|w| (1..=MAX_WINDOW_SIZE).contains(w))
                        .ok_or_else(|| bad("WINDOW_SIZE", "a number of codes from 1 to 100"))?;
                }
                Some("TIME_SKEW") => {
                    file.time_skew = words
                        .next()
                        .and_then(|w| w.parse().ok())
                        .filter(|s: &i64| s.abs() <= MAX_TIME_SKEW)
                        .ok_or_else(|| bad("TIME_SKEW", "a number of steps from -1500 to 1500"))?;
                }
                Some("DISALLOW_REUSE") => {
                    file.disallow_reuse = true;
                    for word in words {
                        let step: u32 = word.parse().map_err(|_| {
                            bad("DISALLOW_REUSE", "the time steps of codes used (numbers)")
                        })?;
                        let step = i64::from(step);
                        file.last_used_step = file.last_used_step.max(Some(step));
                    }
                }
                // The times of recent logins follow; the module needs both
                // numbers and refuses every login without them.
                Some("RATE_LIMIT") => {
                    let mut number = || words.next().and_then(|w| w.parse::<u32>().ok());
                    let limit = number().zip(number()).filter(|&(n, m)| n >= 1 && m >= 1);
                    file.rate_limit = Some(limit.ok_or_else(|| {
                        bad("RATE_LIMIT", "a number of logins and a number of seconds")
                    })?);
                }
                // Attempts of a skew adjustment: codes typed, not logins.
                Some("RESETTING_TIME_SKEW") => {
                    file.skew_adjustment_pending = words.next().is_some();
                }
                Some(
                    "LAST0" | "LAST1" | "LAST2" | "LAST3" | "LAST4" | "LAST5" | "LAST6" | "LAST7"
                    | "LAST8" | "LAST9",
                ) => file.grace_lines += 1,
                Some("TOTP_AUTH") => {}
                _ => {
                    return Err(GaError::BadOption {
                        line: line_no,
                        text: line.chars().take(40).collect(),
                    })
                }
            }
            continue;
        }
        if line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit()) {
            file.scratch_codes.push(Zeroizing::new(line.to_owned()));
        } else {
            return Err(GaError::BadScratchCode { line: line_no });
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_typical_file() {
        let f = parse(
            b"JBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3 30 1700000000\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE 56666666\n\" TOTP_AUTH\n12345678\n87654321\n",
        )
        .unwrap();
        assert_eq!(f.secret.as_slice(), b"Hello!\xde\xad\xbe\xef");
        assert_eq!(f.step_window(), StepWindow::symmetric(8));
        assert_eq!(f.step, 30);
        assert_eq!(f.scratch_codes.len(), 2);
        assert_eq!(f.rate_limit, Some((3, 30)));
        assert!(f.disallow_reuse);
        assert_eq!(f.last_used_step, Some(56666666));
        assert_eq!((f.time_skew, f.grace_lines), (0, 0));
    }

    /// What pam_google_authenticator writes after logins: the steps used,
    /// a learnt skew (and the emptied adjustment line), grace-period hosts.
    #[test]
    fn reads_the_state_the_module_writes() {
        let f = parse(
            b"JBSWY3DPEHPK3PXP\n\" LAST0 192.0.2.1 1700000000\n\" LAST1 host.example 1700000100\n\
              \" RESETTING_TIME_SKEW \n\" TIME_SKEW -4\n\
              \" DISALLOW_REUSE 56666670 56666672 56666671\n\" WINDOW_SIZE 4\n\" TOTP_AUTH\n",
        )
        .unwrap();
        assert_eq!(f.time_skew, -4);
        assert_eq!(f.last_used_step, Some(56666672));
        assert_eq!(f.grace_lines, 2);
        assert!(!f.skew_adjustment_pending);
        assert_eq!(
            f.step_window(),
            StepWindow {
                behind: 1,
                ahead: 2,
                offset: -4
            }
        );
        let f = parse(
            b"JBSWY3DPEHPK3PXP\n\" RESETTING_TIME_SKEW 56666666+7 56666667+7\n\" TOTP_AUTH\n",
        )
        .unwrap();
        assert!(f.skew_adjustment_pending);
        assert!(!f.disallow_reuse);
        assert_eq!((f.window_size, f.time_skew, f.last_used_step), (3, 0, None));
        assert_eq!(f.step_window(), StepWindow::symmetric(1));
        // An empty DISALLOW_REUSE, as the command writes it.
        let f = parse(b"JBSWY3DPEHPK3PXP\n\" DISALLOW_REUSE\n").unwrap();
        assert!(f.disallow_reuse);
        assert_eq!(f.last_used_step, None);
    }

    #[test]
    fn every_window_size_the_module_allows() {
        for size in 1..=100u32 {
            let f = parse(format!("JBSWY3DPEHPK3PXP\n\" WINDOW_SIZE {size}\n").as_bytes()).unwrap();
            let w = f.step_window();
            assert_eq!(
                (w.behind, w.ahead),
                ((size - 1) / 2, size / 2),
                "WINDOW_SIZE {size}"
            );
        }
    }

    #[test]
    fn refuses_hotp_and_garbage() {
        assert_eq!(
            parse(b"JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n").err(),
            Some(GaError::Hotp)
        );
        assert_eq!(parse(b"").err(), Some(GaError::NoSecret));
        assert_eq!(parse(b"not base32!\n").err(), Some(GaError::BadSecret));
        assert_eq!(parse(b"JBSW\n").err(), Some(GaError::BadSecret));
        assert_eq!(parse(&[0xff, 0xfe]).err(), Some(GaError::NotText));
        assert!(matches!(
            parse(b"JBSWY3DPEHPK3PXP\n1234\n").err(),
            Some(GaError::BadScratchCode { line: 2 })
        ));
        assert!(matches!(
            parse(b"JBSWY3DPEHPK3PXP\n\" EVIL 1\n").err(),
            Some(GaError::BadOption { line: 2, .. })
        ));
        for (line, option) in [
            ("WINDOW_SIZE 101", "WINDOW_SIZE"),
            ("WINDOW_SIZE 0", "WINDOW_SIZE"),
            ("WINDOW_SIZE", "WINDOW_SIZE"),
            ("STEP_SIZE 0", "STEP_SIZE"),
            ("TIME_SKEW 1501", "TIME_SKEW"),
            ("TIME_SKEW x", "TIME_SKEW"),
            ("DISALLOW_REUSE 12 x", "DISALLOW_REUSE"),
            ("DISALLOW_REUSE -3", "DISALLOW_REUSE"),
            ("RATE_LIMIT 3", "RATE_LIMIT"),
        ] {
            let e = parse(format!("JBSWY3DPEHPK3PXP\n\" {line}\n").as_bytes())
                .err()
                .unwrap_or_else(|| panic!("{line} accepted"));
            assert!(
                matches!(&e, GaError::BadValue { line: 2, option: o, .. } if *o == option),
                "{line}: {e:?}"
            );
            assert!(!e.to_string().contains("unknown option"), "{e}");
        }
        let e = parse(b"JBSWY3DPEHPK3PXP\n\" WINDOW_SIZE 101\n")
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "line 2: WINDOW_SIZE must be followed by a number of codes from 1 to 100 \
             (found \"101\"); fix the line or enroll a new device with `mfa device add totp`"
        );
        assert_eq!(parse(&vec![b'A'; 5000]).err(), Some(GaError::TooLarge));
    }
}
