//! The daemon's socket protocol, version 2: one JSON object per line each
//! way, over `/run/pam_mfa/mfa.sock` (see docs/protocol.md).
//!
//! A client opens with an [`Envelope`]. For a [`Request::Command`] the
//! daemon answers with one [`Response`] and closes. For a [`Request::Login`]
//! it holds a conversation: [`ServerMessage`]s (lines to show, questions to
//! ask) each answered by a [`ClientReply`] where asked, and last a
//! [`Verdict`]. Who is calling comes only from the socket's peer
//! credentials, never from the request.

use crate::commands::{Command, DeviceCmd};
use crate::login::Denial;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Instant;
use zeroize::{Zeroize, Zeroizing};

pub const VERSION: u32 = 2;
/// A line longer than this is refused unread.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// The longest extra wait a daemon may announce (`sms.timeout`'s maximum).
pub const MAX_WAIT_SECONDS: u32 = 300;
/// Longest user name, service, host, prompt or answer the protocol carries.
pub const MAX_FIELD_BYTES: usize = 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub version: u32,
    pub request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// A PAM module asking the daemon to run one phase of a login.
    Login(LoginRequest),
    /// The `mfa` command of a user who is not root.
    Command(CommandRequest),
}

/// Which `pam_sm_*` call and which module argument the login comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Before the password: refuse a locked account.
    Preauth,
    /// After a failed password: count it.
    Authfail,
    /// The second factor.
    #[serde(rename = "auth")]
    SecondFactor,
    /// The account phase (`account` lines): refuse a locked account.
    Account,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Preauth => "preauth",
            Mode::Authfail => "authfail",
            Mode::SecondFactor => "auth",
            Mode::Account => "account",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub mode: Mode,
    pub user: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub rhost: String,
    /// The module's `debug` argument: log routine passes too.
    #[serde(default)]
    pub debug: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    pub command: Command,
    /// The account to work on (admins only); None: the caller's own.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub json: bool,
    /// A current code for step-up.
    #[serde(default)]
    pub code: Option<String>,
}

impl Drop for CommandRequest {
    fn drop(&mut self) {
        self.code.zeroize();
        if let Command::Device(DeviceCmd::Verify { code, .. }) = &mut self.command {
            code.zeroize();
        }
    }
}

/// The daemon's answer to a command: what root's `mfa` would have printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub exit: i32,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// Set when the daemon itself refused (`permission`, `step-up`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Drop for Response {
    fn drop(&mut self) {
        // The output of `device add totp` or `bypass generate`.
        self.stdout.zeroize();
    }
}

impl Response {
    pub fn refused(exit: i32, kind: &str, message: &str) -> Response {
        Response {
            exit,
            stdout: String::new(),
            stderr: format!("mfa: {message}\n"),
            error: Some(kind.to_owned()),
        }
    }
}

/// What the daemon sends during a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMessage {
    /// A line of information to show.
    Info(String),
    /// An error line to show.
    Error(String),
    /// A question; the client answers with one [`ClientReply`].
    Ask { prompt: String, echo: bool },
    /// The next message may take this many seconds more than usual (an SMS
    /// gateway is about to run); the client waits that much longer, at most
    /// [`MAX_WAIT_SECONDS`].
    Wait { seconds: u32 },
    /// The end of the login phase.
    Verdict(Verdict),
}

/// How a login phase ended, as the module maps it to a PAM code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A second factor verified, a device set up, or let through by policy.
    Success,
    Denied(Denial),
    /// The client could not hold the conversation.
    ConversationFailed,
    /// The store is missing or refused; `allow` is the daemon's
    /// `on_unavailable`.
    Unavailable {
        allow: bool,
    },
    /// The caller may not check this user (a non-root client asking for
    /// another uid's account).
    Refused,
}

/// The client's answer to an [`ServerMessage::Ask`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientReply {
    Answer(String),
    /// The answer equals the password just entered (sshd's `password`
    /// method answers every prompt with it): it is not sent.
    EqualsPassword,
    /// The conversation failed (the user went away, the application gave up).
    NoAnswer,
}

