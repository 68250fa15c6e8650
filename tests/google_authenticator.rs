//! Migration from pam_google_authenticator, measured against the real
//! thing: files written by the `google-authenticator` command (Debian's
//! libpam-google-authenticator) for each set of its options, logins through
//! the real pam_google_authenticator.so under pam_wrapper (which rewrites
//! the file as it does on a host), then `mfa admin import-google-authenticator`
//! and the same codes tried on pam_mfa.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A world with pam_mfa's usual stack (service `mfa-test`) and services
/// running pam_google_authenticator on files in `dir`, one per user.
struct Ga {
    h: Harness,
    dir: PathBuf,
}

/// The service whose module never adjusts a skew (a refused code leaves
/// the file as it was), the one that learns skews as by default, and one
/// with a grace period (a second login from the same host within it is let
/// through without a code, so only for the test of what it writes).
const GA_STRICT: &str = "ga-noskewadj";
const GA_LEARNING: &str = "ga";
const GA_GRACE: &str = "ga-grace";

impl Ga {
    /// A world whose NSS and password module know `users` (uids from 3000).
    fn new(users: &[&str]) -> Ga {
        let h = Harness::new();
        let dir = h.dir.path().join("ga");
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        // The module opens the file as `user=` (a uid it can become) and
        // wants it owned by that uid: whoever runs the tests.
        let euid = nix::unistd::geteuid().as_raw();
        let owner = if euid == 0 {
            "root".to_owned()
        } else {
            h.add_user("gaowner", euid, "unused");
            "gaowner".to_owned()
        };
        let module = format!("{}/pam_google_authenticator.so", security_dir());
        let permit = format!("{}/pam_permit.so", security_dir());
        for (service, extra) in [
            (GA_STRICT, "noskewadj"),
            (GA_LEARNING, ""),
            (GA_GRACE, "noskewadj grace_period=86400"),
        ] {
            h.write_service(
                service,
                &format!(
                    "auth required {module} secret={}/${{USER}} user={owner} {extra}\n\
                     account required {permit}\n",
                    dir.display()
                ),
            );
        }
        for (i, name) in users.iter().enumerate() {
            h.add_user(name, 3000 + i as u32, &format!("{name}-pw"));
        }
        // nss_wrapper in the running daemon may not see a passwd file
        // changed within the second it last read it: start it afresh.
        h.start_daemon();
        Ga { h, dir }
    }

    fn file(&self, user: &str) -> PathBuf {
        self.dir.join(user)
    }

    fn text(&self, user: &str) -> String {
        std::fs::read_to_string(self.file(user)).unwrap()
    }

    fn secret(&self, user: &str) -> String {
        self.text(user).lines().next().unwrap().to_owned()
    }

    /// `google-authenticator OPTIONS` writing `user`'s file, as the user
    /// would run it (without questions: -f -q -C -Q NONE).
    fn write_with_command(&self, user: &str, options: &[&str]) -> std::process::Output {
        let _ = std::fs::remove_file(self.file(user));
        Command::new("google-authenticator")
            .args(["-f", "-q", "-C", "-Q", "NONE", "-s"])
            .arg(self.file(user))
            .args(options)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run google-authenticator (apt-get install libpam-google-authenticator)")
    }

