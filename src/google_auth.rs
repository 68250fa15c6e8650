//! Reading a `~/.google_authenticator` file (pam_google_authenticator's
//! format) so users keep their phones when a site migrates to pam_mfa.
#![forbid(unsafe_code)]

use crate::secret::{base32_decode, SecretBytes};
use zeroize::Zeroizing;

/// Files bigger than this are not google-authenticator files.
pub const MAX_FILE_BYTES: usize = 4096;

pub struct GaFile {
    pub secret: SecretBytes,
    pub step: u32,
    /// Steps accepted either side, from WINDOW_SIZE (a total count there).
    pub window: Option<u32>,
    pub scratch_codes: Vec<Zeroizing<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaError {
    NotText,
    TooLarge,
    NoSecret,
    BadSecret,
    Hotp,
    BadOption { line: usize, text: String },
    BadScratchCode { line: usize },
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
            GaError::BadScratchCode { line } => {
                write!(f, "line {line}: a scratch code must be 8 digits")
            }
        }
    }
}

impl std::error::Error for GaError {}

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
        window: None,
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
            let bad = || GaError::BadOption {
                line: line_no,
                text: line.chars().take(40).collect(),
            };
            match words.next() {
                Some("HOTP_COUNTER") => return Err(GaError::Hotp),
                Some("STEP_SIZE") => {
                    file.step = words
                        .next()
                        .and_then(|w| w.parse().ok())
                        .filter(|s| (1..=300).contains(s))
                        .ok_or_else(bad)?
                }
                Some("WINDOW_SIZE") => {
                    let total: u32 = words
                        .next()
                        .and_then(|w| w.parse().ok())
                        .filter(|w| (1..=21).contains(w))
                        .ok_or_else(bad)?;
                    file.window = Some((total - 1) / 2);
                }
                // Reuse is always refused and rate limits are our lockout.
                Some("TOTP_AUTH" | "DISALLOW_REUSE" | "RATE_LIMIT") => {}
                _ => return Err(bad()),
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
        assert_eq!(f.window, Some(8));
        assert_eq!(f.step, 30);
        assert_eq!(f.scratch_codes.len(), 2);
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
            parse(b"JBSWY3DPEHPK3PXP\n\" WINDOW_SIZE 99\n").err(),
            Some(GaError::BadOption { line: 2, .. })
        ));
        assert_eq!(parse(&vec![b'A'; 5000]).err(), Some(GaError::TooLarge));
    }
}
