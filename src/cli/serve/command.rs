//! A command of a user who is not root: decided on the typed request, then
//! run in the daemon's own process by the same functions root's `mfa`
//! runs, with the output collected for the caller.

use super::super::context::Ctx;
use super::super::{dispatch, output, AddCmd, AdminCmd, BypassCmd, Command, DeviceCmd};
use super::state::Shared;
use super::Peer;
use crate::attempt::{self, AttemptResult, Context};
use crate::audit::{self, AuditEvent};
use crate::cli::error::{exit, CliError, Result};
use crate::codes::OneTimePurpose;
use crate::config::Config;
use crate::enroll;
use crate::protocol::{CommandRequest, Response};
use crate::sms::{self, check_phone};
use crate::store::{AnyStore, DeviceKind, Store};
use crate::users::{self, UserInfo};
use crate::{lockout, Clock};

pub const STEP_UP: &str = "this needs a current verification code";

/// Why the daemon will not run a request.
#[derive(Debug)]
enum Refusal {
    /// A current code is needed first; the text (starting with
    /// [`STEP_UP`]) says how to give one. Answered as a wrong code, of
    /// kind `step-up`.
    StepUp(String),
    /// Anything else, as `mfa` itself reports it.
    Command(CliError),
}

impl Refusal {
    fn kind(&self) -> &'static str {
        match self {
            Refusal::StepUp(_) => "step-up",
            Refusal::Command(e) => e.kind(),
        }
    }

    fn exit_code(&self) -> i32 {
        match self {
            Refusal::StepUp(_) => exit::WRONG_CODE,
            Refusal::Command(e) => e.exit_code(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::StepUp(m) => f.write_str(m),
            Refusal::Command(e) => e.fmt(f),
        }
    }
}

impl From<CliError> for Refusal {
    fn from(e: CliError) -> Self {
        Refusal::Command(e)
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        Refusal::Command(e.into())
    }
}

pub fn serve(mut request: CommandRequest, peer: Peer, shared: &Shared) -> Response {
    let Some(caller) = users::lookup_uid(peer.uid) else {
        return Response::refused(
            exit::PERMISSION,
            "permission",
            "your user id has no name in the user database",
        );
    };
    // The path and the fix of a broken config or database are for the
    // log and for root; a user learns that MFA is unavailable.
    let config = match shared.config() {
        Ok(c) => c,
        Err(e) => {
            let e = Refusal::Command(e.into());
            let response = refusal(&e, &caller, &request);
            return for_caller(response, peer.privileged(), "configuration");
        }
    };
    let mut store = match shared.store(&config) {
        Ok(s) => s,
        Err(e) => {
            let response = refusal(&Refusal::Command(e.into()), &caller, &request);
            let admin = peer.privileged() || member_of_admin_group(&config, &caller);
            return for_caller(response, admin, "database");
        }
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
            if administrative(&request, &caller) {
                record_refusal(&mut store, &e, &caller, &request);
            }
            shared.put_back(store, &config);
            return refusal(&e, &caller, &request);
        }
    };
    let command = std::mem::replace(&mut request.command, Command::Status);
    let mut ctx = Ctx::for_daemon(
        (*config).clone(),
        store,
        request.json,
        &caller.name,
        plan.admin,
    );
    let (result, printed) = output::capture(|| {
        let result = dispatch(&mut ctx, command, plan.user).map_err(|e| match e {
            // `mfa admin unlock` is for administrators.
            CliError::Locked(_) if !plan.admin => CliError::locked_for_user(&caller.name),
            e => e,
        });
        if let Err(e) = &result {
            output::error(e, request.json);
        }
        result
    });
    shared.put_back(ctx.store, &config);
    let mut response = Response {
        exit: result
            .as_ref()
            .map_or_else(CliError::exit_code, |()| exit::OK),
        stdout: String::new(),
        stderr: printed.stderr,
        error: None,
    };
    response.stdout.push_str(&printed.stdout);
    response
}

/// Whether the caller administers through the daemon (`admin_group`).
fn member_of_admin_group(config: &Config, caller: &UserInfo) -> bool {
    !config.admin_group.is_empty() && caller.groups.contains(&config.admin_group)
}

/// What a user who is not an administrator reads when the daemon cannot
/// use its `what` (config or database): the detail is in the log.
pub fn user_unavailable(what: &str) -> String {
    format!(
        "multi-factor authentication is unavailable on this host (its {what} cannot be used); ask your administrator"
    )
}

