//! A test environment: a real SQLite store in a fresh temporary directory,
//! the fakes, and one-line ways to run a login phase, set state up and read
//! it back.

use std::path::PathBuf;

use zeroize::Zeroizing;

use super::fakes::*;
use crate::attempt::{self, AttemptResult, Context};
use crate::codes::{self, CodeHash, OneTimePurpose};
use crate::config::{Config, Policy};
use crate::login::{Login, Outcome, Request};
use crate::policy;
use crate::secret::base32_encode;
use crate::store::{
    Account, AuditEntry, Device, Factor, OneTimeCode, OpenMode, SqliteStore, Store, StoreError,
};
use crate::users::UserInfo;
use crate::Clock;

/// Which PAM phase to run.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    Preauth,
    Authfail,
    SecondFactor,
    Account,
}

/// A user NSS knows, or one it does not (the flow then sees no name).
pub enum Who<'a> {
    Known(&'a UserInfo),
    Unknown,
}

pub struct TestEnv {
    pub config: Config,
    pub store: SqliteStore,
    pub clock: FixedClock,
    pub sms: FakeSms,
    /// Removed when the environment is dropped (after the store closes).
    _dir: tempfile::TempDir,
    /// Every code, password and secret the test used: none may be audited.
    secrets: Vec<String>,
}

