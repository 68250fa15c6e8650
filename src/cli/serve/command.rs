//! A command of a user who is not root: decided on the typed request, then
//! run in the daemon's own process by the same functions root's `mfa`
//! runs, with the output collected for the caller.
#![forbid(unsafe_code)]

use super::super::context::Ctx;
use super::super::{dispatch, output, AddCmd, AdminCmd, BypassCmd, Command, DeviceCmd};
use super::state::Shared;
use super::Peer;
use pam_mfa::attempt::{self, AttemptResult, Context};
use pam_mfa::audit;
use pam_mfa::config::Config;
use pam_mfa::error::{exit, Error, Result};
use pam_mfa::protocol::{CommandRequest, Response};
use pam_mfa::store::{SqliteStore, Store};
use pam_mfa::users::{self, UserInfo};
use pam_mfa::{lockout, Clock, SystemClock};

pub const STEP_UP: &str = "this needs a current verification code";

pub fn serve(mut request: CommandRequest, peer: Peer, shared: &Shared) -> Response {
    let Some(caller) = users::lookup_uid(peer.uid) else {
        return Response::refused(
            exit::PERMISSION,
            "permission",
            "your user id has no name in the user database",
        );
    };
    let config = match shared.config() {
        Ok(c) => c,
        Err(e) => return refusal(&Error::from(e), &caller, &request),
    };
    let mut store = match shared.store(&config) {
        Ok(s) => s,
        Err(e) => return refusal(&Error::from(e), &caller, &request),
    };
    let plan = match decide(
        &mut request,
        &caller,
        peer.privileged(),
        &config,
        &mut store,
    ) {
        Ok(plan) => plan,
        Err(e) => {
            shared.put_back(store);
            return refusal(&e, &caller, &request);
        }
    };
    let command = std::mem::replace(&mut request.command, Command::Status);
    let mut ctx = Ctx::for_daemon((*config).clone(), store, request.json, &caller.name);
    let (result, printed) = output::capture(|| {
        let result = dispatch(&mut ctx, command, plan.user);
        if let Err(e) = &result {
            output::error(e, request.json);
        }
        result
    });
    shared.put_back(ctx.store);
    let mut response = Response {
        exit: result.as_ref().map_or_else(Error::exit_code, |()| exit::OK),
        stdout: String::new(),
        stderr: printed.stderr,
        error: None,
    };
    response.stdout.push_str(&printed.stdout);
    response
}

/// A refusal by the daemon itself, logged (who asked what) and answered.
fn refusal(e: &Error, caller: &UserInfo, request: &CommandRequest) -> Response {
    let kind = match e {
        Error::WrongCode(m) if m.starts_with(STEP_UP) => "step-up",
        e => e.kind(),
    };
    audit::syslog(
        audit::Level::Notice,
        &format!(
            "{} result=refused kind={kind} target={:?}: {e}",
            audit::format_line(&caller.name, "command", ""),
            request.user.as_deref().unwrap_or(&caller.name)
        ),
    );
    Response::refused(e.exit_code(), kind, &e.to_string())
}

/// What the daemon will run, once the request is allowed.
pub struct Plan {
    /// The account, for commands that take `--user`.
    pub user: Option<String>,
}

/// Whether a command changes what can log in as the account.
fn needs_step_up(command: &Command) -> bool {
    matches!(
        command,
        Command::Device(DeviceCmd::Add(_) | DeviceCmd::Delete { .. } | DeviceCmd::RemoveAll)
            | Command::Bypass(BypassCmd::Generate { .. })
    )
}

/// Commands an ordinary user may run on their own account.
fn self_service(command: &Command) -> bool {
    matches!(
        command,
        Command::Status | Command::Device(_) | Command::Bypass(_)
    )
}