impl Drop for ClientReply {
    fn drop(&mut self) {
        if let ClientReply::Answer(text) = self {
            text.zeroize();
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    TooLarge,
    NotJson(String),
    Version(u32),
    BadField,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::TooLarge => write!(f, "request larger than {MAX_LINE_BYTES} bytes"),
            ProtocolError::NotJson(e) => write!(f, "malformed request: {e}"),
            ProtocolError::Version(v) => {
                write!(f, "protocol version {v} is not supported (this daemon speaks {VERSION}); use the mfa and pam_mfa.so of the same package")
            }
            ProtocolError::BadField => write!(
                f,
                "a field is longer than {MAX_FIELD_BYTES} bytes or holds control characters"
            ),
        }
    }
}

fn bad(s: &str) -> bool {
    s.len() > MAX_FIELD_BYTES || s.chars().any(char::is_control)
}

/// Parses a client's first line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ProtocolError::TooLarge);
    }
    // The version first, so an old client hears "version", not "malformed".
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let versioned: Versioned =
        serde_json::from_slice(line).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    if versioned.version != VERSION {
        return Err(ProtocolError::Version(versioned.version));
    }
    let envelope: Envelope =
        serde_json::from_slice(line).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let fields_ok = match &envelope.request {
        Request::Login(l) => ![&l.user, &l.service, &l.rhost].into_iter().any(|s| bad(s)),
        Request::Command(c) => {
            !(c.user.as_deref().is_some_and(bad) || c.code.as_deref().is_some_and(bad))
        }
    };
    if !fields_ok {
        return Err(ProtocolError::BadField);
    }
    Ok(envelope.request)
}

/// Parses one reply line from a login client.
pub fn parse_reply(line: &[u8]) -> Result<ClientReply, ProtocolError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ProtocolError::TooLarge);
    }
    let reply: ClientReply =
        serde_json::from_slice(line).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    match &reply {
        ClientReply::Answer(text) if text.len() > MAX_FIELD_BYTES => Err(ProtocolError::BadField),
        _ => Ok(reply),
    }
}

/// One value as a line, encoded into a buffer that is wiped when dropped:
/// answers, requests and replies may carry codes or secrets. The value is
/// measured first so that the buffer never grows (a grown buffer would leave
/// an unwiped copy behind).
pub fn encode_line<T: Serialize + ?Sized>(value: &T) -> Zeroizing<Vec<u8>> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing these types cannot fail: no maps with non-string keys.
    let _ = serde_json::to_writer(&mut count, value);
    let mut line = Zeroizing::new(Vec::with_capacity(count.0 + 1));
    let _ = serde_json::to_writer(&mut *line, value);
    line.push(b'\n');
    line
}

/// A command request as its opening line. By reference: a
/// [`CommandRequest`] is wiped when dropped, so it cannot be moved into an
/// [`Envelope`] and out again.
pub fn encode_command(request: &CommandRequest) -> Zeroizing<Vec<u8>> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        version: u32,
        request: BorrowedRequest<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum BorrowedRequest<'a> {
        Command(&'a CommandRequest),
    }
    encode_line(&Borrowed {
        version: VERSION,
        request: BorrowedRequest::Command(request),
    })
}

/// Reads lines of at most [`MAX_LINE_BYTES`] into buffers that are wiped
/// when dropped (they may hold a code or a secret), each read bounded by a
/// deadline that the caller sets before waiting for the peer.
pub struct LineReader<'a> {
    stream: &'a UnixStream,
    buf: Zeroizing<Vec<u8>>,
    max: usize,
    /// The next read fails with `TimedOut` once this has passed.
    pub until: Instant,
}

