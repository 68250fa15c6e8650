//! What one `pam_sm_*` call does, once the glue has read the PAM items:
//! find the daemon, run the login phase through it, and decide what an
//! unreachable daemon means.

use super::args::{Args, Mode};
use super::client::{self, ClientError};
use super::outcome::Result;
use crate::audit::{self, Level};
use crate::config::{Config, OnUnavailable, DEFAULT_SOCKET};
use crate::login::{self, Prompter};
use crate::protocol::LoginRequest;
use crate::secret::SecretBytes;
use std::cell::OnceCell;
use std::path::PathBuf;

pub struct Items {
    pub user: Option<String>,
    pub service: String,
    pub rhost: String,
    pub password: Option<SecretBytes>,
}

pub fn run(args: &Args, items: &Items, prompter: &mut dyn Prompter) -> Result {
    // For log lines only, which a login that goes well never writes.
    let where_ = || {
        format!(
            "mode={} service={} rhost={}",
            args.mode.as_str(),
            audit::quoted(&items.service),
            audit::quoted(&items.rhost)
        )
    };
    let Some(user) = items.user.as_deref() else {
        audit::syslog(
            Level::Error,
            &format!("no user name from PAM; denying ({})", where_()),
        );
        return Result::NoUser;
    };
    // The config is read only when it is needed, and then once: a client
    // that is not root (a screen locker) cannot read it and gets the defaults.
    let config = OnceCell::new();
    let config = || config.get_or_init(|| load_config(args)).as_ref();
    let socket = match &args.socket {
        Some(path) => path.clone(),
        None => config().map_or_else(|| PathBuf::from(DEFAULT_SOCKET), |c| c.socket.clone()),
    };
    let request = LoginRequest {
        mode: args.mode,
        user: user.to_owned(),
        service: items.service.clone(),
        rhost: items.rhost.clone(),
        debug: args.debug,
    };
    let password = items.password.as_deref().map(|p| p.as_slice());
    let error = match client::login(&socket, request, password, prompter) {
        Ok(verdict) => return Result::Ran(verdict),
        Err(e) => e,
    };
    // Only a daemon that is not there at all is "unavailable" in the
    // admin's sense; one that stalls or misbehaves is never a reason to allow.
    let allow = matches!(error, ClientError::NotRunning(_))
        && config().is_some_and(|c| c.on_unavailable == OnUnavailable::Allow);
    let who = format!("user={} {}", audit::quoted(user), where_());
    login::report_unavailable(prompter, &error, allow, args.mode == Mode::Authfail, &who);
    Result::Unavailable { allow }
}

fn load_config(args: &Args) -> Option<Config> {
    match Config::load(&args.config) {
        Ok(c) => Some(c),
        Err(e) => {
            if args.debug {
                audit::syslog(
                    Level::Debug,
                    &format!("config not read ({e}); using the default socket and on_unavailable = \"deny\""),
                );
            }
            None
        }
    }
}
