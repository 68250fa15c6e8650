//! The `mfa` command for ordinary users: the same commands, sent as typed
//! requests to the daemon over its socket. The daemon runs them with the
//! functions root's `mfa` runs, so output and exit codes match.
#![forbid(unsafe_code)]

use super::{AddCmd, Args, Command, DeviceCmd};
use pam_mfa::error::exit;
use pam_mfa::protocol::{self, CommandRequest, LineReader, Response};
use std::io::{BufRead, IsTerminal, Write};
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
            let prompt = if nick == pam_mfa::enroll::SMS_NAME {
                "PIN from the text message: "
            } else {
                "Code shown by the app: "
            };
            let Some(code) = ask(prompt) else {
                return no_code(json);
            };
            request.command = Command::Device(DeviceCmd::Verify {
                nick,
                code: Some(code.to_string()),
            });
        }
        Command::Device(DeviceCmd::Add(AddCmd::Totp {
            name,
            no_verify: false,
        })) => {
            request.command = Command::Device(DeviceCmd::Add(AddCmd::Totp {
                name: name.clone(),
                no_verify: false,
            }));
            return add_then_verify(&socket, request, &name, "Code shown by the app: ");
        }
        Command::Device(DeviceCmd::Add(AddCmd::Sms {
            phone,
            no_verify: false,
        })) => {
            request.command = Command::Device(DeviceCmd::Add(AddCmd::Sms {
                phone,
                no_verify: false,
            }));
            return add_then_verify(&socket, request, "sms", "PIN from the text message: ");
        }
        command => request.command = command,
    }
    match exchange_with_step_up(&socket, request) {
        Ok(response) => show(&response, json),
        Err(code) => code,
    }
}

/// Sends the request; if the daemon wants a step-up code, asks for it once.
fn exchange_with_step_up(socket: &Path, mut request: CommandRequest) -> Result<Response, i32> {
    let response = exchange(socket, &request)?;
    if response.error.as_deref() != Some("step-up") || !std::io::stdin().is_terminal() {
        return Ok(response);
    }
    eprintln!("This change needs a current code from one of your devices (or a bypass code).");
    let Some(code) = ask("Current verification code: ") else {
        return Err(no_code(request.json));
    };
    request.code = Some(code.to_string());
    exchange(socket, &request)
}

/// `device add` through the daemon: add as pending, then ask here for the
/// first code (or PIN) and send `device verify`.
fn add_then_verify(socket: &Path, request: CommandRequest, name: &str, prompt: &str) -> i32 {
    let json = request.json;
    let user = request.user.clone();
    let added = match exchange_with_step_up(socket, request) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if added.exit != exit::OK {
        return show(&added, json);
    }
    let mut json_value: Option<serde_json::Value> = None;
    if json {
        // Like root's `--json`: the setup goes to stderr, stdout gets one object.
        json_value = serde_json::from_str(&added.stdout).ok();
        if let Some(uri) = json_value.as_ref().and_then(|v| v["otpauth_uri"].as_str()) {
            eprintln!(
                "Scan this QR code with an authenticator app:\n{}",
                pam_mfa::enroll::qr_text(uri).as_str()
            );
            eprintln!("URI: {uri}");
        }
    } else {
        print!("{}", added.stdout);
        eprint!("{}", added.stderr);
    }
    let Some(code) = ask(prompt) else {
        return fail(
            json,
            "usage",
            &format!("no code was entered; the device \"{name}\" is saved as pending: finish with `mfa device verify {name}`"),
            exit::USAGE,
        );
    };
    let verify = CommandRequest {
        command: Command::Device(DeviceCmd::Verify {
            nick: name.to_owned(),
            code: Some(code.to_string()),
        }),
        user,
        json,
        code: None,
    };
    let verified = match exchange(socket, &verify) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match json_value {
        Some(mut value) if verified.exit == exit::OK => {
            value["verified"] = serde_json::Value::Bool(true);
            println!("{value}");
            exit::OK
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
    eprint!("{prompt}");
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line).ok()?;
    let trimmed = Zeroizing::new(line.trim().to_owned());
    (!trimmed.is_empty()).then_some(trimmed)
}

/// How long a command may take in the daemon (an SMS gateway has its own,
/// shorter, limit).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest answer taken: the audit trail's longest listing fits.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

fn exchange(socket: &Path, request: &CommandRequest) -> Result<Response, i32> {
    let json = request.json;
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
