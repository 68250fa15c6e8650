//! From the config's `postgresql://` URL to a verified connection: TLS by
//! rustls, the password from the URL or a root-only file, and deadlines on
//! everything, so that a login never waits long on the network.

use crate::config::Config;
use crate::store::{StoreError, StoreResult};
use crate::trust::{self, Distrust, Expect};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};

/// A server that does not answer a connection attempt within this long is
/// down for this login; the pool tries again for the next one.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Server-side limits, sent as connection options: a statement or a row
/// lock that takes longer than this fails there rather than piling up.
/// The idle-in-transaction limit ends a transaction whose client vanished
/// mid-way, which would otherwise hold that account's row lock.
const SERVER_OPTIONS: &str =
    "-c statement_timeout=3000 -c lock_timeout=3000 -c idle_in_transaction_session_timeout=30000";

/// The server's certificate is checked as libpq's `verify-full` does.
/// `require` and `verify-ca` give the same full check: pam_mfa never sends a
/// password to, nor trusts lock state from, a server it cannot identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Disable,
    Verify,
}

/// Everything needed to connect, read once from the config.
pub struct PgTarget {
    pub(super) config: tokio_postgres::Config,
    /// `None` with `sslmode=disable` (a unix socket, or a test on loopback).
    pub(super) tls: Option<rustls::ClientConfig>,
    /// `role@host:port/db`, for messages: never the password.
    pub describe: String,
}

struct ParsedUrl {
    /// The URL without the parameters pam_mfa handles itself.
    rest: String,
    tls: Option<Tls>,
    root_cert: Option<PathBuf>,
}

/// Why a `postgresql://` URL is not one pam_mfa can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// An `sslmode` other than `disable` or a verifying one.
    SslMode(String),
    /// A `password=` parameter.
    Password,
    /// A bad `%` escape in this value.
    Escape(String),
    /// This value is not UTF-8 once decoded.
    NotUtf8(String),
    /// The driver refused it (its words).
    Unusable(String),
    NoHost,
    NoDatabase,
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlError::SslMode(value) => write!(
                f,
                "sslmode={value} is not supported; use verify-full (or disable for a unix socket)"
            ),
            UrlError::Password => {
                f.write_str("put the password in the URL's user part or in database_password_file")
            }
            UrlError::Escape(text) => write!(f, "bad percent escape in {text:?}"),
            UrlError::NotUtf8(text) => write!(f, "{text:?} is not UTF-8 once decoded"),
            UrlError::Unusable(e) => write!(f, "not a usable postgresql:// URL: {e}"),
            UrlError::NoHost => f.write_str("the URL names no host"),
            UrlError::NoDatabase => {
                f.write_str("the URL names no database (postgresql://role@host:5432/DATABASE)")
            }
        }
    }
}

impl std::error::Error for UrlError {}

fn parse_url(url: &str) -> Result<ParsedUrl, UrlError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut tls = None;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                tls = Some(match value {
                    "disable" => Tls::Disable,
                    "require" | "verify-ca" | "verify-full" => Tls::Verify,
                    _ => return Err(UrlError::SslMode(value.to_owned())),
                })
            }
            "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value)?)),
            "password" => return Err(UrlError::Password),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(ParsedUrl {
        rest,
        tls,
        root_cert,
    })
}

fn percent_decode(text: &str) -> Result<String, UrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UrlError::Escape(text.to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::NotUtf8(text.to_owned()))
}

/// Whether `url` is one pam_mfa can use; the message says what to change.
/// Checks the text only: files named in it are read when connecting.
pub fn url_check(url: &str) -> Result<(), UrlError> {
    let parsed = parse_url(url)?;
    let config = tokio_postgres::Config::from_str(&parsed.rest)
        .map_err(|e| UrlError::Unusable(e.to_string()))?;
    if config.get_hosts().is_empty() {
        return Err(UrlError::NoHost);
    }
    if config.get_dbname().is_none() {
        return Err(UrlError::NoDatabase);
    }
    Ok(())
}

fn unavailable(describe: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL {describe}: {what}"))
}

