//! A small expect-like driver: runs a program on a pseudo-terminal and
//! answers its prompts. Needed because misc_conv (pamtester) and ssh behave
//! differently without a terminal: pamtester's info lines sit in a stdio
//! buffer until exit, and ssh will not ask for a password at all. On a pty
//! the line discipline also hands over one answer per read().

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Shared {
    output: Vec<u8>,
    /// The last holder of the terminal's other side is gone.
    closed: bool,
}

pub struct Pty {
    child: Child,
    writer: File,
    state: Arc<(Mutex<Shared>, Condvar)>,
    /// Output before this offset has been matched already.
    cursor: usize,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Opens a pty pair with close-on-exec set atomically, so that children
/// spawned concurrently by other tests never hold our terminal open.
fn open_pair() -> (OwnedFd, File) {
    // SAFETY: posix_openpt returns a new descriptor or -1; on success we
    // own it exclusively and wrap it in OwnedFd at once.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    assert!(
        master >= 0,
        "posix_openpt: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `master` is a valid descriptor we just opened and own.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: plain calls on a valid pty master; `name` is a writable buffer
    // of the length we pass.
    unsafe {
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0, "unlockpt");
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r"
        );
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated path.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_str()
        .expect("pty name is UTF-8")
        .to_owned();
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    (master, slave)
}

impl Pty {
    /// Starts `cmd` with the pty as its controlling terminal and stdio.
    pub fn spawn(mut cmd: Command) -> Pty {
        let (master, slave) = open_pair();
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup pty")))
            .stdout(Stdio::from(slave.try_clone().expect("dup pty")))
            .stderr(Stdio::from(slave));
        // SAFETY: between fork and exec we only call async-signal-safe
        // functions (setsid, ioctl) on the child's own descriptors.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // ssh opens /dev/tty: the pty must be the controlling terminal.
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        // `cmd` still holds our copies of the slave side; drop them so the
        // master reports EOF once the child (and its children) are done.
        drop(cmd);
        let master = File::from(master);
        let writer = master.try_clone().expect("dup pty master");
        let state = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let reader = {
            let state = Arc::clone(&state);
            let mut master = master;
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    // EIO is how Linux says every slave descriptor is closed.
                    let n = match master.read(&mut buf) {
                        Ok(0) | Err(_) => 0,
                        Ok(n) => n,
                    };
                    let (lock, cv) = &*state;
                    let mut s = lock.lock().unwrap();
                    if n == 0 {
                        s.closed = true;
                        cv.notify_all();
                        return;
                    }
                    s.output.extend_from_slice(&buf[..n]);
                    cv.notify_all();
                }
            })
        };
        Pty {
            child,
            writer,
            state,
            cursor: 0,
            reader: Some(reader),
        }
    }

    /// The program's process id (for tests that kill it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the program has printed so far, with CR removed.
    pub fn transcript(&self) -> String {
        let s = self.state.0.lock().unwrap();
        String::from_utf8_lossy(&s.output).replace('\r', "")
    }

    /// Waits for the earliest of `patterns` after the cursor. Returns its
    /// index, or None when the program closed the terminal first.
    pub fn expect_any(&mut self, patterns: &[&str], timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        loop {
            let earliest = patterns
                .iter()
                .enumerate()
                .filter_map(|(i, p)| find(&s.output[self.cursor..], p.as_bytes()).map(|at| (at, i)))
                .min();
            if let Some((at, i)) = earliest {
                self.cursor += at + patterns[i].len();
                return Some(i);
            }
            if s.closed {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                let text = String::from_utf8_lossy(&s.output).into_owned();
                drop(s);
                let _ = self.child.kill();
                panic!("timed out after {timeout:?} waiting for one of {patterns:?}; output so far:\n{text}");
            }
            s = cv.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    /// Waits for `pattern`; panics with the transcript if the program ends first.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) {
        if self.expect_any(&[pattern], timeout).is_none() {
            panic!(
                "program ended before printing {pattern:?}; output:\n{}",
                self.transcript()
            );
        }
    }

    /// Types one line (the terminal turns it into one read() for the program).
    pub fn send_line(&mut self, text: &str) {
        self.send_bytes_line(text.as_bytes());
    }

    /// Types raw bytes and a newline. Control characters that the terminal
    /// would act on (^C, ^D, erase, ...) must be quoted with ^V by the caller.
    pub fn send_bytes_line(&mut self, bytes: &[u8]) {
        let mut line = bytes.to_vec();
        line.push(b'\n');
        // The program may already be gone (e.g. it refused early); the
        // caller asserts on the outcome, not on this write.
        let _ = self.writer.write_all(&line);
    }

    /// Types bytes as they are: ^C (0x03) here interrupts, as at a keyboard.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.writer.write_all(bytes);
    }

    /// Whether the terminal echoes what is typed (on Linux the master reads
    /// the slave's settings, also after the program has exited).
    pub fn echoes(&self) -> bool {
        let settings = nix::sys::termios::tcgetattr(&self.writer).expect("tcgetattr on pty");
        settings
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ECHO)
    }

    /// Waits for the program to exit (its output may still be draining).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "program still running after {timeout:?}; output:\n{}",
                    self.transcript()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the program to exit and for its output to drain.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, String) {
        let status = self.wait(timeout);
        // Output written just before exit is still in the pty; wait for EOF,
        // but not forever: a leftover grandchild could keep the slave open.
        let (lock, cv) = &*self.state;
        let drained = Instant::now() + Duration::from_secs(5);
        let mut s = lock.lock().unwrap();
        while !s.closed && Instant::now() < drained {
            s = cv.wait_timeout(s, Duration::from_millis(100)).unwrap().0;
        }
        let closed = s.closed;
        drop(s);
        if closed {
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
        }
        (status, self.transcript())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Exit code, or 128+signal as a shell reports it.
pub fn code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
