//! What every fuzz target asserts, beyond "does not panic". Shared by the
//! cargo-fuzz targets (fuzz_targets/*.rs) and by the deterministic smoke
//! test in the main crate (tests/hardening/fuzz_smoke.rs), which includes
//! this file with `#[path]`.
#![allow(dead_code)]

use pam_mfa::internals::codes::{normalize_bypass, normalize_digits};
use pam_mfa::internals::config::{Algorithm, Config};
use pam_mfa::internals::google_auth;
use pam_mfa::internals::protocol::{self, ClientReply, Request, MAX_FIELD_BYTES, MAX_LINE_BYTES};
use pam_mfa::internals::sms::{check_phone, mask_phone};
use pam_mfa::internals::totp::{self, TotpParams};
use std::path::Path;

/// Config::parse: a parsed config is within every documented range, and
/// writing it out and parsing it again gives the same config.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/pam_mfa.toml");
    match Config::parse(text, path) {
        Ok(c) => {
            assert!(c.database.is_absolute(), "{c:?}");
            assert!((1..=1000).contains(&c.lockout.deny), "{c:?}");
            assert!((6..=8).contains(&c.totp.digits), "{c:?}");
            assert!((10..=300).contains(&c.totp.period), "{c:?}");
            assert!(c.totp.window <= 10, "{c:?}");
            assert!((1..=300).contains(&c.sms.timeout), "{c:?}");
            assert!(
                !c.issuer.contains(':') && !c.issuer.chars().any(char::is_control),
                "{c:?}"
            );
            let written = toml::to_string(&c).expect("a parsed config serialises");
            let again = Config::parse(&written, path)
                .unwrap_or_else(|e| panic!("{e}: re-parsing\n{written}"));
            assert_eq!(again, c, "round trip through\n{written}");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("/fuzz/pam_mfa.toml"), "{message}");
        }
    }
}

const SECRET: &[u8] = b"12345678901234567890";

/// Code normalisation and TOTP verification: normal forms are what they
/// claim and stable; a verified code is the code of the step returned,
/// within the window and after the replay guard.
pub fn codes(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(6));
    let byte = |i: usize| head.get(i).copied().unwrap_or(0);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Some(d) = normalize_digits(text) {
        assert!(
            !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()),
            "{d:?}"
        );
        assert_eq!(d.len(), text.bytes().filter(u8::is_ascii_digit).count());
        assert_eq!(normalize_digits(&d).as_deref(), Some(&*d), "not stable");

        let params = TotpParams {
            algorithm: [Algorithm::SHA1, Algorithm::SHA256, Algorithm::SHA512]
                [usize::from(byte(0) % 3)],
            digits: 6 + byte(1) % 3,
            period: 30,
        };
        let window = u32::from(byte(2) % 11);
        let now = 1_700_000_000 + i64::from(u16::from_le_bytes([byte(3), byte(4)])) * 7;
        let current = totp::step_at(now, params.period);
        let last_step = match byte(5) % 4 {
            0 => None,
            1 => Some(current - 1),
            2 => Some(current),
            _ => Some(current + i64::from(window)),
        };
        if let Some(step) = totp::verify(SECRET, params, &d, now, window, last_step) {
            assert!((step - current).abs() <= i64::from(window), "step {step}");
            assert!(last_step.is_none_or(|l| step > l), "replayed step {step}");
            assert_eq!(*totp::code_for_step(SECRET, params, step), *d);
        }
        // The current code itself is accepted, unless the guard forbids it.
        let code = totp::code_for_step(SECRET, params, current);
        let accepted = totp::verify(SECRET, params, &code, now, window, last_step);
        if last_step.is_none_or(|l| l < current - i64::from(window)) {
            assert!(accepted.is_some(), "current code refused");
        }
    } else {
        assert!(
            !text.bytes().any(|b| b.is_ascii_digit())
                || text.chars().any(|c| !matches!(c, '0'..='9' | ' ' | '-')),
            "{text:?} has only digits, spaces and dashes but did not normalise"
        );
    }
    if let Some(b) = normalize_bypass(text) {
        let crockford = |c: u8| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&c);
        assert!(
            (b.len() == 10 && b.bytes().all(crockford))
                || (b.len() == 8 && b.bytes().all(|c| c.is_ascii_digit())),
            "{b:?}"
        );
        assert_eq!(normalize_bypass(&b).as_deref(), Some(&*b), "not stable");
    }
}

/// Phone numbers: the check agrees with the documented rule, spelled out
/// independently here, and masking never panics or shows more than 4 digits.
pub fn phone(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let valid = match text.strip_prefix('+') {
        Some(rest) => digits(rest) && (8..=15).contains(&rest.len()) && !rest.starts_with('0'),
        None => digits(text) && text.len() == 10,
    };
    assert_eq!(check_phone(text).is_ok(), valid, "{text:?}");
    let masked = mask_phone(text);
    assert!(masked.starts_with("***-***-"), "{masked}");
    assert!(masked.chars().count() <= "***-***-".len() + 4, "{masked}");
    if valid {
        assert!(masked.ends_with(&text[text.len() - 4..]), "{masked}");
    }
}

/// The google-authenticator import: what it accepts is within range.
pub fn google_auth(data: &[u8]) {
    match google_auth::parse(data) {
        Ok(f) => {
            assert!(data.len() <= google_auth::MAX_FILE_BYTES);
            assert!(f.secret.len() >= 10, "{} secret bytes", f.secret.len());
            assert!((1..=300).contains(&f.step), "step {}", f.step);
            assert!(
                (1..=google_auth::MAX_WINDOW_SIZE).contains(&f.window_size),
                "window {}",
                f.window_size
            );
            assert!(f.time_skew.abs() <= google_auth::MAX_TIME_SKEW);
            assert!(f.step_window().behind <= 49 && f.step_window().ahead <= 50);
            for c in &f.scratch_codes {
                assert!(c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit()));
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The socket protocol: an accepted request or login reply obeys every
/// limit, and a request survives a round trip through the encoding the
/// clients use.
pub fn protocol(data: &[u8]) {
    let fine = |s: &str| s.len() <= MAX_FIELD_BYTES && !s.chars().any(char::is_control);
    match protocol::parse_request(data) {
        Ok(Request::Login(l)) => {
            assert!(data.len() <= MAX_LINE_BYTES);
            assert!(fine(&l.user) && fine(&l.service) && fine(&l.rhost), "{l:?}");
            let line = protocol::encode_line(&protocol::Envelope {
                version: protocol::VERSION,
                request: Request::Login(l.clone()),
            });
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            match protocol::parse_request(&line[..line.len() - 1]) {
                Ok(Request::Login(back)) => assert_eq!(back, l),
                other => panic!("a login request did not survive its encoding: {other:?}"),
            }
        }
        Ok(Request::Command(c)) => {
            assert!(data.len() <= MAX_LINE_BYTES);
            assert!(c.user.as_deref().is_none_or(fine), "{c:?}");
            assert!(c.code.as_deref().is_none_or(fine), "{c:?}");
            let line = protocol::encode_command(&c);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            if line.len() <= MAX_LINE_BYTES {
                let back = protocol::encode_command(
                    match &protocol::parse_request(&line[..line.len() - 1]) {
                        Ok(Request::Command(back)) => back,
                        other => {
                            panic!("a command request did not survive its encoding: {other:?}")
                        }
                    },
                );
                assert_eq!(back, line);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match protocol::parse_reply(data) {
        Ok(ClientReply::Answer(ref text)) => assert!(text.len() <= MAX_FIELD_BYTES),
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
