//! One set of store tests, run against both engines through the same
//! `Store` trait: SQLite in a temp dir, and a real PostgreSQL server started
//! by the test. What the login rules rely on — round trips of every field,
//! conflicts that leave the transaction usable, purging, ordering, rollback
//! and serialized check-and-record on one account — must hold on both.

mod common;

use common::postgres::Postgres;
use pam_mfa::internals::codes::{hash_with_salt, CodeHash, OneTimePurpose};
use pam_mfa::internals::config::{Algorithm, Config};
use pam_mfa::internals::seal::SealKey;
use pam_mfa::internals::store::{
    Account, AnyStore, AuditEntry, Device, Factor, OpenMode, Store, StoreError,
};
use pam_mfa::internals::totp::{StepWindow, TotpParams};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

struct Engine {
    name: &'static str,
    config: Config,
    key: Arc<SealKey>,
    _dir: common::TempDir,
    _pg: Option<Postgres>,
}

impl Engine {
    fn open(&self) -> AnyStore {
        AnyStore::open(&self.config, OpenMode::Create, Some(Arc::clone(&self.key)))
            .unwrap_or_else(|e| panic!("{}: open: {e}", self.name))
    }
}

fn key_in(dir: &Path) -> (PathBuf, Arc<SealKey>) {
    let path = dir.join("pam_mfa.key");
    let key = SealKey::generate().unwrap();
    key.write_new(&path).unwrap();
    let loaded = Arc::new(SealKey::load(&path).unwrap());
    (path, loaded)
}

fn sqlite() -> Engine {
    let dir = common::TempDir::new("engine");
    let (key_path, key) = key_in(dir.path());
    let text = format!(
        "database = \"{}\"\nsecrets_key_file = \"{}\"\n",
        dir.path().join("db").join("mfa.sqlite3").display(),
        key_path.display()
    );
    Engine {
        name: "sqlite",
        config: Config::parse(&text, Path::new("test")).unwrap(),
        key,
        _dir: dir,
        _pg: None,
    }
}

fn postgres(tag: &str) -> Engine {
    let pg = Postgres::start(tag);
    let dir = common::TempDir::new("engine");
    let (key_path, key) = key_in(dir.path());
    let pass = dir.path().join("pg.pass");
    pg.write_password_file(&pass);
    let text = format!(
        "database = \"{}\"\nsecrets_key_file = \"{}\"\ndatabase_password_file = \"{}\"\n",
        pg.url(),
        key_path.display(),
        pass.display()
    );
    Engine {
        name: "postgresql",
        config: Config::parse(&text, Path::new("test")).unwrap(),
        key,
        _dir: dir,
        _pg: Some(pg),
    }
}

/// Runs `check` on both engines.
fn both(tag: &str, check: impl Fn(&Engine)) {
    check(&sqlite());
    check(&postgres(tag));
}

fn totp_device(user: &str, name: &str) -> Device {
    Device {
        id: 0,
        user: user.into(),
        name: name.into(),
        verified: false,
        created: 1_700_000_000,
        factor: Factor::Totp {
            secret: Zeroizing::new((0u8..20).collect()),
            params: TotpParams {
                algorithm: Algorithm::SHA256,
                digits: 8,
                period: 60,
            },
            // An imported google-authenticator file's: WINDOW_SIZE 8,
            // TIME_SKEW -17.
            window: Some(StepWindow {
                behind: 3,
                ahead: 4,
                offset: -17,
            }),
            last_step: None,
        },
    }
}

fn sms_device(user: &str) -> Device {
    Device {
        id: 0,
        user: user.into(),
        name: "sms".into(),
        verified: true,
        created: 1_700_000_100,
        factor: Factor::Sms {
            phone: "+15550104242".into(),
        },
    }
}

fn hash(code: &str) -> CodeHash {
    hash_with_salt(code, b"0123456789abcdef")
}

