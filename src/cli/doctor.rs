//! `mfa doctor`: checks that the pieces fit — config, database, PAM stacks,
//! sshd's effective settings, the SMS gateway and the daemon's socket —
//! one line per check with the fix, non-zero exit on any failure.

use super::output;
use crate::cli::error::{exit, Result};
use crate::config::{Config, SmsBackend};
use crate::seal::SealKey;
use crate::store::{AnyStore, OpenMode, Store, SCHEMA_VERSION};
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub message: String,
}

fn check(list: &mut Vec<Check>, name: &str, status: Status, message: impl Into<String>) {
    list.push(Check {
        check: name.to_owned(),
        status,
        message: message.into(),
    });
}

pub struct Where<'a> {
    pub config: &'a Path,
    pub pam_dir: &'a Path,
    pub sshd_config: Option<&'a Path>,
    pub socket: &'a Path,
}

pub fn run(at: &Where<'_>, json: bool) -> Result<i32> {
    let mut checks = Vec::new();
    let config = match Config::load(at.config) {
        Ok(c) => {
            check(
                &mut checks,
                "config",
                Status::Ok,
                format!("{} parses; owner and mode are safe", at.config.display()),
            );
            Some(c)
        }
        Err(e) => {
            check(&mut checks, "config", Status::Fail, e.to_string());
            None
        }
    };
    if let Some(config) = &config {
        let key = secrets_key(&mut checks, config);
        database(&mut checks, config, key);
        sms(&mut checks, config);
    }
    pam_stacks(&mut checks, at.pam_dir);
    sshd(&mut checks, at.sshd_config);
    socket(&mut checks, at.socket);
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if json {
        output::json(&checks)?;
    } else {
        for c in &checks {
            let word = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            output::text(&format!("{word} {:<9} {}", c.check, c.message))?;
        }
    }
    Ok(if failed { exit::FAILED } else { exit::OK })
}

/// The key file, when the config names one: exists, root's, 0600, a key.
/// Returns the key when it loads, for the secrets check.
fn secrets_key(checks: &mut Vec<Check>, config: &Config) -> Option<Arc<SealKey>> {
    let Some(path) = config.secrets_key_path() else {
        check(
            checks,
            "key",
            Status::Ok,
            "no secrets_key_file: TOTP secrets and phone numbers are stored unsealed \
             (make a key with `mfa admin generate-key FILE` to seal them)",
        );
        return None;
    };
    match SealKey::load(path) {
        Ok(key) => {
            check(
                checks,
                "key",
                Status::Ok,
                format!(
                    "{}: a pam_mfa secrets key, owner and mode 0600 are safe",
                    path.display()
                ),
            );
            Some(Arc::new(key))
        }
        Err(e) => {
            check(checks, "key", Status::Fail, e.to_string());
            None
        }
    }
}

fn database(checks: &mut Vec<Check>, config: &Config, key: Option<Arc<SealKey>>) {
    let keyed = key.is_some();
    let store = match AnyStore::open(config, OpenMode::Existing, key) {
        Ok(AnyStore::Sqlite(s)) => s,
        Ok(mut pg @ AnyStore::Postgres(_)) => {
            // Connected with a schema it understands; one transaction
            // shows the role may read and lock.
            let usable = pg.begin().and_then(|tx| {
                tx.users()?;
                tx.commit()
            });
            match usable {
                Ok(()) => check(
                    checks,
                    "database",
                    Status::Ok,
                    format!(
                        "PostgreSQL {}: connected, schema version {}",
                        pg.describe(),
                        crate::store::postgres::SCHEMA_VERSION
                    ),
                ),
                Err(e) => return check(checks, "database", Status::Fail, e.to_string()),
            }
            if keyed {
                secrets(checks, pg, keyed);
            }
            return;
        }
        Err(e) => return check(checks, "database", Status::Fail, e.to_string()),
    };
    let path = store.path();
    match (store.integrity_check(), store.schema_version()) {
        (Ok(ok), Ok(v)) if ok == "ok" && v == SCHEMA_VERSION => check(
            checks,
            "database",
            Status::Ok,
            format!("{}: integrity ok, schema version {v}", path.display()),
        ),
        (Ok(ok), Ok(v)) => check(
            checks,
            "database",
            Status::Fail,
            format!(
                "{}: integrity_check says {ok:?}, schema version {v}; restore it from a backup",
                path.display()
            ),
        ),
        (Err(e), _) | (_, Err(e)) => check(checks, "database", Status::Fail, e.to_string()),
    }
    // A key that loads is not yet the key that sealed the rows: open each.
    if keyed || config.secrets_key_path().is_none() {
        secrets(checks, AnyStore::Sqlite(store), keyed);
    }
}

