//! `/etc/security/pam_mfa.toml`: every key optional, validated, and read only
//! from a file that nobody but root (or the user running us) can change.

use serde::Deserialize;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::trust::{self, Distrust, Expect};

pub const DEFAULT_PATH: &str = "/etc/security/pam_mfa.toml";
pub const DEFAULT_DATABASE: &str = "/var/lib/pam_mfa/mfa.sqlite3";
pub const DEFAULT_SOCKET: &str = "/run/pam_mfa/mfa.sock";
/// A config larger than this is not a config; refuse rather than parse it.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Required,
    Optional,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Required => "required",
            Policy::Optional => "optional",
        }
    }
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "required" => Some(Policy::Required),
            "optional" => Some(Policy::Optional),
            _ => None,
        }
    }
}

/// `enroll_at_login`: `true` (under `required`, set up a device inside
/// the login), `false` (refuse instead), or `"offer"` (as `true`, and
/// under `optional` ask a y/N question; a "no" is remembered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollAtLogin {
    Off,
    On,
    Offer,
}

impl<'de> Deserialize<'de> for EnrollAtLogin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = EnrollAtLogin;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"offer\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<EnrollAtLogin, E> {
                Ok(if v {
                    EnrollAtLogin::On
                } else {
                    EnrollAtLogin::Off
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EnrollAtLogin, E> {
                match v {
                    "offer" => Ok(EnrollAtLogin::Offer),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl serde::Serialize for EnrollAtLogin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EnrollAtLogin::Off => s.serialize_bool(false),
            EnrollAtLogin::On => s.serialize_bool(true),
            EnrollAtLogin::Offer => s.serialize_str("offer"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Algorithm {
    SHA1,
    SHA256,
    SHA512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::SHA1 => "SHA1",
            Algorithm::SHA256 => "SHA256",
            Algorithm::SHA512 => "SHA512",
        }
    }
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_uppercase().as_str() {
            "SHA1" => Some(Algorithm::SHA1),
            "SHA256" => Some(Algorithm::SHA256),
            "SHA512" => Some(Algorithm::SHA512),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    pub deny: u32,
    pub unlock_after: u64,
    pub lock_root: bool,
    /// Seconds root stays locked after `deny` failures (lock_root = false).
    pub root_unlock_time: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            deny: 6,
            unlock_after: 0,
            lock_root: false,
            root_unlock_time: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpConfig {
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
    pub window: u32,
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig {
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
            window: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsBackend {
    Command,
    File,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    pub backend: SmsBackend,
    pub command: Vec<String>,
    pub path: String,
    pub timeout: u64,
    /// Texts to one user's phone in any hour (0: no limit).
    pub max_per_user_hour: u32,
    /// Texts from this host in any hour (0: no limit).
    pub max_per_host_hour: u32,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            backend: SmsBackend::None,
            command: Vec::new(),
            path: String::new(),
            timeout: 10,
            max_per_user_hour: 5,
            max_per_host_hour: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The SQLite file, or a `postgresql://` URL (see [`Config::store_location`]).
    pub database: PathBuf,
    /// PostgreSQL only: a root-only file holding the role's password, so
    /// that it need not sit in the config's URL.
    pub database_password_file: Option<PathBuf>,
    /// Where `mfa serve` listens and the module and `mfa` connect.
    pub socket: PathBuf,
    /// The key that seals TOTP secrets and phone numbers at rest (made by
    /// `mfa admin generate-key`); empty: none, secrets stored in plaintext.
    pub secrets_key_file: PathBuf,
    pub policy: Policy,
    pub on_unavailable: OnUnavailable,
    pub enroll_at_login: EnrollAtLogin,
    /// Under `optional`, one line after a login without a device telling
    /// the user how to add one.
    pub optional_hint: bool,
    pub issuer: String,
    /// Audit rows older than this many days are purged by the daemon (the
    /// purge itself is audited); 0 keeps them forever.
    pub audit_days: u32,
    pub admin_group: String,
    pub exempt_groups: Vec<String>,
    pub lockout: LockoutConfig,
    pub totp: TotpConfig,
    pub sms: SmsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: PathBuf::from(DEFAULT_DATABASE),
            database_password_file: None,
            socket: PathBuf::from(DEFAULT_SOCKET),
            secrets_key_file: PathBuf::new(),
            policy: Policy::Optional,
            on_unavailable: OnUnavailable::Deny,
            enroll_at_login: EnrollAtLogin::On,
            optional_hint: true,
            issuer: String::new(),
            audit_days: 365,
            admin_group: String::new(),
            exempt_groups: Vec::new(),
            lockout: LockoutConfig::default(),
            totp: TotpConfig::default(),
            sms: SmsConfig::default(),
        }
    }
}

#[derive(Debug)]
pub enum ConfigError {
    Missing(PathBuf),
    Io(PathBuf, std::io::Error),
    TooLarge(PathBuf),
    NotUtf8(PathBuf),
    Unsafe {
        path: PathBuf,
        why: String,
    },
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing(p) => write!(
                f,
                "config file {} does not exist: create it (see pam_mfa.toml(5)) or pass --config",
                p.display()
            ),
            ConfigError::Io(p, e) => write!(f, "cannot read config file {}: {e}", p.display()),
            ConfigError::TooLarge(p) => write!(
                f,
                "config file {} is larger than {MAX_CONFIG_BYTES} bytes; it is not a pam_mfa config",
                p.display()
            ),
            ConfigError::NotUtf8(p) => {
                write!(f, "config file {} is not valid UTF-8 text", p.display())
            }
            ConfigError::Unsafe { path, why } => write!(
                f,
                "refusing config file {}: {why}; fix with: chown root:root {0} && chmod 0600 {0}",
                path.display()
            ),
            ConfigError::Syntax {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            ConfigError::Invalid { path, key, message } => {
                write!(f, "{}: key `{key}`: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// `path` from the root, with `.` and `..` folded away (lexically: a
/// symlink keeps the name the administrator gave).
fn full_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut full = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                full.pop();
            }
            other => full.push(other),
        }
    }
    full
}

/// For "unknown field `KEY`" inside a `[section]`: when `KEY` belongs at
/// the top, or in another section, say so (a line appended below `[sms]`
/// lands in `[sms]`, which is easy to miss in TOML).
fn misplaced_key(text: &str, line: usize, message: &str, path: &Path) -> Option<String> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    let section = text
        .lines()
        .take(line)
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix('[')?.split(']').next().map(str::trim)
        })
        .last()?;
    // Where each key lives, read off the config itself: objects are sections.
    let serde_json::Value::Object(keys) = serde_json::to_value(Config::default()).ok()? else {
        return None;
    };
    if keys.get(key).is_some_and(|v| !v.is_object()) {
        return Some(format!(
            "key `{key}` is in section [{section}]; move it above the first [section] of {}",
            path.display()
        ));
    }
    let home = keys
        .iter()
        .find(|(_, v)| v.as_object().is_some_and(|o| o.contains_key(key)))
        .map(|(name, _)| name)?;
    Some(format!(
        "key `{key}` is in section [{section}]; it belongs in section [{home}] of {}",
        path.display()
    ))
}

/// Why an opened config file is not trusted, in the words of `Unsafe`.
fn distrust_why(d: Distrust) -> String {
    match d {
        Distrust::Owner { uid } => format!("it is owned by uid {uid}, not root"),
        Distrust::Mode { mode } => format!("it is writable by group or others (mode {mode:04o})"),
        Distrust::NotAFile | Distrust::Symlink => "it is not a regular file".into(),
        Distrust::Stat(e) => e.to_string(),
    }
}

/// Which engine the `database` key selects: its scheme decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLocation<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

impl Config {
    pub fn store_location(&self) -> StoreLocation<'_> {
        match self.database.to_str() {
            Some(url) if url.starts_with("postgresql://") || url.starts_with("postgres://") => {
                StoreLocation::Postgres(url)
            }
            _ => StoreLocation::Sqlite(&self.database),
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        // Errors name the file in full, wherever the caller stands.
        let absolute = full_path(path);
        let path = absolute.as_path();
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ConfigError::Missing(path.to_owned()),
            _ => ConfigError::Io(path.to_owned(), e),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| ConfigError::Io(path.to_owned(), e))?;
        trust::check(&meta, Expect::file(trust::OTHERS_WRITE)).map_err(|d| {
            ConfigError::Unsafe {
                path: path.to_owned(),
                why: distrust_why(d),
            }
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ConfigError::Io(path.to_owned(), e))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge(path.to_owned()));
        }
        let text = String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8(path.to_owned()))?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            let message = e.message().trim();
            let message =
                misplaced_key(text, line, message, path).unwrap_or_else(|| message.to_owned());
            ConfigError::Syntax {
                path: path.to_owned(),
                line,
                message,
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message: message.to_owned(),
        };
        match self.store_location() {
            StoreLocation::Postgres(url) => {
                if let Err(why) = crate::store::postgres_url_check(url) {
                    return Err(invalid("database", &why.to_string()));
                }
                if self.secrets_key_path().is_none() {
                    return Err(invalid(
                        "secrets_key_file",
                        "is required with a postgresql:// database: a shared database must \
                         hold no secret in the clear; make a key with `mfa admin generate-key FILE` \
                         and copy it to every host",
                    ));
                }
            }
            StoreLocation::Sqlite(path) if !path.is_absolute() => {
                return Err(invalid(
                    "database",
                    "must be an absolute path or a postgresql:// URL",
                ));
            }
            StoreLocation::Sqlite(_) => {}
        }
        if self
            .database_password_file
            .as_ref()
            .is_some_and(|p| !p.is_absolute())
        {
            return Err(invalid(
                "database_password_file",
                "must be an absolute path",
            ));
        }
        if !self.socket.is_absolute() {
            return Err(invalid("socket", "must be an absolute path"));
        }
        if !self.secrets_key_file.as_os_str().is_empty() && !self.secrets_key_file.is_absolute() {
            return Err(invalid(
                "secrets_key_file",
                "must be an absolute path (or \"\" for none)",
            ));
        }
        if self.lockout.deny == 0 || self.lockout.deny > 1000 {
            return Err(invalid("lockout.deny", "must be between 1 and 1000"));
        }
        if !(6..=8).contains(&self.totp.digits) {
            return Err(invalid("totp.digits", "must be 6, 7 or 8"));
        }
        if !(10..=300).contains(&self.totp.period) {
            return Err(invalid("totp.period", "must be between 10 and 300 seconds"));
        }
        if self.totp.window > 10 {
            return Err(invalid("totp.window", "must be between 0 and 10 steps"));
        }
        if self.issuer.contains(':') || self.issuer.chars().any(char::is_control) {
            return Err(invalid(
                "issuer",
                "must not contain a colon or control characters",
            ));
        }
        match self.sms.backend {
            SmsBackend::Command if self.sms.command.is_empty() => {
                return Err(invalid(
                    "sms.command",
                    "backend \"command\" needs a command, e.g. [\"/usr/local/bin/send-sms\", \"{phone}\"]",
                ))
            }
            SmsBackend::Command if !Path::new(&self.sms.command[0]).is_absolute() => {
                return Err(invalid("sms.command", "the program must be an absolute path"))
            }
            SmsBackend::File if !Path::new(&self.sms.path).is_absolute() => {
                return Err(invalid(
                    "sms.path",
                    "backend \"file\" needs an absolute path",
                ))
            }
            _ => {}
        }
        if self.sms.timeout == 0 || self.sms.timeout > 300 {
            return Err(invalid("sms.timeout", "must be between 1 and 300 seconds"));
        }
        Ok(())
    }

    /// The configured secrets key file, if any.
    pub fn secrets_key_path(&self) -> Option<&Path> {
        (!self.secrets_key_file.as_os_str().is_empty()).then_some(self.secrets_key_file.as_path())
    }

    /// The configured secrets key, loaded and checked; None when the config
    /// names none.
    pub fn load_seal_key(
        &self,
    ) -> Result<Option<std::sync::Arc<crate::seal::SealKey>>, crate::seal::KeyError> {
        self.secrets_key_path()
            .map(|path| crate::seal::SealKey::load(path).map(std::sync::Arc::new))
            .transpose()
    }

    /// The label shown in authenticator apps.
    pub fn issuer_label(&self) -> String {
        if !self.issuer.is_empty() {
            return self.issuer.clone();
        }
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .map(|h| h.replace(':', "-"))
            .unwrap_or_else(|| "pam_mfa".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/t.toml"))
    }

    #[test]
    fn a_key_below_the_wrong_section_is_named_with_its_section_and_the_file() {
        let e = parse("[sms]\nbackend = \"none\"\npolicy = \"required\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/t.toml:3: key `policy` is in section [sms]; move it above the first [section] of /t.toml"
        );
        let e = parse("[lockout]\ndeny = 3\nwindow = 2\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/t.toml:3: key `window` is in section [lockout]; it belongs in section [totp] of /t.toml"
        );
        // A key known nowhere keeps serde's list of what is allowed.
        let e = parse("[sms]\nbakend = \"none\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `bakend`"), "{e}");
    }

    #[test]
    fn errors_name_the_config_file_by_its_full_path() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let file = dir.join("pam_mfa.toml");
        std::fs::write(&file, "[sms]\npolicy = \"required\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let relative = pathdiff(&file);
        let e = Config::load(&relative).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2: ", file.display())), "{e}");
        assert!(e.ends_with(&format!("of {}", file.display())), "{e}");
    }

    /// `path` relative to the current directory.
    fn pathdiff(path: &Path) -> PathBuf {
        let cwd = std::env::current_dir().unwrap();
        let up = cwd.components().count() - 1;
        let mut relative = PathBuf::new();
        for _ in 0..up {
            relative.push("..");
        }
        relative.join(path.strip_prefix("/").unwrap())
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.lockout.deny, 6);
        assert_eq!(c.totp.window, 1);
        assert_eq!(c.on_unavailable, OnUnavailable::Deny);
        assert_eq!(c.enroll_at_login, EnrollAtLogin::On);
        assert!(c.optional_hint);
        assert_eq!(c.secrets_key_path(), None);
        assert_eq!(
            parse("secrets_key_file = \"\"").unwrap().secrets_key_path(),
            None
        );
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"database = "/tmp/x.db"
policy = "required"
on_unavailable = "allow"
enroll_at_login = false
optional_hint = false
issuer = "Example"
admin_group = "wheel"
exempt_groups = ["breakglass"]
secrets_key_file = "/etc/k"
[lockout]
deny = 3
unlock_after = 600
lock_root = true
[totp]
algorithm = "SHA256"
digits = 8
period = 60
window = 2
[sms]
backend = "file"
path = "/tmp/sms"
timeout = 5
"#,
        )
        .unwrap();
        assert_eq!(c.policy, Policy::Required);
        assert_eq!(c.lockout.unlock_after, 600);
        assert_eq!(c.totp.algorithm, Algorithm::SHA256);
        assert_eq!(c.sms.backend, SmsBackend::File);
        assert_eq!(c.exempt_groups, vec!["breakglass"]);
        assert_eq!(c.secrets_key_path(), Some(Path::new("/etc/k")));
        assert_eq!(c.enroll_at_login, EnrollAtLogin::Off);
        assert!(!c.optional_hint);
    }

    #[test]
    fn enroll_at_login_is_true_false_or_offer() {
        let at = |v: &str| parse(&format!("enroll_at_login = {v}\n")).map(|c| c.enroll_at_login);
        assert_eq!(at("true").unwrap(), EnrollAtLogin::On);
        assert_eq!(at("false").unwrap(), EnrollAtLogin::Off);
        assert_eq!(at("\"offer\"").unwrap(), EnrollAtLogin::Offer);
        let e = at("\"yes\"").unwrap_err().to_string();
        assert!(e.contains("expected true, false or \"offer\""), "{e}");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = parse("policy = \"optional\"\n\n[lockout]\ndeny = \"six\"\n").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("/t.toml:4:"), "{text}");
    }

    #[test]
    fn unknown_key_is_refused_by_name() {
        let e = parse("polcy = \"required\"\n").unwrap_err().to_string();
        assert!(e.contains("polcy"), "{e}");
        assert!(e.contains(":1:"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        for (text, key) in [
            ("[totp]\ndigits = 5", "totp.digits"),
            ("[totp]\nwindow = 11", "totp.window"),
            ("[lockout]\ndeny = 0", "lockout.deny"),
            ("database = \"rel/path\"", "database"),
            ("[sms]\nbackend = \"command\"", "sms.command"),
            ("[sms]\nbackend = \"file\"", "sms.path"),
            ("issuer = \"a:b\"", "issuer"),
            ("secrets_key_file = \"key\"", "secrets_key_file"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text} -> {e}");
        }
    }

    #[test]
    fn group_writable_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let path = dir.join("c.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Config::load(&path).is_ok());
    }

    #[test]
    fn missing_file_says_how_to_fix() {
        let e = Config::load(Path::new("/nonexistent/pam_mfa.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
