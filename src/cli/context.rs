//! Who may work on the database directly, opening it, and the small pieces
//! every command shares: the target account, the clock, reading a code.

use crate::attempt::MAX_CODE_BYTES;
use crate::cli::error::{CliError, Result};
use crate::codes;
use crate::config::Config;
use crate::config::StoreLocation;
use crate::store::{AnyStore, OpenMode};
use crate::totp::{self, TotpParams};
use crate::users;
use crate::Clock;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use zeroize::Zeroizing;

pub const NEEDS_ROOT: &str =
    "this command needs root, or a config and database that you own (a private instance)";

pub struct Ctx {
    pub config: Config,
    pub store: AnyStore,
    pub json: bool,
    /// Who runs us, for the audit trail's `by=`.
    pub invoker: String,
    /// Whether the invoker administers (root, a private instance's owner,
    /// an `admin_group` member through the daemon): others are not shown
    /// admin-only commands and fixes.
    pub admin: bool,
    /// Set when the daemon runs a command for a caller.
    daemon_caller: Option<String>,
    /// `open` made the database (`mfa admin init` on a new host).
    pub created: bool,
    invoker_known: bool,
}

impl Ctx {
    /// Loads the config and opens the database, if this process may use
    /// them directly. Only with `create` (`mfa admin init`) is a missing
    /// database made.
    pub fn open(config_path: &Path, json: bool, create: bool) -> Result<Ctx> {
        let euid = nix::unistd::geteuid().as_raw();
        if euid != 0 {
            // Decide before reading: a root-owned config is usually 0600.
            let meta = std::fs::metadata(config_path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    CliError::Config(crate::config::ConfigError::Missing(config_path.to_owned()))
                }
                _ => CliError::Permission(NEEDS_ROOT.into()),
            })?;
            if meta.uid() != euid {
                return Err(CliError::Permission(NEEDS_ROOT.into()));
            }
        }
        let config = Config::load(config_path)?;
        // A private PostgreSQL instance is one whose config the caller owns
        // (checked above): the database's own roles guard the rest.
        if euid != 0
            && matches!(config.store_location(), StoreLocation::Sqlite(db) if !private_database(db, euid))
        {
            return Err(CliError::Permission(NEEDS_ROOT.into()));
        }
        let mode = if create {
            OpenMode::Create
        } else {
            OpenMode::Existing
        };
        let created = create
            && matches!(config.store_location(), StoreLocation::Sqlite(db) if std::fs::symlink_metadata(db).is_err());
        let key = config
            .load_seal_key()
            .map_err(|e| CliError::Unavailable(e.to_string()))?;
        let store = AnyStore::open(&config, mode, key)?;
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(euid))
            .ok()
            .flatten()
            .map(|u| u.name);
        Ok(Ctx {
            config,
            store,
            json,
            admin: true,
            daemon_caller: None,
            created,
            invoker_known: name.is_some(),
            invoker: name.unwrap_or_else(|| format!("uid-{euid}")),
        })
    }

    /// The daemon's context for one command of `caller`: its warm store,
    /// and the caller as the one who did it.
    pub fn for_daemon(
        config: Config,
        store: AnyStore,
        json: bool,
        caller: &str,
        admin: bool,
    ) -> Ctx {
        Ctx {
            config,
            store,
            json,
            admin,
            daemon_caller: Some(caller.to_owned()),
            created: false,
            invoker_known: true,
            invoker: caller.to_owned(),
        }
    }

    /// The account a command works on: `--user`, else whoever runs us.
    pub fn target(&self, user: Option<String>) -> Result<String> {
        match user {
            // An alias works on its uid's account, as its logins do.
            Some(user) => Ok(crate::users::account_name(&user)),
            None if self.invoker_known => Ok(self.invoker.clone()),
            None => Err(CliError::NotFound(format!(
                "your user id has no name in the user database; pass --user NAME (here: {})",
                self.invoker
            ))),
        }
    }

    /// The store's clock: the database's, for a fleet on PostgreSQL.
    pub fn now(&self) -> i64 {
        self.store.clock().now()
    }

    /// The audit detail naming who did it.
    pub fn by(&self) -> String {
        match &self.daemon_caller {
            Some(caller) => format!("by={caller} via=daemon"),
            None => format!("by={}", self.invoker),
        }
    }
}

