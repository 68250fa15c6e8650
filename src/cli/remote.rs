//! The `mfa` command for ordinary users: the same commands, sent as typed
//! requests to the daemon over its socket. The daemon runs them with the
//! functions root's `mfa` runs, so output and exit codes match.

use super::{AddCmd, Args, Command, DeviceCmd};
use crate::cli::error::exit;
use crate::protocol::{self, CommandRequest, LineReader, Response};
use std::io::{IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub fn run(args: Args, socket: std::path::PathBuf) -> i32 {
    let json = args.json;
    let mut request = CommandRequest {
        command: Command::Status,
        user: args.user.clone(),
        json,
        code: args.step_up_code.clone(),
    };
    match args.command {
        Command::Device(DeviceCmd::Verify { nick, code: None }) => {
            return verify_interactively(&socket, request.user.clone(), json, &nick, None);
        }
        Command::Device(DeviceCmd::Add(AddCmd::Totp {
            name,
            no_verify: false,
        })) => {
            request.command = Command::Device(DeviceCmd::Add(AddCmd::Totp {
                name: name.clone(),
                no_verify: false,
            }));
            return add_then_verify(&socket, request, &name);
        }
        Command::Device(DeviceCmd::Add(AddCmd::Sms {
            phone,
            no_verify: false,
        })) => {
            request.command = Command::Device(DeviceCmd::Add(AddCmd::Sms {
                phone,
                no_verify: false,
            }));
            return add_then_verify(&socket, request, crate::enroll::SMS_NAME);
        }
        command => request.command = command,
    }
    match exchange_with_step_up(&socket, request) {
        Ok(response) => show(&response, json),
        Err(code) => code,
    }
}

/// What the first code of a new device is asked with: a phone gets a PIN
/// by text, an app shows a code.
fn first_code_prompt(nick: &str) -> &'static str {
    if nick == crate::enroll::SMS_NAME {
        crate::login::PIN_PROMPT
    } else {
        crate::login::ENROLL_PROMPT
    }
}

/// `--user NAME ` for a hint about another account, as root's command
/// writes it; empty for the caller's own.
fn user_flag(user: Option<&str>) -> String {
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name);
    match user {
        Some(u) if me.as_deref() != Some(crate::users::account_name(u).as_str()) => {
            format!("--user {u} ")
        }
        _ => String::new(),
    }
}

/// Sends the request; if the daemon wants a step-up code, asks for it once.
/// The daemon's refusal says what to enter (for a phone-only account it
/// has just texted a code).
fn exchange_with_step_up(socket: &Path, request: CommandRequest) -> Result<Response, i32> {
    let json = request.json;
    exchange_with_step_up_as(socket, request, json)
}

/// `exchange_with_step_up`, its own failures printed as `json` says (the
/// request may ask the daemon for JSON on behalf of a caller who wants text).
fn exchange_with_step_up_as(
    socket: &Path,
    mut request: CommandRequest,
    json: bool,
) -> Result<Response, i32> {
    let mut response = exchange_as(socket, &request, json)?;
    // One answer, and one more after asking for a texted code.
    for _ in 0..2 {
        if response.error.as_deref() != Some("step-up") || !std::io::stdin().is_terminal() {
            break;
        }
        let said = response.stderr.trim_end();
        eprintln!("{}", said.strip_prefix("mfa: ").unwrap_or(said));
        let Some(code) = ask("Current verification code: ") else {
            return Err(no_code(json));
        };
        let text_me = code.eq_ignore_ascii_case("sms");
        request.code = Some(code.to_string());
        response = exchange_as(socket, &request, json)?;
        if !text_me {
            break;
        }
    }
    Ok(response)
}

/// `device add` through the daemon: add as pending (the daemon answers
/// with the setup as JSON), show the setup, then ask here for the first
/// code (or PIN) and send `device verify`. The "finish later" hint is
/// printed only when this ends without the device verified.
fn add_then_verify(socket: &Path, mut request: CommandRequest, name: &str) -> i32 {
    let json = request.json;
    let user = request.user.clone();
    request.json = true;
    let added = match exchange_with_step_up_as(socket, request, json) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if added.exit != exit::OK {
        if json {
            return show(&added, json);
        }
        // Asked as JSON for the setup: a text caller gets the message only.
        eprint!("{}", added.stderr);
        return added.exit;
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&added.stdout) else {
        return fail(
            json,
            "failed",
            "the daemon's answer is not understood (is it the same version as this mfa?)",
            exit::FAILED,
        );
    };
    if let Some(uri) = value["otpauth_uri"].as_str() {
        let setup = zeroize::Zeroizing::new(format!(
            "Scan this QR code with an authenticator app:\n{}\nOr type this secret: {}\nURI: {uri}",
            crate::enroll::qr_text(uri).as_str(),
            crate::secret::group4(value["secret"].as_str().unwrap_or_default()).as_str(),
        ));
        // With --json stdout carries only the final object.
        if json {
            eprintln!("{}", setup.as_str());
        } else {
            println!("{}", setup.as_str());
            let _ = std::io::stdout().flush();
        }
    } else if let Some(phone) = value["phone"].as_str() {
        eprintln!("A 4-digit PIN was texted to {phone}.");
    }
    verify_interactively(socket, user, json, name, Some(value))
}

