//! A database the daemon cannot use — on a read-only or full filesystem,
//! deleted or replaced mid-login, owned by someone else, corrupt — gives the
//! configured `on_unavailable` behaviour and a log line saying why, and
//! nothing half-writes it. The logins run through the real module; the
//! decisions and their log lines are the daemon's.

use crate::common::*;
use crate::support::*;
use std::path::Path;

/// Logins whose daemon's syslog lines are captured when we are root (a
/// private mount namespace needs root): the world's daemon is restarted
/// where syslog leads to a socket of ours. Without root only the outcome
/// is checked.
struct Logged<'a> {
    h: &'a Harness,
    syslog: Option<Syslog>,
}

impl<'a> Logged<'a> {
    fn new(h: &'a Harness) -> Logged<'a> {
        let syslog = is_root().then(|| Syslog::new(h.dir.path()));
        if let Some(s) = &syslog {
            h.start_daemon_under(|cmd| s.wrap(cmd));
        }
        Logged { h, syslog }
    }

    fn start(&self, user: &str, ops: &[&str]) -> Session {
        self.h.start_pamtester(SERVICE, user, ops)
    }

    /// A full login (authenticate, acct_mgmt) answering prompts in order.
    fn login(&self, user: &str, answers: &[&str]) -> Login {
        let login = self
            .start(user, &["authenticate", "acct_mgmt"])
            .answer_in_order(answers);
        assert_no_signal(&login, "login with a broken database");
        login
    }

    /// The daemon logged a line with all of `words` (checked only as root).
    fn expect_log(&self, words: &[&str]) {
        if let Some(s) = &self.syslog {
            let line = s.expect(words);
            let daemon = format!(" mfa[{}]:", self.h.daemon_pid());
            assert!(line.contains(&daemon), "not the daemon's line: {line}");
            eprintln!("logged: {line}");
        }
    }

    fn clear_log(&self) {
        if let Some(s) = &self.syslog {
            s.clear();
        }
    }
}

/// Where a login first meets the broken database.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// It cannot even be read: the lock check before the password fails.
    Preauth,
    /// It reads but cannot be written: spending or counting the code fails.
    Code,
}

/// Whether `on_unavailable = "allow"` covers the failure: only a store
/// that is missing or refused; one that is there but failing denies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allow {
    Applies,
    DeniesAnyway,
}

/// The database cannot be used for `why` (words of the log line):
/// `on_unavailable = "deny"` refuses even a valid code; "allow" lets the
/// password decide where it applies, and denies as well where it does not.
/// Leaves the config at "deny".
fn assert_unavailable_behaviour(h: &Harness, secret: &str, stage: Stage, why: &[&str]) {
    assert_unavailable_behaviour_with(h, secret, stage, why, Allow::Applies)
}

fn assert_unavailable_behaviour_with(
    h: &Harness,
    secret: &str,
    stage: Stage,
    why: &[&str],
    allow: Allow,
) {
    let l = Logged::new(h);
    let code = totp(secret, 1);
    let (prompts, mode): (&[&str], _) = match stage {
        Stage::Preauth => (&[], "mode=preauth"),
        Stage::Code => (&[PASSWORD_PROMPT, CODE_PROMPT], "mode=auth"),
    };

    h.write_config("");
    let denied = l.login("alice", &[password("alice"), &code]);
    denied.assert_prompts(prompts);
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(!denied.authenticated(), "{denied:?}");
    let mut words = vec!["MFA unavailable", "denying", "user=alice", mode];
    words.extend_from_slice(why);
    l.expect_log(&words);
    // An SSH key login goes through the account phase only: refused when
    // the lock state cannot be read, decided by it when it can.
    let mut account = l.start("alice", &["acct_mgmt"]);
    assert_eq!(account.next_prompt(), None);
    let account = account.finish();
    if stage == Stage::Preauth {
        assert_eq!(account.code, 1, "{account:?}");
        assert!(!account.account_ok(), "{account:?}");
        l.expect_log(&["MFA unavailable", "denying", "mode=account"]);
    } else {
        assert!(account.account_ok() && account.code == 0, "{account:?}");
    }

    l.clear_log();
    h.write_config("on_unavailable = \"allow\"\n");
    if allow == Allow::DeniesAnyway {
        let denied = l.login("alice", &[password("alice"), &code]);
        denied.assert_prompts(prompts);
        assert_eq!(denied.code, 1, "denied in allow mode too: {denied:?}");
        assert!(!denied.authenticated(), "{denied:?}");
        let mut words = vec!["MFA unavailable", "denying", "user=alice", mode];
        words.extend_from_slice(why);
        l.expect_log(&words);
        h.write_config("");
        return;
    }
    let allowed = l.login("alice", &[password("alice"), &code]);
    allowed.assert_prompts(match stage {
        Stage::Preauth => &[PASSWORD_PROMPT],
        Stage::Code => &[PASSWORD_PROMPT, CODE_PROMPT],
    });
    assert!(allowed.succeeded(), "the password decides: {allowed:?}");
    let mut words = vec!["MFA unavailable", "allowing", "user=alice"];
    words.extend_from_slice(why);
    l.expect_log(&words);
    let wrong = l.login("alice", &["not-the-password"]);
    wrong.assert_prompts(&[PASSWORD_PROMPT]);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(!wrong.authenticated(), "{wrong:?}");
    h.write_config("");
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The database file and its WAL, where recent commits live between
/// checkpoints: "nothing was written" must look at both.
fn database_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = file_bytes(db);
    match std::fs::read(format!("{}-wal", db.display())) {
        Ok(wal) => bytes.extend(wal),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}"),
    }
    bytes
}