/// Whether this process must go through the daemon: not root,
/// and the config is not the caller's own (a private instance).
/// `--user NAME ` for follow-up commands we suggest, when the account is
/// not the invoker's own: every hint names the account it is about.
pub fn user_flag(ctx: &Ctx, user: &str) -> String {
    if user == ctx.invoker {
        String::new()
    } else {
        format!("--user {user} ")
    }
}

/// An error from a command run on `user`'s account: the self-service
/// commands it suggests (written for one's own account, e.g. by the
/// library) get `--user NAME` when the account is someone else's.
pub fn for_account(ctx: &Ctx, user: &str, e: CliError) -> CliError {
    let flag = user_flag(ctx, user);
    if flag.is_empty() {
        return e;
    }
    e.map_message(|m| {
        ["device", "bypass", "status"].iter().fold(m, |m, word| {
            m.replace(&format!("`mfa {word} "), &format!("`mfa {flag}{word} "))
        })
    })
}

pub fn needs_daemon(config_path: &Path) -> bool {
    let euid = nix::unistd::geteuid().as_raw();
    euid != 0
        && std::fs::metadata(config_path)
            .map(|m| m.uid() != euid)
            .unwrap_or(true)
}

/// A database the caller owns: the file, or where it will be created (the
/// nearest existing directory above it).
fn private_database(db: &Path, euid: u32) -> bool {
    db.ancestors()
        .find_map(|p| std::fs::symlink_metadata(p).ok())
        .is_some_and(|meta| meta.uid() == euid)
}

pub fn check_user_name(name: &str) -> Result<()> {
    if users::plausible_name(name) {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{name:?} is not a valid user name (no spaces, '/', ':' or control characters, \
             not starting with '-', at most {} bytes)",
            users::MAX_USER_LEN
        )))
    }
}

/// Commands that create credentials refuse accounts the system does not know,
/// so a typo does not leave codes for a name nobody logs in as.
pub fn require_system_user(name: &str) -> Result<()> {
    match users::lookup(name) {
        Some(_) => Ok(()),
        None => Err(no_such_user(name)),
    }
}

/// Commands that read or clear an account refuse a name that is neither a
/// system user nor in the store, so a typo is told, not shown as empty; a
/// user deleted from the system can still be seen and cleared while the
/// store holds something for the name.
pub fn require_known_account(name: &str, in_store: bool) -> Result<()> {
    if in_store {
        return Ok(());
    }
    require_system_user(name)
}

/// How every command refuses a name the user database does not know.
pub fn no_such_user(name: &str) -> CliError {
    CliError::NotFound(format!(
        "there is no user {name} on this system (the user database does not know the name); check the spelling"
    ))
}

/// Whether a person is likely at the keyboard (then we prompt and may retry).
pub fn interactive() -> bool {
    !super::output::capturing() && std::io::stdin().is_terminal()
}

/// Reads one line from stdin, prompting on stderr when it is a terminal.
/// None at end of input.
pub fn read_code(prompt: &str) -> Result<Option<Zeroizing<String>>> {
    // In the daemon, standard input is nobody's: the client asks, not us.
    if super::output::capturing() {
        return Ok(None);
    }
    let prompt = interactive().then_some(prompt);
    let line = read_line_hidden(prompt)
        .map_err(|e| CliError::Failed(format!("cannot read the code from standard input: {e}")))?;
    Ok(line.map(|line| Zeroizing::new(line.trim().to_owned())))
}

/// Shows `prompt` (on stderr) and reads one line from standard input; at
/// a terminal with echo off (the Enter still shows), as passwords are
/// read, so a code typed in front of others is not left on the screen.
/// Echo goes off before the prompt shows: nothing typed after it echoes.
/// `None` at end of input.
pub fn read_line_hidden(prompt: Option<&str>) -> std::io::Result<Option<Zeroizing<String>>> {
    let _quiet = EchoOff::new();
    if let Some(prompt) = prompt {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let mut line = Zeroizing::new(String::new());
    let n = std::io::stdin().lock().read_line(&mut line)?;
    Ok((n > 0).then_some(line))
}

/// Turns the terminal's echo off while it lives, and back on when dropped
/// (also when reading fails). Does nothing when stdin is not a terminal.
///
/// Ctrl-C, a hangup, SIGTERM or SIGQUIT at the prompt would end the process
/// before any drop runs, leaving the terminal silent for the shell and every
/// command after it. So while echo is off those signals are blocked in this
/// thread, and one watcher thread waits for them: it puts the terminal back
/// and then lets the signal take its default course. No signal handler, so
/// no unsafe code.
struct EchoOff {
    active: bool,
}

/// The terminal settings to put back, while echo is off.
static ECHO_RESTORE: std::sync::Mutex<Option<nix::sys::termios::Termios>> =
    std::sync::Mutex::new(None);

fn interrupting_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(signal);
    }
    set
}

