//! Random bytes from the OS, base32, and constant-time comparison: the small
//! pieces every secret-handling module shares.
#![forbid(unsafe_code)]

use zeroize::Zeroizing;

/// Bytes that are wiped when dropped (typed codes, passwords, TOTP secrets).
pub type SecretBytes = Zeroizing<Vec<u8>>;

pub fn random_bytes(n: usize) -> Result<SecretBytes, getrandom::Error> {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    getrandom::getrandom(&mut buf)?;
    Ok(buf)
}

/// A uniformly random number below `bound`, by rejection sampling.
pub fn random_below(bound: u32) -> Result<u32, getrandom::Error> {
    assert!(bound > 0);
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let mut b = [0u8; 4];
        getrandom::getrandom(&mut b)?;
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

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding, as authenticator apps expect.
pub fn base32_encode(data: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(data.len().div_ceil(5) * 8));
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let bits = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            let idx = (bits >> (35 - i * 5)) & 31;
            out.push(BASE32_ALPHABET[idx as usize] as char);
        }
    }
    out
}

/// Decodes base32 as users and google-authenticator files write it: case,
/// spaces, dashes and `=` padding are ignored.
pub fn base32_decode(text: &str) -> Option<SecretBytes> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 5 / 8));
    let mut acc: u64 = 0;
    let mut nbits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            b' ' | b'-' | b'=' => continue,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            out.push((acc >> nbits) as u8);
            acc &= (1 << nbits) - 1;
        }
    }
    Some(out)
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