/// Whether every device's secret can be read, and how many are still in
/// plaintext (written before the key was configured).
fn secrets(checks: &mut Vec<Check>, mut store: AnyStore, keyed: bool) {
    let counted = store.begin_read().and_then(|tx| {
        let counts = tx.secrets_at_rest()?;
        for user in tx.users()? {
            tx.devices(&user.user)?;
        }
        Ok(counts)
    });
    match counted {
        Err(e) => check(checks, "secrets", Status::Fail, e.to_string()),
        Ok(counts) if !keyed => check(
            checks,
            "secrets",
            Status::Ok,
            format!("{} device secret(s), all unsealed", counts.plaintext),
        ),
        Ok(counts) if counts.plaintext > 0 => check(
            checks,
            "secrets",
            Status::Warn,
            format!(
                "{} device secret(s) sealed, {} still unsealed (written before the key was \
                 configured); they stay readable, and are sealed when the device is enrolled again",
                counts.sealed, counts.plaintext
            ),
        ),
        Ok(counts) => check(
            checks,
            "secrets",
            Status::Ok,
            format!(
                "{} device secret(s), all sealed and opened with the key",
                counts.sealed
            ),
        ),
    }
}

fn sms(checks: &mut Vec<Check>, config: &Config) {
    match config.sms.backend {
        SmsBackend::None => check(
            checks,
            "sms",
            Status::Ok,
            "no SMS gateway (backend \"none\"): SMS is off",
        ),
        SmsBackend::File => check(
            checks,
            "sms",
            Status::Ok,
            format!("texts are appended to {}", config.sms.path),
        ),
        SmsBackend::Command => {
            let program = Path::new(&config.sms.command[0]);
            match std::fs::metadata(program) {
                Ok(m) if m.mode() & 0o111 == 0 => check(
                    checks,
                    "sms",
                    Status::Fail,
                    format!("{} is not executable; chmod 0755 it", program.display()),
                ),
                Ok(m) if m.uid() != 0 || m.mode() & 0o022 != 0 => check(
                    checks,
                    "sms",
                    Status::Fail,
                    format!(
                        "{} runs as root but is not root-owned or is writable by others; chown root and chmod go-w",
                        program.display()
                    ),
                ),
                Ok(_) => check(checks, "sms", Status::Ok, format!("gateway {}", program.display())),
                Err(e) => check(checks, "sms", Status::Fail, format!("{}: {e}", program.display())),
            }
        }
    }
}

/// What one PAM service file does with pam_mfa.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stack {
    pub preauth: Option<usize>,
    pub authfail: Option<usize>,
    pub second_factor: Option<usize>,
    pub account: bool,
    /// First auth line of another module (the password), if any.
    pub first_factor: Option<usize>,
}

pub fn read_stack(text: &str) -> Stack {
    let mut stack = Stack::default();
    let mut auth_index = 0;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(kind) = words.first() else { continue };
        let kind = kind.trim_start_matches('-');
        // `[success=1 default=ignore]` spans words; skip to the module word.
        let rest = &words[1..];
        let module_at = if rest.first().is_some_and(|w| w.starts_with('[')) {
            rest.iter().position(|w| w.ends_with(']')).map(|p| p + 1)
        } else {
            Some(1)
        };
        let Some(module) = module_at.and_then(|i| rest.get(i)) else {
            continue;
        };
        let args = &rest[module_at.unwrap_or(0) + 1..];
        let is_mfa = module.ends_with("pam_mfa.so");
        match kind {
            "auth" => {
                auth_index += 1;
                if is_mfa {
                    if args.contains(&"preauth") {
                        stack.preauth = Some(auth_index);
                    } else if args.contains(&"authfail") {
                        stack.authfail = Some(auth_index);
                    } else {
                        stack.second_factor = Some(auth_index);
                    }
                } else if stack.first_factor.is_none() {
                    stack.first_factor = Some(auth_index);
                }
            }
            "account" if is_mfa => stack.account = true,
            "@include" => {}
            _ => {}
        }
    }
    stack
}

