//! RFC 6238 codes over totp-rs, with a window of steps either side of now and
//! a replay guard: a code is accepted only for a step newer than the device's
//! last accepted one.

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

/// Which steps a device's codes are accepted for, around the host's step
/// now: from `now + offset - behind` to `now + offset + ahead`. Devices
/// enrolled here use the config's `window` either side and no offset; an
/// imported google-authenticator file keeps that module's window (one
/// step more ahead than behind for an even WINDOW_SIZE) and its learnt
/// TIME_SKEW as the offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepWindow {
    pub behind: u32,
    pub ahead: u32,
    /// The device's clock against ours, in steps (positive: it runs fast).
    pub offset: i64,
}

impl StepWindow {
    /// `steps` either side of now, no offset (the config's `totp.window`).
    pub fn symmetric(steps: u32) -> StepWindow {
        StepWindow {
            behind: steps,
            ahead: steps,
            offset: 0,
        }
    }

    /// pam_google_authenticator's WINDOW_SIZE `size` codes (1..=100), that
    /// module accepting −(size−1)/2 … size/2 steps around now + skew.
    pub fn google_authenticator(size: u32, skew: i64) -> StepWindow {
        StepWindow {
            behind: size.saturating_sub(1) / 2,
            ahead: size / 2,
            offset: skew,
        }
    }
}

impl From<u32> for StepWindow {
    fn from(steps: u32) -> StepWindow {
        StepWindow::symmetric(steps)
    }
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
    verify_in(
        secret,
        params,
        typed_digits,
        now,
        StepWindow::symmetric(window),
        last_step,
    )
}

/// [`verify`] with a device's own window and clock offset. The step
/// returned (and `last_step`) count on the device's clock: now + offset.
pub fn verify_in(
    secret: &[u8],
    params: TotpParams,
    typed_digits: &str,
    now: i64,
    window: StepWindow,
    last_step: Option<i64>,
) -> Option<i64> {
    if typed_digits.len() != usize::from(params.digits) {
        return None;
    }
    let t = engine(secret, params);
    let current = step_at(now, params.period).saturating_add(window.offset);
    let first = current
        .saturating_sub(i64::from(window.behind))
        .max(last_step.map_or(0, |s| s.saturating_add(1)));
    let last = current.saturating_add(i64::from(window.ahead));
    (first.max(0)..=last).find(|&step| {
        (step as u64)
            .checked_mul(u64::from(params.period))
            .is_some_and(|time| t.check(typed_digits, time).is_some())
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

    /// RFC 4226 Appendix D: HOTP values for counters 0 to 9. A TOTP step
    /// is an HOTP counter, so these are the codes for steps 0 to 9.
    #[test]
    fn rfc4226_appendix_d_vectors() {
        let want = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        let params = p(Algorithm::SHA1, 6);
        for (count, want) in want.into_iter().enumerate() {
            let step = count as i64;
            assert_eq!(
                code_for_step(SHA1_SEED, params, step).as_str(),
                want,
                "count {count}"
            );
            assert_eq!(
                verify(SHA1_SEED, params, want, step * 30, 0, None),
                Some(step)
            );
            // From a device whose clock runs 3 steps fast, at our step - 3.
            let fast = StepWindow::google_authenticator(1, 3);
            assert_eq!(
                verify_in(SHA1_SEED, params, want, (step - 3) * 30, fast, None),
                Some(step)
            );
            assert_eq!(
                verify_in(SHA1_SEED, params, want, step * 30, fast, None),
                None
            );
        }
    }

    /// pam_google_authenticator's window: WINDOW_SIZE w accepts the steps
    /// −(w−1)/2 … w/2 around now + TIME_SKEW, for every w it allows.
    #[test]
    fn google_authenticator_windows_and_offsets() {
        let params = p(Algorithm::SHA1, 6);
        let now = 1_700_000_000;
        let cur = step_at(now, 30);
        for size in 1..=100u32 {
            for skew in [0i64, -7, 12] {
                let window = StepWindow::google_authenticator(size, skew);
                let lowest = -((i64::from(size) - 1) / 2);
                let highest = i64::from(size) / 2;
                for i in [lowest - 1, lowest, 0, highest, highest + 1] {
                    let code = code_for_step(SHA1_SEED, params, cur + skew + i);
                    let got = verify_in(SHA1_SEED, params, &code, now, window, None);
                    let accepted = (lowest..=highest).contains(&i);
                    // A code of another step may collide with one in the
                    // window (one in a million per step): tell them apart.
                    assert_eq!(
                        got == Some(cur + skew + i),
                        accepted,
                        "size {size} skew {skew} step {i}"
                    );
                }
            }
        }
        assert_eq!(
            StepWindow::google_authenticator(3, 0),
            StepWindow::symmetric(1)
        );
        assert_eq!(
            StepWindow::google_authenticator(4, 0),
            StepWindow {
                behind: 1,
                ahead: 2,
                offset: 0
            }
        );
        // The replay guard counts on the device's clock.
        let fast = StepWindow::google_authenticator(3, 5);
        let code = code_for_step(SHA1_SEED, params, cur + 5);
        assert_eq!(
            verify_in(SHA1_SEED, params, &code, now, fast, Some(cur + 4)),
            Some(cur + 5)
        );
        assert_eq!(
            verify_in(SHA1_SEED, params, &code, now, fast, Some(cur + 5)),
            None
        );
        // Absurd stored values neither panic nor accept.
        let absurd = StepWindow {
            behind: 1,
            ahead: 1,
            offset: i64::MAX,
        };
        assert_eq!(verify_in(SHA1_SEED, params, &code, now, absurd, None), None);
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
