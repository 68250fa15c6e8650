//! The `mfa` command: arguments and dispatch. Each command family lives in its
//! own file; all of them work on the database directly (as root, or on a
//! private instance) until the self-service daemon exists.
#![forbid(unsafe_code)]

mod admin;
mod bypass;
mod context;
mod device;
mod doctor;
mod output;
mod remote;
mod serve;
mod sms;
mod status;

use clap::{Parser, Subcommand, ValueEnum};
use context::Ctx;
use pam_mfa::codes::MAX_BYPASS_CODES;
use pam_mfa::config::{Policy, DEFAULT_PATH, DEFAULT_SOCKET};
use pam_mfa::error::{Error, Result};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Run as root, mfa works on the database directly and --user picks the account.
It also does so for a private instance: a config file and database owned by
the user running it (tests use this). Run by anyone else, it sends the
command to the self-service daemon (mfa serve) over --socket: users manage
their own account only, and changes need a current code (--code or asked).

Exit codes:
  0  success
  1  failed: an unexpected error (the message says which)
  2  usage: bad arguments or input
  3  wrong code
  4  permission denied (e.g. needs root)
  5  account locked
  6  not found: no such user, device or file
  7  conflict: it exists already
  8  unavailable: the config file or the database cannot be used

With --json every command prints one JSON value on stdout; errors also print
{\"error\": KIND, \"message\": TEXT} there.";

#[derive(Parser, Debug)]
#[command(
    name = "mfa",
    version,
    // A later --config (say, after an alias's) wins, as with most tools.
    args_override_self = true,
    about = "Manage second factors (TOTP devices, bypass codes), policy and lockouts for pam_mfa",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// Config file
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// The account to work on (default: yourself); for `audit`, the account to show
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// The self-service daemon's socket
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// A current code for changes that need one (through the daemon); asked for when missing
    #[arg(long = "code", global = true, value_name = "CODE")]
    pub step_up_code: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Policy, devices, lock state and bypass codes left for an account
    Status,
    /// List, add, verify and delete devices
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Single-use codes that stand in for a device
    #[command(subcommand)]
    Bypass(BypassCmd),
    /// Administration: policy, locked accounts, migration
    #[command(subcommand)]
    Admin(AdminCmd),
    /// The audit trail, newest last (all accounts, or only --user NAME's)
    Audit {
        /// How many entries to show
        #[arg(long, value_name = "N", default_value_t = 50, value_parser = parse_limit)]
        limit: u32,
    },
    /// The self-service daemon (root; socket-activated by pam-mfa.socket, or listening on --socket)
    Serve,
    /// Check the config, database, PAM stacks, sshd settings, SMS gateway and daemon
    Doctor {
        /// Where the PAM service files are
        #[arg(long, value_name = "DIR", default_value = "/etc/pam.d")]
        pam_dir: PathBuf,
        /// Check this sshd config (`sshd -T -f FILE`) instead of the system's
        #[arg(long, value_name = "FILE")]
        sshd_config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// List the account's devices
    List,
    /// Add a device
    #[command(subcommand)]
    Add(AddCmd),
    /// Finish a pending device with a code it shows (or, for `sms`, the texted PIN)
    Verify {
        /// The device's nickname, or `sms`
        nick: String,
        /// The code or PIN (asked for when not given)
        code: Option<String>,
    },
    /// Delete one device (`sms` for the phone)
    Delete {
        /// The device's nickname, or `sms`
        nick: String,
    },
    /// Delete every device, bypass code and pending one-time code of the account
    RemoveAll,
}

#[derive(Subcommand, Debug)]
pub enum AddCmd {
    /// An authenticator app: shows a QR code and the secret, then asks for a code
    Totp {
        /// Nickname: 1-32 letters, digits, '-', '_' or '.'
        #[arg(long, value_name = "NICK", default_value = "phone")]
        name: String,
        /// Store the device as pending; finish later with `mfa device verify NICK`
        #[arg(long)]
        no_verify: bool,
    },
    /// A phone for text messages: texts a 4-digit PIN, then asks for it
    Sms {
        /// 10 digits, or + and the country code and number (8 to 15 digits)
        phone: String,
        /// Leave the phone pending; finish later with `mfa device verify sms PIN`
        #[arg(long)]
        no_verify: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BypassCmd {
    /// Generate a new set of codes, replacing the old set; they are shown once
    Generate {
        /// How many codes, 1 to 10
        #[arg(long, value_name = "N", default_value_t = MAX_BYPASS_CODES, value_parser = parse_count, allow_negative_numbers = true)]
        count: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Show the account policy, or set it
    Policy { policy: Option<PolicyArg> },
    /// Accounts with devices, codes or failures
    Users {
        /// Only locked accounts
        #[arg(long)]
        locked: bool,
    },
    /// Like `status`, for the account NAME
    Show { name: String },
    /// Clear the lock and the failure count of NAME
    Unlock { name: String },
    /// Migrate a ~/.google_authenticator file into a device named "google-authenticator"
    ImportGoogleAuthenticator { name: String, file: PathBuf },
    /// A single-use code valid five minutes, texted to NAME's phone (or shown)
    TempCode {
        name: String,
        /// Show the code to pass on instead of texting it
        #[arg(long)]
        show: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyArg {
    /// Every user must use a second factor
    Required,
    /// Users with a verified device must use it; others log in with the password
    Optional,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Policy {
        match p {
            PolicyArg::Required => Policy::Required,
            PolicyArg::Optional => Policy::Optional,
        }
    }
}

fn parse_count(s: &str) -> std::result::Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=MAX_BYPASS_CODES).contains(&n) => Ok(n),
        _ => Err(format!(
            "the number of bypass codes must be between 1 and {MAX_BYPASS_CODES}"
        )),
    }
}

const MAX_AUDIT_LIMIT: u32 = 100_000;

fn parse_limit(s: &str) -> std::result::Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=MAX_AUDIT_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!("must be a number between 1 and {MAX_AUDIT_LIMIT}")),
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    pam_mfa::audit::set_ident("mfa");
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return output::clap_error(&e, std::env::args_os()),
    };
    let json = args.json;
    match &args.command {
        Command::Serve => {
            return match serve::serve(&args.config, &args.socket) {
                Ok(()) => 0,
                Err(e) => {
                    output::error(&e, json);
                    e.exit_code()
                }
            }
        }
        Command::Doctor {
            pam_dir,
            sshd_config,
        } => {
            let at = doctor::Where {
                config: &args.config,
                pam_dir,
                sshd_config: sshd_config.as_deref(),
                socket: &args.socket,
            };
            return doctor::run(&at, json).unwrap_or_else(|e| {
                output::error(&e, json);
                e.exit_code()
            });
        }
        _ => {}
    }
    if context::needs_daemon(&args.config) {
        return remote::run(&args, &std::env::args_os().collect::<Vec<_>>());
    }
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            output::error(&e, json);
            e.exit_code()
        }
    }
}