impl<'a> LineReader<'a> {
    pub fn new(stream: &'a UnixStream, until: Instant) -> LineReader<'a> {
        Self::with_limit(stream, until, MAX_LINE_BYTES)
    }

    /// A reader for lines of up to `max` bytes (a command's output can be
    /// longer than any request: `mfa audit --limit 100000`).
    pub fn with_limit(stream: &'a UnixStream, until: Instant, max: usize) -> LineReader<'a> {
        LineReader {
            stream,
            buf: Zeroizing::new(Vec::with_capacity(2048)),
            max,
            until,
        }
    }

    /// The next line without its newline; None at a clean end of stream.
    pub fn read_line(&mut self) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line = Zeroizing::new(self.buf[..end].to_vec());
                self.buf.drain(..=end);
                line.shrink_to_fit();
                return Ok(Some(line));
            }
            if self.buf.len() > self.max {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a line longer than {} bytes", self.max),
                ));
            }
            let left = self.until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = Zeroizing::new([0u8; 1024]);
            let n = match (&mut &*self.stream).read(&mut chunk[..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(std::io::ErrorKind::TimedOut.into())
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
            if self.buf.len() + n > self.buf.capacity() {
                // Grow by hand: Vec's own growth would free the old buffer unwiped.
                let mut bigger = Zeroizing::new(Vec::with_capacity(2 * (self.buf.len() + n)));
                bigger.extend_from_slice(&self.buf);
                self.buf = bigger;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Whether the process listening at the other end of `stream` may be
/// trusted with logins and codes: root's daemon, or (a private instance, as
/// in the tests) one of our own user. A socket that another user managed to
/// put at the path would otherwise answer "success", or collect codes.
pub fn check_listener(stream: &UnixStream) -> Result<(), Untrusted> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let listener = getsockopt(stream, PeerCredentials).map_err(Untrusted::Unknown)?;
    let own = nix::unistd::geteuid().as_raw();
    if listener.uid() == 0 || listener.uid() == own {
        Ok(())
    } else {
        Err(Untrusted::Uid(listener.uid()))
    }
}

/// Why the socket's listener is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// Its credentials could not be read.
    Unknown(nix::errno::Errno),
    /// It runs as this uid, neither root nor the caller.
    Uid(u32),
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Untrusted::Unknown(e) => write!(f, "cannot tell who listens: {e}"),
            Untrusted::Uid(uid) => write!(f, "it is served by uid {uid}, not root: not trusted"),
        }
    }
}

impl std::error::Error for Untrusted {}