    fn command_file(&self, user: &str, options: &[&str]) -> String {
        let out = self.write_with_command(user, options);
        assert!(
            out.status.success(),
            "google-authenticator {options:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.text(user)
    }

    /// A login through pam_google_authenticator, from `rhost`.
    fn ga_login(&self, service: &str, user: &str, code: &str) -> Login {
        let base = self
            .h
            .pamtester_command(service, user, &["authenticate", "acct_mgmt"]);
        let mut cmd = Command::new("pamtester");
        cmd.args(["-v", "-I", "rhost=192.0.2.7", service, user])
            .args(["authenticate", "acct_mgmt"]);
        for (k, v) in base.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        let mut session = start_session(cmd);
        let mut answered = false;
        while let Some(prompt) = session.next_prompt() {
            assert_eq!(prompt, CODE_PROMPT, "{}", session.pty.transcript());
            assert!(!answered, "asked twice: {}", session.pty.transcript());
            session.answer(code);
            answered = true;
        }
        session.finish()
    }

    /// A login through pam_mfa: the password, then `code`.
    fn mfa_login(&self, user: &str, code: &str) -> Login {
        self.h
            .login_with(SERVICE, user, vec![text(format!("{user}-pw")), text(code)])
    }

    fn import(&self, user: &str) -> Value {
        let file = self.file(user).display().to_string();
        self.h
            .mfa_json(None, &["admin", "import-google-authenticator", user, &file])
    }
}

/// The code of one step (an HOTP counter), by oathtool.
fn code_at(secret: &str, step: i64) -> String {
    let out = Command::new("oathtool")
        .args(["--hotp", "-b", "-c", &step.to_string(), secret])
        .output()
        .expect("run oathtool");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The host's step now, once at least `margin` seconds of it are left
/// (waiting for the next step otherwise), so what follows runs within it.
fn step_with_margin(period: i64, margin: i64) -> i64 {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let secs = now.as_secs() as i64;
        if period - secs % period >= margin {
            return secs / period;
        }
        let next = ((secs / period + 1) * period) as f64;
        let wait = next - now.as_secs_f64() + 0.05;
        std::thread::sleep(Duration::from_secs_f64(wait.max(0.0)));
    }
}

fn step_now(period: i64) -> i64 {
    now() / period
}

fn window_size_of(file: &str) -> u32 {
    file.lines()
        .find_map(|l| l.strip_prefix("\" WINDOW_SIZE "))
        .map_or(3, |w| w.trim().parse().unwrap())
}

fn notes(v: &Value) -> Vec<String> {
    v["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes in {v}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// Every option set of the command that makes a time-based file: the
/// device gets the module's window for the file (−(W−1)/2 … W/2), its step
/// size and scratch codes, and the import says what it does not carry over.
#[test]
fn files_written_by_the_command_import_with_their_window_and_notes() {
    let g = Ga::new(&["set0", "set1", "set2", "set3", "set4", "texty"]);
    struct Set {
        options: &'static [&'static str],
        step: i64,
        reuse_note: bool,
        rate_note: bool,
        scratch: u64,
    }
    let sets = [
        // The command's defaults answered "yes" throughout.
        Set {
            options: &["-t", "-d", "-r", "3", "-R", "30", "-w", "3"],
            step: 30,
            reuse_note: false,
            rate_note: true,
            scratch: 5,
        },
        Set {
            options: &["-t", "-D", "-u", "-w", "17"],
            step: 30,
            reuse_note: true,
            rate_note: false,
            scratch: 5,
        },
        Set {
            options: &["-t", "-d", "-u", "-w", "4", "-e", "0"],
            step: 30,
            reuse_note: false,
            rate_note: false,
            scratch: 0,
        },
        Set {
            options: &["-t", "-d", "-u", "-w", "1", "-S", "10", "-e", "2"],
            step: 10,
            reuse_note: false,
            rate_note: false,
            scratch: 2,
        },
        Set {
            options: &["-t", "-D", "-u", "-W"],
            step: 30,
            reuse_note: true,
            rate_note: false,
            scratch: 5,
        },
    ];
    for (i, set) in sets.iter().enumerate() {
        let user = format!("set{i}");
        let file = g.command_file(&user, set.options);
        let size = window_size_of(&file);
        let v = g.import(&user);
        let what = format!("{:?}: {file}\n{v}", set.options);
        assert_eq!(v["step"], set.step, "{what}");
        assert_eq!(v["window"], (size - 1) / 2, "{what}");
        assert_eq!(v["window_ahead"], size / 2, "{what}");
        assert_eq!(v["clock_offset"], 0, "{what}");
        assert_eq!(v["last_used_step"], Value::Null, "{what}");
        assert_eq!(v["bypass_codes_imported"], set.scratch, "{what}");
        let notes = notes(&v);
        let has = |needle: &str| notes.iter().any(|n| n.contains(needle));
        assert_eq!(has("no DISALLOW_REUSE"), set.reuse_note, "{what}");
        assert_eq!(
            has("RATE_LIMIT (3 logins in 30 seconds)"),
            set.rate_note,
            "{what}"
        );
        assert_eq!(
            notes.len(),
            set.reuse_note as usize + set.rate_note as usize,
            "{what}"
        );

        // A current code and a scratch code log in through pam_mfa.
        let secret = g.secret(&user);
        let step = step_with_margin(set.step, 3);
        let login = g.mfa_login(&user, &code_at(&secret, step));
        assert!(login.succeeded(), "{what}\n{login:?}");
        if let Some(scratch) = file.lines().find(|l| l.len() == 8) {
            let login = g.mfa_login(&user, scratch);
            assert!(login.succeeded(), "{what}\n{login:?}");
        }
    }

    // In text, each note is one line.
    g.command_file("texty", &["-t", "-D", "-r", "3", "-R", "30", "-w", "3"]);
    let file = g.file("texty").display().to_string();
    let out = g.h.mfa(
        None,
        &["admin", "import-google-authenticator", "texty", &file],
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("codes from 1 step before to 1 step after now"),
        "{stdout}"
    );
    let note_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("Note: ")).collect();
    assert_eq!(note_lines.len(), 2, "{stdout}");
    assert!(note_lines[0].contains("accepts each code once"), "{stdout}");
    assert!(
        note_lines[1].contains("pam_mfa locks the account after 6 failed attempts in a row")
            && note_lines[1].contains("until an administrator unlocks it"),
        "{stdout}"
    );
}

/// HOTP stays refused, clearly, and nothing is written.
#[test]
fn counter_based_files_from_the_command_are_refused() {
    let g = Ga::new(&["hotp"]);
    g.command_file("hotp", &["-c", "-u", "-w", "3"]);
    let before = g.h.database_dump();
    let file = g.file("hotp").display().to_string();
    let out = g.h.mfa(
        None,
        &["admin", "import-google-authenticator", "hotp", &file],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HOTP (counter-based)"), "{stderr}");
    assert!(stderr.contains("mfa device add totp"), "{stderr}");
    assert_eq!(g.h.database_dump(), before);
}

/// A name the system does not know is refused as `device add` refuses it.
#[test]
fn an_unknown_user_is_refused_like_device_add() {
    let g = Ga::new(&["real"]);
    g.command_file("real", &["-t", "-d", "-u", "-w", "3"]);
    let file = g.file("real").display().to_string();
    let before = g.h.database_dump();
    let out = g.h.mfa(
        None,
        &["admin", "import-google-authenticator", "reall", &file],
    );
    let add =
        g.h.mfa(Some("reall"), &["device", "add", "totp", "--no-verify"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert_eq!(add.status.code(), Some(6), "{add:?}");
    assert_eq!(out.stderr, add.stderr);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("there is no user reall"),
        "{out:?}"
    );
    assert_eq!(g.h.database_dump(), before);
}

/// The window, step for step: for each step from one before the module's
/// window to one after, pam_google_authenticator accepts a code exactly
/// when pam_mfa accepts it after the import. `offsets` are the steps tried
/// (ascending: both modules refuse a step older than one used).
fn same_window_as_the_module(g: &Ga, user: &str, offsets: &[i64]) {
    let file = g.text(user);
    let size = i64::from(window_size_of(&file));
    let (lowest, highest) = (-((size - 1) / 2), size / 2);
    let secret = g.secret(user);
    let imported = g.import(user);
    assert_eq!(imported["clock_offset"], 0);
    for &i in offsets {
        loop {
            let step = step_with_margin(30, 6);
            let code = code_at(&secret, step + i);
            let ga = g.ga_login(GA_STRICT, user, &code);
            let mfa = g.mfa_login(user, &code);
            if step_now(30) != step {
                continue; // the step ended in between: again, later steps only
            }
            let inside = (lowest..=highest).contains(&i);
            assert_eq!(
                ga.authenticated(),
                inside,
                "pam_google_authenticator, WINDOW_SIZE {size}, step {i}: {ga:?}"
            );
            assert_eq!(
                mfa.authenticated(),
                inside,
                "pam_mfa, WINDOW_SIZE {size}, step {i}: {mfa:?}"
            );
            break;
        }
    }
}

#[test]
fn the_modules_window_is_kept_step_for_step() {
    let g = Ga::new(&["w1", "w4", "w17", "w100"]);
    // Odd and even sizes, as the command writes them, every step around.
    for size in [1u32, 4] {
        let user = format!("w{size}");
        g.command_file(&user, &["-t", "-d", "-u", "-w", &size.to_string()]);
        let (lowest, highest) = (-((i64::from(size) - 1) / 2), i64::from(size) / 2);
        let all: Vec<i64> = (lowest - 1..=highest + 1).collect();
        same_window_as_the_module(&g, &user, &all);
    }
    // The command's largest, and the module's largest (1.0x's command stops
    // at 21: the line edited as an administrator would), at the edges.
    for size in [17u32, 100] {
        let user = format!("w{size}");
        let file = g.command_file(&user, &["-t", "-d", "-u", "-w", "17"]);
        if size != 17 {
            let edited = file.replace("\" WINDOW_SIZE 17\n", &format!("\" WINDOW_SIZE {size}\n"));
            assert_ne!(edited, file);
            write_file(&g.file(&user), &edited, 0o400);
        }
        let (lowest, highest) = (-((i64::from(size) - 1) / 2), i64::from(size) / 2);
        same_window_as_the_module(
            &g,
            &user,
            &[lowest - 1, lowest, 0, highest - 1, highest, highest + 1],
        );
    }
}

/// The file as pam_google_authenticator leaves it after a login: the step
/// it accepted on the DISALLOW_REUSE line (and a LAST0 line for its
/// grace_period). The code just used there must not work once more here.
#[test]
fn a_file_the_module_rewrote_after_a_login_refuses_the_code_used_there() {
    let g = Ga::new(&["moved"]);
    g.command_file("moved", &["-t", "-d", "-u", "-w", "3"]);
    let secret = g.secret("moved");
    let step = step_with_margin(30, 8);
    let code = code_at(&secret, step);
    let ga = g.ga_login(GA_GRACE, "moved", &code);
    assert!(ga.succeeded(), "{ga:?}");
    let file = g.text("moved");
    assert!(
        file.contains(&format!("\" DISALLOW_REUSE {step}\n")),
        "the module did not record the step: {file}"
    );
    assert!(file.contains("\" LAST0 192.0.2.7 "), "{file}");

    let v = g.import("moved");
    assert_eq!(v["last_used_step"], step, "{v}");
    let notes = notes(&v);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("LAST0..LAST9"), "{notes:?}");
    let out = String::from_utf8_lossy(&g.h.mfa(Some("moved"), &["audit", "--limit", "1"]).stdout)
        .into_owned();
    assert!(out.contains(&format!("last_used_step={step}")), "{out}");

    let replay = g.mfa_login("moved", &code);
    assert!(
        step_now(30) == step,
        "too slow: the step ended before the replay was tried"
    );
    assert!(
        !replay.authenticated(),
        "the code used with GA worked again: {replay:?}"
    );
    let next = g.mfa_login("moved", &code_at(&secret, step + 1));
    assert!(next.succeeded(), "{next:?}");
}

/// A phone whose clock runs fast: pam_google_authenticator learns its skew
/// from three codes typed at consecutive steps (the first two refused) and
/// writes TIME_SKEW. The import keeps it as the device's clock offset, used
/// at every login: the phone's codes work, the host's own time's do not.
/// (Steps of 5 seconds, so that three steps pass quickly.)
#[test]
fn a_skew_the_module_learnt_becomes_the_devices_clock_offset() {
    const PERIOD: i64 = 5;
    const SKEW: i64 = 7;
    let g = Ga::new(&["fast", "halfway"]);
    g.command_file("fast", &["-t", "-d", "-u", "-w", "3", "-S", "5"]);
    let secret = g.secret("fast");

    let mut last = 0;
    for attempt in 0..3 {
        // One step after another, as the module wants them.
        let step = loop {
            let s = step_with_margin(PERIOD, 3);
            if s > last {
                break s;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        last = step;
        let login = g.ga_login(GA_LEARNING, "fast", &code_at(&secret, step + SKEW));
        assert!(step_now(PERIOD) - step <= 1, "too slow for 5-second steps");
        assert_eq!(
            login.authenticated(),
            attempt == 2,
            "attempt {attempt}: {login:?}"
        );
        if attempt == 0 {
            // Part way: the module's adjustment is not a skew yet.
            let text = g.text("fast");
            assert!(text.contains("\" RESETTING_TIME_SKEW "), "{text}");
            write_file(&g.file("halfway"), &text, 0o400);
            let v = g.import("halfway");
            assert_eq!(v["clock_offset"], 0, "{v}");
            let notes = notes(&v);
            assert!(
                notes
                    .iter()
                    .any(|n| n.starts_with("RESETTING_TIME_SKEW ignored")),
                "{notes:?}"
            );
        }
    }
    let text = g.text("fast");
    assert!(text.contains(&format!("\" TIME_SKEW {SKEW}\n")), "{text}");

    // One more login with the phone, recorded as used.
    let step = step_with_margin(PERIOD, 4);
    let used = code_at(&secret, step + SKEW);
    let login = g.ga_login(GA_LEARNING, "fast", &used);
    assert!(login.succeeded(), "{login:?}");
    let text = g.text("fast");
    assert!(
        text.contains(&format!("{}", step + SKEW)),
        "DISALLOW_REUSE lacks the phone's step: {text}"
    );

    let v = g.import("fast");
    assert_eq!(v["clock_offset"], SKEW, "{v}");
    assert_eq!(v["step"], PERIOD, "{v}");
    assert_eq!(v["last_used_step"], step + SKEW, "{v}");
    assert!(notes(&v).is_empty(), "{v}");

    // The phone's code used with the module, while still in the window
    // (the phone's step or the next): refused as a replay.
    let replay = g.mfa_login("fast", &used);
    assert!(
        step_now(PERIOD) - step <= 1,
        "too slow for 5-second steps: the replay was tried out of the window"
    );
    assert!(!replay.authenticated(), "{replay:?}");
    // The host's own time is 7 steps off the phone's: refused.
    let host = g.mfa_login("fast", &code_at(&secret, step_now(PERIOD)));
    assert!(!host.authenticated(), "{host:?}");
    // The phone's current code: accepted.
    let step = step_with_margin(PERIOD, 3);
    let phone = g.mfa_login("fast", &code_at(&secret, step + SKEW + 1));
    assert!(phone.succeeded(), "{phone:?}");
}
