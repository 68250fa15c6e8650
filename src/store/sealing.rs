//! Sealing of device secrets, the same for every engine: what the
//! associated data binds a value to, and how a row's two columns (plain,
//! sealed) become one value or an "unavailable" error that says why.
//!
//! Each engine stores a field in two columns: the plaintext one of schema
//! version 1 and a sealed one. With a key, new rows fill only the sealed
//! one; without, only the plaintext one (SQLite; PostgreSQL requires a key).
//! Rows written before a key was configured keep reading as plaintext.

use super::{StoreError, StoreResult};
use crate::seal::SealKey;
use crate::secret::SecretBytes;

/// Which secret of a device a sealed value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorField {
    /// The raw TOTP secret bytes of a `totp` device.
    TotpSecret,
    /// The phone number (UTF-8) of an `sms` device.
    SmsPhone,
}

impl FactorField {
    /// (device kind, field name), as they appear in the associated data.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            FactorField::TotpSecret => ("totp", "secret"),
            FactorField::SmsPhone => ("sms", "phone"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FactorField::TotpSecret => "TOTP secret",
            FactorField::SmsPhone => "phone number",
        }
    }
}

/// `pam_mfa/v1\0USER\0DEVICE\0KIND\0FIELD`: a sealed value opens only in
/// the row it was sealed for. User and device names hold no NUL (user
/// names are checked by `users::plausible_name`, nicknames by `enroll`).
pub fn associated_data(user: &str, device: &str, field: FactorField) -> Vec<u8> {
    let (kind, name) = field.names();
    let mut ad = Vec::with_capacity(32 + user.len() + device.len());
    for (i, part) in ["pam_mfa/v1", user, device, kind, name].iter().enumerate() {
        if i > 0 {
            ad.push(0);
        }
        ad.extend_from_slice(part.as_bytes());
    }
    ad
}

/// Seals one field of `user`'s device `device` for storing.
pub fn seal_factor_field(
    key: &SealKey,
    user: &str,
    device: &str,
    field: FactorField,
    plaintext: &[u8],
) -> StoreResult<Vec<u8>> {
    key.seal(&associated_data(user, device, field), plaintext)
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot seal the {}: the system's random number generator failed: {e}",
                field.describe()
            ))
        })
}

/// Opens a sealed field. No key, or a key that does not open it, makes the
/// store unavailable (so `on_unavailable` applies): never a wrong code.
pub fn open_factor_field(
    key: Option<&SealKey>,
    user: &str,
    device: &str,
    field: FactorField,
    sealed: &[u8],
) -> StoreResult<SecretBytes> {
    let Some(key) = key else {
        return Err(StoreError::Unavailable(format!(
            "the {} of {user}'s device \"{device}\" is sealed, but no secrets_key_file is \
             configured: set secrets_key_file in the config to the key that sealed it",
            field.describe()
        )));
    };
    key.open(&associated_data(user, device, field), sealed)
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "the {} of {user}'s device \"{device}\" cannot be unsealed with the configured \
                 secrets_key_file: {e}",
                field.describe()
            ))
        })
}

/// How a field is to be stored: in the plaintext column (no key) or the
/// sealed one.
pub enum StoredField<'a> {
    Plain(&'a [u8]),
    Sealed(Vec<u8>),
}

impl StoredField<'_> {
    /// (plaintext column, sealed column): exactly one is `Some`.
    pub fn columns(&self) -> (Option<&[u8]>, Option<&[u8]>) {
        match self {
            StoredField::Plain(p) => (Some(p), None),
            StoredField::Sealed(s) => (None, Some(s.as_slice())),
        }
    }
}

/// What to write for a new or changed field: sealed when there is a key.
pub fn store_factor_field<'a>(
    key: Option<&SealKey>,
    user: &str,
    device: &str,
    field: FactorField,
    plaintext: &'a [u8],
) -> StoreResult<StoredField<'a>> {
    match key {
        Some(key) => Ok(StoredField::Sealed(seal_factor_field(
            key, user, device, field, plaintext,
        )?)),
        None => Ok(StoredField::Plain(plaintext)),
    }
}