/// The refusal as the caller may read it: an administrator gets the
/// path and the fix, anyone else `user_unavailable`.
fn for_caller(response: Response, admin: bool, what: &str) -> Response {
    if admin {
        return response;
    }
    let kind = response.error.as_deref().unwrap_or("unavailable");
    Response::refused(response.exit, kind, &user_unavailable(what))
}

/// A refusal by the daemon itself, logged (who asked what) and answered.
fn refusal(e: &Refusal, caller: &UserInfo, request: &CommandRequest) -> Response {
    let kind = e.kind();
    audit::syslog(
        audit::Level::Notice,
        &format!(
            "{} result=refused command=\"{}\" kind={kind} target={}: {}",
            audit::format_line(&caller.name, AuditEvent::Command, ""),
            command_name(&request.command),
            audit::quote(request.user.as_deref().unwrap_or(&caller.name)),
            audit::escape(&e.to_string())
        ),
    );
    Response::refused(e.exit_code(), kind, &e.to_string())
}

/// An administrative request the daemon refused, in the audit trail of
/// the caller's own account (a row under whatever name it sent would let
/// anyone write rows for any name). Wrong step-up codes are there already,
/// as failures.
fn record_refusal(store: &mut AnyStore, e: &Refusal, caller: &UserInfo, request: &CommandRequest) {
    if matches!(
        e,
        Refusal::StepUp(_) | Refusal::Command(CliError::WrongCode(_))
    ) {
        return;
    }
    let detail = format!(
        "command=\"{}\" target={} kind={} via=daemon",
        command_name(&request.command),
        audit::quote(
            request
                .user
                .as_deref()
                .or(match &request.command {
                    Command::Admin(
                        AdminCmd::Show { name }
                        | AdminCmd::Unlock { name }
                        | AdminCmd::TempCode { name, .. }
                        | AdminCmd::ImportGoogleAuthenticator { name, .. },
                    ) => Some(name.as_str()),
                    _ => None,
                })
                .unwrap_or("-")
        ),
        e.kind()
    );
    let now = store.clock().now();
    let recorded = store.begin().and_then(|tx| {
        audit::record(&*tx, now, &caller.name, AuditEvent::AdminRefused, &detail)?;
        tx.commit()
    });
    if let Err(e) = recorded {
        audit::syslog(
            audit::Level::Error,
            &format!(
                "{} could not record a refusal in the audit trail: {e}",
                audit::format_line(&caller.name, AuditEvent::AdminRefused, "")
            ),
        );
    }
}

/// What the daemon will run, once the request is allowed.
pub struct Plan {
    /// The account, for commands that take `--user`.
    pub user: Option<String>,
    /// Whether the caller is an administrator (root, or a member of
    /// `admin_group`): only they are shown admin-only text.
    pub admin: bool,
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

/// The command's words, for the log and the audit trail.
pub fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Status => "status",
        Command::Device(DeviceCmd::List) => "device list",
        Command::Device(DeviceCmd::Add(AddCmd::Totp { .. })) => "device add totp",
        Command::Device(DeviceCmd::Add(AddCmd::Sms { .. })) => "device add sms",
        Command::Device(DeviceCmd::Verify { .. }) => "device verify",
        Command::Device(DeviceCmd::Delete { .. }) => "device delete",
        Command::Device(DeviceCmd::RemoveAll) => "device remove-all",
        Command::Bypass(BypassCmd::Generate { .. }) => "bypass generate",
        Command::Admin(AdminCmd::Policy { .. }) => "admin policy",
        Command::Admin(AdminCmd::Users { .. }) => "admin users",
        Command::Admin(AdminCmd::Show { .. }) => "admin show",
        Command::Admin(AdminCmd::Unlock { .. }) => "admin unlock",
        Command::Admin(AdminCmd::ImportGoogleAuthenticator { .. }) => {
            "admin import-google-authenticator"
        }
        Command::Admin(AdminCmd::TempCode { .. }) => "admin temp-code",
        Command::Admin(AdminCmd::GenerateKey { .. }) => "admin generate-key",
        Command::Admin(AdminCmd::Migrate { .. }) => "admin migrate",
        Command::Admin(AdminCmd::Init) => "admin init",
        Command::Audit { .. } => "audit",
        Command::Serve => "serve",
        Command::Doctor { .. } => "doctor",
    }
}

