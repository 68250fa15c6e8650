//! A syslog socket of our own, for tests that read what the module or the
//! daemon logged (root only: it needs a private mount namespace).

use super::run_under;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A syslog socket of our own. Commands wrapped by [`Syslog::wrap`] run in a
/// private mount namespace (root only) where the paths the module sends
/// syslog to lead here, so a test reads exactly what the module logged.
pub struct Syslog {
    socket: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Syslog {
    pub fn new(dir: &Path) -> Syslog {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let socket = dir.join(format!("log{}.sock", COUNT.fetch_add(1, Ordering::SeqCst)));
        let sock = UnixDatagram::bind(&socket).expect("bind syslog socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (lines, stop) = (Arc::clone(&lines), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                        lines.lock().unwrap().push(line);
                    }
                }
            })
        };
        Syslog {
            socket,
            lines,
            stop,
            reader: Some(reader),
        }
    }

    /// Runs `cmd` where /dev/log (or, without one, /run/syslog) is our socket.
    pub fn wrap(&self, cmd: Command) -> Command {
        const SCRIPT: &str = r#"set -e
sock=$1; shift
if [ -e /dev/log ]; then
    mount --bind "$sock" /dev/log
else
    mount -t tmpfs -o size=64k,mode=0755 pam_mfa_test /run
    ln -s "$sock" /run/syslog
fi
exec "$@""#;
        let mut wrapper = Command::new("unshare");
        wrapper
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                SCRIPT,
                "sh",
            ])
            .arg(&self.socket);
        run_under(wrapper, &cmd)
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (briefly: datagrams are in our buffer once the sender is done)
    /// for a line holding every one of `words`; returns it or panics with
    /// everything logged.
    pub fn expect(&self, words: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = self
                .lines()
                .into_iter()
                .find(|l| words.iter().all(|w| l.contains(w)))
            {
                return l;
            }
            if Instant::now() > deadline {
                panic!(
                    "no syslog line with {words:?}; logged:\n{}",
                    self.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn clear(&self) {
        self.lines.lock().unwrap().clear();
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
