//! A fleet on one PostgreSQL: a real server started by the test (initdb
//! into a temp dir, a port on 127.0.0.1), and two hosts — two worlds with
//! their own config, socket and `mfa serve` — on the same database. Logins
//! go through real libpam (pamtester under pam_wrapper).
//!
//! Needs the `postgresql` package (CI installs it); under root the server
//! runs as the `postgres` system user.

mod common;

use common::postgres::Postgres;
use common::*;
use std::time::{Duration, Instant};

struct Fleet {
    pg: Postgres,
    a: Harness,
    b: Harness,
}

/// A config for `h` on `pg`: the role's password in a root-only file, and
/// the fleet's secrets key (made once, copied to each host as an admin
/// would).
fn join(h: &Harness, pg: &Postgres, body: &str) {
    let pass = h.dir.path().join("pg.pass");
    pg.write_password_file(&pass);
    let key = h.dir.path().join("pam_mfa.key");
    let fleet_key = pg.socket_dir().join("fleet.key");
    if !fleet_key.exists() {
        let made = h.mfa(
            None,
            &["admin", "generate-key", fleet_key.to_str().unwrap()],
        );
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    std::fs::copy(&fleet_key, &key).unwrap();
    h.write_raw_config(&format!(
        "database = \"{}\"\ndatabase_password_file = \"{}\"\nsecrets_key_file = \"{}\"\n{body}",
        pg.url(),
        pass.display(),
        key.display()
    ));
}

fn fleet(tag: &str) -> Fleet {
    fleet_with(tag, "policy = \"optional\"\n")
}

fn fleet_with(tag: &str, body: &str) -> Fleet {
    let pg = Postgres::start(tag);
    let a = Harness::without_database(body);
    let b = Harness::without_database(body);
    join(&a, &pg, body);
    join(&b, &pg, body);
    // `mfa admin init` on one host creates the schema; the daemons pick the
    // new config up at their next request.
    a.mfa_json(None, &["admin", "init"]);
    Fleet { pg, a, b }
}

#[test]
fn a_device_enrolled_on_one_host_logs_in_on_the_other_and_a_code_is_spent_fleet_wide() {
    let f = fleet("enroll");
    let secret = f.a.enroll_totp("alice", "phone");
    let code = totp(&secret, 1);
    let on_b = f.b.login("alice", &code);
    assert!(on_b.succeeded(), "{}", on_b.transcript);
    let replay = f.a.login("alice", &code);
    assert!(
        !replay.authenticated(),
        "a code used on b was accepted on a: {}",
        replay.transcript
    );
    assert_eq!(f.a.lock_state("alice"), (1, false));
}

#[test]
fn wrong_codes_on_both_hosts_count_toward_one_lock() {
    let f = fleet("lock");
    let secret = f.a.enroll_totp("alice", "phone");
    let wrong = wrong_code(&secret);
    for host in [&f.a, &f.b, &f.a, &f.b, &f.a] {
        assert!(!host.login("alice", &wrong).authenticated());
    }
    assert_eq!(f.b.lock_state("alice"), (5, false));
    assert!(!f.b.login("alice", &wrong).authenticated());
    assert_eq!(f.a.lock_state("alice"), (6, true));
    for host in [&f.a, &f.b] {
        let right = host.login("alice", &totp(&secret, 1));
        assert!(
            !right.authenticated() && right.said_locked(),
            "{}",
            right.transcript
        );
    }
}

#[test]
fn parallel_wrong_codes_split_over_both_hosts_count_exactly_to_the_limit() {
    let f = fleet("parallel");
    let secret = f.a.enroll_totp("alice", "phone");
    let wrong = wrong_code(&secret);
    let accepted = std::thread::scope(|s| {
        let runs: Vec<_> = (0..20)
            .map(|i| {
                let host = if i % 2 == 0 { &f.a } else { &f.b };
                let wrong = wrong.clone();
                s.spawn(move || host.login("alice", &wrong).authenticated())
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap_or(true))
            .filter(|&accepted| accepted)
            .count()
    });
    assert_eq!(accepted, 0);
    assert_eq!(f.a.lock_state("alice"), (6, true));
    let failures =
        f.pg.psql("SELECT count(*) FROM audit WHERE username = 'alice' AND event = 'failure'");
    assert_eq!(failures, "6", "failures recorded in the audit trail");
}

#[test]
fn postgres_stopped_denies_within_seconds_and_a_restart_needs_no_daemon_restart() {
    let mut f = fleet("restart");
    let secret = f.a.enroll_totp("alice", "phone");
    let bypass = f.a.bypass_codes("alice", 3);
    // Both daemons hold warm connections when the server goes away.
    assert!(f.a.login("alice", &bypass[0]).succeeded());
    assert!(f.b.login("alice", &bypass[1]).succeeded());

    f.pg.stop();
    let started = Instant::now();
    let down = f.b.login("alice", &bypass[2]);
    let took = started.elapsed();
    assert!(!down.authenticated(), "{}", down.transcript);
    assert!(
        down.transcript.contains("unavailable"),
        "the user is told MFA is unavailable: {}",
        down.transcript
    );
    assert!(took < Duration::from_secs(5), "denied after {took:?}");

    f.pg.start_server();
    let back = f.a.login("alice", &totp(&secret, 1));
    assert!(back.succeeded(), "{}", back.transcript);
    let back = f.b.login("alice", &bypass[2]);
    assert!(
        back.succeeded(),
        "the code refused while down is still good: {}",
        back.transcript
    );
}

#[test]
fn a_daemon_without_a_schema_is_unavailable_and_says_so() {
    let pg = Postgres::start("noschema");
    let h = Harness::without_database("policy = \"required\"\n");
    join(&h, &pg, "policy = \"required\"\n");
    let login = h.login("alice", "123456");
    assert!(!login.authenticated(), "{}", login.transcript);
    assert!(
        login.transcript.contains("unavailable"),
        "{}",
        login.transcript
    );
    // The daemon never creates the schema: only root's `mfa` does.
    assert_eq!(
        pg.psql("SELECT to_regclass('pam_mfa_schema') IS NULL"),
        "t",
        "the daemon created a schema"
    );
}

#[test]
fn a_wrong_database_password_is_unavailable_not_a_wrong_code() {
    let f = fleet("badpass");
    let secret = f.a.enroll_totp("alice", "phone");
    std::fs::write(f.b.dir.path().join("pg.pass"), "not-the-password\n").unwrap();
    // Connections already open stay open (as PostgreSQL's own sessions do
    // across a password change) until they end; end them.
    f.pg.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'mfa'",
    );
    let login = f.b.login("alice", &totp(&secret, 1));
    assert!(!login.authenticated());
    assert!(
        login.transcript.contains("unavailable"),
        "{}",
        login.transcript
    );
    assert_eq!(f.a.lock_state("alice"), (0, false), "nothing was counted");
}

#[test]
fn a_dump_of_the_fleet_database_holds_no_secret_and_no_phone_number() {
    let temp = tempfile::tempdir().unwrap();
    let outbox = temp.path().join("sms.log");
    std::fs::write(&outbox, "").unwrap();
    let sms = format!(
        "[sms]\nbackend = \"file\"\npath = \"{}\"\n",
        outbox.display()
    );
    let f = fleet_with("dump", &format!("policy = \"optional\"\n{sms}"));
    let secret = f.a.enroll_totp("alice", "phone");
    let added = f.b.mfa(
        Some("bob"),
        &["device", "add", "sms", "+15550104242", "--no-verify"],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(f.b.login("alice", &totp(&secret, 1)).succeeded());

    let dump = f.pg.dump();
    let raw = pam_mfa::internals::secret::base32_decode(&secret).expect("a base32 secret");
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    for needle in [
        secret.clone(),
        secret.to_lowercase(),
        hex.clone(),
        hex.to_uppercase(),
        "5550104242".to_owned(),
    ] {
        assert!(
            !contains(&dump, needle.as_bytes()),
            "pg_dump holds {needle:?}"
        );
    }
    // bytea is dumped as \x + hex: the raw secret would show as its hex.
    assert!(!contains(&dump, &raw), "pg_dump holds the raw secret");
    // The dump does hold the devices, sealed.
    assert_eq!(
        f.pg.psql("SELECT count(*) FROM devices WHERE secret IS NOT NULL OR phone IS NOT NULL"),
        "2"
    );
}

#[test]
fn postgresql_without_a_secrets_key_is_refused_as_a_config_error() {
    let pg = Postgres::start("nokey");
    let h = Harness::without_database("");
    h.write_raw_config(&format!("database = \"{}\"\n", pg.url()));
    let out = h.mfa(None, &["admin", "policy"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secrets_key_file"), "{err}");
}

#[test]
fn a_populated_sqlite_store_migrates_sealed_and_every_user_logs_in_on_postgresql() {
    let pg = Postgres::start("migrate");
    let h = Harness::new();
    // A host that ran without a key: its secrets are in plaintext.
    let alice = h.enroll_totp("alice", "phone");
    let bob = h.bypass_codes("bob", 5);
    let carol = h.enroll_totp("carol", "tablet");
    for _ in 0..2 {
        assert!(!h.login("carol", &wrong_code(&carol)).authenticated());
    }
    h.set_policy("required");

    // The admin makes the fleet key and names it and the database password.
    let key = h.dir.path().join("pam_mfa.key");
    let made = h.mfa(None, &["admin", "generate-key", key.to_str().unwrap()]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pass = h.dir.path().join("pg.pass");
    pg.write_password_file(&pass);
    let keys = format!(
        "secrets_key_file = \"{}\"\ndatabase_password_file = \"{}\"\n",
        key.display(),
        pass.display()
    );
    h.write_config(&keys);

    let first = h.mfa_json(None, &["admin", "migrate", "--to", &pg.url()]);
    assert_eq!(first["accounts"], 3, "{first}");
    assert_eq!(first["devices"], 2, "{first}");
    assert_eq!(first["bypass_codes"], 5, "{first}");
    assert_eq!(first["settings"], 1, "{first}");
    let audit_rows = first["audit_rows"].as_u64().unwrap();
    assert!(audit_rows >= 5, "{first}");
    let again = h.mfa_json(None, &["admin", "migrate", "--to", &pg.url()]);
    assert_eq!(again["devices"], 2, "re-run: {again}");
    assert_eq!(
        again["audit_rows"], 0,
        "re-run copies no audit row twice: {again}"
    );
    assert_eq!(again["audit_rows_already_there"], audit_rows, "{again}");
    assert_eq!(pg.psql("SELECT count(*) FROM devices"), "2");
    assert_eq!(pg.psql("SELECT count(*) FROM bypass_codes"), "5");

    // The host switches to the fleet database.
    h.write_raw_config(&format!("database = \"{}\"\n{keys}", pg.url()));
    let policy = h.mfa_json(None, &["admin", "policy"]);
    assert_eq!(policy["policy"], "required", "{policy}");
    assert_eq!(h.lock_state("carol"), (2, false));
    let a = h.login("alice", &totp(&alice, 1));
    assert!(a.succeeded(), "{}", a.transcript);
    let b = h.login("bob", &bob[0]);
    assert!(b.succeeded(), "{}", b.transcript);
    let c = h.login("carol", &totp(&carol, 1));
    assert!(c.succeeded(), "{}", c.transcript);
    let dump = pg.dump();
    assert!(
        !contains(&dump, alice.as_bytes()),
        "alice's secret in the dump"
    );
    assert!(
        !contains(&dump, carol.as_bytes()),
        "carol's secret in the dump"
    );
}

/// A device imported from a google-authenticator file keeps, on the way
/// to PostgreSQL, what the import took from the file: its uneven window
/// (WINDOW_SIZE 4: one step behind, two ahead), the phone's clock offset
/// (TIME_SKEW) and the step last used with pam_google_authenticator.
#[test]
fn an_imported_devices_window_offset_and_last_step_migrate_to_postgresql() {
    let pg = Postgres::start("migrate_ga");
    let h = Harness::new();
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let step = now() / 30;
    let used = step + 5;
    let file = h.dir.path().join("google_authenticator");
    write_file(
        &file,
        &format!(
            "{secret}\n\" TIME_SKEW 5\n\" DISALLOW_REUSE {used}\n\" WINDOW_SIZE 4\n\" TOTP_AUTH\n"
        ),
        0o600,
    );
    let imported = h.mfa_json(
        None,
        &[
            "admin",
            "import-google-authenticator",
            "alice",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(imported["clock_offset"], 5, "{imported}");

    let key = h.dir.path().join("pam_mfa.key");
    assert!(h
        .mfa(None, &["admin", "generate-key", key.to_str().unwrap()])
        .status
        .success());
    let pass = h.dir.path().join("pg.pass");
    pg.write_password_file(&pass);
    let keys = format!(
        "secrets_key_file = \"{}\"\ndatabase_password_file = \"{}\"\n",
        key.display(),
        pass.display()
    );
    h.write_config(&keys);
    let copied = h.mfa_json(None, &["admin", "migrate", "--to", &pg.url()]);
    assert_eq!(copied["devices"], 1, "{copied}");
    assert_eq!(
        pg.psql(
            "SELECT totp_window || ' ' || totp_window_ahead || ' ' || clock_offset || ' ' \
             || last_step FROM devices"
        ),
        format!("1 2 5 {used}")
    );
    assert_eq!(pg.psql("SELECT version FROM pam_mfa_schema"), "2");

    h.write_raw_config(&format!("database = \"{}\"\n{keys}", pg.url()));
    let code = |s: i64| {
        let out = std::process::Command::new("oathtool")
            .args(["--hotp", "-b", "-c", &s.to_string(), secret])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    // The step used with pam_google_authenticator, and the host's own time.
    assert!(!h.login("alice", &code(used)).authenticated());
    assert!(!h.login("alice", &code(now() / 30)).authenticated());
    // Two steps ahead of the phone's time: inside WINDOW_SIZE 4's window.
    let ok = h.login("alice", &code(now() / 30 + 5 + 2));
    assert!(ok.succeeded(), "{}", ok.transcript);
}

/// Starts `h`'s daemon in a UTS namespace of its own named `name`, as if
/// it ran on another machine.
fn start_as_host(h: &Harness, name: &str) {
    let name = name.to_owned();
    h.start_daemon_under(move |cmd| {
        let mut wrapper = std::process::Command::new("unshare");
        wrapper.args([
            "--uts",
            "sh",
            "-c",
            &format!("hostname {name} && exec \"$0\" \"$@\""),
        ]);
        run_under(wrapper, &cmd)
    });
}

#[test]
fn every_audit_row_names_the_host_that_wrote_it() {
    if !is_root() {
        eprintln!("skipped: needs root for a UTS namespace");
        return;
    }
    let f = fleet("hosts");
    start_as_host(&f.a, "host-a");
    start_as_host(&f.b, "host-b");
    let codes = f.a.bypass_codes("alice", 2);
    assert!(f.a.login("alice", &codes[0]).succeeded());
    assert!(f.b.login("alice", &codes[1]).succeeded());
    let on_b = f.a.mfa_json(None, &["audit", "--host", "host-b"]);
    let rows = on_b.as_array().unwrap_or_else(|| panic!("{on_b}"));
    assert!(!rows.is_empty(), "{on_b}");
    assert!(rows.iter().all(|r| r["host"] == "host-b"), "{on_b}");
    assert!(
        rows.iter().any(|r| r["event"] == "code-accepted"),
        "b's login is in b's audit: {on_b}"
    );
    let on_a = f.b.mfa_json(None, &["audit", "--host", "host-a"]);
    assert!(
        on_a.as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"] == "code-accepted"),
        "{on_a}"
    );
}

/// A CA and a server certificate for `localhost`, made with openssl, the
/// key readable by the server's user only.
fn certificates(dir: &std::path::Path, owner: Option<(u32, u32)>) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (apt install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let key = format!("{ca}.key");
        let pem = format!("{ca}.pem");
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            "/CN=pam_mfa test CA",
        ]);
        run(&args);
    }
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&args);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    if let Some((uid, gid)) = owner {
        for f in ["server.key", "server.pem"] {
            std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid)).unwrap();
        }
    }
}

#[test]
fn tls_verifies_the_server_against_the_configured_ca_and_refuses_another() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    use std::os::unix::fs::PermissionsExt;
    // The server (user postgres) reads its certificate from here.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let owner = is_root().then(|| {
        let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        (pg.uid.as_raw(), pg.gid.as_raw())
    });
    certificates(dir, owner);
    let pg = Postgres::start_with(
        "tls",
        &[
            "ssl=on",
            &format!("ssl_cert_file={}", dir.join("server.pem").display()),
            &format!("ssl_key_file={}", dir.join("server.key").display()),
        ],
    );
    let h = Harness::without_database("");
    join(&h, &pg, "policy = \"optional\"\n");
    let config = std::fs::read_to_string(&h.config).unwrap();
    let with_ca = |ca: &str| {
        let url = format!(
            "postgresql://mfa@localhost:{}/mfa?sslmode=verify-full&sslrootcert={}",
            pg.port,
            dir.join(ca).display().to_string().replace('/', "%2F")
        );
        config.replace(&pg.url(), &url)
    };
    h.write_raw_config(&with_ca("ca.pem"));
    h.mfa_json(None, &["admin", "init"]);
    let secret = h.enroll_totp("alice", "phone");
    let login = h.login("alice", &totp(&secret, 1));
    assert!(login.succeeded(), "{}", login.transcript);
    assert_eq!(
        pg.psql_as_superuser(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.usename = 'mfa'"
        ),
        "t",
        "every connection of the role is encrypted"
    );

    h.write_raw_config(&with_ca("other-ca.pem"));
    let refused = h.login("alice", &totp(&secret, 2));
    assert!(!refused.authenticated(), "{}", refused.transcript);
    assert!(
        refused.transcript.contains("unavailable"),
        "{}",
        refused.transcript
    );
}