/// Whether a refused request was an administrative one (an admin command,
/// or one aimed at another account): such refusals go to the audit trail
/// too, on the caller's own account.
pub fn administrative(request: &CommandRequest, caller: &UserInfo) -> bool {
    matches!(request.command, Command::Admin(_) | Command::Audit { .. })
        || request
            .user
            .as_deref()
            .is_some_and(|u| canonical(u) != caller.name)
}

/// The account a name stands for: an alias (a second name for a uid) is
/// its uid's primary name, whose factors it shares.
fn canonical(name: &str) -> String {
    users::account_name(name)
}

fn decide(
    request: &mut CommandRequest,
    caller: &UserInfo,
    root: bool,
    config: &Config,
    store: &mut AnyStore,
) -> std::result::Result<Plan, Refusal> {
    request
        .command
        .check_values()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    // root here: uid 0 or the daemon's own user (a private instance).
    let member =
        !root && !config.admin_group.is_empty() && caller.groups.contains(&config.admin_group);
    let admin = root || member;
    let target = canonical(request.user.as_deref().unwrap_or(&caller.name));
    match &request.command {
        // generate-key writes a file where its caller runs: never here.
        Command::Serve
        | Command::Doctor { .. }
        | Command::Admin(
            AdminCmd::GenerateKey { .. } | AdminCmd::Migrate { .. } | AdminCmd::Init,
        ) => {
            return Err(CliError::Permission(
                "run this command as root on the host, not through the daemon".into(),
            )
            .into())
        }
        Command::Admin(_) | Command::Audit { .. } if !admin => {
            return Err(CliError::Permission(format!(
                "administrative commands need root{}",
                if config.admin_group.is_empty() {
                    String::new()
                } else {
                    format!(" or membership of the group {}", config.admin_group)
                }
            ))
            .into())
        }
        // It reads a file as root: through the daemon an admin_group member
        // could read root-only files with it.
        Command::Admin(AdminCmd::ImportGoogleAuthenticator { .. }) if !root => {
            return Err(CliError::Permission(
                "import-google-authenticator reads files as root: run it as root on the host"
                    .into(),
            )
            .into())
        }
        Command::Admin(command) => {
            if member {
                check_member_target(command, caller)?;
                admin_step_up(request, caller, config, store)?;
            }
            return Ok(Plan { user: None, admin });
        }
        Command::Audit { .. } => {
            if member {
                admin_step_up(request, caller, config, store)?;
            }
            return Ok(Plan {
                user: request.user.clone(),
                admin,
            });
        }
        command if !self_service(command) => {
            return Err(CliError::Permission(
                "this command is not available through the daemon".into(),
            )
            .into())
        }
        _ => {}
    }
    if target != caller.name && !admin {
        return Err(CliError::Permission(format!(
            "you may manage only your own account ({}), not {target}",
            caller.name
        ))
        .into());
    }
    match &mut request.command {
        // The daemon cannot ask for the first code or PIN; the client does,
        // then sends `device verify`.
        Command::Device(DeviceCmd::Add(
            AddCmd::Totp { no_verify, .. } | AddCmd::Sms { no_verify, .. },
        )) => *no_verify = true,
        Command::Device(DeviceCmd::Verify { code: None, .. }) => {
            return Err(CliError::Usage("give the code: mfa device verify NICK CODE".into()).into())
        }
        _ => {}
    }
    // A request that would fail anyway must not spend the caller's code.
    let flag = if target == caller.name {
        String::new()
    } else {
        format!("--user {target} ")
    };
    check_arguments(&request.command, &target, &flag, config, store)?;
    if target == caller.name {
        check_own_account(request, &target, config, store)?;
    } else if member {
        // Another account's devices and codes are as good as a code for
        // it: root's are root's alone, and a member proves who it is.
        if users::lookup(&target).is_some_and(|u| u.is_root()) {
            return Err(
                CliError::Permission("only root manages root's devices and codes".into()).into(),
            );
        }
        admin_step_up(request, caller, config, store)?;
    }
    Ok(Plan {
        user: Some(target),
        admin,
    })
}

