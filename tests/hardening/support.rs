//! What the hardening tests share: a seeded random source, tmpfs mounts,
//! a private syslog, parallel logins parked at a prompt, and reading the
//! database behind the module's back.

pub use crate::common::syslog::Syslog;
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Barrier, Mutex};
use std::time::Duration;

/// splitmix64: deterministic, so a failing run can be repeated with its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from PAM_MFA_TEST_SEED, else from the clock; says which.
    pub fn from_env(what: &str) -> Rng {
        let seed = std::env::var("PAM_MFA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{what}: seed {seed} (repeat with PAM_MFA_TEST_SEED={seed})");
        Rng(seed)
    }

    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0; the bias is negligible for small n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Tests that need root (mounts, chown). Under CI (root) they must run, so
/// a non-root CI fails rather than passing without them.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root, and CI runs as root: run CI as root"
    );
    eprintln!("SKIPPED {test}: needs root (mounts a tmpfs, changes owners)");
    false
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs mounted on a directory, unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "256k") on `at`, made 0700 if missing.
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        if !at.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(at).unwrap();
        }
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("pam_mfa_test")
            .arg(at));
        Tmpfs(at.to_owned())
    }

    pub fn remount(&self, options: &str) {
        run(Command::new("mount")
            .arg("-o")
            .arg(format!("remount,{options}"))
            .arg(&self.0));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a leftover process holding a file must not leave it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Starts `n` logins of `user` and brings each to the code prompt (password
/// given), one at a time as the harness requires.
pub fn park_at_code_prompt(h: &Harness, user: &str, n: usize) -> Vec<Session> {
    (0..n)
        .map(|_| {
            let mut s = h.start_pamtester(SERVICE, user, &["authenticate", "acct_mgmt"]);
            assert_eq!(s.next_prompt(), Some(PASSWORD_PROMPT));
            s.answer(password(user));
            assert_eq!(s.next_prompt(), Some(CODE_PROMPT));
            s
        })
        .collect()
}

/// Gives every parked session its answer at the same moment and waits for
/// all of them.
pub fn answer_all_at_once(sessions: Vec<(Session, String)>) -> Vec<Login> {
    let go = Barrier::new(sessions.len());
    std::thread::scope(|scope| {
        let workers: Vec<_> = sessions
            .into_iter()
            .map(|(mut s, answer)| {
                let go = &go;
                scope.spawn(move || {
                    go.wait();
                    s.answer(&answer);
                    s.finish()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// Moves every commit from the WAL into the database file and empties the
/// WAL, as closing a store does once the WAL has grown.
pub fn checkpoint(db: &Path) {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

/// `PRAGMA integrity_check` by a connection of our own.
pub fn integrity_check(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).expect("open database");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// (failures, locked) read straight from the database, for loops where a
/// process per read would cost too much.
pub fn account_row(db: &Path, user: &str) -> (u64, bool) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open database");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(
        "SELECT failures, locked_at IS NOT NULL FROM accounts WHERE user = ?1",
        [user],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
    )
    .or_else(|e| match e {
        rusqlite::Error::QueryReturnedNoRows => Ok((0, false)),
        e => Err(e),
    })
    .unwrap_or_else(|e| panic!("read account {user}: {e}"))
}

/// The exit of a finished login, as a shell shows it: >= 128 is a signal.
pub fn assert_no_signal(login: &Login, what: &str) {
    assert!(
        login.code < 128,
        "{what}: pamtester died of signal {}:\n{}",
        login.code - 128,
        login.transcript
    );
}

/// Tests that keep dozens of pamtesters alive at once take turns: each
/// pamtester holds one of pam_wrapper's 62 /tmp/pam.<letter> directories.
pub fn many_logins_at_once() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A pamtester killed with SIGKILL leaves its /tmp/pam.<letter> behind, and
/// pam_wrapper reclaims such leftovers only lazily: enough of them and the
/// next start finds no free letter. Removes the ones of these (dead,
/// reaped) processes.
pub fn remove_pam_wrapper_dirs_of(pids: &[u32]) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir("/tmp").unwrap().flatten() {
        let path = entry.path();
        let is_wrapper_dir = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() == 5 && n.starts_with("pam."));
        if !is_wrapper_dir {
            continue;
        }
        let owner = std::fs::read_to_string(path.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        if owner.is_some_and(|p| pids.contains(&p)) && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Builds a preloadable shim from C `source` into `dir`/`name`.so (cc is
/// cargo's linker, so it is there); built once per directory.
pub fn build_preload_shim(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let lib = dir.join(format!("{name}.so"));
    if lib.exists() {
        return lib;
    }
    std::fs::write(&src, source).unwrap();
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}
