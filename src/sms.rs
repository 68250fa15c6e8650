//! Text messages: the [`SmsSender`] trait, the gateways an admin configures
//! (`command`, `file`, `none`), phone-number rules and masking.

use crate::config::{SmsBackend, SmsConfig};
use crate::trust::{self, Distrust, Expect};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsError {
    /// `sms.backend = "none"`.
    NotConfigured,
    /// The gateway ran and failed; the text says how (never the message).
    Gateway(String),
}

impl fmt::Display for SmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmsError::NotConfigured => f.write_str(
                "no SMS gateway is configured: set [sms] backend in pam_mfa.toml (see pam_mfa.toml(5))",
            ),
            SmsError::Gateway(m) => write!(f, "the SMS gateway failed: {m}"),
        }
    }
}

impl std::error::Error for SmsError {}

pub trait SmsSender {
    fn send(&self, phone: &str, message: &str) -> Result<(), SmsError>;
    /// Whether sending can work at all (offer SMS only then).
    fn available(&self) -> bool {
        true
    }
}

/// `backend = "none"`: every SMS action is refused with a clear message.
pub struct NoSms;

impl SmsSender for NoSms {
    fn send(&self, _phone: &str, _message: &str) -> Result<(), SmsError> {
        Err(SmsError::NotConfigured)
    }
    fn available(&self) -> bool {
        false
    }
}

/// The sender the config asks for.
pub fn from_config(config: &SmsConfig) -> Box<dyn SmsSender> {
    match config.backend {
        SmsBackend::None => Box::new(NoSms),
        SmsBackend::File => Box::new(FileSms {
            path: config.path.clone().into(),
        }),
        SmsBackend::Command => Box::new(CommandSms {
            argv: config.command.clone(),
            timeout: Duration::from_secs(config.timeout),
        }),
    }
}

/// `backend = "file"`: one line per message, `phone<TAB>text`, in a file
/// only root can read (for air-gapped sites and tests).
pub struct FileSms {
    pub path: std::path::PathBuf,
}