/// What an admin_group member may not do even as an administrator: give
/// itself a way in (a temporary code, an unlock), or give one for root.
fn check_member_target(command: &AdminCmd, caller: &UserInfo) -> Result<()> {
    let (name, what) = match command {
        AdminCmd::TempCode { name, .. } => (name, "issue temporary codes"),
        AdminCmd::Unlock { name } => (name, "unlock accounts"),
        _ => return Ok(()),
    };
    let Some(target) = users::lookup(name) else {
        return Ok(()); // refused by the command itself, as for root
    };
    if target.uid == caller.uid {
        return Err(CliError::Permission(format!(
            "you may not {what} for your own account ({}): ask root or another administrator",
            caller.name
        )));
    }
    if target.is_root() && matches!(command, AdminCmd::TempCode { .. }) {
        return Err(CliError::Permission(
            "only root issues temporary codes for root".into(),
        ));
    }
    Ok(())
}

/// The checks the command itself would make before changing anything,
/// made before the step-up code is spent: a typo (a bad phone number or
/// nickname, a second phone, a device that does not exist) costs nothing.
fn check_arguments(
    command: &Command,
    user: &str,
    flag: &str,
    config: &Config,
    store: &mut AnyStore,
) -> Result<()> {
    let Command::Device(command) = command else {
        return Ok(());
    };
    let devices = store.begin_read()?.devices(user)?;
    match command {
        DeviceCmd::Add(AddCmd::Totp { name, .. }) => {
            enroll::check_nickname(name).map_err(|e| CliError::Usage(e.to_string()))?;
            if devices.iter().any(|d| &d.name == name) {
                return Err(CliError::Conflict(format!(
                    "{user} already has a device named \"{name}\"; choose another with --name, \
                     or delete the old one with `mfa {flag}device delete {name}`"
                )));
            }
        }
        DeviceCmd::Add(AddCmd::Sms { phone, .. }) => {
            check_phone(phone).map_err(|m| CliError::Usage(m.into()))?;
            if !sms::from_config(&config.sms).available() {
                return Err(CliError::Failed(sms::SmsError::NotConfigured.to_string()));
            }
            if devices.iter().any(|d| d.kind() == DeviceKind::Sms) {
                return Err(CliError::Conflict(format!(
                    "{user} already has an SMS device; delete it first with `mfa {flag}device delete sms`"
                )));
            }
        }
        DeviceCmd::Delete { nick } | DeviceCmd::Verify { nick, .. } => {
            if !devices.iter().any(|d| &d.name == nick) {
                return Err(CliError::NotFound(format!(
                    "{user} has no device named \"{}\"; see `mfa {flag}device list`",
                    nick.escape_debug()
                )));
            }
        }
        DeviceCmd::List | DeviceCmd::RemoveAll => {}
    }
    Ok(())
}

/// What guards an account's logins now, and whether it is locked.
fn guard_of(store: &mut AnyStore, config: &Config, user: &str) -> Result<(bool, bool)> {
    let now = store.clock().now();
    let tx = store.begin_read()?;
    let locked = lockout::is_locked(&tx.account(user)?, &config.lockout, now);
    // Any second factor, bypass codes and a live temporary code included:
    // whatever can stand in for a device at login must be shown here too.
    let has_factor = tx.devices(user)?.iter().any(|d| d.verified)
        || !tx.bypass_codes(user)?.is_empty()
        || tx
            .one_time_codes(user, now)?
            .iter()
            .any(|c| c.purpose == OneTimePurpose::Temporary);
    Ok((locked, has_factor))
}

/// A locked account cannot self-serve, and one with any second factor must
/// prove it holds one before changing what can log in.
fn check_own_account(
    request: &CommandRequest,
    user: &str,
    config: &Config,
    store: &mut AnyStore,
) -> std::result::Result<(), Refusal> {
    let (locked, has_factor) = guard_of(store, config, user)?;
    if locked && !matches!(request.command, Command::Status) {
        return Err(CliError::locked_for_user(user).into());
    }
    if !needs_step_up(&request.command) || !has_factor {
        return Ok(());
    }
    step_up(request, user, config, store, "factor=step-up via=daemon")
}