fn run(args: Args) -> Result<()> {
    if let Some(name) = &args.user {
        context::check_user_name(name)?;
    }
    if let Command::Admin(_) = args.command {
        if args.user.is_some() {
            return Err(Error::Usage(
                "--user does not apply to admin commands: name the account as their argument, \
                 e.g. `mfa admin show NAME`"
                    .into(),
            ));
        }
    }
    let mut ctx = Ctx::open(&args.config, args.json)?;
    match args.command {
        Command::Status => {
            let user = ctx.target(args.user)?;
            status::show(&mut ctx, &user)
        }
        Command::Device(cmd) => {
            let user = ctx.target(args.user)?;
            match cmd {
                DeviceCmd::List => device::list(&mut ctx, &user),
                DeviceCmd::Add(AddCmd::Totp { name, no_verify }) => {
                    device::add_totp(&mut ctx, &user, &name, no_verify)
                }
                DeviceCmd::Add(AddCmd::Sms { phone, no_verify }) => {
                    sms::add(&mut ctx, &user, &phone, no_verify)
                }
                DeviceCmd::Verify { nick, code } if nick == pam_mfa::enroll::SMS_NAME => {
                    sms::verify(&mut ctx, &user, code)
                }
                DeviceCmd::Verify { nick, code } => device::verify(&mut ctx, &user, &nick, code),
                DeviceCmd::Delete { nick } => device::delete(&mut ctx, &user, &nick),
                DeviceCmd::RemoveAll => device::remove_all(&mut ctx, &user),
            }
        }
        Command::Bypass(BypassCmd::Generate { count }) => {
            let user = ctx.target(args.user)?;
            bypass::generate(&mut ctx, &user, count)
        }
        Command::Admin(cmd) => match cmd {
            AdminCmd::Policy { policy } => admin::policy(&mut ctx, policy.map(Policy::from)),
            AdminCmd::Users { locked } => admin::users(&mut ctx, locked),
            AdminCmd::Show { name } => {
                context::check_user_name(&name)?;
                status::show(&mut ctx, &name)
            }
            AdminCmd::Unlock { name } => admin::unlock(&mut ctx, &name),
            AdminCmd::ImportGoogleAuthenticator { name, file } => {
                admin::import_google_authenticator(&mut ctx, &name, &file)
            }
            AdminCmd::TempCode { name, show } => {
                context::check_user_name(&name)?;
                sms::temp_code(&mut ctx, &name, show)
            }
        },
        Command::Audit { limit } => status::audit(&mut ctx, args.user.as_deref(), limit),
        Command::Serve | Command::Doctor { .. } => unreachable_here(),
    }
}

/// `serve` and `doctor` are dispatched before the database is opened.
fn unreachable_here() -> Result<()> {
    Err(Error::Failed(
        "internal error: command dispatched twice".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

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
        assert_eq!(a.socket, PathBuf::from(DEFAULT_SOCKET));
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
        assert!(matches!(a.command, Command::Audit { limit: 50 }));
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
        assert!(matches!(a.command, Command::Audit { limit: 3 }));
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
