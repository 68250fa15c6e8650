//! Bypass, SMS and temporary codes: generation, normalisation and salted
//! slow hashing (PBKDF2-HMAC-SHA256, NIST SP 800-63B §5.1.2).

use crate::secret::{constant_time_eq, random_below, random_bytes, random_digits};
use zeroize::Zeroizing;

/// PBKDF2 rounds. Bypass codes carry 50 bits; this adds ~17 more against an
/// offline attack on a stolen database while one check stays a few ms.
pub const PBKDF2_ROUNDS: u32 = 100_000;
const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;

/// Crockford's base32: no I, L, O or U, so nothing reads as something else
/// (a typed O counts as 0, I and L as 1).
const BYPASS_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const BYPASS_CHARS: usize = 10;
pub const MAX_BYPASS_CODES: u32 = 10;

/// Purpose of a short-lived code; stored beside its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneTimePurpose {
    SmsLogin,
    SmsEnroll,
    Temporary,
}

impl OneTimePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            OneTimePurpose::SmsLogin => "sms-login",
            OneTimePurpose::SmsEnroll => "sms-enroll",
            OneTimePurpose::Temporary => "temporary",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sms-login" => Some(OneTimePurpose::SmsLogin),
            "sms-enroll" => Some(OneTimePurpose::SmsEnroll),
            "temporary" => Some(OneTimePurpose::Temporary),
            _ => None,
        }
    }
    /// Digits of the code and seconds it lives.
    pub fn shape(self) -> (usize, i64) {
        match self {
            OneTimePurpose::SmsLogin => (7, 300),
            OneTimePurpose::SmsEnroll => (4, 600),
            OneTimePurpose::Temporary => (8, 300),
        }
    }
}

/// A salted hash as stored: `pbkdf2-sha256$ROUNDS$SALT_HEX$HASH_HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeHash {
    pub rounds: u32,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

impl CodeHash {
    pub fn encode(&self) -> String {
        format!(
            "pbkdf2-sha256${}${}${}",
            self.rounds,
            hex(&self.salt),
            hex(&self.hash)
        )
    }

    pub fn decode(s: &str) -> Option<CodeHash> {
        let mut parts = s.split('$');
        if parts.next()? != "pbkdf2-sha256" {
            return None;
        }
        let rounds = parts.next()?.parse().ok().filter(|r| *r > 0)?;
        let salt = unhex(parts.next()?)?;
        let hash = unhex(parts.next()?)?;
        if parts.next().is_some() || hash.len() != HASH_BYTES {
            return None;
        }
        Some(CodeHash { rounds, salt, hash })
    }

    pub fn matches(&self, normalized_code: &str) -> bool {
        let derived = derive(normalized_code, &self.salt, self.rounds);
        constant_time_eq(&derived[..], &self.hash)
    }
}

type Derived = Zeroizing<[u8; HASH_BYTES]>;

thread_local! {
    /// PBKDF2 runs on this thread, for tests of constant work.
    static DERIVATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Those made while a write transaction was open: there should be none.
    static DERIVATIONS_UNDER_WRITE_LOCK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many PBKDF2 runs this thread has made.
#[cfg(test)]
pub fn derivations() -> u64 {
    DERIVATIONS.with(std::cell::Cell::get)
}

/// How many PBKDF2 runs this thread made inside a write transaction.
#[cfg(test)]
pub fn derivations_under_write_lock() -> u64 {
    DERIVATIONS_UNDER_WRITE_LOCK.with(std::cell::Cell::get)
}

fn derive(code: &str, salt: &[u8], rounds: u32) -> Derived {
    DERIVATIONS.with(|n| n.set(n.get() + 1));
    if crate::store::write_transaction_open() {
        DERIVATIONS_UNDER_WRITE_LOCK.with(|n| n.set(n.get() + 1));
    }
    let mut out = Zeroizing::new([0u8; HASH_BYTES]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(code.as_bytes(), salt, rounds, &mut out[..]);
    out
}

pub fn new_salt() -> Result<Vec<u8>, getrandom::Error> {
    Ok(random_bytes(SALT_BYTES)?.to_vec())
}

pub fn hash_with_salt(normalized_code: &str, salt: &[u8]) -> CodeHash {
    CodeHash {
        rounds: PBKDF2_ROUNDS,
        salt: salt.to_vec(),
        hash: derive(normalized_code, salt, PBKDF2_ROUNDS).to_vec(),
    }
}

/// A hash no code matches in practice (a fixed salt and a code of a shape
/// nobody types), made once: checked where no code is stored, so that a
/// wrong code costs the same PBKDF2 run either way.
pub fn decoy_hash() -> &'static CodeHash {
    static DECOY: std::sync::OnceLock<CodeHash> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_with_salt("decoy-not-a-code", &[0x5a; SALT_BYTES]))
}

