//! Builds one benchmark tree for N synthetic users: nss_wrapper passwd and
//! group files, a home per user holding a `.google_authenticator` file, a
//! pam_oath users file, a private pam_mfa instance whose devices come from
//! `mfa admin import-google-authenticator`, and the four PAM services.
//!
//! Importing costs one `mfa` process per user, so only a sample goes through
//! the command; the rest are written through the library in one transaction
//! with exactly the rows the import writes (a verified `google-authenticator`
//! TOTP device and a `device-imported` audit entry), and the two kinds are
//! compared before the tree is used.

use pam_mfa::internals::audit;
use pam_mfa::internals::config::Algorithm;
use pam_mfa::internals::secret::base32_encode;
use pam_mfa::internals::store::{Device, Factor, OpenMode, SqliteStore, Store};
use pam_mfa::internals::totp::{StepWindow, TotpParams};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{chown, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// First synthetic uid; all users share the primary group `users` (100),
/// as on sites with a directory service, so group lookups stay small.
const FIRST_UID: u32 = 200_000;
const USERS_GID: u32 = 100;
const IMPORTED_NAME: &str = "google-authenticator";

struct Opts {
    dir: PathBuf,
    n: usize,
    mfa: PathBuf,
    mfa_so: PathBuf,
    security_dir: PathBuf,
    import: usize,
    /// Also list the users in the nss_wrapper passwd file (its linear scan
    /// then dominates at large N; see nss_bench.c).
    passwd_users: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench-seed --dir DIR --n N --mfa PATH/mfa --mfa-so PATH/libpam_mfa.so \
         [--security-dir DIR] [--import K] [--passwd-users yes|no]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        dir: PathBuf::new(),
        n: 0,
        mfa: PathBuf::new(),
        mfa_so: PathBuf::new(),
        security_dir: PathBuf::from("/lib/x86_64-linux-gnu/security"),
        import: 100,
        passwd_users: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--dir" => o.dir = value.into(),
            "--n" => o.n = value.parse().unwrap_or_else(|_| usage()),
            "--mfa" => o.mfa = value.into(),
            "--mfa-so" => o.mfa_so = value.into(),
            "--security-dir" => o.security_dir = value.into(),
            "--import" => o.import = value.parse().unwrap_or_else(|_| usage()),
            "--passwd-users" => o.passwd_users = value == "yes",
            _ => usage(),
        }
    }
    if o.n == 0 || o.dir.as_os_str().is_empty() || o.mfa.as_os_str().is_empty() {
        usage()
    }
    o
}

