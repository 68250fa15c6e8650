//! The `mfa` command line as types: parsed by clap in the command, and sent
//! as they are to the daemon (serde), which decides on the typed request.

use crate::codes::MAX_BYPASS_CODES;
use crate::config::{Policy, DEFAULT_PATH};
use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
Run as root, mfa works on the database directly and --user picks the account.
It also does so for a private instance: a config file and database owned by
the user running it (tests use this). Run by anyone else, it sends the
command to the daemon (mfa serve) over --socket: users manage
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
  9  limited: too many text messages for now; try later or use another method

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
    /// The daemon's socket (default: the config's `socket`, else /run/pam_mfa/mfa.sock)
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// A current code for changes that need one (through the daemon); asked for when missing
    #[arg(long = "code", global = true, value_name = "CODE")]
    pub step_up_code: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
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
        /// Only entries recorded on the host NAME (its daemon or root's mfa)
        #[arg(long, value_name = "NAME")]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// How many entries to show
        #[arg(long, value_name = "N", default_value_t = 50, value_parser = parse_limit)]
        limit: u32,
    },
    /// The daemon that serves every login and users' commands (root; socket-activated by pam-mfa.socket, or listening on --socket)
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

#[derive(Subcommand, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
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

#[derive(Subcommand, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
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

#[derive(Subcommand, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum BypassCmd {
    /// Generate a new set of codes, replacing the old set; they are shown once
    Generate {
        /// How many codes, 1 to 10
        #[arg(long, value_name = "N", default_value_t = MAX_BYPASS_CODES, value_parser = parse_count, allow_negative_numbers = true)]
        count: u32,
    },
}

#[derive(Subcommand, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum AdminCmd {
    /// Create the store (directory 0700, database 0600, schema): the only command that does
    Init,
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
    /// Write a new key for sealing secrets at rest to FILE (mode 0600; never overwrites)
    GenerateKey { file: PathBuf },
    /// Copy every account, code, lock, setting and audit row into another store (re-runnable)
    Migrate {
        /// The destination: a postgresql:// URL or an SQLite file's absolute path
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

/// A value out of range, for clap's value parsers and [`Command::check_values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadValue {
    /// `bypass generate --count`.
    Count,
    /// `audit --limit`, as its value parser says it (clap names the option).
    Limit,
    /// `audit --limit`, named.
    LimitOption,
    /// `audit --host`.
    Host,
}

impl std::fmt::Display for BadValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadValue::Count => write!(
                f,
                "the number of bypass codes must be between 1 and {MAX_BYPASS_CODES}"
            ),
            BadValue::Limit => write!(f, "must be a number between 1 and {MAX_AUDIT_LIMIT}"),
            BadValue::LimitOption => write!(f, "--limit {}", BadValue::Limit),
            BadValue::Host => f.write_str("--host must be a host name (1 to 255 characters)"),
        }
    }
}

impl std::error::Error for BadValue {}

pub fn parse_count(s: &str) -> std::result::Result<u32, BadValue> {
    match s.parse::<u32>() {
        Ok(n) if (1..=MAX_BYPASS_CODES).contains(&n) => Ok(n),
        _ => Err(BadValue::Count),
    }
}

pub const MAX_AUDIT_LIMIT: u32 = 100_000;

pub fn parse_limit(s: &str) -> std::result::Result<u32, BadValue> {
    match s.parse::<u32>() {
        Ok(n) if (1..=MAX_AUDIT_LIMIT).contains(&n) => Ok(n),
        _ => Err(BadValue::Limit),
    }
}

impl Command {
    /// The checks clap's value parsers make, for a command that arrived
    /// as a typed request (the daemon) rather than as words.
    pub fn check_values(&self) -> Result<(), BadValue> {
        match self {
            Command::Bypass(BypassCmd::Generate { count }) => {
                parse_count(&count.to_string()).map(drop)
            }
            Command::Audit { limit, host } => {
                parse_limit(&limit.to_string()).map_err(|_| BadValue::LimitOption)?;
                match host {
                    Some(h) if h.is_empty() || h.len() > 255 || h.chars().any(char::is_control) => {
                        Err(BadValue::Host)
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}
