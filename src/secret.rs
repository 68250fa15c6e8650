//! Random bytes from the OS, base32 as users type it, and constant-time
//! comparison: the small pieces every secret-handling module shares.

use zeroize::Zeroizing;

/// Bytes that are wiped when dropped (typed codes, passwords, TOTP secrets).
pub type SecretBytes = Zeroizing<Vec<u8>>;

pub fn random_bytes(n: usize) -> Result<SecretBytes, getrandom::Error> {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    getrandom::fill(&mut buf)?;
    Ok(buf)
}

/// A uniformly random number below `bound`, by rejection sampling.
pub fn random_below(bound: u32) -> Result<u32, getrandom::Error> {
    assert!(bound > 0);
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b)?;
        let v = u32::from_le_bytes(b);
        if v < zone {
            return Ok(v % bound);
        }
    }
}

/// `n` random decimal digits.
pub fn random_digits(n: usize) -> Result<Zeroizing<String>, getrandom::Error> {
    let mut s = Zeroizing::new(String::with_capacity(n));
    for _ in 0..n {
        s.push(char::from(b'0' + random_below(10)? as u8));
    }
    Ok(s)
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// RFC 4648 base32 without padding, as authenticator apps expect.
pub fn base32_encode(data: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(base32::encode(
        base32::Alphabet::Rfc4648 { padding: false },
        data,
    ))
}

/// Decodes base32 as users and google-authenticator files write it: case,
/// spaces, dashes and `=` padding are ignored.
pub fn base32_decode(text: &str) -> Option<SecretBytes> {
    let canonical: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !matches!(c, ' ' | '-' | '='))
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &canonical).map(Zeroizing::new)
}

/// Groups of four for reading a secret aloud or typing it into an app.
pub fn group4(text: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(text.len() * 5 / 4));
    for (i, c) in text.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trips_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()).as_str(), enc);
            assert_eq!(base32_decode(enc).unwrap().as_slice(), plain.as_bytes());
        }
        assert_eq!(
            base32_decode("mzxw 6ytb-oi==").unwrap().as_slice(),
            b"foobar"
        );
        assert!(base32_decode("MZ1W").is_none());
    }

    #[test]
    fn random_digits_are_digits_and_vary() {
        let a = random_digits(20).unwrap();
        let b = random_digits(20).unwrap();
        assert!(a.bytes().all(|c| c.is_ascii_digit()));
        assert_ne!(*a, *b);
    }

    #[test]
    fn grouping() {
        assert_eq!(group4("ABCDEFGHIJ").as_str(), "ABCD EFGH IJ");
    }
}
