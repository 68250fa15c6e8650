//! The `mfa` command for ordinary users: the same commands, sent to the
//! self-service daemon over its socket. Output and exit codes are the
//! daemon's child `mfa`'s, so they match what root sees.
#![forbid(unsafe_code)]

use super::{AddCmd, Args, Command, DeviceCmd};
use pam_mfa::error::exit;
use pam_mfa::protocol::{Request, Response, MAX_REQUEST_BYTES, VERSION};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

const GLOBAL_WITH_VALUE: [&str; 4] = ["--config", "--user", "--socket", "--code"];

/// The command's words without the global flags, which travel as fields.
pub fn strip_globals(raw: &[OsString]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    let mut after_dashes = false;
    for arg in raw.iter().skip(1) {
        let arg = arg.to_string_lossy().into_owned();
        if skip_value {
            skip_value = false;
            continue;
        }
        if !after_dashes {
            if arg == "--" {
                after_dashes = true;
            } else if arg == "--json"
                || GLOBAL_WITH_VALUE
                    .iter()
                    .any(|g| arg.starts_with(&format!("{g}=")))
            {
                continue;
            } else if GLOBAL_WITH_VALUE.contains(&arg.as_str()) {
                skip_value = true;
                continue;
            }
        }
        out.push(arg);
    }
    out
}

pub fn run(args: &Args, raw: &[OsString]) -> i32 {
    let mut words = strip_globals(raw);
    let mut request = Request {
        version: VERSION,
        args: Vec::new(),
        user: args.user.clone(),
        json: args.json,
        code: args.step_up_code.clone(),
    };
    match &args.command {
        Command::Device(DeviceCmd::Verify { nick, code: None }) => {
            let prompt = if nick == pam_mfa::enroll::SMS_NAME {
                "PIN from the text message: "
            } else {
                "Code shown by the app: "
            };
            let Some(code) = ask(prompt) else {
                return no_code(args.json);
            };
            words = vec![
                "device".into(),
                "verify".into(),
                nick.clone(),
                code.to_string(),
            ];
        }
        Command::Device(DeviceCmd::Add(AddCmd::Totp {
            name,
            no_verify: false,
        })) => {
            request.args = words;
            return add_then_verify(&args.socket, request, name, "Code shown by the app: ");
        }
        Command::Device(DeviceCmd::Add(AddCmd::Sms {
            no_verify: false, ..
        })) => {
            request.args = words;
            return add_then_verify(&args.socket, request, "sms", "PIN from the text message: ");
        }
        _ => {}
    }
    request.args = words;
    match exchange_with_step_up(&args.socket, request) {
        Ok(response) => show(&response, args.json),
        Err(code) => code,
    }
}

/// Sends the request; if the daemon wants a step-up code, asks for it once.
fn exchange_with_step_up(socket: &Path, mut request: Request) -> Result<Response, i32> {
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
fn add_then_verify(socket: &Path, request: Request, name: &str, prompt: &str) -> i32 {
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
    let verify = Request {
        version: VERSION,
        args: vec![
            "device".into(),
            "verify".into(),
            name.to_owned(),
            code.to_string(),
        ],
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

fn exchange(socket: &Path, request: &Request) -> Result<Response, i32> {
    let json = request.json;
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        fail(
            json,
            "unavailable",
            &format!(
                "the self-service daemon is not running ({}: {e}); ask an administrator to start it with `systemctl enable --now pam-mfa.socket`",
                socket.display()
            ),
            exit::UNAVAILABLE,
        )
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    // It may carry a code: encode into a wiped buffer that need not grow.
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_REQUEST_BYTES + 1));
    serde_json::to_writer(&mut *line, request).map_err(|_| exit::FAILED)?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| {
        fail(
            json,
            "unavailable",
            &format!("cannot talk to the daemon: {e}"),
            exit::UNAVAILABLE,
        )
    })?;
    // The answer may hold a new secret or bypass codes.
    let mut answer = Zeroizing::new(String::new());
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| {
            fail(
                json,
                "unavailable",
                &format!("no answer from the daemon: {e}"),
                exit::UNAVAILABLE,
            )
        })?;
    serde_json::from_str(&answer).map_err(|_| {
        fail(
            json,
            "failed",
            "the daemon's answer is not understood (is it the same version as this mfa?)",
            exit::FAILED,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(words: &[&str]) -> Vec<String> {
        let raw: Vec<OsString> = std::iter::once("mfa")
            .chain(words.iter().copied())
            .map(Into::into)
            .collect();
        strip_globals(&raw)
    }

    #[test]
    fn global_flags_are_removed_wherever_they_stand() {
        assert_eq!(
            strip(&[
                "--json",
                "--user",
                "bob",
                "device",
                "add",
                "totp",
                "--name",
                "x",
                "--config=/c"
            ]),
            vec!["device", "add", "totp", "--name", "x"]
        );
        assert_eq!(
            strip(&["device", "list", "--socket", "/s"]),
            vec!["device", "list"]
        );
        assert_eq!(
            strip(&["device", "verify", "--", "--json"]),
            vec!["device", "verify", "--", "--json"]
        );
    }
}
