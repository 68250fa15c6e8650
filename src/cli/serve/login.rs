//! A login phase for a PAM module: the same flow as ever (`crate::login`),
//! talking to the user through the module over the socket.

use super::state::Shared;
use super::Peer;
use crate::audit::{self, AuditEvent, Level};
use crate::config::{Config, OnUnavailable};
use crate::login::{self, ConversationFailed, Denial, Login, Outcome, Prompter};
use crate::protocol::{self, ClientReply, LineReader, LoginRequest, Mode, ServerMessage, Verdict};
use crate::secret::SecretBytes;
use crate::sms::{self, SmsError, SmsSender};
use crate::store::{Store, StoreError};
use crate::{users, Clock};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long a user may take to answer one question (sshd's own
/// LoginGraceTime defaults to 2 minutes).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

pub fn serve(
    stream: &UnixStream,
    reader: LineReader<'_>,
    peer: Peer,
    request: &LoginRequest,
    shared: &Shared,
) {
    // Stands in for the password in the flow: the module sends
    // "equals the password" instead of an answer that does, and the flow
    // refuses a code equal to the password as it always has.
    let marker = match crate::secret::random_bytes(32) {
        Ok(m) => m,
        Err(_) => return finish(stream, Verdict::Unavailable { allow: false }),
    };
    let mut prompter = SocketPrompter {
        stream,
        reader,
        marker: &marker,
        broken: false,
    };
    let verdict = run(&mut prompter, peer, request, shared, &marker);
    if !prompter.broken {
        finish(stream, verdict);
    }
}

fn finish(stream: &UnixStream, verdict: Verdict) {
    let _ = protocol::send_line(
        stream,
        &protocol::encode_line(&ServerMessage::Verdict(verdict)),
    );
}

fn run(
    prompter: &mut SocketPrompter<'_, '_>,
    peer: Peer,
    request: &LoginRequest,
    shared: &Shared,
    marker: &[u8],
) -> Verdict {
    let info = users::lookup(&request.user);
    // An alias logs in to its uid's account: say which.
    let account = match &info {
        Some(u) if u.name != request.user => format!(" account={}", audit::quote(&u.name)),
        _ => String::new(),
    };
    let who = audit::format_line(
        &request.user,
        AuditEvent::Login,
        &format!(
            "mode={} service={} rhost={} uid={} pid={}{account}",
            request.mode.as_str(),
            audit::quoted(&request.service),
            audit::quoted(&request.rhost),
            peer.uid,
            peer.pid
        ),
    );
    // A program running as a user (a screen locker) may check that user only.
    if !peer.privileged() && info.as_ref().map(|u| u.uid) != Some(peer.uid) {
        refuse(prompter, peer, request, &who, shared);
        return Verdict::Refused;
    }
    let config = match shared.config() {
        Ok(c) => c,
        Err(e) => return unavailable(prompter, request.mode, &who, &e, None),
    };
    let mut store = match shared.store(&config) {
        Ok(s) => s,
        Err(e) => return store_unavailable(prompter, request.mode, &who, &e, &config),
    };
    let clock = store.clock();
    let flow_request = login::Request {
        info: info.as_ref(),
        password: Some(marker),
        service: &request.service,
        rhost: &request.rhost,
    };
    let sender = AnnouncedSms {
        stream: prompter.stream,
        inner: sms::from_config(&config.sms),
        seconds: u32::try_from(config.sms.timeout).unwrap_or(protocol::MAX_WAIT_SECONDS),
    };
    let mut flow = Login {
        config: &config,
        store: &mut store,
        clock: &clock,
        sms: &sender,
        prompter,
    };
    let result = match request.mode {
        Mode::Preauth => flow.preauth(&flow_request),
        Mode::Authfail => flow.authfail(&flow_request),
        Mode::SecondFactor => flow.second_factor(&flow_request),
        Mode::Account => flow.account(&flow_request),
    };
    match result {
        Ok(outcome) => {
            shared.put_back(store, &config);
            log_decision(&who, request.mode, &outcome, request.debug);
            match outcome {
                Outcome::Verified(_) | Outcome::Enrolled | Outcome::Passed(_) => Verdict::Success,
                Outcome::Denied(d) => Verdict::Denied(d),
                Outcome::ConversationFailed => Verdict::ConversationFailed,
            }
        }
        Err(e) => store_unavailable(prompter, request.mode, &who, &e, &config),
    }
}

/// A program running as one user asked about another account: logged, and
/// audited on the caller's own account (a row for whatever name it sent
/// would let anyone grow the audit trail at will).
fn refuse(
    prompter: &mut dyn Prompter,
    peer: Peer,
    request: &LoginRequest,
    who: &str,
    shared: &Shared,
) {
    audit::syslog(
        Level::Warning,
        &format!("{who} result=refused reason=not-the-caller's-account"),
    );
    // As with "unavailable": after a wrong password (authfail) it would only confuse.
    if request.mode != Mode::Authfail {
        prompter.error("This program may check only the account it runs as.");
    }
    let Some(caller) = users::lookup_uid(peer.uid) else {
        return;
    };
    let recorded = shared.config().ok().and_then(|config| {
        let mut store = shared.store(&config).ok()?;
        let detail = format!(
            "target={} mode={} service={} uid={} pid={}",
            audit::quoted(&request.user),
            request.mode.as_str(),
            audit::quoted(&request.service),
            peer.uid,
            peer.pid
        );
        {
            let now = store.clock().now();
            let tx = store.begin().ok()?;
            audit::record(&*tx, now, &caller.name, AuditEvent::LoginRefused, &detail).ok()?;
            tx.commit().ok()?;
        }
        shared.put_back(store, &config);
        Some(())
    });
    if recorded.is_none() {
        audit::syslog(
            Level::Error,
            &format!("{who} could not record the refusal in the audit trail"),
        );
    }
}

/// The store failed: `on_unavailable` may apply only when it is missing or
/// refused; one that is there but failing (busy, I/O, limits, read-only)
/// denies, so no caller can provoke a way in.
fn store_unavailable(
    prompter: &mut dyn Prompter,
    mode: Mode,
    who: &str,
    error: &StoreError,
    config: &Config,
) -> Verdict {
    let applies = error.permits_allow();
    unavailable(prompter, mode, who, error, applies.then_some(config))
}

/// The config or the store cannot be used: the admin's `on_unavailable`
/// decides when `config` is given (deny when even the config is unreadable,
/// or the store's failure is not one that "allow" covers).
fn unavailable(
    prompter: &mut dyn Prompter,
    mode: Mode,
    who: &str,
    error: &dyn std::fmt::Display,
    config: Option<&Config>,
) -> Verdict {
    let allow = config.is_some_and(|c| c.on_unavailable == OnUnavailable::Allow);
    login::report_unavailable(prompter, error, allow, mode == Mode::Authfail, who);
    Verdict::Unavailable { allow }
}

fn log_decision(who: &str, mode: Mode, outcome: &Outcome, debug: bool) {
    let (level, result) = match outcome {
        Outcome::Verified(a) => (Level::Info, format!("result=success method={}", a.method())),
        Outcome::Enrolled => (Level::Info, "result=success method=enrolled".into()),
        Outcome::Passed(why) => (
            Level::Info,
            format!("result=success method=none reason={}", why.as_str()),
        ),
        // authfail runs after a wrong password: that, not a code, was wrong.
        Outcome::Denied(Denial::WrongCode) if mode == Mode::Authfail => {
            (Level::Notice, "result=denied reason=wrong-password".into())
        }
        Outcome::Denied(d) => (
            Level::Notice,
            format!("result=denied reason={}", d.as_str()),
        ),
        Outcome::ConversationFailed => (Level::Notice, "result=denied reason=conversation".into()),
    };
    // Routine passes of preauth/account would flood the log; keep them for debug.
    if matches!(outcome, Outcome::Passed(why) if why.is_routine()) && !debug {
        return;
    }
    audit::syslog(level, &format!("{who} {result}"));
}

/// The configured SMS gateway, announced to the module before each text: a
/// gateway may take up to `sms.timeout` seconds, longer than the module
/// waits for a reply by default.
struct AnnouncedSms<'s> {
    stream: &'s UnixStream,
    inner: Box<dyn SmsSender>,
    seconds: u32,
}