impl TestEnv {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pam_mfa_unit_")
            .tempdir()
            .expect("a temporary directory");
        let mut config = Config {
            database: dir.path().join("mfa.sqlite3"),
            issuer: "test-host".into(),
            ..Config::default()
        };
        adjust(&mut config);
        let store =
            SqliteStore::open(&config.database, OpenMode::Create, None).expect("open a new store");
        TestEnv {
            config,
            store,
            clock: FixedClock::at(T0),
            sms: FakeSms::default(),
            _dir: dir,
            secrets: vec![base32_encode(SECRET).to_string()],
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn run(
        &mut self,
        phase: Phase,
        who: Who<'_>,
        password: Option<&[u8]>,
        answers: Vec<Answer>,
    ) -> (Outcome, FakePrompter) {
        let (outcome, prompter) = self.try_run(phase, who, password, answers);
        (outcome.expect("the store works"), prompter)
    }

    /// As [`TestEnv::run`], handing back the store's error instead of
    /// panicking on it.
    pub fn try_run(
        &mut self,
        phase: Phase,
        who: Who<'_>,
        password: Option<&[u8]>,
        answers: Vec<Answer>,
    ) -> (Result<Outcome, StoreError>, FakePrompter) {
        let info = match who {
            Who::Known(u) => Some(u),
            Who::Unknown => None,
        };
        let req = Request {
            info,
            password,
            service: SERVICE,
            rhost: RHOST,
        };
        let mut prompter = FakePrompter::new(answers);
        let mut login = Login {
            config: &self.config,
            store: &mut self.store,
            clock: &self.clock,
            sms: &self.sms,
            prompter: &mut prompter,
        };
        let outcome = match phase {
            Phase::Preauth => login.preauth(&req),
            Phase::Authfail => login.authfail(&req),
            Phase::SecondFactor => login.second_factor(&req),
            Phase::Account => login.account(&req),
        };
        for t in &prompter.typed {
            self.remember_bytes(t);
        }
        if let Some(p) = password {
            self.remember_bytes(p);
        }
        (outcome, prompter)
    }

    pub fn second_factor(
        &mut self,
        user: &UserInfo,
        answers: Vec<Answer>,
    ) -> (Outcome, FakePrompter) {
        self.run(Phase::SecondFactor, Who::Known(user), None, answers)
    }

    pub fn second_factor_after_password(
        &mut self,
        user: &UserInfo,
        password: &[u8],
        answers: Vec<Answer>,
    ) -> (Outcome, FakePrompter) {
        self.run(
            Phase::SecondFactor,
            Who::Known(user),
            Some(password),
            answers,
        )
    }

    pub fn preauth(&mut self, user: &UserInfo) -> (Outcome, FakePrompter) {
        self.run(Phase::Preauth, Who::Known(user), None, vec![])
    }

    /// A wrong password, as pam_unix reports it to the `authfail` line.
    pub fn authfail(&mut self, user: &UserInfo) -> (Outcome, FakePrompter) {
        self.run(
            Phase::Authfail,
            Who::Known(user),
            Some(b"wrong password"),
            vec![],
        )
    }

    pub fn account_phase(&mut self, user: &UserInfo) -> (Outcome, FakePrompter) {
        self.run(Phase::Account, Who::Known(user), None, vec![])
    }

    /// One attempt straight through `attempt::attempt_code`, at the clock's time.
    pub fn attempt(&mut self, user: &UserInfo, typed: &[u8]) -> AttemptResult {
        self.remember_bytes(typed);
        let ctx = Context {
            detail: "service=unit-test",
        };
        let now = self.now();
        attempt::attempt_code(&mut self.store, &self.config, user, typed, None, now, &ctx)
            .expect("the store works")
    }

    pub fn add_totp(&mut self, user: &str, name: &str, secret: &[u8]) {
        self.insert_totp(user, name, secret, true, None);
    }

    pub fn add_pending_totp(&mut self, user: &str, name: &str, secret: &[u8]) {
        self.insert_totp(user, name, secret, false, None);
    }

    pub fn insert_totp(
        &mut self,
        user: &str,
        name: &str,
        secret: &[u8],
        verified: bool,
        window: Option<crate::totp::StepWindow>,
    ) {
        self.secrets.push(base32_encode(secret).to_string());
        let now = self.now();
        let tx = self.store.begin().unwrap();
        tx.insert_device(&Device {
            id: 0,
            user: user.to_owned(),
            name: name.to_owned(),
            verified,
            created: now,
            factor: Factor::Totp {
                secret: Zeroizing::new(secret.to_vec()),
                params: params(),
                window,
                last_step: None,
            },
        })
        .unwrap();
        tx.commit().unwrap();
    }

    /// A verified SMS device, as `mfa device add sms` + `verify sms` leave it.
    pub fn add_sms(&mut self, user: &str, phone: &str) {
        let now = self.now();
        let tx = self.store.begin().unwrap();
        tx.insert_device(&Device {
            id: 0,
            user: user.to_owned(),
            name: crate::enroll::SMS_NAME.to_owned(),
            verified: true,
            created: now,
            factor: Factor::Sms {
                phone: phone.to_owned(),
            },
        })
        .unwrap();
        tx.commit().unwrap();
    }

    /// A fresh set of real bypass codes, as `mfa bypass generate` makes them.
    pub fn give_bypass_codes(&mut self, user: &str, count: usize) -> Vec<String> {
        let codes: Vec<String> = (0..count)
            .map(|_| codes::new_bypass_code().unwrap().to_string())
            .collect();
        let refs: Vec<&str> = codes.iter().map(String::as_str).collect();
        self.store_bypass_codes(user, &refs);
        codes
    }

    /// Stores codes as one set: one salt, each hash of the normalised code.
    pub fn store_bypass_codes(&mut self, user: &str, codes: &[&str]) {
        let salt = codes::new_salt().unwrap();
        let hashes: Vec<CodeHash> = codes
            .iter()
            .map(|c| {
                let normalized = codes::normalize_bypass(c).expect("a valid bypass code");
                self.secrets.push(c.to_string());
                self.secrets.push(normalized.to_string());
                codes::hash_with_salt(&normalized, &salt)
            })
            .collect();
        let now = self.now();
        let tx = self.store.begin().unwrap();
        tx.replace_bypass_codes(user, &hashes, now).unwrap();
        tx.commit().unwrap();
    }

    /// What `mfa admin temp-code` leaves behind: a hashed 8-digit code.
    pub fn give_temporary_code(&mut self, user: &str, code: &str, expires: i64) {
        self.secrets.push(code.to_owned());
        let hash = codes::hash_with_salt(code, &codes::new_salt().unwrap());
        let tx = self.store.begin().unwrap();
        tx.put_one_time_code(
            user,
            OneTimePurpose::Temporary,
            &hash,
            expires,
            crate::onetime::TEMP_CODE_TRIES,
        )
        .unwrap();
        tx.commit().unwrap();
    }

    pub fn set_policy(&mut self, p: Policy) {
        let tx = self.store.begin().unwrap();
        policy::set(&*tx, p).unwrap();
        tx.commit().unwrap();
    }

    /// What `mfa admin unlock` does to the account row.
    pub fn admin_unlock(&mut self, user: &str) {
        let tx = self.store.begin().unwrap();
        tx.put_account(user, &Account::default()).unwrap();
        tx.commit().unwrap();
    }

    /// Locks the account with wrong passwords, the way a guesser would.
    pub fn lock_out(&mut self, user: &UserInfo) {
        for _ in 0..self.config.lockout.deny {
            self.authfail(user);
        }
        assert!(
            self.account(&user.name).locked_at.is_some(),
            "{} is locked",
            user.name
        );
    }

    pub fn account(&mut self, user: &str) -> Account {
        self.store.begin().unwrap().account(user).unwrap()
    }

    pub fn devices(&mut self, user: &str) -> Vec<Device> {
        self.store.begin().unwrap().devices(user).unwrap()
    }

    pub fn last_step(&mut self, user: &str, device: &str) -> Option<i64> {
        let d = self
            .devices(user)
            .into_iter()
            .find(|d| d.name == device)
            .expect("device exists");
        match d.factor {
            Factor::Totp { last_step, .. } => last_step,
            Factor::Sms { .. } => None,
        }
    }

    pub fn bypass_hashes(&mut self, user: &str) -> Vec<CodeHash> {
        let stored = self.store.begin().unwrap().bypass_codes(user).unwrap();
        stored.into_iter().map(|c| c.hash).collect()
    }

    pub fn live_one_time_codes(&mut self, user: &str) -> usize {
        let now = self.now();
        self.store
            .begin()
            .unwrap()
            .one_time_codes(user, now)
            .unwrap()
            .len()
    }

    /// The live one-time codes of one purpose.
    pub fn live_codes(&mut self, user: &str, purpose: OneTimePurpose) -> Vec<OneTimeCode> {
        let now = self.now();
        let codes = self.store.begin().unwrap().one_time_codes(user, now);
        codes
            .unwrap()
            .into_iter()
            .filter(|c| c.purpose == purpose)
            .collect()
    }

    /// Opens the store again, sealing with `key` (None: plaintext).
    pub fn reopen(&mut self, key: Option<std::sync::Arc<crate::seal::SealKey>>) {
        self.store = SqliteStore::open(&self.config.database, OpenMode::Existing, key)
            .expect("open the store again");
    }

    /// Every byte SQLite keeps on disk for the database: the file and its
    /// write-ahead log (recent commits live there until a checkpoint).
    pub fn database_bytes(&self) -> Vec<u8> {
        let db = self.config.database.as_os_str().to_owned();
        let mut bytes = std::fs::read(&self.config.database).unwrap();
        for suffix in ["-wal", "-journal"] {
            let mut path = db.clone();
            path.push(suffix);
            if let Ok(more) = std::fs::read(PathBuf::from(path)) {
                bytes.extend(more);
            }
        }
        bytes
    }

    pub fn audit(&mut self, user: Option<&str>) -> Vec<AuditEntry> {
        self.store
            .begin()
            .unwrap()
            .audit_entries(user, None, u32::MAX)
            .unwrap()
    }

    pub fn audit_events(&mut self, user: &str) -> Vec<String> {
        self.audit(Some(user))
            .into_iter()
            .map(|e| e.event)
            .collect()
    }

    /// Entries recording one counted failure: a `failures=N ...` detail on
    /// any event but the lock itself.
    pub fn failure_entries(&mut self, user: &str) -> Vec<AuditEntry> {
        let entries = self.audit(Some(user));
        entries
            .into_iter()
            .filter(|e| e.event != "locked" && e.detail.starts_with("failures="))
            .collect()
    }

    /// Users with any row in accounts, devices or bypass codes.
    pub fn users_with_rows(&mut self) -> Vec<String> {
        let users = self.store.begin().unwrap().users().unwrap();
        users.into_iter().map(|u| u.user).collect()
    }

    pub fn remember_secret(&mut self, s: &str) {
        self.secrets.push(s.to_owned());
    }

    pub fn forget_secrets(&mut self) {
        self.secrets.clear();
    }

    fn remember_bytes(&mut self, b: &[u8]) {
        if let Ok(text) = std::str::from_utf8(b) {
            self.secrets.push(text.trim().to_owned());
            self.secrets
                .push(text.chars().filter(|c| !" -".contains(*c)).collect());
        }
    }

    /// The remembered secrets (four characters or more) found in any audit
    /// entry, compared without regard to case.
    pub fn leaked_secrets(&mut self) -> Vec<String> {
        let entries = self.audit(None);
        let mut leaks: Vec<String> = self
            .secrets
            .iter()
            .filter(|s| s.len() >= 4)
            .filter(|s| {
                let s = s.to_ascii_uppercase();
                entries.iter().any(|e| {
                    format!("{} {} {}", e.user, e.event, e.detail)
                        .to_ascii_uppercase()
                        .contains(&s)
                })
            })
            .cloned()
            .collect();
        leaks.dedup();
        leaks
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let leaks = if std::thread::panicking() {
            Vec::new()
        } else {
            self.leaked_secrets()
        };
        assert!(
            leaks.is_empty(),
            "secrets reached the audit table: {leaks:?}"
        );
    }
}
