//! Secrets sealed at rest: the key in `secrets_key_file` and the AEAD
//! (XChaCha20-Poly1305) that seals TOTP secrets and phone numbers, so that a
//! copy of the database (a backup, a dump, a replica) reveals none of them.
//!
//! A sealed value is `VERSION || nonce (24 bytes) || ciphertext || tag`.
//! The caller's associated data binds it to its place (user, device, field;
//! see `store::sealing`): a value copied to another row does not open.

use crate::secret::SecretBytes;
use crate::trust::{self, Distrust, Expect};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

/// The format byte in front of every sealed value.
pub const VERSION: u8 = 1;
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// First word of a key file: says what the file is, and its format.
const KEY_FILE_HEADER: &str = "pam_mfa-secrets-key-v1";
/// A key file is one short line; anything longer is not one.
const MAX_KEY_FILE_BYTES: u64 = 256;

/// 32 random bytes, wiped when dropped; never printed (no `Debug` body).
pub struct SealKey {
    bytes: Zeroizing<[u8; KEY_BYTES]>,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(..)")
    }
}

/// Why a key file cannot be used; each says what to do about it.
#[derive(Debug)]
pub enum KeyError {
    Missing(PathBuf),
    Io(PathBuf, std::io::Error),
    NotAFile(PathBuf),
    Owner {
        path: PathBuf,
        uid: u32,
    },
    Mode {
        path: PathBuf,
        mode: u32,
    },
    Format {
        path: PathBuf,
        what: &'static str,
    },
    /// `generate-key` refuses to replace a key: the old one may be the only
    /// way to open the secrets sealed with it.
    Exists(PathBuf),
    Random(getrandom::Error),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Missing(p) => write!(
                f,
                "secrets key file {} does not exist: restore it from your backup of the key, \
                 or create a new one with `mfa admin generate-key {0}` (a new key cannot open \
                 secrets sealed with the old one)",
                p.display()
            ),
            KeyError::Io(p, e) => write!(f, "cannot read secrets key file {}: {e}", p.display()),
            KeyError::NotAFile(p) => {
                write!(f, "secrets key file {} is not a regular file", p.display())
            }
            KeyError::Owner { path, uid } => write!(
                f,
                "refusing secrets key file {}: it is owned by uid {uid}, not root; fix with: chown root:root {0}",
                path.display()
            ),
            KeyError::Mode { path, mode } => write!(
                f,
                "refusing secrets key file {}: it is accessible to group or others (mode {mode:04o}); fix with: chmod 0600 {0}",
                path.display()
            ),
            KeyError::Format { path, what } => write!(
                f,
                "secrets key file {} is not a pam_mfa key ({what}); it must be the one line \
                 `mfa admin generate-key` wrote",
                path.display()
            ),
            KeyError::Exists(p) => write!(
                f,
                "{} exists already; refusing to overwrite it (secrets sealed with it would be \
                 lost). Choose another file name, or remove it yourself if it is not in use",
                p.display()
            ),
            KeyError::Random(e) => write!(f, "the system's random number generator failed: {e}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A sealed value that does not open: wrong key, altered bytes, or a value
/// moved from another row (the associated data differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Too short, or an unknown format byte.
    Malformed,
    /// The tag did not verify.
    Rejected,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Malformed => f.write_str("not a sealed value of a known format"),
            OpenError::Rejected => f.write_str(
                "it does not open with this key: a different key sealed it, or the row was altered or copied from another row",
            ),
        }
    }
}