/// Finds which stored hash a code matches. Codes generated together share a
/// salt, so a whole set of ten costs one derivation, not ten.
#[cfg(test)]
pub fn find_match<'a, I>(normalized_code: &str, hashes: I) -> Option<usize>
where
    I: IntoIterator<Item = &'a CodeHash> + Clone,
{
    let mut derived = Derivations::new(normalized_code);
    derived.prepare_all(hashes.clone());
    derived.find(hashes).unwrap_or(None)
}

/// A stored hash whose salt was not derived beforehand: the codes changed
/// between the snapshot and the write transaction, and the caller starts
/// again rather than run PBKDF2 under the write lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPrepared;

/// PBKDF2 of one typed code under each salt it will be compared against,
/// worked out before the write transaction: check-verify-record then only
/// compares bytes, and the slow part holds no lock anyone else waits for.
pub struct Derivations {
    code: Zeroizing<String>,
    by_salt: Vec<(u32, Vec<u8>, Derived)>,
}

impl Derivations {
    pub fn new(normalized_code: &str) -> Self {
        Derivations {
            code: Zeroizing::new(normalized_code.to_owned()),
            by_salt: Vec::new(),
        }
    }

    /// Derives the code under `hash`'s salt and rounds, once per salt.
    pub fn prepare(&mut self, hash: &CodeHash) {
        if self.lookup(hash).is_none() {
            let derived = derive(&self.code, &hash.salt, hash.rounds);
            self.by_salt.push((hash.rounds, hash.salt.clone(), derived));
        }
    }

    pub fn prepare_all<'a>(&mut self, hashes: impl IntoIterator<Item = &'a CodeHash>) {
        for h in hashes {
            self.prepare(h);
        }
    }

    fn lookup(&self, hash: &CodeHash) -> Option<&Derived> {
        self.by_salt
            .iter()
            .find(|(r, s, _)| *r == hash.rounds && *s == hash.salt)
            .map(|(_, _, d)| d)
    }

    /// Whether the code is the one `hash` was made from.
    pub fn matches(&self, hash: &CodeHash) -> Result<bool, NotPrepared> {
        let derived = self.lookup(hash).ok_or(NotPrepared)?;
        Ok(constant_time_eq(&derived[..], &hash.hash))
    }

    /// Which of `hashes` the code matches.
    pub fn find<'a>(
        &self,
        hashes: impl IntoIterator<Item = &'a CodeHash>,
    ) -> Result<Option<usize>, NotPrepared> {
        let mut found = None;
        for (i, h) in hashes.into_iter().enumerate() {
            // Keep scanning after a match so timing does not reveal which
            // code it was.
            if self.matches(h)? && found.is_none() {
                found = Some(i);
            }
        }
        Ok(found)
    }
}

/// A fresh bypass code, shown as `XXXXX-XXXXX` (50 bits).
pub fn new_bypass_code() -> Result<Zeroizing<String>, getrandom::Error> {
    let mut s = Zeroizing::new(String::with_capacity(BYPASS_CHARS + 1));
    for i in 0..BYPASS_CHARS {
        if i == BYPASS_CHARS / 2 {
            s.push('-');
        }
        s.push(BYPASS_ALPHABET[random_below(32)? as usize] as char);
    }
    Ok(s)
}