fn decide(
    request: &mut CommandRequest,
    caller: &UserInfo,
    root: bool,
    config: &Config,
    store: &mut SqliteStore,
) -> Result<Plan> {
    request.command.check_values().map_err(Error::Usage)?;
    let admin =
        root || (!config.admin_group.is_empty() && caller.groups.contains(&config.admin_group));
    let target = request.user.clone().unwrap_or_else(|| caller.name.clone());
    match &request.command {
        Command::Serve | Command::Doctor { .. } | Command::Admin(AdminCmd::Init) => {
            return Err(Error::Permission(
                "run this command as root on the host, not through the daemon".into(),
            ))
        }
        Command::Admin(_) | Command::Audit { .. } if !admin => {
            return Err(Error::Permission(format!(
                "administrative commands need root{}",
                if config.admin_group.is_empty() {
                    String::new()
                } else {
                    format!(" or membership of the group {}", config.admin_group)
                }
            )))
        }
        // It reads a file as root: through the daemon an admin_group member
        // could read root-only files with it.
        Command::Admin(AdminCmd::ImportGoogleAuthenticator { .. }) if !root => {
            return Err(Error::Permission(
                "import-google-authenticator reads files as root: run it as root on the host"
                    .into(),
            ))
        }
        Command::Admin(_) => return Ok(Plan { user: None }),
        Command::Audit { .. } => {
            return Ok(Plan {
                user: request.user.clone(),
            })
        }
        command if !self_service(command) => {
            return Err(Error::Permission(
                "this command is not available through the daemon".into(),
            ))
        }
        _ => {}
    }
    if target != caller.name && !admin {
        return Err(Error::Permission(format!(
            "you may manage only your own account ({}), not {target}",
            caller.name
        )));
    }
    match &mut request.command {
        // The daemon cannot ask for the first code or PIN; the client does,
        // then sends `device verify`.
        Command::Device(DeviceCmd::Add(
            AddCmd::Totp { no_verify, .. } | AddCmd::Sms { no_verify, .. },
        )) => *no_verify = true,
        Command::Device(DeviceCmd::Verify { code: None, .. }) => {
            return Err(Error::Usage(
                "give the code: mfa device verify NICK CODE".into(),
            ))
        }
        _ => {}
    }
    if !admin || target == caller.name {
        check_own_account(request, &target, config, store)?;
    }
    Ok(Plan { user: Some(target) })
}

/// A locked account cannot self-serve, and one with a verified device must
/// prove it holds it before changing what can log in.
fn check_own_account(
    request: &CommandRequest,
    user: &str,
    config: &Config,
    store: &mut SqliteStore,
) -> Result<()> {
    let now = SystemClock.now();
    let (locked, has_device) = {
        let tx = store.begin()?;
        let locked = lockout::is_locked(&tx.account(user)?, &config.lockout, now);
        (locked, tx.devices(user)?.iter().any(|d| d.verified))
    };
    if locked && !matches!(request.command, Command::Status) {
        return Err(Error::locked(user));
    }
    if !needs_step_up(&request.command) || !has_device {
        return Ok(());
    }
    let Some(code) = request.code.as_deref() else {
        return Err(Error::WrongCode(format!(
            "{STEP_UP} from one of your devices (or a bypass code); pass --code or answer the prompt"
        )));
    };
    let info =
        users::lookup(user).ok_or_else(|| Error::NotFound(format!("there is no user {user}")))?;
    let ctx = Context {
        detail: "factor=step-up via=daemon",
    };
    match attempt::attempt_code(store, config, &info, code.as_bytes(), None, now, &ctx)? {
        AttemptResult::Accepted(_) => Ok(()),
        AttemptResult::Wrong {
            locked_now: true, ..
        }
        | AttemptResult::Locked => Err(Error::locked(user)),
        AttemptResult::Wrong { .. } => Err(Error::WrongCode("wrong verification code".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(words: &[&str]) -> Command {
        super::super::super::Args::try_parse_from(
            std::iter::once("mfa").chain(words.iter().copied()),
        )
        .unwrap()
        .command
    }

    #[test]
    fn step_up_guards_what_changes_logins() {
        for w in [
            &["device", "add", "totp"][..],
            &["device", "add", "sms", "5551234567"],
            &["device", "delete", "phone"],
            &["device", "remove-all"],
            &["bypass", "generate"],
        ] {
            assert!(needs_step_up(&parse(w)), "{w:?}");
        }
        for w in [
            &["status"][..],
            &["device", "list"],
            &["device", "verify", "phone", "1"],
        ] {
            assert!(!needs_step_up(&parse(w)), "{w:?}");
        }
        assert!(!self_service(&parse(&["admin", "unlock", "bob"])));
        assert!(!self_service(&parse(&["audit"])));
    }

    #[test]
    fn values_clap_would_refuse_are_refused_in_typed_requests_too() {
        assert!(Command::Bypass(BypassCmd::Generate { count: 11 })
            .check_values()
            .is_err());
        assert!(Command::Bypass(BypassCmd::Generate { count: 0 })
            .check_values()
            .is_err());
        assert!(Command::Audit { limit: 0 }.check_values().is_err());
        assert!(Command::Audit { limit: 10 }.check_values().is_ok());
    }
}