impl SealKey {
    /// A new random key.
    pub fn generate() -> Result<SealKey, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        getrandom::fill(&mut bytes[..]).map_err(KeyError::Random)?;
        Ok(SealKey { bytes })
    }

    /// Reads a key file: a regular file owned by root (or by the user
    /// running us, for a private instance), readable by nobody else,
    /// holding the one line `generate-key` wrote.
    pub fn load(path: &Path) -> Result<SealKey, KeyError> {
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KeyError::Missing(path.to_owned()),
            _ => KeyError::Io(path.to_owned(), e),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| KeyError::Io(path.to_owned(), e))?;
        trust::check(&meta, Expect::file(trust::OTHERS_ANY)).map_err(|d| match d {
            Distrust::NotAFile | Distrust::Symlink => KeyError::NotAFile(path.to_owned()),
            Distrust::Owner { uid } => KeyError::Owner {
                path: path.to_owned(),
                uid,
            },
            Distrust::Mode { mode } => KeyError::Mode {
                path: path.to_owned(),
                mode,
            },
            Distrust::Stat(e) => KeyError::Io(path.to_owned(), e),
        })?;
        let mut text = Zeroizing::new(Vec::new());
        file.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| KeyError::Io(path.to_owned(), e))?;
        if text.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(KeyError::Format {
                path: path.to_owned(),
                what: "it is too long",
            });
        }
        SealKey::parse(&text).map_err(|what| KeyError::Format {
            path: path.to_owned(),
            what,
        })
    }

    /// `pam_mfa-secrets-key-v1 <64 hex digits>`, one line.
    fn parse(text: &[u8]) -> Result<SealKey, &'static str> {
        let text = std::str::from_utf8(text).map_err(|_| "it is not text")?;
        let line = text.strip_suffix('\n').unwrap_or(text);
        let (header, hex) = line
            .split_once(' ')
            .ok_or("it lacks the header `pam_mfa-secrets-key-v1`")?;
        if header != KEY_FILE_HEADER {
            return Err("it lacks the header `pam_mfa-secrets-key-v1`");
        }
        if hex.len() != KEY_BYTES * 2 {
            return Err("the key is not 64 hexadecimal digits (32 bytes)");
        }
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => bytes[i] = (hi * 16 + lo) as u8,
                _ => return Err("the key is not 64 hexadecimal digits (32 bytes)"),
            }
        }
        Ok(SealKey { bytes })
    }

    /// The key file's text.
    fn to_file_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(KEY_FILE_HEADER.len() + 66));
        text.push_str(KEY_FILE_HEADER);
        text.push(' ');
        for b in self.bytes.iter() {
            text.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            text.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        text.push('\n');
        text
    }

    /// Writes a new key to `path`: created exclusively (never replacing a
    /// file, never following a symlink) with mode 0600.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_owned()),
                _ => KeyError::Io(path.to_owned(), e),
            })?;
        let written = file
            .write_all(self.to_file_text().as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            // A half-written key must not be mistaken for one later.
            let _ = std::fs::remove_file(path);
            return Err(KeyError::Io(path.to_owned(), e));
        }
        Ok(())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.bytes).into())
    }

    /// Seals `plaintext` with a fresh random nonce; `associated` must be
    /// given again, byte for byte, to open it.
    pub fn seal(&self, associated: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, getrandom::Error> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce)?;
        let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_BYTES));
        buffer.extend_from_slice(plaintext);
        self.cipher()
            .encrypt_in_place(&XNonce::from(nonce), associated, &mut *buffer)
            // Only a plaintext beyond 256 GiB makes this fail.
            .expect("XChaCha20-Poly1305 seals any short value");
        let mut sealed = Vec::with_capacity(1 + NONCE_BYTES + buffer.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&buffer);
        Ok(sealed)
    }

    /// Opens a value `seal` made with the same key and associated data.
    pub fn open(&self, associated: &[u8], sealed: &[u8]) -> Result<SecretBytes, OpenError> {
        if sealed.len() < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError::Malformed)?;
        let mut buffer = Zeroizing::new(body.to_vec());
        match self
            .cipher()
            .decrypt_in_place(&nonce, associated, &mut *buffer)
        {
            Ok(()) => Ok(buffer),
            Err(_) => {
                buffer.zeroize();
                Err(OpenError::Rejected)
            }
        }
    }
}