/// The same 160-bit secret for user `i` in every run (splitmix64).
pub fn secret_for(i: usize) -> [u8; 20] {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = [0u8; 20];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn user_name(i: usize) -> String {
    format!("user{i:06}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn write_mode(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn mkdir_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// A file as `google-authenticator -t -d -r 3 -R 30 -w 3 -e 0` writes it
/// (no emergency codes: each would cost the import a PBKDF2 run).
fn ga_file(secret: &[u8]) -> String {
    format!(
        "{}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n",
        base32_encode(secret).as_str()
    )
}

fn run() -> Result<(), String> {
    let o = parse_opts();
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let d = &o.dir;
    if d.exists() {
        return Err(format!("{} exists; give a fresh directory", d.display()));
    }
    let started = Instant::now();
    mkdir_mode(&d.join("home"), 0o755).map_err(|e| err("home", &e))?;
    mkdir_mode(&d.join("pam.d"), 0o755).map_err(|e| err("pam.d", &e))?;
    mkdir_mode(&d.join("oath"), 0o700).map_err(|e| err("oath", &e))?;
    mkdir_mode(&d.join("mfa/db"), 0o700).map_err(|e| err("mfa/db", &e))?;

    let mut passwd = String::from("root:x:0:0:root:/root:/bin/bash\n");
    let group = "root:x:0:\nusers:x:100:\n".to_string();
    let mut oath = String::new();
    let mut list = String::new();
    for i in 0..o.n {
        let name = user_name(i);
        let uid = FIRST_UID + i as u32;
        let home = d.join("home").join(&name);
        let secret = secret_for(i);
        if o.passwd_users {
            let _ = writeln!(
                passwd,
                "{name}:x:{uid}:{USERS_GID}:bench user:{}:/bin/false",
                home.display()
            );
        }
        let _ = writeln!(oath, "HOTP/T30 {name} - {}", hex(&secret));
        let _ = writeln!(list, "{name} {}", hex(&secret));
        // pam_google_authenticator's default: ~/.google_authenticator owned by
        // the user, not readable by others; it rewrites the file as the user.
        mkdir_mode(&home, 0o700).map_err(|e| err("home dir", &e))?;
        let file = home.join(".google_authenticator");
        write_mode(&file, &ga_file(&secret), 0o400).map_err(|e| err("ga file", &e))?;
        chown(&file, Some(uid), Some(USERS_GID)).map_err(|e| err("chown", &e))?;
        chown(&home, Some(uid), Some(USERS_GID)).map_err(|e| err("chown", &e))?;
    }
    write_mode(&d.join("passwd"), &passwd, 0o644).map_err(|e| err("passwd", &e))?;
    write_mode(&d.join("group"), group.as_str(), 0o644).map_err(|e| err("group", &e))?;
    write_mode(&d.join("oath/users.oath"), &oath, 0o600).map_err(|e| err("oath", &e))?;
    write_mode(&d.join("users.txt"), &list, 0o600).map_err(|e| err("users.txt", &e))?;

    let config = d.join("mfa/pam_mfa.toml");
    let database = d.join("mfa/db/mfa.sqlite3");
    // The daemon (started by bench.sh) listens here; the module is told so
    // by its socket= argument and never reads the config.
    let socket = d.join("mfa/mfa.sock");
    write_mode(
        &config,
        &format!(
            "database = \"{}\"\nsocket = \"{}\"\npolicy = \"optional\"\n",
            database.display(),
            socket.display()
        ),
        0o600,
    )
    .map_err(|e| err("config", &e))?;

    let lib = &o.security_dir;
    let services = [
        ("bench-permit", format!("{}/pam_permit.so", lib.display())),
        (
            "bench-ga",
            format!("{}/pam_google_authenticator.so", lib.display()),
        ),
        (
            "bench-oath",
            format!(
                "{}/pam_oath.so usersfile={} window=1 digits=6",
                lib.display(),
                d.join("oath/users.oath").display()
            ),
        ),
        (
            "bench-mfa",
            format!(
                "{} config={} socket={}",
                o.mfa_so.display(),
                config.display(),
                socket.display()
            ),
        ),
    ];
    for (name, line) in &services {
        write_mode(
            &d.join("pam.d").join(name),
            &format!(
                "auth required {line}\naccount required {lib}/pam_permit.so\n",
                lib = lib.display()
            ),
            0o644,
        )
        .map_err(|e| err("service", &e))?;
    }
    // libpam reads `other` as the fallback; without it, every pam_start complains.
    write_mode(
        &d.join("pam.d/other"),
        &format!(
            "auth required {lib}/pam_deny.so\naccount required {lib}/pam_deny.so\n",
            lib = lib.display()
        ),
        0o644,
    )
    .map_err(|e| err("service", &e))?;
    let files_s = started.elapsed().as_secs_f64();

    // The command, one process per user, for a sample; only `admin init`
    // creates the store.
    let sample = o.import.min(o.n);
    let started = Instant::now();
    let init = Command::new(&o.mfa)
        .arg("--config")
        .arg(&config)
        .args(["admin", "init"])
        .output()
        .map_err(|e| err("running mfa", &e))?;
    if !init.status.success() {
        return Err(format!(
            "mfa admin init failed: {}",
            String::from_utf8_lossy(&init.stderr).trim()
        ));
    }
    for i in 0..sample {
        let file = d
            .join("home")
            .join(user_name(i))
            .join(".google_authenticator");
        let out = Command::new(&o.mfa)
            .arg("--config")
            .arg(&config)
            .args(["admin", "import-google-authenticator", &user_name(i)])
            .arg(&file)
            .output()
            .map_err(|e| err("running mfa", &e))?;
        if !out.status.success() {
            return Err(format!(
                "mfa admin import-google-authenticator {} failed: {}",
                user_name(i),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let import_s = started.elapsed().as_secs_f64();

    // The rest through the library, as the import writes them.
    let started = Instant::now();
    let mut store =
        SqliteStore::open(&database, OpenMode::Create, None).map_err(|e| err("database", &e))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_secs() as i64)
        .unwrap_or(0);
    {
        let tx = store.begin().map_err(|e| err("begin", &e))?;
        for i in sample..o.n {
            let name = user_name(i);
            tx.insert_device(&Device {
                id: 0,
                user: name.clone(),
                name: IMPORTED_NAME.into(),
                verified: true,
                created: now,
                factor: Factor::Totp {
                    secret: zeroize::Zeroizing::new(secret_for(i).to_vec()),
                    params: TotpParams {
                        algorithm: Algorithm::SHA1,
                        digits: 6,
                        period: 30,
                    },
                    // WINDOW_SIZE 3 in the file: one step either side.
                    window: Some(StepWindow::google_authenticator(3, 0)),
                    last_step: None,
                },
            })
            .map_err(|e| err("insert", &e))?;
            audit::record(
                &*tx,
                now,
                &name,
                audit::AuditEvent::DeviceImported,
                "device=google-authenticator kind=totp step=30 window=1 window_ahead=1 \
                 clock_offset=0 last_used_step=none scratch_codes=0 by=root",
            )
            .map_err(|e| err("audit", &e))?;
        }
        tx.commit().map_err(|e| err("commit", &e))?;
    }
    let library_s = started.elapsed().as_secs_f64();
    check_equivalent(&mut store, sample, o.n)?;
    drop(store);

    println!(
        "SEED n={} files_s={files_s:.2} import_sample={sample} import_s={import_s:.2} \
         import_ms_per_user={:.1} library_users={} library_s={library_s:.2}",
        o.n,
        if sample > 0 {
            import_s * 1000.0 / sample as f64
        } else {
            0.0
        },
        o.n - sample
    );
    Ok(())
}

/// A device written by the command and one written here must differ only in
/// user, secret, id and time.
fn check_equivalent(store: &mut SqliteStore, sample: usize, n: usize) -> Result<(), String> {
    if sample == 0 || sample == n {
        return Ok(());
    }
    let tx = store.begin().map_err(|e| e.to_string())?;
    let shape = |i: usize| -> Result<String, String> {
        let devices = tx.devices(&user_name(i)).map_err(|e| e.to_string())?;
        let [device] = devices.as_slice() else {
            return Err(format!("{} has {} devices", user_name(i), devices.len()));
        };
        let Factor::Totp {
            secret,
            params,
            window,
            last_step,
        } = &device.factor
        else {
            return Err("not a TOTP device".into());
        };
        if secret.as_slice() != secret_for(i) {
            return Err(format!("{}: secret differs from its file", user_name(i)));
        }
        let audit = tx
            .audit_entries(Some(&user_name(i)), None, 10)
            .map_err(|e| e.to_string())?;
        let events: Vec<_> = audit.iter().map(|a| (&a.event, &a.detail)).collect();
        Ok(format!(
            "{} {} {params:?} {window:?} {last_step:?} {events:?}",
            device.name, device.verified
        ))
    };
    let (imported, written) = (shape(0)?, shape(n - 1)?);
    if imported != written {
        return Err(format!(
            "library rows differ from the import's:\n  mfa:     {imported}\n  library: {written}"
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-seed: {e}");
            ExitCode::FAILURE
        }
    }
}
