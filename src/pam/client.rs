//! The module's side of the daemon protocol: connect, say who is logging
//! in, relay each line and question to the PAM conversation and each
//! answer back, and return the daemon's verdict. Every wait on the daemon
//! is bounded; the user's own typing time is not.

use crate::login::{ConversationFailed, Prompter};
use crate::protocol::{
    self, ClientReply, Envelope, LineReader, LoginRequest, Request, ServerMessage, Verdict,
};
use crate::secret::constant_time_eq;
use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use zeroize::Zeroize;

/// How long the daemon has for each of its replies.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may wait in a full listen queue (a stopped daemon).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Nothing listens at the socket: the daemon is not running.
    NotRunning(String),
    /// The daemon is there but did not answer in time, went away mid-login
    /// or said something this module does not understand.
    Failed(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotRunning(m) | ClientError::Failed(m) => f.write_str(m),
        }
    }
}

/// Runs one login phase through the daemon at `socket`. `password` is the
/// first factor already entered, if any: an answer equal to it is never
/// sent, only the fact that it was equal.
pub fn login(
    socket: &Path,
    request: LoginRequest,
    password: Option<&[u8]>,
    prompter: &mut dyn Prompter,
) -> Result<Verdict, ClientError> {
    let stream = connect_to(socket)?;
    let failed = |what: &str, e: std::io::Error| {
        ClientError::Failed(format!("daemon at {}: {what}: {e}", socket.display()))
    };
    let _ = stream.set_write_timeout(Some(REPLY_TIMEOUT));
    let hello = protocol::encode_line(&Envelope {
        version: protocol::VERSION,
        request: Request::Login(request),
    });
    protocol::send_line(&stream, &hello).map_err(|e| failed("cannot send the request", e))?;
    let mut reader = LineReader::new(&stream, Instant::now() + REPLY_TIMEOUT);
    loop {
        let line = match reader.read_line() {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(failed(
                    "no answer",
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            }
            Err(e) => return Err(failed("no answer in time", e)),
        };
        let message: ServerMessage = serde_json::from_slice(&line).map_err(|e| {
            ClientError::Failed(format!(
                "daemon at {}: an answer this module does not understand ({e}); \
                 are the module and mfa from the same package?",
                socket.display()
            ))
        })?;
        match message {
            ServerMessage::Info(text) => prompter.info(&text),
            ServerMessage::Error(text) => prompter.error(&text),
            ServerMessage::Ask { prompt, echo } => {
                let answer = if echo {
                    prompter.ask_visible(&prompt)
                } else {
                    prompter.ask_hidden(&prompt)
                };
                let reply = match answer {
                    Err(ConversationFailed) => ClientReply::NoAnswer,
                    Ok(typed) if equals_password(password, &typed) => ClientReply::EqualsPassword,
                    Ok(typed) => ClientReply::Answer(answer_text(&typed)),
                };
                protocol::send_line(&stream, &protocol::encode_line(&reply))
                    .map_err(|e| failed("cannot send the answer", e))?;
                // The daemon's clock starts when it has our answer.
                reader.until = Instant::now() + REPLY_TIMEOUT;
            }
            ServerMessage::Wait { seconds } => {
                let extra = seconds.min(protocol::MAX_WAIT_SECONDS);
                reader.until = Instant::now() + REPLY_TIMEOUT + Duration::from_secs(extra.into());
            }
            ServerMessage::Verdict(verdict) => return Ok(verdict),
        }
    }
}

/// An answer as the protocol carries it: text, at most
/// [`protocol::MAX_FIELD_BYTES`] (no code, PIN or phone number comes near;
/// an over-long answer stays over-long, and so wrong, when cut).
fn answer_text(typed: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(typed).into_owned();
    if text.len() > protocol::MAX_FIELD_BYTES {
        let mut cut = protocol::MAX_FIELD_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let kept = text[..cut].to_owned();
        text.zeroize();
        return kept;
    }
    text
}

/// sshd's `password` method answers every prompt with the password.
fn equals_password(password: Option<&[u8]>, typed: &[u8]) -> bool {
    password.is_some_and(|p| !p.is_empty() && constant_time_eq(p, typed))
}

/// Connects without ever blocking for long: a stopped daemon's listen queue
/// fills up, and a blocking connect would then hang the login.
fn connect_to(path: &Path) -> Result<UnixStream, ClientError> {
    let at = path.display();
    let addr =
        UnixAddr::new(path).map_err(|e| ClientError::Failed(format!("socket path {at}: {e}")))?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| ClientError::Failed(format!("cannot make a socket: {e}")))?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => break,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(Errno::EAGAIN) => {
                return Err(ClientError::Failed(format!(
                    "daemon at {at} does not accept connections (stopped or overloaded)"
                )))
            }
            Err(e @ (Errno::ENOENT | Errno::ECONNREFUSED | Errno::ENOTDIR)) => {
                return Err(ClientError::NotRunning(format!(
                    "the daemon is not running ({at}: {e})"
                )))
            }
            Err(e) => {
                return Err(ClientError::Failed(format!(
                    "cannot reach the daemon at {at}: {e}"
                )))
            }
        }
    }
    let stream = UnixStream::from(fd);
    stream
        .set_nonblocking(false)
        .map_err(|e| ClientError::Failed(format!("socket {at}: {e}")))?;
    protocol::check_listener(&stream)
        .map_err(|e| ClientError::Failed(format!("socket {at}: {e}")))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_not_running_and_answers_at_once() {
        let started = Instant::now();
        let err = connect_to(Path::new("/nonexistent/pam_mfa/mfa.sock")).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn an_overlong_path_is_an_error_not_a_panic() {
        let long = format!("/tmp/{}", "x".repeat(200));
        assert!(matches!(
            connect_to(Path::new(&long)),
            Err(ClientError::Failed(_))
        ));
    }

    #[test]
    fn over_long_answers_are_cut_on_a_character_boundary() {
        let long = "é".repeat(protocol::MAX_FIELD_BYTES);
        let cut = answer_text(long.as_bytes());
        assert!(cut.len() <= protocol::MAX_FIELD_BYTES && cut.len() > 1000);
        assert!(long.starts_with(&cut));
        assert_eq!(answer_text(b"123456"), "123456");
        assert_eq!(answer_text(b"\xff1"), "\u{fffd}1");
    }

    #[test]
    fn the_password_itself_is_never_an_answer() {
        assert!(equals_password(Some(b"hunter2"), b"hunter2"));
        assert!(!equals_password(Some(b"hunter2"), b"123456"));
        assert!(!equals_password(Some(b""), b""));
        assert!(!equals_password(None, b"123456"));
    }
}
