//! The `mfa` command: dispatch. The arguments are types of the library
//! (`crate::commands`), shared with the daemon. Each command family lives
//! in its own file; root (or the owner of a private instance) runs them on
//! the store directly, everyone else through `mfa serve`, which runs the
//! same functions in its own process.

mod admin;
mod bypass;
mod context;
mod device;
mod doctor;
pub(crate) mod error;
mod migrate;
mod output;
mod remote;
mod serve;
mod sms;
mod status;

use crate::cli::error::{CliError, Result};
pub use crate::commands::*;
use crate::config::Policy;
use clap::Parser;
use context::Ctx;

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    crate::audit::set_ident("mfa");
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return output::clap_error(&e, std::env::args_os()),
    };
    let json = args.json;
    match &args.command {
        Command::Serve => {
            return match serve::serve(&args.config, &socket_path(&args)) {
                Ok(()) => 0,
                Err(e) => {
                    output::error(&e, json);
                    e.exit_code()
                }
            }
        }
        // Before the store is opened: the config may already name the key
        // this is about to create.
        Command::Admin(AdminCmd::GenerateKey { file }) => {
            return admin::generate_key(file, json).unwrap_or_else(|e| {
                output::error(&e, json);
                e.exit_code()
            })
        }
        Command::Doctor {
            pam_dir,
            sshd_config,
        } => {
            let at = doctor::Where {
                config: &args.config,
                pam_dir,
                sshd_config: sshd_config.as_deref(),
                socket: &socket_path(&args),
            };
            return doctor::run(&at, json).unwrap_or_else(|e| {
                output::error(&e, json);
                e.exit_code()
            });
        }
        _ => {}
    }
    if context::needs_daemon(&args.config) {
        let socket = socket_path(&args);
        return remote::run(args, socket);
    }
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            output::error(&e, json);
            e.exit_code()
        }
    }
}

/// `--socket`, else the config's `socket` (when this user can read the
/// config), else the default.
fn socket_path(args: &Args) -> std::path::PathBuf {
    args.socket.clone().unwrap_or_else(|| {
        crate::config::Config::load(&args.config)
            .map(|c| c.socket)
            .unwrap_or_else(|_| crate::config::DEFAULT_SOCKET.into())
    })
}

fn run(args: Args) -> Result<()> {
    // Only `admin init` creates a store: any other command on a missing
    // one says so instead of making an empty one (which would let users
    // with devices in the real, moved-away store in by password).
    let create = matches!(args.command, Command::Admin(AdminCmd::Init));
    let mut ctx = Ctx::open(&args.config, args.json, create)?;
    dispatch(&mut ctx, args.command, args.user)
}

/// Runs one command on an opened store: from the command line as root, or
/// in the daemon for a caller it has authorized.
pub(crate) fn dispatch(ctx: &mut Ctx, command: Command, user: Option<String>) -> Result<()> {
    if let Some(name) = &user {
        context::check_user_name(name)?;
    }
    if let Command::Admin(_) = command {
        if user.is_some() {
            return Err(CliError::Usage(
                "--user does not apply to admin commands: name the account as their argument, \
                 e.g. `mfa admin show NAME`"
                    .into(),
            ));
        }
    }
    let command = match command {
        Command::Admin(mut cmd) => {
            if let AdminCmd::Show { name }
            | AdminCmd::Unlock { name }
            | AdminCmd::TempCode { name, .. }
            | AdminCmd::ImportGoogleAuthenticator { name, .. } = &mut cmd
            {
                // An alias names its uid's account, as at login.
                *name = crate::users::account_name(name);
            }
            Command::Admin(cmd)
        }
        other => other,
    };
    match command {
        Command::Status => {
            let user = ctx.target(user)?;
            status::show(ctx, &user)
        }
        Command::Device(cmd) => {
            let user = ctx.target(user)?;
            let done = match cmd {
                DeviceCmd::List => device::list(ctx, &user),
                DeviceCmd::Add(AddCmd::Totp { name, no_verify }) => {
                    device::add_totp(ctx, &user, &name, no_verify)
                }
                DeviceCmd::Add(AddCmd::Sms { phone, no_verify }) => {
                    sms::add(ctx, &user, &phone, no_verify)
                }
                DeviceCmd::Verify { nick, code } if nick == crate::enroll::SMS_NAME => {
                    sms::verify(ctx, &user, code)
                }
                DeviceCmd::Verify { nick, code } => device::verify(ctx, &user, &nick, code),
                DeviceCmd::Delete { nick } => device::delete(ctx, &user, &nick),
                DeviceCmd::RemoveAll => device::remove_all(ctx, &user),
            };
            done.map_err(|e| context::for_account(ctx, &user, e))
        }
        Command::Bypass(BypassCmd::Generate { count }) => {
            let user = ctx.target(user)?;
            bypass::generate(ctx, &user, count).map_err(|e| context::for_account(ctx, &user, e))
        }
        Command::Admin(cmd) => match cmd {
            AdminCmd::Init => admin::init(ctx),
            AdminCmd::Policy { policy } => admin::policy(ctx, policy.map(Policy::from)),
            AdminCmd::Users { locked } => admin::users(ctx, locked),
            AdminCmd::Show { name } => {
                context::check_user_name(&name)?;
                status::show(ctx, &name)
            }
            AdminCmd::Unlock { name } => admin::unlock(ctx, &name),
            AdminCmd::ImportGoogleAuthenticator { name, file } => {
                admin::import_google_authenticator(ctx, &name, &file)
            }
            AdminCmd::TempCode { name, show } => {
                context::check_user_name(&name)?;
                sms::temp_code(ctx, &name, show)
            }
            AdminCmd::GenerateKey { .. } => unreachable_here(),
            AdminCmd::Migrate { to } => migrate::migrate(ctx, &to),
        },
        Command::Audit { limit, host } => {
            status::audit(ctx, user.as_deref(), host.as_deref(), limit)
        }
        Command::Serve | Command::Doctor { .. } => unreachable_here(),
    }
}