/// An admin_group member's administrative request: from an unlocked
/// account with a second factor, with a current code from it.
fn admin_step_up(
    request: &CommandRequest,
    caller: &UserInfo,
    config: &Config,
    store: &mut AnyStore,
) -> std::result::Result<(), Refusal> {
    let (locked, has_factor) = guard_of(store, config, &caller.name)?;
    if locked {
        return Err(CliError::Locked(format!(
            "your own account {} is locked: an administrator must unlock it before you administer",
            caller.name
        ))
        .into());
    }
    if !has_factor {
        return Err(CliError::Permission(format!(
            "administrative commands through the daemon need a second factor on your own account ({}): set one up with `mfa device add totp`",
            caller.name
        ))
        .into());
    }
    let detail = format!(
        "factor=step-up via=daemon for=\"{}\"",
        command_name(&request.command)
    );
    step_up(request, &caller.name, config, store, &detail)
}

/// What a user answers at the step-up prompt to have a code texted.
pub const TEXT_ME: &str = "sms";

/// The step-up refusal that asks for a code. An account whose only
/// device is a phone (it has no code of its own to give) is texted a
/// login code at once, as at login and counted by the same limits; one
/// with an app as well gets a text when it answers `sms`.
fn ask_for_code(user: &str, config: &Config, store: &mut AnyStore, text_me: bool) -> Refusal {
    const ADMIN: &str = "or ask an administrator for a temporary code";
    let phone = (|| -> Result<(Option<String>, bool)> {
        let tx = store.begin_read()?;
        let devices = tx.devices(user)?;
        let app = devices
            .iter()
            .any(|d| d.verified && d.kind() == DeviceKind::Totp);
        let phone = crate::onetime::sms_device(&*tx, user)?
            .filter(|(d, _)| d.verified)
            .map(|(_, phone)| phone);
        Ok((phone, app))
    })();
    let (phone, app) = match phone {
        Ok(found) => found,
        Err(e) => return e.into(),
    };
    let Some(phone) = phone else {
        return Refusal::StepUp(format!(
            "{STEP_UP} from one of your devices (or a bypass code); pass --code or answer the prompt, {ADMIN}"
        ));
    };
    let masked = sms::mask_phone(&phone);
    if app && !text_me {
        return Refusal::StepUp(format!(
            "{STEP_UP} from one of your devices (or a bypass code); pass --code or answer the prompt \
             (answer `{TEXT_ME}` to have one texted to {masked}), {ADMIN}"
        ));
    }
    let sender = sms::from_config(&config.sms);
    let now = store.clock().now();
    match crate::onetime::send_login_code(store, config, sender.as_ref(), user, &phone, now) {
        Ok(()) => Refusal::StepUp(format!(
            "{STEP_UP}: one was texted to {masked} (valid 5 minutes); enter it, or a bypass code, {ADMIN}"
        )),
        Err(e) => {
            audit::syslog(
                audit::Level::Warning,
                &format!(
                    "{} result=not-texted: {}",
                    audit::format_line(user, AuditEvent::StepUp, ""),
                    audit::escape(&e.to_string())
                ),
            );
            Refusal::StepUp(format!(
                "{STEP_UP}, and none could be texted to {masked} ({e}); enter a bypass code, {ADMIN}"
            ))
        }
    }
}

/// Spends the request's code on `user`'s account, as a login would.
fn step_up(
    request: &CommandRequest,
    user: &str,
    config: &Config,
    store: &mut AnyStore,
    detail: &str,
) -> std::result::Result<(), Refusal> {
    let code = match request.code.as_deref() {
        Some(code) if !code.trim().eq_ignore_ascii_case(TEXT_ME) => code,
        asked => return Err(ask_for_code(user, config, store, asked.is_some())),
    };
    let info = users::lookup(user).ok_or_else(|| super::super::context::no_such_user(user))?;
    let ctx = Context { detail };
    let now = store.clock().now();
    match attempt::attempt_code(store, config, &info, code.as_bytes(), None, now, &ctx)? {
        AttemptResult::Accepted(_) => Ok(()),
        AttemptResult::Wrong {
            locked_now: true, ..
        }
        | AttemptResult::Locked => Err(CliError::locked_for_user(user).into()),
        AttemptResult::Wrong { .. } => {
            Err(CliError::WrongCode("wrong verification code".into()).into())
        }
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
        let audit = |limit, host: Option<&str>| Command::Audit {
            limit,
            host: host.map(str::to_owned),
        };
        assert!(audit(0, None).check_values().is_err());
        assert!(audit(10, None).check_values().is_ok());
        assert!(audit(10, Some("db1")).check_values().is_ok());
        assert!(audit(10, Some("")).check_values().is_err());
        assert!(audit(10, Some("a\nb")).check_values().is_err());
    }
}