/// The canonical form of something typed as a bypass code: upper case, no
/// spaces or dashes, confusable letters folded. None if it cannot be one.
/// Eight digits also qualify: scratch codes imported from
/// google-authenticator files.
pub fn normalize_bypass(typed: &str) -> Option<Zeroizing<String>> {
    if typed.len() == 8 && typed.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Zeroizing::new(typed.to_owned()));
    }
    let mut out = Zeroizing::new(String::with_capacity(BYPASS_CHARS));
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            ' ' | '-' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !BYPASS_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == BYPASS_CHARS).then_some(out)
}

/// Keeps only digits of a typed numeric code, or None if anything but digits
/// and spaces was typed.
pub fn normalize_digits(typed: &str) -> Option<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(typed.len()));
    for c in typed.chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' => {}
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

pub fn new_numeric_code(purpose: OneTimePurpose) -> Result<Zeroizing<String>, getrandom::Error> {
    random_digits(purpose.shape().0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_codes_are_readable_and_normalize_to_themselves() {
        for _ in 0..50 {
            let c = new_bypass_code().unwrap();
            assert_eq!(c.len(), 11);
            let n = normalize_bypass(&c).unwrap();
            assert_eq!(n.len(), 10);
            assert_eq!(*normalize_bypass(&c.to_lowercase()).unwrap(), *n);
        }
    }

    #[test]
    fn bypass_alphabet_has_no_confusables_and_32_symbols() {
        for bad in b"ILOU" {
            assert!(!BYPASS_ALPHABET.contains(bad));
        }
        let distinct: std::collections::BTreeSet<u8> = BYPASS_ALPHABET.iter().copied().collect();
        assert_eq!(distinct.len(), 32);
        assert_eq!(
            normalize_bypass("oil00-11111").unwrap().as_str(),
            "0110011111"
        );
    }

    #[test]
    fn hash_round_trip_and_mismatch() {
        let salt = new_salt().unwrap();
        let h = hash_with_salt("ABCDE23456", &salt);
        let decoded = CodeHash::decode(&h.encode()).unwrap();
        assert_eq!(decoded, h);
        assert!(decoded.matches("ABCDE23456"));
        assert!(!decoded.matches("ABCDE23457"));
        assert!(CodeHash::decode("plain$1$00$00").is_none());
        assert!(CodeHash::decode("pbkdf2-sha256$0$00$00").is_none());
    }

    #[test]
    fn find_match_picks_the_right_code_in_a_shared_salt_set() {
        let salt = new_salt().unwrap();
        let set: Vec<CodeHash> = ["AAAAA22222", "BBBBB33333", "CCCCC44444"]
            .iter()
            .map(|c| hash_with_salt(c, &salt))
            .collect();
        assert_eq!(find_match("BBBBB33333", &set), Some(1));
        assert_eq!(find_match("DDDDD55555", &set), None);
    }

    #[test]
    fn derivations_refuse_a_salt_they_did_not_prepare() {
        let set: Vec<CodeHash> = ["AAAAA22222", "BBBBB33333"]
            .iter()
            .map(|c| hash_with_salt(c, &new_salt().unwrap()))
            .collect();
        let before = derivations();
        let mut prepared = Derivations::new("BBBBB33333");
        prepared.prepare(&set[0]);
        prepared.prepare(&set[0]);
        assert_eq!(derivations() - before, 1, "one run per salt");
        assert_eq!(prepared.matches(&set[0]), Ok(false));
        assert_eq!(prepared.matches(&set[1]), Err(NotPrepared));
        assert_eq!(prepared.find(&set), Err(NotPrepared));
        prepared.prepare(&set[1]);
        assert_eq!(prepared.find(&set), Ok(Some(1)));
        assert_eq!(derivations() - before, 2);
    }

    #[test]
    fn digits_normalisation() {
        assert_eq!(normalize_digits("123 456").unwrap().as_str(), "123456");
        assert!(normalize_digits("12a456").is_none());
        assert!(normalize_digits("").is_none());
        assert!(normalize_digits("１２３").is_none());
    }
}