#[test]
fn accounts_round_trip_and_a_clean_account_reads_as_default() {
    both("accounts", |e| {
        let mut store = e.open();
        let tx = store.begin().unwrap();
        assert_eq!(
            tx.account("alice").unwrap(),
            Account::default(),
            "{}",
            e.name
        );
        let locked = Account {
            failures: 6,
            locked_at: Some(1_700_000_500),
            last_failure: Some(1_700_000_499),
            locked_until: Some(1_700_001_100),
        };
        tx.put_account("alice", &locked).unwrap();
        tx.put_account("bob", &Account::default()).unwrap();
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        assert_eq!(tx.account("alice").unwrap(), locked, "{}", e.name);
        let users = tx.users().unwrap();
        let names: Vec<_> = users.iter().map(|u| u.user.as_str()).collect();
        assert_eq!(
            names,
            ["alice"],
            "{}: a clean account is not listed",
            e.name
        );
        assert!(users[0].locked && users[0].failures == 6, "{}", e.name);
        tx.put_account("alice", &Account::default()).unwrap();
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        assert_eq!(
            tx.account("alice").unwrap(),
            Account::default(),
            "{}",
            e.name
        );
    });
}

#[test]
fn devices_keep_every_field_and_a_taken_name_is_a_conflict_that_leaves_the_transaction_usable() {
    both("devices", |e| {
        let mut store = e.open();
        let tx = store.begin().unwrap();
        let id = tx.insert_device(&totp_device("alice", "phone")).unwrap();
        tx.insert_device(&sms_device("alice")).unwrap();
        match tx.insert_device(&totp_device("alice", "phone")) {
            Err(StoreError::Conflict(m)) => assert!(m.contains("phone"), "{}: {m}", e.name),
            other => panic!("{}: {:?}", e.name, other.map(|_| ())),
        }
        // Still usable after the conflict, and it commits.
        tx.mark_verified(id).unwrap();
        tx.set_last_step(id, 56_000_123).unwrap();
        tx.commit().unwrap();

        let tx = store.begin().unwrap();
        let devices = tx.devices("alice").unwrap();
        assert_eq!(devices.len(), 2, "{}", e.name);
        let phone = &devices[0];
        assert!(phone.verified && phone.name == "phone", "{}", e.name);
        assert_eq!(phone.created, 1_700_000_000);
        match &phone.factor {
            Factor::Totp {
                secret,
                params,
                window,
                last_step,
            } => {
                assert_eq!(
                    secret.as_slice(),
                    (0u8..20).collect::<Vec<_>>(),
                    "{}",
                    e.name
                );
                assert_eq!(params.algorithm, Algorithm::SHA256);
                assert_eq!((params.digits, params.period), (8, 60));
                assert_eq!(
                    *window,
                    Some(StepWindow {
                        behind: 3,
                        ahead: 4,
                        offset: -17
                    }),
                    "{}",
                    e.name
                );
                assert_eq!(*last_step, Some(56_000_123), "{}", e.name);
            }
            other => panic!("{}: {other:?}", e.name),
        }
        match &devices[1].factor {
            Factor::Sms { phone } => assert_eq!(phone, "+15550104242", "{}", e.name),
            other => panic!("{}: {other:?}", e.name),
        }
        assert!(tx.devices("bob").unwrap().is_empty());
        // The other window shapes: the config's, and an even one with an offset.
        let shapes = [
            None,
            Some(StepWindow::symmetric(2)),
            Some(StepWindow {
                behind: 0,
                ahead: 1,
                offset: 1499,
            }),
        ];
        for (i, window) in shapes.iter().enumerate() {
            let mut d = totp_device("carol", &format!("d{i}"));
            if let Factor::Totp { window: w, .. } = &mut d.factor {
                *w = *window;
            }
            tx.insert_device(&d).unwrap();
        }
        let read: Vec<_> = tx
            .devices("carol")
            .unwrap()
            .into_iter()
            .map(|d| match d.factor {
                Factor::Totp { window, .. } => window,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(read, shapes, "{}", e.name);
        assert_eq!(tx.delete_devices("carol").unwrap(), 3);
        assert!(tx.delete_device("alice", "sms").unwrap());
        assert!(!tx.delete_device("alice", "sms").unwrap(), "{}", e.name);
        assert_eq!(tx.delete_devices("alice").unwrap(), 1, "{}", e.name);
        tx.commit().unwrap();
    });
}

#[test]
fn codes_are_replaced_spent_and_purged_alike() {
    both("codes", |e| {
        let mut store = e.open();
        let now = 1_700_001_000;
        let tx = store.begin().unwrap();
        tx.replace_bypass_codes("alice", &[hash("a"), hash("b")], now)
            .unwrap();
        tx.replace_bypass_codes("alice", &[hash("c"), hash("d"), hash("e")], now)
            .unwrap();
        let stored = tx.bypass_codes("alice").unwrap();
        assert_eq!(stored.len(), 3, "{}: a new set replaces the old", e.name);
        assert!(stored[0].hash.matches("c"), "{}", e.name);
        tx.delete_bypass_code(stored[0].id).unwrap();
        assert_eq!(tx.bypass_codes("alice").unwrap().len(), 2);

        tx.put_one_time_code("alice", OneTimePurpose::Temporary, &hash("1"), now + 300, 3)
            .unwrap();
        tx.put_one_time_code("alice", OneTimePurpose::Temporary, &hash("2"), now + 300, 3)
            .unwrap();
        tx.put_one_time_code("alice", OneTimePurpose::SmsLogin, &hash("3"), now + 5, 1)
            .unwrap();
        let live = tx.one_time_codes("alice", now).unwrap();
        assert_eq!(live.len(), 2, "{}: one code per purpose", e.name);
        let temporary = live
            .iter()
            .find(|c| c.purpose == OneTimePurpose::Temporary)
            .unwrap();
        assert!(temporary.hash.matches("2"), "{}", e.name);
        tx.set_attempts_left(temporary.id, 0).unwrap();
        let left = tx.one_time_codes("alice", now + 10).unwrap();
        assert!(
            left.is_empty(),
            "{}: expired and used-up codes are purged: {left:?}",
            e.name
        );
        assert_eq!(tx.delete_all_bypass_codes("alice").unwrap(), 2);
        tx.commit().unwrap();
    });
}

#[test]
fn settings_and_the_audit_trail_read_back_in_order() {
    both("audit", |e| {
        let mut store = e.open();
        let tx = store.begin().unwrap();
        tx.put_setting("policy", "optional").unwrap();
        tx.put_setting("policy", "required").unwrap();
        assert_eq!(tx.setting("policy").unwrap().as_deref(), Some("required"));
        assert_eq!(tx.setting("nothing").unwrap(), None);
        for i in 0..10 {
            tx.append_audit(&AuditEntry {
                time: 1_700_000_000 + i,
                host: if i % 2 == 0 { "a" } else { "b" }.into(),
                user: if i < 5 { "alice" } else { "bob" }.into(),
                event: "failure".into(),
                detail: format!("n={i}"),
            })
            .unwrap();
        }
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        assert_eq!(
            tx.all_settings().unwrap(),
            [("policy".to_owned(), "required".to_owned())]
        );
        let newest: Vec<_> = tx
            .audit_entries(None, None, 3)
            .unwrap()
            .into_iter()
            .map(|a| a.detail)
            .collect();
        assert_eq!(
            newest,
            ["n=7", "n=8", "n=9"],
            "{}: newest 3, oldest first",
            e.name
        );
        let alice_on_b: Vec<_> = tx
            .audit_entries(Some("alice"), Some("b"), 100)
            .unwrap()
            .into_iter()
            .map(|a| a.detail)
            .collect();
        assert_eq!(alice_on_b, ["n=1", "n=3"], "{}", e.name);
    });
}

#[test]
fn a_transaction_dropped_without_commit_leaves_nothing() {
    both("rollback", |e| {
        let mut store = e.open();
        {
            let tx = store.begin().unwrap();
            tx.put_account(
                "alice",
                &Account {
                    failures: 3,
                    ..Account::default()
                },
            )
            .unwrap();
            tx.insert_device(&totp_device("alice", "phone")).unwrap();
        }
        let tx = store.begin().unwrap();
        assert_eq!(
            tx.account("alice").unwrap(),
            Account::default(),
            "{}",
            e.name
        );
        assert!(tx.devices("alice").unwrap().is_empty(), "{}", e.name);
    });
}

/// The pattern every guess-limited update follows: read the count, add
/// one, write it back. Parallel stores must never lose an increment.
#[test]
fn parallel_read_then_write_on_one_account_never_loses_an_update() {
    both("serial", |e| {
        // Created once: this is about transactions, not about creating.
        drop(e.open());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mut store = e.open();
                    for _ in 0..25 {
                        let tx = store.begin().unwrap();
                        let mut a = tx.account("alice").unwrap();
                        a.failures += 1;
                        tx.put_account("alice", &a).unwrap();
                        tx.commit().unwrap();
                    }
                });
            }
        });
        let mut store = e.open();
        let tx = store.begin().unwrap();
        assert_eq!(tx.account("alice").unwrap().failures, 100, "{}", e.name);
    });
}