#[test]
fn doctor_checks_the_fleet_database_and_its_key() {
    let f = fleet("doctor");
    f.a.enroll_totp("alice", "phone");
    let out = f.a.mfa(
        None,
        &[
            "doctor",
            "--json",
            "--pam-dir",
            f.a.services.to_str().unwrap(),
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let text = report.to_string();
    let check = |name: &str| {
        report
            .as_array()
            .and_then(|c| c.iter().find(|c| c["check"] == name))
            .unwrap_or_else(|| panic!("no {name} check in {text}"))
            .clone()
    };
    let database = check("database");
    assert_eq!(database["status"], "ok", "{text}");
    assert!(
        database["message"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL mfa@127.0.0.1"),
        "{text}"
    );
    assert!(
        !text.contains(common::postgres::ROLE_PASSWORD),
        "doctor shows the password"
    );
    assert_eq!(check("key")["status"], "ok", "{text}");
    assert_eq!(check("secrets")["status"], "ok", "{text}");

    f.pg.psql_as_superuser("ALTER ROLE mfa PASSWORD 'changed'");
    let out = f.a.mfa(
        None,
        &[
            "doctor",
            "--json",
            "--pam-dir",
            f.a.services.to_str().unwrap(),
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = report.to_string();
    let database = report
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "database"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(database["status"], "fail", "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
}

#[test]
fn a_hung_server_denies_within_seconds_and_the_daemon_recovers_when_it_answers_again() {
    use nix::sys::signal::Signal;
    let f = fleet("hung");
    let codes = f.a.bypass_codes("alice", 3);
    assert!(f.a.login("alice", &codes[0]).succeeded());

    f.pg.signal_all(Signal::SIGSTOP);
    let started = Instant::now();
    let hung = f.a.login("alice", &codes[1]);
    let took = started.elapsed();
    f.pg.signal_all(Signal::SIGCONT);
    assert!(!hung.authenticated(), "{}", hung.transcript);
    assert!(
        hung.transcript.contains("unavailable"),
        "{}",
        hung.transcript
    );
    assert!(took < Duration::from_secs(9), "denied after {took:?}");

    for code in &codes[1..] {
        let back = f.a.login("alice", code);
        assert!(back.succeeded(), "{}", back.transcript);
    }
}
