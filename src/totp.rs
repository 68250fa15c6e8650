//! RFC 6238 codes over totp-rs, with a window of steps either side of now and
//! a replay guard: a code is accepted only for a step newer than the device's
//! last accepted one.
#![forbid(unsafe_code)]

use crate::config::{Algorithm, TotpConfig};
use crate::secret::{base32_encode, random_bytes, SecretBytes};
use totp_rs::{Builder, Totp};
use zeroize::Zeroizing;

/// 160 bits, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
}

impl From<&TotpConfig> for TotpParams {
    fn from(c: &TotpConfig) -> Self {
        TotpParams {
            algorithm: c.algorithm,
            digits: c.digits,
            period: c.period,
        }
    }
}

pub fn new_secret() -> Result<SecretBytes, getrandom::Error> {
    random_bytes(SECRET_BYTES)
}

fn engine(secret: &[u8], params: TotpParams) -> Totp {
    let algorithm = match params.algorithm {
        Algorithm::SHA1 => totp_rs::Algorithm::SHA1,
        Algorithm::SHA256 => totp_rs::Algorithm::SHA256,
        Algorithm::SHA512 => totp_rs::Algorithm::SHA512,
    };
    // Noncompliant only in that it accepts the 80-bit secrets of imported
    // google-authenticator files; secrets we generate are 160 bits.
    Builder::new()
        .with_algorithm(algorithm)
        .with_digits(params.digits)
        .with_skew(0)
        .with_step_duration(u64::from(params.period))
        .with_secret(secret)
        .build_noncompliant()
}

/// The code for one time step (what an authenticator app shows).
pub fn code_for_step(secret: &[u8], params: TotpParams, step: i64) -> Zeroizing<String> {
    let t = engine(secret, params);
    Zeroizing::new(
        t.generate(step.max(0) as u64 * u64::from(params.period))
            .to_string(),
    )
}

pub fn step_at(now: i64, period: u32) -> i64 {
    now.div_euclid(i64::from(period))
}

/// Returns the step a typed code (digits only) belongs to, if it lies within
/// `window` steps of now and after `last_step`. The oldest matching step wins,
/// so a code never burns its successors.
pub fn verify(
    secret: &[u8],
    params: TotpParams,
    typed_digits: &str,
    now: i64,
    window: u32,
    last_step: Option<i64>,
) -> Option<i64> {
    if typed_digits.len() != usize::from(params.digits) {
        return None;
    }
    let t = engine(secret, params);
    let current = step_at(now, params.period);
    let first = (current - i64::from(window)).max(last_step.map_or(0, |s| s + 1));
    let last = current + i64::from(window);
    (first.max(0)..=last).find(|&step| {
        t.check(typed_digits, step as u64 * u64::from(params.period))
            .is_some()
    })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `otpauth://` URI authenticator apps read from a QR code.
pub fn otpauth_uri(
    secret: &[u8],
    params: TotpParams,
    issuer: &str,
    account: &str,
) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
        percent_encode(issuer),
        percent_encode(account),
        base32_encode(secret).as_str(),
        percent_encode(issuer),
        params.algorithm.as_str(),
        params.digits,
        params.period
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1_SEED: &[u8] = b"12345678901234567890";
    const SHA256_SEED: &[u8] = b"12345678901234567890123456789012";
    const SHA512_SEED: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    fn p(algorithm: Algorithm, digits: u8) -> TotpParams {
        TotpParams {
            algorithm,
            digits,
            period: 30,
        }
    }

    /// RFC 6238 Appendix B, every row.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let rows: &[(i64, &str, &str, &str)] = &[
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for &(time, sha1, sha256, sha512) in rows {
            for (alg, seed, want) in [
                (Algorithm::SHA1, SHA1_SEED, sha1),
                (Algorithm::SHA256, SHA256_SEED, sha256),
                (Algorithm::SHA512, SHA512_SEED, sha512),
            ] {
                let params = p(alg, 8);
                let got = code_for_step(seed, params, step_at(time, 30));
                assert_eq!(got.as_str(), want, "{alg:?} at {time}");
                assert_eq!(
                    verify(seed, params, want, time, 0, None),
                    Some(step_at(time, 30))
                );
            }
        }
    }

    #[test]
    fn window_edges() {
        let params = p(Algorithm::SHA1, 6);
        let now = 1_700_000_000;
        let cur = step_at(now, 30);
        for (offset, window, accepted) in [
            (-1, 1, true),
            (1, 1, true),
            (-2, 1, false),
            (2, 1, false),
            (0, 0, true),
            (1, 0, false),
            (-2, 2, true),
            (3, 2, false),
        ] {
            let code = code_for_step(SHA1_SEED, params, cur + offset);
            let got = verify(SHA1_SEED, params, &code, now, window, None);
            assert_eq!(got.is_some(), accepted, "offset {offset} window {window}");
        }
    }

    #[test]
    fn replay_guard_refuses_a_step_already_used() {
        let params = p(Algorithm::SHA1, 6);
        let now = 1_700_000_000;
        let cur = step_at(now, 30);
        let code = code_for_step(SHA1_SEED, params, cur);
        let step = verify(SHA1_SEED, params, &code, now, 1, None).unwrap();
        assert_eq!(step, cur);
        assert_eq!(verify(SHA1_SEED, params, &code, now, 1, Some(step)), None);
        // An older code in the window is refused once a newer one was used.
        let prev = code_for_step(SHA1_SEED, params, cur - 1);
        assert_eq!(verify(SHA1_SEED, params, &prev, now, 1, Some(step)), None);
        let next = code_for_step(SHA1_SEED, params, cur + 1);
        assert_eq!(
            verify(SHA1_SEED, params, &next, now, 1, Some(step)),
            Some(cur + 1)
        );
    }

    #[test]
    fn wrong_length_or_garbage_is_refused() {
        let params = p(Algorithm::SHA1, 6);
        for bad in ["", "12345", "1234567", "abcdef", "+12345", "１２３４５６"] {
            assert_eq!(verify(SHA1_SEED, params, bad, 59, 1, None), None, "{bad}");
        }
    }

    #[test]
    fn uri_has_the_fields_apps_need() {
        let uri = otpauth_uri(SHA1_SEED, p(Algorithm::SHA1, 6), "My Host", "alice");
        assert!(uri.starts_with(
            "otpauth://totp/My%20Host:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&"
        ));
        assert!(uri.contains("&digits=6&period=30"));
    }
}
