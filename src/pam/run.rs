//! What one `pam_sm_*` call does, once the glue has read the PAM items:
//! load the config, open the database, run the login flow, log the decision.
#![forbid(unsafe_code)]

use super::args::{Args, Mode};
use super::outcome::Result;
use crate::audit::{self, Level};
use crate::config::{Config, OnUnavailable};
use crate::login::{Login, Outcome, Prompter, Request};
use crate::secret::SecretBytes;
use crate::sms;
use crate::store::{OpenMode, SqliteStore};
use crate::{users, SystemClock};

pub struct Items {
    pub user: Option<String>,
    pub service: String,
    pub rhost: String,
    pub password: Option<SecretBytes>,
}

pub fn run(args: &Args, items: &Items, prompter: &mut dyn Prompter) -> Result {
    let where_ = format!(
        "mode={} service={:?} rhost={:?}",
        args.mode.as_str(),
        items.service,
        items.rhost
    );
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            // Without a config we cannot know the admin allowed "allow".
            audit::syslog(
                Level::Error,
                &format!("MFA unavailable: {e}; denying ({where_})"),
            );
            return Result::Unavailable { allow: false };
        }
    };
    let allow = config.on_unavailable == OnUnavailable::Allow;
    let Some(user) = items.user.as_deref() else {
        audit::syslog(
            Level::Error,
            &format!("no user name from PAM; denying ({where_})"),
        );
        return Result::NoUser;
    };
    let who = audit::format_line(user, "login", &where_);
    let mut store = match SqliteStore::open(&config.database, OpenMode::Existing) {
        Ok(s) => s,
        Err(e) => return unavailable(&who, &e, allow),
    };
    let info = users::lookup(user);
    let request = Request {
        user,
        info: info.as_ref(),
        password: items.password.as_deref().map(|p| p.as_slice()),
        service: &items.service,
        rhost: &items.rhost,
    };
    let sender = sms::from_config(&config.sms);
    let mut login = Login {
        config: &config,
        store: &mut store,
        clock: &SystemClock,
        sms: sender.as_ref(),
        prompter,
    };
    let result = match args.mode {
        Mode::Preauth => login.preauth(&request),
        Mode::Authfail => login.authfail(&request),
        Mode::SecondFactor => login.second_factor(&request),
        Mode::Account => login.account(&request),
    };
    match result {
        Ok(outcome) => {
            log_decision(&who, &outcome, args.debug);
            Result::Ran(outcome)
        }
        Err(e) => unavailable(&who, &e, allow),
    }
}

fn unavailable(who: &str, error: &dyn std::fmt::Display, allow: bool) -> Result {
    let verdict = if allow {
        "allowing (on_unavailable = \"allow\")"
    } else {
        "denying"
    };
    audit::syslog(
        Level::Error,
        &format!("MFA unavailable: {error}; {verdict} ({who})"),
    );
    Result::Unavailable { allow }
}

fn log_decision(who: &str, outcome: &Outcome, debug: bool) {
    let (level, result) = match outcome {
        Outcome::Verified(a) => (Level::Info, format!("result=success method={}", a.method())),
        Outcome::Enrolled => (Level::Info, "result=success method=enrolled".into()),
        Outcome::Passed(why) => (
            Level::Info,
            format!("result=success method=none reason={why}"),
        ),
        Outcome::Denied(d) => (Level::Notice, format!("result=denied reason={d:?}")),
        Outcome::ConversationFailed => (Level::Notice, "result=denied reason=conversation".into()),
    };
    // Routine passes of preauth/account would flood the log; keep them for debug.
    if matches!(
        outcome,
        Outcome::Passed("not-locked" | "unknown-user-preauth")
    ) && !debug
    {
        return;
    }
    audit::syslog(level, &format!("{who} {result}"));
}