impl PgTarget {
    pub fn from_config(config: &Config, url: &str) -> StoreResult<PgTarget> {
        let parsed = parse_url(url).map_err(|e| unavailable("URL", e))?;
        let mut pg = tokio_postgres::Config::from_str(&parsed.rest)
            .map_err(|e| unavailable("URL", format_args!("not a usable URL: {e}")))?;
        let describe = describe(&pg);
        let on_unix_socket = pg.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
        let tls = parsed.tls.unwrap_or(if on_unix_socket {
            Tls::Disable
        } else {
            Tls::Verify
        });
        if pg.get_password().is_none() {
            if let Some(file) = &config.database_password_file {
                let password = read_password_file(file, &describe)?;
                pg.password(password.as_bytes());
            }
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        // Sent but unacknowledged for this long: the server or the path to
        // it is gone, whatever the kernel's default retransmission says.
        pg.tcp_user_timeout(Duration::from_secs(5));
        pg.keepalives_idle(Duration::from_secs(30));
        let options = match pg.get_options() {
            Some(own) => format!("{own} {SERVER_OPTIONS}"),
            None => SERVER_OPTIONS.to_owned(),
        };
        pg.options(options);
        if pg.get_application_name().is_none() {
            pg.application_name("pam_mfa");
        }
        let tls = match tls {
            Tls::Disable => {
                pg.ssl_mode(SslMode::Disable);
                None
            }
            Tls::Verify => {
                pg.ssl_mode(SslMode::Require);
                Some(client_tls(parsed.root_cert.as_deref(), &describe)?)
            }
        };
        Ok(PgTarget {
            config: pg,
            tls,
            describe,
        })
    }
}

fn describe(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        pg.get_user().unwrap_or("?"),
        pg.get_dbname().unwrap_or("?")
    )
}

/// The role's password, from a file only root can read: a config is often
/// readable by admins who should not hold the fleet's database password.
fn read_password_file(path: &Path, describe: &str) -> StoreResult<zeroize::Zeroizing<String>> {
    let refused = |why: String| unavailable(describe, why);
    // Through a link, and of any type, as before the check was shared.
    let expect = Expect::file(trust::OTHERS_ANY)
        .kind(trust::Kind::Any)
        .links(trust::Links::Follow);
    let meta = trust::check_path(path, expect).map_err(|d| {
        refused(match &d {
            Distrust::Stat(e) => format!("database_password_file {}: {e}", path.display()),
            Distrust::Owner { uid } => format!(
                "database_password_file {}: it is owned by uid {uid}, not root",
                path.display()
            ),
            Distrust::Mode { mode } if d.others_may_write() => format!(
                "database_password_file {}: it is writable by group or others (mode {mode:04o})",
                path.display()
            ),
            Distrust::Mode { .. } => format!(
                "database_password_file {} is readable by group or others; fix with: chmod 0600 {0}",
                path.display()
            ),
            Distrust::NotAFile | Distrust::Symlink => format!(
                "database_password_file {} is not a regular file",
                path.display()
            ),
        })
    })?;
    if meta.size() > 4096 {
        return Err(refused(format!(
            "database_password_file {} is too large to be a password",
            path.display()
        )));
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| refused(format!("database_password_file {}: {e}", path.display())))?,
    );
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(refused(format!(
            "database_password_file {} is empty",
            path.display()
        )));
    }
    Ok(zeroize::Zeroizing::new(trimmed.to_owned()))
}

/// rustls with the system's CA store, or only the CA in `sslrootcert`.
fn client_tls(root_cert: Option<&Path>, describe: &str) -> StoreResult<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                unavailable(describe, format!("sslrootcert {}: {e}", path.display()))
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
            for cert in certs {
                let cert = cert.map_err(|e| bad(&e))?;
                roots.add(cert).map_err(|e| bad(&e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system store holds some certificates rustls can't use.
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(unavailable(
            describe,
            match root_cert {
                Some(path) => format!("sslrootcert {} holds no certificate", path.display()),
                None => "the system's CA store is empty; name a CA file with sslrootcert=".into(),
            },
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unavailable(describe, format_args!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_any_connection() {
        assert!(url_check("postgresql://mfa@db.example:5432/mfa?sslmode=verify-full").is_ok());
        assert!(url_check("postgresql://mfa@127.0.0.1:5432/mfa?sslmode=disable").is_ok());
        let no_db = url_check("postgresql://mfa@db.example:5432")
            .unwrap_err()
            .to_string();
        assert!(no_db.contains("no database"), "{no_db}");
        let mode = url_check("postgresql://mfa@db/mfa?sslmode=allow")
            .unwrap_err()
            .to_string();
        assert!(mode.contains("sslmode=allow"), "{mode}");
        let pw = url_check("postgresql://mfa@db/mfa?password=x")
            .unwrap_err()
            .to_string();
        assert!(pw.contains("database_password_file"), "{pw}");
        assert!(url_check("postgresql://mfa@db/mfa?bogus=1").is_err());
    }

    #[test]
    fn a_target_never_shows_its_password() {
        let config = Config::default();
        let t = PgTarget::from_config(
            &config,
            "postgresql://mfa:hunter2@127.0.0.1:5433/fleet?sslmode=disable",
        )
        .unwrap();
        assert_eq!(t.describe, "mfa@127.0.0.1:5433/fleet");
        assert!(t.tls.is_none());
        assert_eq!(t.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    }

    #[test]
    fn percent_escapes_decode_in_file_parameters() {
        let p =
            parse_url("postgresql://a@h/d?sslrootcert=%2Fetc%2Fca.pem&connect_timeout=2").unwrap();
        assert_eq!(p.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(p.rest, "postgresql://a@h/d?connect_timeout=2");
    }
}