/// A harness whose database directory is a tmpfs of `size`, with alice
/// enrolled and two failures counted (so "counts as before" means something).
fn on_tmpfs(size: &str) -> (Harness, Tmpfs, String) {
    let h = Harness::without_database("");
    let fs = Tmpfs::mount(h.db.parent().unwrap(), size);
    h.create_database();
    let secret = h.enroll_totp("alice", "phone");
    for _ in 0..2 {
        let l = h.login("alice", &wrong_code(&secret));
        assert_eq!(l.code, 1, "{l:?}");
    }
    assert_eq!(h.lock_state("alice"), (2, false));
    (h, fs, secret)
}

#[test]
fn a_read_only_filesystem_gives_the_configured_behaviour() {
    if !root_or_skip("a_read_only_filesystem_gives_the_configured_behaviour") {
        return;
    }
    let (h, fs, secret) = on_tmpfs("1m");
    let before = database_bytes(&h.db);
    // The daemon keeps its stores open for writing, and the kernel refuses
    // to make such a filesystem read-only ("mount point is busy"): it goes
    // read-only with the daemon stopped, which then starts on it.
    h.stop_daemon();
    fs.remount("ro");
    // Present but unwritable: a fault, never a reason to allow.
    assert_unavailable_behaviour_with(
        &h,
        &secret,
        Stage::Preauth,
        &["read-only filesystem"],
        Allow::DeniesAnyway,
    );
    assert_eq!(database_bytes(&h.db), before);

    fs.remount("rw");
    // The daemon that logged ran in a mount namespace of its own, whose
    // copy of the mount stays read-only; one in ours sees the change.
    h.start_daemon();
    assert_eq!(integrity_check(&h.db), "ok");
    assert_eq!(h.lock_state("alice"), (2, false));
    let ok = h.login("alice", &totp(&secret, 1));
    assert!(ok.succeeded(), "{ok:?}");
    drop(fs);
}

/// Fills the filesystem: returns the filler file, whose removal frees it.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = [0u8; 4096];
    loop {
        if let Err(e) = f.write_all(&block).and_then(|_| f.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            return filler;
        }
    }
}