impl FileSms {
    /// Opens the file for one line: never through a symbolic link, never
    /// waiting (a FIFO without a reader fails at once with ENXIO instead of
    /// hanging the login), and only a regular file that root (or the
    /// daemon's user) owns and nobody else may write.
    fn open(&self) -> Result<std::fs::File, SmsError> {
        let refuse = |why: String| SmsError::Gateway(format!("{}: {why}", self.path.display()));
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|e| refuse(format!("cannot open it: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| refuse(format!("cannot stat it: {e}")))?;
        // Opened without following a link: fstat sees no symbolic link.
        trust::check(&meta, Expect::file(trust::OTHERS_WRITE)).map_err(|d| {
            refuse(match d {
                Distrust::NotAFile | Distrust::Symlink => {
                    "it is not a regular file (a FIFO or device?); refusing it".into()
                }
                Distrust::Stat(e) => format!("cannot stat it: {e}"),
                Distrust::Owner { uid } => format!(
                    "it is owned by uid {uid}, not root; fix with: chown root:root {}",
                    self.path.display()
                ),
                Distrust::Mode { mode } => format!(
                    "it is writable by group or others (mode {mode:04o}); fix with: chmod 0600 {}",
                    self.path.display()
                ),
            })
        })?;
        Ok(file)
    }
}

impl SmsSender for FileSms {
    fn send(&self, phone: &str, message: &str) -> Result<(), SmsError> {
        let mut file = self.open()?;
        // The message holds the code: build the line in a buffer that is wiped.
        let mut line = Zeroizing::new(String::with_capacity(phone.len() + message.len() + 2));
        line.push_str(phone);
        line.push('\t');
        line.extend(
            message
                .chars()
                .map(|c| if matches!(c, '\n' | '\t') { ' ' } else { c }),
        );
        line.push('\n');
        file.write_all(line.as_bytes())
            .map_err(|e| SmsError::Gateway(format!("cannot write {}: {e}", self.path.display())))
    }
}

/// `backend = "command"`: runs the configured argv (no shell) with `{phone}`
/// replaced, the message on stdin, an empty environment, and a time limit.
pub struct CommandSms {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

/// The message as an unlinked, private file rather than a pipe: writing to
/// a pipe whose reader has exited raises SIGPIPE, which would kill the
/// program hosting the PAM module (sshd's auth process does not ignore it).
fn message_as_stdin(message: &str) -> Result<Stdio, SmsError> {
    use std::io::{Seek, SeekFrom};
    let mut last_error = None;
    for dir in ["/run", "/dev/shm", "/tmp"] {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir);
        match opened {
            Ok(mut file) => {
                file.write_all(message.as_bytes())
                    .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
                    .map_err(|e| SmsError::Gateway(format!("cannot stage the message: {e}")))?;
                return Ok(Stdio::from(file));
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(SmsError::Gateway(format!(
        "cannot stage the message in /run, /dev/shm or /tmp: {}",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    )))
}

impl SmsSender for CommandSms {
    fn send(&self, phone: &str, message: &str) -> Result<(), SmsError> {
        let argv: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.replace("{phone}", phone))
            .collect();
        let program = argv
            .first()
            .ok_or_else(|| SmsError::Gateway("sms.command is empty".into()))?;
        let mut child = Command::new(program)
            .args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(message_as_stdin(message)?)
            // Its own process group, so a timeout also stops what it started
            // (a hung curl must not send the text minutes later).
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SmsError::Gateway(format!("cannot run {program}: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let group = nix::unistd::Pid::from_raw(child.id() as i32);
                    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(SmsError::Gateway(format!(
                        "{program} did not finish within {} seconds and was killed",
                        self.timeout.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(SmsError::Gateway(format!("waiting for {program}: {e}"))),
            }
        };
        if status.success() {
            return Ok(());
        }
        let mut stderr = Vec::new();
        if let Some(err) = child.stderr.take() {
            use std::io::Read;
            use std::os::fd::AsRawFd;
            // Only what the gateway wrote before it exited, which is in the
            // pipe already: a child it left in the background may hold the
            // pipe open for as long as it likes, and the login must not wait.
            let nonblocking = nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK);
            if nix::fcntl::fcntl(err.as_raw_fd(), nonblocking).is_ok() {
                let _ = err.take(300).read_to_end(&mut stderr);
            }
        }
        let stderr = String::from_utf8_lossy(&stderr);
        // A gateway that echoes its input must not leak the code into logs.
        let first_line: String = stderr
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        Err(SmsError::Gateway(format!(
            "{program} failed ({status}){}{first_line}",
            if first_line.is_empty() { "" } else { ": " }
        )))
    }
}

pub const INVALID_PHONE: &str = "invalid phone number: enter a 10-digit number with no spaces or \
extra characters, or + followed by the country code and number (8 to 15 digits), e.g. +15551234567";

/// A 10-digit number, or E.164: `+` and 8 to 15 digits. Nothing else.
pub fn check_phone(phone: &str) -> Result<(), &'static str> {
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = match phone.strip_prefix('+') {
        Some(rest) => digits_only(rest) && (8..=15).contains(&rest.len()) && !rest.starts_with('0'),
        None => digits_only(phone) && phone.len() == 10,
    };
    if ok {
        Ok(())
    } else {
        Err(INVALID_PHONE)
    }
}

/// `***-***-4567`: enough for the user to recognise their phone.
pub fn mask_phone(phone: &str) -> String {
    let tail: String = phone
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("***-***-{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers() {
        for good in [
            "5551234567",
            "+15551234567",
            "+4930123456",
            "+123456789012345",
        ] {
            assert!(check_phone(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "555123456",
            "55512345678",
            "555-123-4567",
            "555 123 4567",
            "(555)1234567",
            "+1234567",
            "+1234567890123456",
            "+0123456789",
            "555123456x",
            "+",
            "++15551234567",
            "５５５１２３４５６７",
        ] {
            let e = check_phone(bad).unwrap_err();
            assert!(e.contains("phone number"), "{bad}");
        }
    }

    #[test]
    fn masking_keeps_the_last_four() {
        assert_eq!(mask_phone("5551234567"), "***-***-4567");
        assert_eq!(mask_phone("+4930123456"), "***-***-3456");
    }

    /// The argv of a gateway script: run by /bin/sh rather than exec'd
    /// itself, because another test thread forking while this one still
    /// has the file open for writing makes exec fail with "Text file busy".
    fn script(dir: &std::path::Path, name: &str, body: &str) -> Vec<String> {
        let path = dir.join(name);
        std::fs::write(&path, format!("{body}\n")).unwrap();
        vec!["/bin/sh".into(), path.to_string_lossy().into_owned()]
    }

    fn temp_dir(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("pam_mfa_sms_{tag}_"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn command_backend_passes_phone_and_message_without_env() {
        let temp = temp_dir("ok");
        let dir = temp.path();
        let out = dir.join("out");
        let prog = script(
            dir,
            "send",
            &format!("{{ echo \"to=$1\"; cat; echo; env; }} > {}", out.display()),
        );
        let sender = CommandSms {
            argv: [prog, vec!["{phone}".into()]].concat(),
            timeout: Duration::from_secs(5),
        };
        sender.send("+15551234567", "code 1234567").unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert!(got.starts_with("to=+15551234567\ncode 1234567\n"), "{got}");
        assert!(got.contains("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), "{got}");
        // Our environment (HOME, CARGO_*, a user's LD_PRELOAD...) must not leak.
        assert!(!got.contains("HOME=") && !got.contains("CARGO"), "{got}");
    }

    #[test]
    fn command_backend_failure_and_hang_are_clear_errors() {
        let temp = temp_dir("bad");
        let dir = temp.path();
        let fail = CommandSms {
            argv: script(dir, "fail", "echo 'quota exceeded' >&2; exit 3"),
            timeout: Duration::from_secs(5),
        };
        let e = fail.send("5551234567", "x").unwrap_err().to_string();
        assert!(
            e.contains("quota exceeded") && e.contains("exit status: 3"),
            "{e}"
        );
        let echo = CommandSms {
            argv: script(dir, "echo", "cat >&2; exit 1"),
            timeout: Duration::from_secs(5),
        };
        let e = echo
            .send("5551234567", "Your login code is 1234567.")
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("1234567") && e.contains("Your login code is #######"),
            "{e}"
        );
        let hang = CommandSms {
            argv: script(dir, "hang", "exec sleep 30"),
            timeout: Duration::from_secs(1),
        };
        let started = Instant::now();
        let e = hang.send("5551234567", "x").unwrap_err().to_string();
        assert!(e.contains("killed"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // A child the gateway started dies with it, before it can act.
        let late = dir.join("late");
        let straggler = CommandSms {
            argv: script(
                dir,
                "straggler",
                &format!("(sleep 2; touch {}) & wait", late.display()),
            ),
            timeout: Duration::from_secs(1),
        };
        assert!(straggler.send("5551234567", "x").is_err());
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!late.exists(), "the gateway's child outlived the timeout");
        let missing = CommandSms {
            argv: vec!["/nonexistent/send-sms".into()],
            timeout: Duration::from_secs(1),
        };
        assert!(missing
            .send("5551234567", "x")
            .unwrap_err()
            .to_string()
            .contains("cannot run"));
    }

    #[test]
    fn command_backend_that_ignores_the_message_and_exits_0_succeeds() {
        let temp = temp_dir("noread");
        let dir = temp.path();
        let done = dir.join("done");
        // Closes its stdin unread before we may have written to it.
        let prog = script(
            dir,
            "send",
            &format!("exec 0<&-; : > {}; exit 0", done.display()),
        );
        let sender = CommandSms {
            argv: prog,
            timeout: Duration::from_secs(5),
        };
        for _ in 0..20 {
            assert_eq!(sender.send("5551234567", "code 1234567"), Ok(()));
        }
        assert!(done.exists(), "the script ran");
    }

    #[test]
    fn command_backend_replaces_every_phone_placeholder() {
        let temp = temp_dir("twice");
        let dir = temp.path();
        let out = dir.join("out");
        let prog = script(
            dir,
            "send",
            &format!("printf '%s|' \"$@\" > {}", out.display()),
        );
        let sender = CommandSms {
            argv: [
                prog,
                vec![
                    "--to={phone}".into(),
                    "{phone}".into(),
                    "{phone}:{phone}".into(),
                    "{PHONE} {phone".into(),
                ],
            ]
            .concat(),
            timeout: Duration::from_secs(5),
        };
        sender.send("+4930123456", "x").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "--to=+4930123456|+4930123456|+4930123456:+4930123456|{PHONE} {phone|"
        );
    }

    #[test]
    fn command_backend_failing_while_its_child_lingers_does_not_wait_for_it() {
        let temp = temp_dir("linger");
        let dir = temp.path();
        // Fails at once, but a background child keeps its stderr open.
        let sender = CommandSms {
            argv: script(dir, "send", "sleep 10 & echo 'no credit' >&2; exit 4"),
            timeout: Duration::from_secs(2),
        };
        let started = Instant::now();
        let e = sender.send("5551234567", "x").unwrap_err().to_string();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert!(e.contains("exit status: 4"), "{e}");
        assert!(e.contains("no credit"), "{e}");
    }

    #[test]
    fn file_backend_appends_private_lines() {
        use std::os::unix::fs::PermissionsExt;
        let temp = temp_dir("file");
        let dir = temp.path();
        let path = dir.join("sms.log");
        let sender = FileSms { path: path.clone() };
        sender.send("5551234567", "one").unwrap();
        sender.send("5551234567", "two\nlines").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "5551234567\tone\n5551234567\ttwo lines\n"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn file_backend_refuses_a_fifo_a_foreign_or_loose_file_at_once() {
        use std::os::unix::fs::PermissionsExt;
        let temp = temp_dir("file-refuse");
        let dir = temp.path();
        let path = dir.join("sms.log");
        let sender = FileSms { path: path.clone() };

        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let started = Instant::now();
        let e = sender.send("5551234567", "x").unwrap_err().to_string();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(e.contains("cannot open"), "no reader: ENXIO at once: {e}");
        // With a reader the open succeeds; the file type refuses it.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let e = sender.send("5551234567", "x").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        drop(reader);
        std::fs::remove_file(&path).unwrap();

        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o622)).unwrap();
        let e = sender.send("5551234567", "x").unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        if nix::unistd::geteuid().is_root() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = sender.send("5551234567", "x").unwrap_err().to_string();
            assert!(e.contains("owned by uid 65534"), "{e}");
        }
    }

    #[test]
    fn none_backend_says_what_to_configure() {
        assert!(NoSms
            .send("5551234567", "x")
            .unwrap_err()
            .to_string()
            .contains("[sms] backend"));
    }
}