/// PostgreSQL only: SQLite's transactions are exclusive for the whole
/// file, by design of that engine; on a shared server, one user's open
/// transaction must not hold up anyone else.
#[test]
fn on_postgresql_an_open_transaction_holds_up_its_own_account_only() {
    let e = postgres("rowlock");
    let mut holder = e.open();
    let held = holder.begin().unwrap();
    held.account("alice").unwrap();

    let mut other = e.open();
    let started = Instant::now();
    let tx = other.begin().unwrap();
    tx.account("bob").unwrap();
    tx.put_account(
        "bob",
        &Account {
            failures: 1,
            ..Account::default()
        },
    )
    .unwrap();
    tx.commit().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bob waited {:?} for alice's transaction",
        started.elapsed()
    );

    // Alice's second transaction waits for the first, then sees its write.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut store = e.open();
            let started = Instant::now();
            let tx = store.begin().unwrap();
            let seen = tx.account("alice").unwrap().failures;
            tx.commit().unwrap();
            (seen, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(500));
        held.put_account(
            "alice",
            &Account {
                failures: 4,
                ..Account::default()
            },
        )
        .unwrap();
        held.commit().unwrap();
        let (seen, waited) = waiter.join().unwrap();
        assert_eq!(
            seen, 4,
            "alice's second transaction read before the first committed"
        );
        assert!(
            waited >= Duration::from_millis(400),
            "it did not wait: {waited:?}"
        );
    });
}