#[test]
fn a_full_filesystem_denies_without_corrupting_or_losing_counts() {
    if !root_or_skip("a_full_filesystem_denies_without_corrupting_or_losing_counts") {
        return;
    }
    let (h, fs, secret) = on_tmpfs("256k");
    let dir = h.db.parent().unwrap();
    let before = h.database_dump();

    // Full with the database closed.
    let filler = fill(dir);
    // Reads still work; the first write fails inside SQLite, whose message
    // does not name the file.
    // A caller may fill a shared filesystem: that must never open logins.
    assert_unavailable_behaviour_with(
        &h,
        &secret,
        Stage::Code,
        &["disk is full"],
        Allow::DeniesAnyway,
    );
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(integrity_check(&h.db), "ok");
    assert_eq!(h.database_dump(), before, "nothing was written");

    // Full while another process holds the database open: the WAL and its
    // index exist, so the module gets as far as writing the failure, and
    // the write itself hits the full disk.
    let holder = rusqlite::Connection::open(&h.db).unwrap();
    let n: i64 = holder
        .query_row("SELECT count(*) FROM devices", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    let filler = fill(dir);
    let l = Logged::new(&h);
    let wrong = l.login("alice", &[password("alice"), &wrong_code(&secret)]);
    wrong.assert_prompts(&[PASSWORD_PROMPT, CODE_PROMPT]);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(!wrong.authenticated(), "{wrong:?}");
    l.expect_log(&["MFA unavailable", "denying", "mode=auth"]);
    // Issue 13, finding 14: the failure was rolled back, so no line may
    // claim it was counted (syslog is written only after a commit).
    if let Some(s) = &l.syslog {
        let claimed: Vec<String> = s
            .lines()
            .into_iter()
            .filter(|line| line.contains("event=failure") || line.contains("event=locked"))
            .collect();
        assert!(
            claimed.is_empty(),
            "a rolled-back failure was logged: {claimed:?}"
        );
    }
    let valid = l.login("alice", &[password("alice"), &totp(&secret, 1)]);
    assert_eq!(
        valid.code, 1,
        "a code that cannot be spent is refused: {valid:?}"
    );
    drop(holder);
    std::fs::remove_file(&filler).unwrap();

    assert_eq!(integrity_check(&h.db), "ok");
    assert_eq!(
        h.database_dump(),
        before,
        "the refused logins left no trace"
    );
    assert_eq!(h.lock_state("alice"), (2, false));
    let ok = h.login("alice", &totp(&secret, 1));
    assert!(ok.succeeded(), "{ok:?}");
    assert_eq!(h.lock_state("alice"), (0, false));
    drop(fs);
}

#[test]
fn a_database_deleted_or_replaced_mid_login_is_unavailable() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let backup = h.dir.path().join("backup.sqlite3");
    std::fs::copy(&h.db, &backup).unwrap();
    let l = Logged::new(&h);

    // Replaced (a backup restored) while a login waits at the code prompt:
    // its answer must not be written into the file that is gone.
    let mut parked = l.start("alice", &["authenticate", "acct_mgmt"]);
    assert_eq!(parked.next_prompt(), Some(PASSWORD_PROMPT));
    parked.answer(password("alice"));
    assert_eq!(parked.next_prompt(), Some(CODE_PROMPT));
    let staged = h.dir.path().join("db").join("restore.tmp");
    std::fs::copy(&backup, &staged).unwrap();
    std::fs::rename(&staged, &h.db).unwrap();
    parked.answer(&wrong_code(&secret));
    let replaced = parked.finish();
    assert_no_signal(&replaced, "database replaced");
    assert_eq!(replaced.code, 1, "{replaced:?}");
    l.expect_log(&["MFA unavailable", "denying", "replaced"]);
    assert_eq!(integrity_check(&h.db), "ok");
    assert_eq!(
        h.lock_state("alice"),
        (0, false),
        "the restored file is as it was"
    );

    // Deleted the same way.
    let mut parked = l.start("alice", &["authenticate", "acct_mgmt"]);
    assert_eq!(parked.next_prompt(), Some(PASSWORD_PROMPT));
    parked.answer(password("alice"));
    assert_eq!(parked.next_prompt(), Some(CODE_PROMPT));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", h.db.display()));
    }
    parked.answer(&totp(&secret, 1));
    let deleted = parked.finish();
    assert_no_signal(&deleted, "database deleted");
    assert_eq!(deleted.code, 1, "{deleted:?}");
    assert!(!deleted.authenticated(), "{deleted:?}");
    l.expect_log(&["MFA unavailable", "denying", "removed"]);

    // Logins that start now find no database, and never create one.
    assert_unavailable_behaviour(&h, &secret, Stage::Preauth, &["does not exist"]);
    assert!(!h.db.exists(), "the module must not create the database");
}

#[test]
fn a_database_owned_by_someone_else_is_unavailable() {
    if !root_or_skip("a_database_owned_by_someone_else_is_unavailable") {
        return;
    }
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    let nobody = nix::unistd::Uid::from_raw(65534);
    let before = database_bytes(&h.db);

    nix::unistd::chown(&h.db, Some(nobody), None).unwrap();
    assert_unavailable_behaviour(
        &h,
        &secret,
        Stage::Preauth,
        &["owned by uid 65534", "chown root:root"],
    );
    nix::unistd::chown(&h.db, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();

    let dir = h.db.parent().unwrap();
    nix::unistd::chown(dir, Some(nobody), None).unwrap();
    assert_unavailable_behaviour(
        &h,
        &secret,
        Stage::Preauth,
        &["directory is owned by uid 65534"],
    );
    nix::unistd::chown(dir, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();

    assert_eq!(database_bytes(&h.db), before, "nothing was written");
    let ok = h.login("alice", &totp(&secret, 1));
    assert!(ok.succeeded(), "{ok:?}");
}

#[test]
fn a_corrupt_database_is_unavailable_and_left_as_it_is() {
    let h = Harness::new();
    let secret = h.enroll_totp("alice", "phone");
    checkpoint(&h.db);
    let good = file_bytes(&h.db);
    assert!(good.len() >= 4 * 4096, "{} bytes", good.len());

    // The header: no longer an SQLite file at all.
    let mut bad = good.clone();
    bad[..100].copy_from_slice(&[0x5a; 100]);
    write_db(&h.db, &bad);
    assert_unavailable_behaviour(
        &h,
        &secret,
        Stage::Preauth,
        &["corrupt", "restore it from a backup"],
    );
    assert_eq!(file_bytes(&h.db), bad, "the module wrote to a corrupt file");

    // A valid header over garbage pages: found only when the pages are read.
    let mut bad = good.clone();
    for b in &mut bad[4096..] {
        *b = 0xa5;
    }
    write_db(&h.db, &bad);
    assert_unavailable_behaviour(&h, &secret, Stage::Preauth, &["corrupt"]);
    assert_eq!(file_bytes(&h.db), bad, "the module wrote to a corrupt file");

    write_db(&h.db, &good);
    assert_eq!(integrity_check(&h.db), "ok");
    let ok = h.login("alice", &totp(&secret, 1));
    assert!(ok.succeeded(), "{ok:?}");
}

/// Puts `bytes` in place as the whole database (no WAL beside it).
fn write_db(db: &Path, bytes: &[u8]) {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::write(db, bytes).unwrap();
}