/// `serve`, `doctor` and `admin generate-key` are dispatched before the
/// database is opened.
fn unreachable_here() -> Result<()> {
    Err(CliError::Failed(
        "internal error: command dispatched twice".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_PATH;
    use clap::error::ErrorKind;
    use std::path::PathBuf;

    fn parse(args: &[&str]) -> std::result::Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("mfa").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let a = parse(&["status"]).unwrap();
        assert_eq!(a.config, PathBuf::from(DEFAULT_PATH));
        assert_eq!(a.socket, None);
        assert!(!a.json && a.user.is_none());
        let a = parse(&["device", "add", "totp"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Device(DeviceCmd::Add(AddCmd::Totp { ref name, no_verify: false })) if name == "phone"
        ));
        let a = parse(&["bypass", "generate"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Bypass(BypassCmd::Generate { count: 10 })
        ));
        let a = parse(&["audit"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Audit {
                limit: 50,
                host: None
            }
        ));
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        for args in [
            &[
                "--json", "--user", "bob", "--config", "/c", "device", "list",
            ][..],
            &[
                "device", "list", "--json", "--user", "bob", "--config", "/c",
            ],
            &["device", "--json", "list", "--user=bob", "--config=/c"],
        ] {
            let a = parse(args).unwrap();
            assert!(a.json, "{args:?}");
            assert_eq!(a.user.as_deref(), Some("bob"));
            assert_eq!(a.config, PathBuf::from("/c"));
        }
        let a = parse(&["audit", "--user", "alice", "--limit", "3"]).unwrap();
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert!(matches!(
            a.command,
            Command::Audit {
                limit: 3,
                host: None
            }
        ));
    }

    #[test]
    fn bypass_count_outside_one_to_ten_names_the_range() {
        for bad in ["0", "11", "-1", "ten", ""] {
            let e = parse(&["bypass", "generate", "--count", bad]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad}");
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("between 1 and 10"), "{e}");
        }
        for good in ["1", "10"] {
            parse(&["bypass", "generate", "--count", good]).unwrap();
        }
    }

    #[test]
    fn policy_values() {
        let a = parse(&["admin", "policy", "required"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Admin(AdminCmd::Policy {
                policy: Some(PolicyArg::Required)
            })
        ));
        let a = parse(&["admin", "policy"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Admin(AdminCmd::Policy { policy: None })
        ));
        assert!(parse(&["admin", "policy", "sometimes"]).is_err());
    }

    #[test]
    fn verify_code_is_optional_and_positional() {
        let a = parse(&["device", "verify", "phone", "123 456"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Device(DeviceCmd::Verify { ref nick, code: Some(ref c) }) if nick == "phone" && c == "123 456"
        ));
        let a = parse(&["device", "verify", "phone"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Device(DeviceCmd::Verify { code: None, .. })
        ));
        assert!(parse(&["device", "verify"]).is_err());
    }

    #[test]
    fn sms_temp_code_serve_and_doctor_parse() {
        let a = parse(&["device", "add", "sms", "+15551234567", "--no-verify"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Device(DeviceCmd::Add(AddCmd::Sms { ref phone, no_verify: true })) if phone == "+15551234567"
        ));
        let a = parse(&["admin", "temp-code", "alice", "--show"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Admin(AdminCmd::TempCode { show: true, .. })
        ));
        assert!(matches!(parse(&["serve"]).unwrap().command, Command::Serve));
        assert!(matches!(
            parse(&["doctor"]).unwrap().command,
            Command::Doctor { .. }
        ));
        assert_eq!(
            parse(&["device", "add", "sms"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn import_takes_a_name_and_a_file() {
        let a = parse(&[
            "admin",
            "import-google-authenticator",
            "alice",
            "/home/alice/.google_authenticator",
        ])
        .unwrap();
        assert!(matches!(
            a.command,
            Command::Admin(AdminCmd::ImportGoogleAuthenticator { ref name, .. }) if name == "alice"
        ));
        assert!(parse(&["admin", "import-google-authenticator", "alice"]).is_err());
    }

    #[test]
    fn limit_must_be_positive() {
        assert!(parse(&["audit", "--limit", "0"]).is_err());
        assert!(parse(&["audit", "--limit", "x"]).is_err());
    }
}