/// Issue 13, finding 1: a read snapshot neither waits for a write
/// transaction on the same account nor writes: on SQLite it does not need
/// the file's write lock, on PostgreSQL not the account's row lock. It
/// sees what was committed before it, lists only live one-time codes
/// without purging the others, and refuses any write as a fault.
#[test]
fn a_read_snapshot_waits_for_no_writer_and_writes_nothing() {
    both("snapshot", |e| {
        let mut setup = e.open();
        let tx = setup.begin().unwrap();
        let alice = Account {
            failures: 2,
            ..Account::default()
        };
        tx.put_account("alice", &alice).unwrap();
        tx.put_one_time_code("alice", OneTimePurpose::Temporary, &hash("1"), 1_000, 3)
            .unwrap();
        tx.put_one_time_code("alice", OneTimePurpose::SmsLogin, &hash("2"), 3_000, 3)
            .unwrap();
        tx.commit().unwrap();

        let mut writer = e.open();
        let held = writer.begin().unwrap();
        held.put_account("alice", &Account::default()).unwrap();

        let mut reader = e.open();
        let started = Instant::now();
        let snapshot = reader.begin_read().unwrap();
        assert_eq!(snapshot.account("alice").unwrap(), alice, "{}", e.name);
        let live = snapshot.one_time_codes("alice", 2_000).unwrap();
        assert_eq!(live.len(), 1, "{}: only the live code", e.name);
        assert_eq!(live[0].purpose, OneTimePurpose::SmsLogin);
        let write = snapshot.put_account("bob", &Account::default());
        assert!(
            matches!(write, Err(StoreError::Faulty(_))),
            "{}: a write in a snapshot: {write:?}",
            e.name
        );
        drop(snapshot);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{}: the reader waited {:?} for the writer",
            e.name,
            started.elapsed()
        );
        held.commit().unwrap();

        // The expired code was only hidden: the next write transaction purges it.
        let snapshot = reader.begin_read().unwrap();
        assert_eq!(snapshot.account("alice").unwrap().failures, 0);
        drop(snapshot);
        let tx = reader.begin().unwrap();
        assert_eq!(tx.one_time_codes("alice", 2_000).unwrap().len(), 1);
        tx.commit().unwrap();
    });
}