fn judge_stack(name: &str, stack: &Stack) -> (Status, String) {
    let Some(second) = stack.second_factor else {
        return (
            Status::Warn,
            format!("{name}: pam_mfa.so appears but no second-factor auth line (pam_mfa.so without preauth/authfail)"),
        );
    };
    let mut problems = Vec::new();
    if let Some(first) = stack.first_factor {
        match stack.preauth {
            Some(p) if p < first => {}
            Some(_) => problems.push("the preauth line must come before the password module"),
            None => problems.push("no `pam_mfa.so preauth` line before the password module: locked accounts are asked for their password"),
        }
        match stack.authfail {
            Some(a) if a > first && a < second => {}
            Some(_) => problems.push("the authfail line must come right after the password module"),
            None => problems.push("no `pam_mfa.so authfail` line after the password module: wrong passwords do not count toward the lockout"),
        }
    }
    if !stack.account {
        problems.push(
            "no `account required pam_mfa.so` line: locked accounts can still log in with SSH keys",
        );
    }
    if problems.is_empty() {
        (Status::Ok, format!("{name}: stack is complete"))
    } else {
        (Status::Warn, format!("{name}: {}", problems.join("; ")))
    }
}

/// The service as libpam sees it: `@include FILE` lines replaced by FILE.
fn expand_includes(dir: &Path, text: &str, depth: u32) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.trim().strip_prefix("@include") {
            Some(name) if depth < 4 && !name.trim().contains('/') => {
                if let Ok(included) = std::fs::read_to_string(dir.join(name.trim())) {
                    out.push_str(&expand_includes(dir, &included, depth + 1));
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn pam_stacks(checks: &mut Vec<Check>, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return check(
            checks,
            "pam",
            Status::Warn,
            format!("cannot read {}", dir.display()),
        );
    };
    let mut names: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let mut found = false;
    for path in names {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // common-* are pieces that services @include; judge the services.
        if name.starts_with("common-") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let text = expand_includes(dir, &text, 0);
        if !text.contains("pam_mfa.so") {
            continue;
        }
        found = true;
        let (status, message) = judge_stack(&name, &read_stack(&text));
        check(checks, "pam", status, message);
    }
    if !found {
        check(
            checks,
            "pam",
            Status::Warn,
            format!(
                "no service in {} loads pam_mfa.so yet (see pam_mfa(8))",
                dir.display()
            ),
        );
    }
}

/// sshd's effective settings (`sshd -T`), lower-case keys.
fn sshd_settings(config: Option<&Path>) -> std::result::Result<Vec<(String, String)>, String> {
    let mut cmd = std::process::Command::new("/usr/sbin/sshd");
    cmd.arg("-T");
    if let Some(c) = config {
        cmd.arg("-f").arg(c);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run /usr/sbin/sshd -T: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "sshd -T failed: {}",
            err.lines().next().unwrap_or("").trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect())
}

pub fn judge_sshd(settings: &[(String, String)]) -> Vec<(Status, String)> {
    let get = |k: &str| {
        settings
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let mut out = Vec::new();
    if get("usepam") != Some("yes") {
        out.push((
            Status::Fail,
            "UsePAM is not yes: sshd never asks pam_mfa; set UsePAM yes".into(),
        ));
    }
    let kbd = get("kbdinteractiveauthentication").or(get("challengeresponseauthentication"));
    if kbd != Some("yes") {
        out.push((
            Status::Fail,
            "KbdInteractiveAuthentication is not yes: sshd cannot ask for the code; set KbdInteractiveAuthentication yes".into(),
        ));
    }
    let methods = get("authenticationmethods").unwrap_or("any");
    if get("passwordauthentication") == Some("yes") && get("usepam") == Some("yes") {
        out.push((
            Status::Warn,
            "PasswordAuthentication yes with UsePAM: the password method answers every PAM prompt with the password and bypasses the code prompt's meaning; set PasswordAuthentication no and use keyboard-interactive".into(),
        ));
    }
    if methods == "any" && get("pubkeyauthentication") == Some("yes") {
        out.push((
            Status::Warn,
            "AuthenticationMethods is any: a key alone logs in without a code; use AuthenticationMethods publickey,keyboard-interactive".into(),
        ));
    }
    if out.is_empty() {
        out.push((
            Status::Ok,
            format!(
                "UsePAM yes, KbdInteractiveAuthentication yes, AuthenticationMethods {methods}"
            ),
        ));
    }
    out
}

fn sshd(checks: &mut Vec<Check>, config: Option<&Path>) {
    if config.is_none() && !Path::new("/usr/sbin/sshd").exists() {
        return check(checks, "sshd", Status::Ok, "sshd is not installed");
    }
    match sshd_settings(config) {
        Ok(settings) => {
            for (status, message) in judge_sshd(&settings) {
                check(checks, "sshd", status, message);
            }
        }
        Err(e) => check(checks, "sshd", Status::Warn, e),
    }
}

fn socket(checks: &mut Vec<Check>, path: &Path) {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => check(
            checks,
            "socket",
            Status::Ok,
            format!("the daemon answers on {}", path.display()),
        ),
        // Every login goes through the daemon: without it, logins get
        // on_unavailable and users cannot manage their devices.
        Err(e) => check(
            checks,
            "socket",
            Status::Fail,
            format!(
                "{}: {e}; logins get on_unavailable and users cannot manage their devices until \
                 `systemctl enable --now pam-mfa.socket` (or `mfa serve` is started another way)",
                path.display()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_stack_is_ok() {
        let s = read_stack(
            "auth requisite pam_mfa.so preauth\n\
             auth [success=1 default=ignore] pam_unix.so nullok\n\
             auth [default=die] pam_mfa.so authfail\n\
             auth required pam_mfa.so\n\
             account required pam_mfa.so\n",
        );
        assert_eq!(s.preauth, Some(1));
        assert_eq!(s.first_factor, Some(2));
        assert_eq!(s.authfail, Some(3));
        assert_eq!(s.second_factor, Some(4));
        assert_eq!(judge_stack("x", &s).0, Status::Ok);
    }

    #[test]
    fn key_only_stack_needs_no_preauth_but_an_account_line() {
        let s = read_stack("auth required /lib/security/pam_mfa.so config=/etc/x.toml\n");
        let (status, message) = judge_stack("sshd", &s);
        assert_eq!(status, Status::Warn);
        assert!(message.contains("account required pam_mfa.so"), "{message}");
        let s = read_stack("auth required pam_mfa.so\naccount required pam_mfa.so # lock\n");
        assert_eq!(judge_stack("sshd", &s).0, Status::Ok);
    }

    #[test]
    fn includes_are_followed_and_common_files_judged_through_services() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        std::fs::write(
            dir.join("common-auth"),
            "auth requisite pam_mfa.so preauth\nauth [success=1 default=ignore] pam_unix.so\n\
             auth [default=die] pam_mfa.so authfail\nauth required pam_mfa.so\n",
        )
        .unwrap();
        std::fs::write(dir.join("common-account"), "account required pam_mfa.so\n").unwrap();
        std::fs::write(
            dir.join("login"),
            "@include common-auth\n@include common-account\n",
        )
        .unwrap();
        std::fs::write(dir.join("su"), "@include common-auth\n").unwrap();
        let mut checks = Vec::new();
        pam_stacks(&mut checks, dir);
        let lines: Vec<String> = checks
            .iter()
            .map(|c| format!("{:?} {}", c.status, c.message))
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("Ok login:"), "{lines:?}");
        assert!(
            lines[1].starts_with("Warn su:") && lines[1].contains("account"),
            "{lines:?}"
        );
    }

    #[test]
    fn missing_authfail_is_named() {
        let s = read_stack(
            "auth requisite pam_mfa.so preauth\nauth required pam_unix.so\nauth required pam_mfa.so\naccount required pam_mfa.so\n",
        );
        let (_, m) = judge_stack("login", &s);
        assert!(m.contains("authfail"), "{m}");
    }

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sshd_without_kbdinteractive_fails() {
        let judged = judge_sshd(&settings(&[
            ("usepam", "yes"),
            ("kbdinteractiveauthentication", "no"),
        ]));
        assert!(judged
            .iter()
            .any(|(s, m)| *s == Status::Fail && m.contains("KbdInteractiveAuthentication")));
        let judged = judge_sshd(&settings(&[
            ("usepam", "yes"),
            ("kbdinteractiveauthentication", "yes"),
            ("passwordauthentication", "no"),
            ("pubkeyauthentication", "yes"),
            ("authenticationmethods", "publickey,keyboard-interactive"),
        ]));
        assert_eq!(judged.len(), 1);
        assert_eq!(judged[0].0, Status::Ok);
    }
}