/// Whether a stored value looks sealed by this module (for counting).
#[cfg(test)]
fn looks_sealed(value: &[u8]) -> bool {
    value.len() >= 1 + NONCE_BYTES + TAG_BYTES && value[0] == VERSION
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("pam_mfa_seal_{tag}_"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn round_trip_and_every_nonce_differs() {
        let key = SealKey::generate().unwrap();
        let a = key.seal(b"ad", b"JBSWY3DPEHPK3PXP").unwrap();
        let b = key.seal(b"ad", b"JBSWY3DPEHPK3PXP").unwrap();
        assert_ne!(a, b, "a fresh nonce each time");
        assert_eq!(a[0], VERSION);
        assert_eq!(a.len(), 1 + 24 + 16 + 16);
        assert_eq!(key.open(b"ad", &a).unwrap().as_slice(), b"JBSWY3DPEHPK3PXP");
        assert_eq!(key.open(b"ad", &b).unwrap().as_slice(), b"JBSWY3DPEHPK3PXP");
        assert!(looks_sealed(&a));
    }

    #[test]
    fn any_flipped_bit_or_truncation_is_rejected() {
        let key = SealKey::generate().unwrap();
        let sealed = key.seal(b"ad", b"secret").unwrap();
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                key.open(b"ad", &bad).unwrap_err(),
                OpenError::Rejected,
                "byte {i}"
            );
        }
        let mut bad = sealed.clone();
        bad[0] = 2;
        assert_eq!(key.open(b"ad", &bad).unwrap_err(), OpenError::Malformed);
        assert_eq!(
            key.open(b"ad", &sealed[..40]).unwrap_err(),
            OpenError::Malformed
        );
        assert_eq!(
            key.open(b"ad", &sealed[..sealed.len() - 1]).unwrap_err(),
            OpenError::Rejected
        );
    }

    #[test]
    fn other_associated_data_or_another_key_is_rejected() {
        let key = SealKey::generate().unwrap();
        let sealed = key.seal(b"alice", b"secret").unwrap();
        assert_eq!(key.open(b"bob", &sealed).unwrap_err(), OpenError::Rejected);
        let other = SealKey::generate().unwrap();
        assert_eq!(
            other.open(b"alice", &sealed).unwrap_err(),
            OpenError::Rejected
        );
    }

    #[test]
    fn a_written_key_loads_back_and_is_never_overwritten() {
        let temp = temp_dir("write");
        let dir = temp.path();
        let path = dir.join("k");
        let key = SealKey::generate().unwrap();
        key.write_new(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
        let loaded = SealKey::load(&path).unwrap();
        let sealed = key.seal(b"ad", b"x").unwrap();
        assert_eq!(loaded.open(b"ad", &sealed).unwrap().as_slice(), b"x");

        let before = std::fs::read(&path).unwrap();
        let e = SealKey::generate().unwrap().write_new(&path).unwrap_err();
        assert!(matches!(e, KeyError::Exists(_)), "{e}");
        assert!(e.to_string().contains("refusing to overwrite"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);

        // Nor through a symlink to a file that does not exist yet.
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("link")).unwrap();
        assert!(SealKey::generate()
            .unwrap()
            .write_new(&dir.join("link"))
            .is_err());
        assert!(!dir.join("elsewhere").exists());
    }

    #[test]
    fn bad_key_files_say_what_to_fix() {
        let temp = temp_dir("bad");
        let dir = temp.path();
        let path = dir.join("k");
        let e = SealKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");

        SealKey::generate().unwrap().write_new(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = SealKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 0600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

        let good = std::fs::read_to_string(&path).unwrap();
        for (text, why) in [
            ("", "header"),
            ("pam_mfa-secrets-key-v1 abcd\n", "64 hexadecimal"),
            (&good.replace("v1", "v9"), "header"),
            (
                &format!("{}zz\n", &good[..good.len() - 3]),
                "64 hexadecimal",
            ),
            (&"x".repeat(300), "too long"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = SealKey::load(&path).unwrap_err().to_string();
            assert!(e.contains(why), "{text:?} -> {e}");
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let e = SealKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");

        // Owned by someone else (tests run as root: give it to nobody).
        if nix::unistd::geteuid().is_root() {
            std::fs::remove_dir(&path).unwrap();
            SealKey::generate().unwrap().write_new(&path).unwrap();
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = SealKey::load(&path).unwrap_err().to_string();
            assert!(e.contains("chown root:root"), "{e}");
        }
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let key = SealKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "SealKey(..)");
    }
}