fn restore_echo() {
    let mut saved = ECHO_RESTORE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(saved) = saved.take() {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &saved,
        );
    }
}

/// Started once, with the signals already blocked (a thread inherits its
/// creator's mask, and `sigwait` needs them blocked).
fn start_interrupt_watcher() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("echo-restore".into())
            .spawn(|| loop {
                let Ok(signal) = interrupting_signals().wait() else {
                    continue;
                };
                restore_echo();
                eprintln!();
                let mut only = nix::sys::signal::SigSet::empty();
                only.add(signal);
                let _ = only.thread_unblock();
                let _ = nix::sys::signal::raise(signal);
                // Still here: the signal is ignored, so carry on waiting.
                let _ = only.thread_block();
            });
    });
}

impl EchoOff {
    fn new() -> EchoOff {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return EchoOff { active: false };
        }
        let Ok(saved) = tcgetattr(&stdin) else {
            return EchoOff { active: false };
        };
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        if interrupting_signals().thread_block().is_err() {
            return EchoOff { active: false };
        }
        start_interrupt_watcher();
        *ECHO_RESTORE.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        let active = tcsetattr(&stdin, SetArg::TCSANOW, &quiet).is_ok();
        if !active {
            restore_echo();
            let _ = interrupting_signals().thread_unblock();
        }
        EchoOff { active }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if self.active {
            restore_echo();
            // A signal that came while reading is delivered here.
            let _ = interrupting_signals().thread_unblock();
        }
    }
}

/// The time step a typed TOTP code belongs to, if it is right.
pub fn check_totp(
    secret: &[u8],
    params: TotpParams,
    window: impl Into<totp::StepWindow>,
    last_step: Option<i64>,
    typed: &str,
    now: i64,
) -> Option<i64> {
    if typed.len() > MAX_CODE_BYTES {
        return None;
    }
    let digits = codes::normalize_digits(typed)?;
    totp::verify_in(secret, params, &digits, now, window.into(), last_step)
}

/// A private instance in a fresh temporary directory, for command tests.
/// The directory goes when the returned guard is dropped.
#[cfg(test)]
pub fn test_ctx(tag: &str) -> (Ctx, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("mfa_cli_{tag}_"))
        .tempdir()
        .unwrap();
    let config = dir.path().join("pam_mfa.toml");
    let db = dir.path().join("db/mfa.sqlite3");
    std::fs::write(&config, format!("database = \"{}\"\n", db.display())).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    (Ctx::open(&config, true, true).unwrap(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Algorithm;

    #[test]
    fn private_database_is_judged_by_the_nearest_existing_path() {
        let me = nix::unistd::geteuid().as_raw();
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let db = dir.join("not/yet/mfa.sqlite3");
        assert!(private_database(&db, me));
        assert!(!private_database(&db, me.wrapping_add(1)));
        std::fs::write(dir.join("f"), "").unwrap();
        assert!(private_database(&dir.join("f"), me));
        assert!(!private_database(&dir.join("f"), me.wrapping_add(1)));
    }

    #[test]
    fn user_names() {
        assert!(check_user_name("alice").is_ok());
        for bad in ["", "-rf", "a b", "a/b", "a\nb"] {
            assert_eq!(check_user_name(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn typed_codes_with_spaces_match_and_garbage_does_not() {
        let secret = b"12345678901234567890";
        let params = TotpParams {
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
        };
        let now = 1_700_000_000;
        let step = totp::step_at(now, 30);
        let code = totp::code_for_step(secret, params, step);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(
            check_totp(secret, params, 1, None, &spaced, now),
            Some(step)
        );
        assert_eq!(check_totp(secret, params, 1, Some(step), &code, now), None);
        assert_eq!(check_totp(secret, params, 1, None, "abcdef", now), None);
        assert_eq!(
            check_totp(secret, params, 1, None, &"1".repeat(100), now),
            None
        );
    }
}