/// Writes a whole line without raising SIGPIPE: the module runs inside
/// programs (sshd, su, screen lockers) that may not ignore it, and a daemon
/// that went away must not kill them.
pub fn send_line(stream: &UnixStream, line: &[u8]) -> std::io::Result<()> {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut rest = line;
    while !rest.is_empty() {
        match send(stream.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Err(std::io::ErrorKind::TimedOut.into()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> Vec<u8> {
        json.as_bytes().to_vec()
    }

    #[test]
    fn a_login_request_parses_and_round_trips() {
        let r = parse_request(&line(
            r#"{"version":2,"request":{"login":{"mode":"auth","user":"alice","service":"sshd","rhost":"::1"}}}"#,
        ))
        .unwrap();
        let Request::Login(l) = r else {
            panic!("not a login")
        };
        assert_eq!(l.mode, Mode::SecondFactor);
        assert_eq!(l.user, "alice");
        let again = encode_line(&Envelope {
            version: VERSION,
            request: Request::Login(l.clone()),
        });
        let Request::Login(back) = parse_request(&again[..again.len() - 1]).unwrap() else {
            panic!("not a login")
        };
        assert_eq!(back, l);
    }

    #[test]
    fn a_command_request_is_typed() {
        let r = parse_request(&line(
            r#"{"version":2,"request":{"command":{"command":{"device":"list"},"json":true}}}"#,
        ))
        .unwrap();
        assert!(matches!(
            r,
            Request::Command(CommandRequest {
                command: Command::Device(DeviceCmd::List),
                json: true,
                ..
            })
        ));
    }

    #[test]
    fn an_encoded_command_parses_back() {
        let request = CommandRequest {
            command: Command::Device(DeviceCmd::Verify {
                nick: "phone".into(),
                code: Some("123456".into()),
            }),
            user: Some("alice".into()),
            json: false,
            code: None,
        };
        let line = encode_command(&request);
        let Request::Command(back) = parse_request(&line[..line.len() - 1]).unwrap() else {
            panic!("not a command")
        };
        assert!(matches!(
            &back.command,
            Command::Device(DeviceCmd::Verify { nick, code: Some(c) }) if nick == "phone" && c == "123456"
        ));
        assert_eq!(back.user.as_deref(), Some("alice"));
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"{",
            b"null",
            b"[]",
            b"\xff\xfe",
            br#"{"version":1,"args":["device","list"]}"#,
            br#"{"version":2}"#,
            br#"{"version":2,"request":{"login":{"mode":"auth"}}}"#,
            br#"{"version":2,"request":{"login":{"mode":"sudo","user":"a"}}}"#,
            br#"{"version":2,"request":{"login":{"mode":"auth","user":"a","uid":0}}}"#,
            br#"{"version":2,"request":{"login":{"mode":"auth","user":"a\nb"}}}"#,
            br#"{"version":2,"request":{"command":{"command":"serve","code":"1\u0000"}}}"#,
            br#"{"version":2,"request":{"command":{"command":{"shell":"ls"}}}}"#,
        ];
        for c in cases {
            assert!(
                parse_request(c).is_err(),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        assert_eq!(
            parse_request(br#"{"version":1,"args":[]}"#).unwrap_err(),
            ProtocolError::Version(1)
        );
        let big = vec![b' '; MAX_LINE_BYTES + 1];
        assert_eq!(parse_request(&big).unwrap_err(), ProtocolError::TooLarge);
        let long_user = format!(
            r#"{{"version":2,"request":{{"login":{{"mode":"auth","user":"{}"}}}}}}"#,
            "a".repeat(MAX_FIELD_BYTES + 1)
        );
        assert_eq!(
            parse_request(long_user.as_bytes()).unwrap_err(),
            ProtocolError::BadField
        );
    }

    #[test]
    fn the_line_reader_splits_grows_and_bounds() {
        use std::io::Write;
        use std::time::Duration;
        let (a, b) = UnixStream::pair().unwrap();
        let long = "x".repeat(5000);
        (&a).write_all(format!("one\ntwo\n{long}\npart").as_bytes())
            .unwrap();
        let mut reader = LineReader::new(&b, Instant::now() + Duration::from_secs(5));
        assert_eq!(&reader.read_line().unwrap().unwrap()[..], b"one");
        assert_eq!(&reader.read_line().unwrap().unwrap()[..], b"two");
        assert_eq!(reader.read_line().unwrap().unwrap().len(), 5000);
        // A half line and then silence: the deadline ends the wait.
        reader.until = Instant::now() + Duration::from_millis(100);
        let e = reader.read_line().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        // A half line and then the end: not a clean end.
        drop(a);
        reader.until = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            reader.read_line().unwrap_err().kind(),
            std::io::ErrorKind::UnexpectedEof
        );

        let (a, b) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let _ = (&a).write_all(&vec![b'y'; MAX_LINE_BYTES + 5000]);
        });
        let mut reader = LineReader::new(&b, Instant::now() + Duration::from_secs(5));
        assert_eq!(
            reader.read_line().unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn an_encoded_line_is_one_line_of_exactly_its_length() {
        let message = ServerMessage::Info("a\nb \u{1b}".into());
        let line = encode_line(&message);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.capacity(), line.len());
        let back: ServerMessage = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(br#"{"answer":"123456"}"#).unwrap(),
            ClientReply::Answer("123456".into())
        );
        assert_eq!(
            parse_reply(br#""equals_password""#).unwrap(),
            ClientReply::EqualsPassword
        );
        assert_eq!(
            parse_reply(br#""no_answer""#).unwrap(),
            ClientReply::NoAnswer
        );
        let long = format!(r#"{{"answer":"{}"}}"#, "1".repeat(MAX_FIELD_BYTES + 1));
        assert_eq!(
            parse_reply(long.as_bytes()).unwrap_err(),
            ProtocolError::BadField
        );
        assert!(parse_reply(b"{}").is_err());
    }
}