/// The value of a field read from its two columns. A sealed value wins (a
/// row has only one; a plaintext beside a sealed value would be a row
/// someone edited, and the sealed one is the authenticated one).
pub fn read_factor_field(
    key: Option<&SealKey>,
    user: &str,
    device: &str,
    field: FactorField,
    plain: Option<SecretBytes>,
    sealed: Option<&[u8]>,
) -> StoreResult<SecretBytes> {
    match (sealed, plain) {
        (Some(sealed), _) => open_factor_field(key, user, device, field, sealed),
        (None, Some(plain)) => Ok(plain),
        (None, None) => Err(StoreError::Unavailable(format!(
            "{user}'s device \"{device}\" has no {}: the database was altered; delete the device \
             and enroll it again",
            field.describe()
        ))),
    }
}

/// How many devices keep their secret sealed, and how many in plaintext.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SecretsAtRest {
    pub sealed: u32,
    pub plaintext: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealKey {
        SealKey::generate().unwrap()
    }

    #[test]
    fn associated_data_is_the_documented_layout() {
        assert_eq!(
            associated_data("alice", "phone", FactorField::SmsPhone),
            b"pam_mfa/v1\0alice\0phone\0sms\0phone"
        );
        assert_eq!(
            associated_data("alice", "phone", FactorField::TotpSecret),
            b"pam_mfa/v1\0alice\0phone\0totp\0secret"
        );
    }

    #[test]
    fn a_field_opens_only_in_its_own_row() {
        let key = key();
        let sealed =
            seal_factor_field(&key, "alice", "phone", FactorField::TotpSecret, b"s3cret").unwrap();
        let open =
            |user, device, field| open_factor_field(Some(&key), user, device, field, &sealed);
        assert_eq!(
            open("alice", "phone", FactorField::TotpSecret)
                .unwrap()
                .as_slice(),
            b"s3cret"
        );
        for (user, device, field) in [
            ("bob", "phone", FactorField::TotpSecret),
            ("alice", "tablet", FactorField::TotpSecret),
            ("alice", "phone", FactorField::SmsPhone),
            // The separators keep "alice"+"xphone" apart from "alicex"+"phone".
            ("alicex", "phone", FactorField::TotpSecret),
        ] {
            let e = open(user, device, field).unwrap_err();
            assert!(
                matches!(&e, StoreError::Unavailable(m) if m.contains("cannot be unsealed")),
                "{user} {device} {field:?}: {e}"
            );
        }
    }

    #[test]
    fn no_key_or_a_wrong_key_is_unavailable_and_says_why() {
        let sealed = seal_factor_field(
            &key(),
            "alice",
            "sms",
            FactorField::SmsPhone,
            b"+15551234567",
        )
        .unwrap();
        let e =
            open_factor_field(None, "alice", "sms", FactorField::SmsPhone, &sealed).unwrap_err();
        assert!(
            matches!(&e, StoreError::Unavailable(m) if m.contains("no secrets_key_file is configured")),
            "{e}"
        );
        let e = open_factor_field(Some(&key()), "alice", "sms", FactorField::SmsPhone, &sealed)
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Unavailable(m) if m.contains("a different key sealed it")),
            "{e}"
        );
        assert!(!e.to_string().contains("5551234567"));
    }

    #[test]
    fn plaintext_rows_read_with_or_without_a_key() {
        let key = key();
        for k in [None, Some(&key)] {
            let v = read_factor_field(
                k,
                "alice",
                "phone",
                FactorField::TotpSecret,
                Some(zeroize::Zeroizing::new(b"plain".to_vec())),
                None,
            )
            .unwrap();
            assert_eq!(v.as_slice(), b"plain");
        }
        let stored = store_factor_field(
            Some(&key),
            "alice",
            "phone",
            FactorField::TotpSecret,
            b"new",
        )
        .unwrap();
        let (plain, sealed) = stored.columns();
        assert!(plain.is_none());
        let v = read_factor_field(
            Some(&key),
            "alice",
            "phone",
            FactorField::TotpSecret,
            None,
            sealed,
        )
        .unwrap();
        assert_eq!(v.as_slice(), b"new");
        let stored =
            store_factor_field(None, "alice", "phone", FactorField::TotpSecret, b"new").unwrap();
        assert_eq!(stored.columns(), (Some(&b"new"[..]), None));
    }
}
