//! A real PostgreSQL server per test: `initdb` into a temp dir, a port on
//! 127.0.0.1, a role `mfa` with a password and a database `mfa`. Run as the
//! `postgres` system user when the tests run as root (the server refuses
//! root), and killed with the test.
#![allow(dead_code)]

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ROLE_PASSWORD: &str = "fleet-password-1";

pub struct Postgres {
    dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    bin: PathBuf,
    /// The OS user the server runs as: (uid, gid) of `postgres` under root.
    owner: Option<(u32, u32)>,
    server: Option<Child>,
    extra: Vec<String>,
}

/// Debian keeps the server's programs out of PATH.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|v| v.join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .expect("PostgreSQL server programs (apt install postgresql)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// A new cluster, started, with role `mfa` (password [`ROLE_PASSWORD`],
    /// scram over TCP) owning database `mfa`.
    pub fn start(tag: &str) -> Postgres {
        Postgres::start_with(tag, &[])
    }

    /// As [`start`], with extra `-c name=value` server settings.
    pub fn start_with(tag: &str, settings: &[&str]) -> Postgres {
        let dir = std::env::temp_dir().join(format!(
            "pam_mfa_pg_{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        std::fs::DirBuilder::new().mode(0o755).create(&dir).unwrap();
        let owner = if nix::unistd::geteuid().is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .unwrap()
                .expect("a `postgres` system user (apt install postgresql)");
            Some((pg.uid.as_raw(), pg.gid.as_raw()))
        } else {
            None
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let mut pg = Postgres {
            data: dir.join("data"),
            dir,
            port: free_port(),
            bin: bin_dir(),
            owner,
            server: None,
            extra: settings.iter().map(|s| s.to_string()).collect(),
        };
        let out = pg
            .as_owner("initdb")
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"])
            .arg("-D")
            .arg(&pg.data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", show(&out));
        pg.start_server();
        pg.psql_as_superuser(&format!("CREATE ROLE mfa LOGIN PASSWORD '{ROLE_PASSWORD}'"));
        pg.psql_as_superuser("CREATE DATABASE mfa OWNER mfa");
        pg
    }

    fn as_owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.owner {
            Some((uid, gid)) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(path);
                cmd
            }
            None => Command::new(path),
        }
        .tap_env()
    }

    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the server (again, after [`stop`]) on the same port and data.
    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let mut cmd = self.as_owner("postgres");
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=300"]);
        for s in &self.extra {
            cmd.args(["-c", s]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Both ways in: the daemon connects over TCP, the harness's psql over
        // the socket, and a TCP answer alone once let psql find no socket.
        let ready_at = |host: &std::ffi::OsStr| {
            self.as_owner("pg_isready")
                .arg("-q")
                .arg("-h")
                .arg(host)
                .args(["-p", &self.port.to_string()])
                .status()
                .unwrap()
                .success()
        };
        loop {
            if ready_at("127.0.0.1".as_ref()) && ready_at(self.dir.as_os_str()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown (SIGINT, as `pg_ctl stop -m fast`): sessions are
    /// ended, and new connections are refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let _ = child.wait();
        }
    }

    /// SIGSTOP (or SIGCONT) to the server and all its processes: a server
    /// that still holds its connections open, acks packets, and answers
    /// nothing, as a hung machine does.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) {
        let main = self.server.as_ref().expect("running").id() as i32;
        let mut pids = vec![main];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(main) {
                pids.push(pid);
            }
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// `postgresql://` URL of role `mfa` over TCP, without TLS and without
    /// the password (tests put it in `database_password_file`).
    pub fn url(&self) -> String {
        format!(
            "postgresql://mfa@127.0.0.1:{}/mfa?sslmode=disable",
            self.port
        )
    }

    /// Writes the role's password to `path` as root's 0600 file.
    pub fn write_password_file(&self, path: &Path) {
        std::fs::write(path, format!("{ROLE_PASSWORD}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Runs SQL as the superuser over the unix socket; returns unaligned,
    /// tuples-only output.
    pub fn psql_as_superuser(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// Runs SQL in database `mfa` (as the superuser).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("mfa", sql)
    }

    fn psql_in(&self, db: &str, sql: &str) -> String {
        let out = self
            .as_owner("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `pg_dump` of database `mfa`, as an operator's backup would be.
    pub fn dump(&self) -> Vec<u8> {
        let out = self
            .as_owner("pg_dump")
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "mfa"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_dump: {}", show(&out));
        out.stdout
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn show(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

trait TapEnv {
    fn tap_env(self) -> Self;
}

impl TapEnv for Command {
    /// Neither the test's nss_wrapper nor its locale reaches the server.
    fn tap_env(mut self) -> Self {
        self.env_remove("LD_PRELOAD")
            .env_remove("NSS_WRAPPER_PASSWD")
            .env_remove("NSS_WRAPPER_GROUP")
            .env("LC_ALL", "C");
        self
    }
}