/// Asks for the code (or PIN) of a pending device and sends `device
/// verify`; at a terminal a wrong one is asked again while tries are left
/// (a PIN has its own three; an app code gets three chances). `added` is
/// the setup `device add` gave, for its --json answer.
fn verify_interactively(
    socket: &Path,
    user: Option<String>,
    json: bool,
    name: &str,
    added: Option<serde_json::Value>,
) -> i32 {
    let flag = user_flag(user.as_deref());
    let later = format!(
        "the device \"{name}\" is saved as pending: finish with `mfa {flag}device verify {name}`"
    );
    let tries = if std::io::stdin().is_terminal() {
        crate::onetime::PIN_TRIES
    } else {
        1
    };
    let mut verified = None;
    for left in (0..tries).rev() {
        let Some(code) = ask(first_code_prompt(name)) else {
            return match added {
                Some(_) => fail(
                    json,
                    "usage",
                    &format!("no code was entered; {later}"),
                    exit::USAGE,
                ),
                None => no_code(json),
            };
        };
        let verify = CommandRequest {
            command: Command::Device(DeviceCmd::Verify {
                nick: name.to_owned(),
                code: Some(code.to_string()),
            }),
            user: user.clone(),
            json,
            code: None,
        };
        let response = match exchange(socket, &verify) {
            Ok(r) => r,
            Err(code) => return code,
        };
        // A wrong code with tries left: say so and ask again; the daemon
        // says when a PIN's last try is gone.
        let again =
            response.exit == exit::WRONG_CODE && left > 0 && !response.stderr.contains("last try");
        if !again {
            verified = Some(response);
            break;
        }
        let said = response.stderr.trim_end();
        eprintln!("{}", said.strip_prefix("mfa: ").unwrap_or(said));
    }
    let Some(verified) = verified else {
        return exit::WRONG_CODE;
    };
    match added {
        Some(mut value) if verified.exit == exit::OK => {
            if json {
                value["verified"] = serde_json::Value::Bool(true);
                println!("{value}");
                let _ = std::io::stdout().flush();
                exit::OK
            } else {
                show(&verified, json)
            }
        }
        // A new device left pending: say how to finish it later.
        Some(_) if verified.exit == exit::WRONG_CODE && !verified.stderr.contains("last try") => {
            let code = show(&verified, json);
            eprintln!("mfa: {later}");
            code
        }
        _ => show(&verified, json),
    }
}

fn show(response: &Response, json: bool) -> i32 {
    match &response.error {
        // The daemon's own refusals carry only the message; with --json,
        // scripts expect the error object that root's command prints.
        Some(kind) if json && response.stdout.is_empty() => {
            let message = response.stderr.trim_end();
            let message = message.strip_prefix("mfa: ").unwrap_or(message);
            fail(true, kind, message, response.exit)
        }
        _ => {
            print!("{}", response.stdout);
            eprint!("{}", response.stderr);
            let _ = std::io::stdout().flush();
            response.exit
        }
    }
}

/// Reports a failure as root's command does: the message on stderr and,
/// with --json, `{"error": KIND, "message": TEXT}` on stdout.
fn fail(json: bool, kind: &str, message: &str, code: i32) -> i32 {
    eprintln!("mfa: {message}");
    if json {
        println!(
            "{}",
            serde_json::json!({ "error": kind, "message": message })
        );
        let _ = std::io::stdout().flush();
    }
    code
}

fn no_code(json: bool) -> i32 {
    fail(json, "usage", "no code was entered", exit::USAGE)
}

/// Reads one line from the terminal (or stdin when piped), wiped after use.
fn ask(prompt: &str) -> Option<Zeroizing<String>> {
    let line = super::context::read_line_hidden(Some(prompt)).ok()??;
    let trimmed = Zeroizing::new(line.trim().to_owned());
    (!trimmed.is_empty()).then_some(trimmed)
}

/// How long a command may take in the daemon (an SMS gateway has its own,
/// shorter, limit).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest answer taken: the audit trail's longest listing fits.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

fn exchange(socket: &Path, request: &CommandRequest) -> Result<Response, i32> {
    exchange_as(socket, request, request.json)
}

/// `exchange`, its own failures printed as `json` says.
fn exchange_as(socket: &Path, request: &CommandRequest, json: bool) -> Result<Response, i32> {
    let unavailable = |message: String| fail(json, "unavailable", &message, exit::UNAVAILABLE);
    let stream = UnixStream::connect(socket).map_err(|e| {
        unavailable(format!(
            "the daemon is not running ({}: {e}); ask an administrator to start it with `systemctl enable --now pam-mfa.socket`",
            socket.display()
        ))
    })?;
    // The request may carry a step-up code: only root's daemon gets it.
    protocol::check_listener(&stream).map_err(|e| {
        fail(
            json,
            "unavailable",
            &format!("{}: {e}", socket.display()),
            exit::UNAVAILABLE,
        )
    })?;
    let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
    let line = protocol::encode_command(request);
    protocol::send_line(&stream, &line)
        .map_err(|e| unavailable(format!("cannot talk to the daemon: {e}")))?;
    // The answer may hold a new secret or bypass codes.
    let mut reader =
        LineReader::with_limit(&stream, Instant::now() + ANSWER_TIMEOUT, MAX_ANSWER_BYTES);
    let answer = match reader.read_line() {
        Ok(Some(line)) => line,
        Ok(None) => {
            return Err(unavailable(
                "the daemon closed the connection without an answer".into(),
            ))
        }
        Err(e) => return Err(unavailable(format!("no answer from the daemon: {e}"))),
    };
    serde_json::from_slice(&answer).map_err(|_| {
        fail(
            json,
            "failed",
            "the daemon's answer is not understood (is it the same version as this mfa?)",
            exit::FAILED,
        )
    })
}