impl SmsSender for AnnouncedSms<'_> {
    fn send(&self, phone: &str, message: &str) -> Result<(), SmsError> {
        let wait = ServerMessage::Wait {
            seconds: self.seconds.min(protocol::MAX_WAIT_SECONDS),
        };
        // A client that is gone will fail the next question anyway.
        let _ = protocol::send_line(self.stream, &protocol::encode_line(&wait));
        self.inner.send(phone, message)
    }

    fn available(&self) -> bool {
        self.inner.available()
    }
}

/// The flow's [`Prompter`] over the socket. Once the client is gone or too
/// slow, every further question fails and nothing more is sent.
struct SocketPrompter<'s, 'r> {
    stream: &'s UnixStream,
    reader: LineReader<'r>,
    marker: &'s [u8],
    broken: bool,
}

impl SocketPrompter<'_, '_> {
    fn send(&mut self, message: &ServerMessage) {
        if !self.broken
            && protocol::send_line(self.stream, &protocol::encode_line(message)).is_err()
        {
            self.broken = true;
        }
    }

    fn ask(&mut self, prompt: &str, echo: bool) -> Result<SecretBytes, ConversationFailed> {
        self.send(&ServerMessage::Ask {
            prompt: prompt.to_owned(),
            echo,
        });
        if self.broken {
            return Err(ConversationFailed);
        }
        self.reader.until = Instant::now() + ANSWER_TIMEOUT;
        let reply = match self.reader.read_line() {
            Ok(Some(line)) => protocol::parse_reply(&line).ok(),
            _ => None,
        };
        match reply {
            Some(ClientReply::Answer(ref text)) => Ok(Zeroizing::new(text.as_bytes().to_vec())),
            Some(ClientReply::EqualsPassword) => Ok(Zeroizing::new(self.marker.to_vec())),
            Some(ClientReply::NoAnswer) => Err(ConversationFailed),
            None => {
                self.broken = true;
                Err(ConversationFailed)
            }
        }
    }
}

impl Prompter for SocketPrompter<'_, '_> {
    fn info(&mut self, text: &str) {
        self.send(&ServerMessage::Info(text.to_owned()));
    }

    fn error(&mut self, text: &str) {
        self.send(&ServerMessage::Error(text.to_owned()));
    }

    fn ask_hidden(&mut self, prompt: &str) -> Result<SecretBytes, ConversationFailed> {
        self.ask(prompt, false)
    }

    fn ask_visible(&mut self, prompt: &str) -> Result<SecretBytes, ConversationFailed> {
        self.ask(prompt, true)
    }
}
