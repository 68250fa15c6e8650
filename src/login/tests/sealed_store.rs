//! Secrets sealed at rest in the SQLite store: nothing readable on disk,
//! logins as before, and a sealed row that cannot be opened makes the store
//! unavailable, never a wrong code nor a counted failure.

use super::env::*;
use super::fakes::*;
use crate::attempt::Accepted;
use crate::login::Outcome;
use crate::seal::SealKey;
use crate::secret::base32_encode;
use crate::store::{Account, Factor, SecretsAtRest, Store, StoreError};
use std::sync::Arc;

const PHONE: &str = "+15557654321";

fn key() -> Arc<SealKey> {
    Arc::new(SealKey::generate().unwrap())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What must not be found on disk: the secret raw, in base32 and in hex
/// (either case), and the phone number with and without its `+`.
fn revealed(env: &TestEnv) -> Vec<String> {
    let bytes = env.database_bytes();
    let b32 = base32_encode(SECRET).to_string();
    let hex = hex(SECRET);
    [
        SECRET.to_vec(),
        b32.as_bytes().to_vec(),
        b32.to_lowercase().into_bytes(),
        hex.as_bytes().to_vec(),
        hex.to_uppercase().into_bytes(),
        PHONE.as_bytes().to_vec(),
        PHONE.as_bytes()[1..].to_vec(),
    ]
    .into_iter()
    .filter(|needle| contains(&bytes, needle))
    .map(|needle| String::from_utf8_lossy(&needle).into_owned())
    .collect()
}

#[test]
fn a_store_written_with_a_key_holds_no_secret_and_no_phone_on_disk() {
    // The check itself finds them in a store written without a key.
    let mut plain = TestEnv::new();
    plain.add_totp("alice", "phone", SECRET);
    plain.add_sms("bob", PHONE);
    let found = revealed(&plain);
    assert!(
        found.contains(&String::from_utf8_lossy(SECRET).into_owned()),
        "{found:?}"
    );
    assert!(found.contains(&PHONE.to_owned()), "{found:?}");

    let mut env = TestEnv::new();
    env.reopen(Some(key()));
    env.add_totp("alice", "phone", SECRET);
    env.add_sms("bob", PHONE);
    assert_eq!(revealed(&env), Vec::<String>::new());
    assert_eq!(
        env.store.begin().unwrap().secrets_at_rest().unwrap(),
        SecretsAtRest {
            sealed: 2,
            plaintext: 0
        }
    );
    // And the store reads them back.
    match &env.devices("bob")[0].factor {
        Factor::Sms { phone } => assert_eq!(phone, PHONE),
        other => panic!("{other:?}"),
    }
    let alice = user("alice");
    let (outcome, _) = env.second_factor(&alice, vec![typed(code_at(SECRET, T0))]);
    assert_eq!(
        outcome,
        Outcome::Verified(Accepted::Totp {
            device: "phone".into()
        })
    );
    // The login's writes (last step, audit) reveal nothing either.
    assert_eq!(revealed(&env), Vec::<String>::new());
}

#[test]
fn rows_written_before_the_key_still_work_and_are_counted_as_unsealed() {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    env.reopen(Some(key()));
    env.add_totp("bob", "phone", SECRET);
    assert_eq!(
        env.store.begin().unwrap().secrets_at_rest().unwrap(),
        SecretsAtRest {
            sealed: 1,
            plaintext: 1
        }
    );
    for name in ["alice", "bob"] {
        let (outcome, _) = env.second_factor(&user(name), vec![typed(code_at(SECRET, T0))]);
        assert!(
            matches!(outcome, Outcome::Verified(_)),
            "{name}: {outcome:?}"
        );
    }
}

fn assert_unavailable_and_nothing_counted(env: &mut TestEnv, why: &str) {
    let alice = user("alice");
    let (result, prompter) = env.try_run(
        Phase::SecondFactor,
        Who::Known(&alice),
        None,
        vec![typed(code_at(SECRET, T0))],
    );
    match result {
        Err(StoreError::Unavailable(m)) => assert!(m.contains(why), "{m}"),
        other => panic!("expected unavailable ({why}), got {other:?}"),
    }
    assert!(prompter.typed.is_empty(), "no code was asked for");
    assert_eq!(
        env.account("alice"),
        Account::default(),
        "no failure counted"
    );
}

#[test]
fn a_sealed_row_without_a_key_or_with_another_key_makes_the_store_unavailable() {
    let mut env = TestEnv::new();
    env.reopen(Some(key()));
    env.add_totp("alice", "phone", SECRET);

    env.reopen(None);
    assert_unavailable_and_nothing_counted(&mut env, "no secrets_key_file is configured");
    env.reopen(Some(key()));
    assert_unavailable_and_nothing_counted(&mut env, "a different key sealed it");
}

#[test]
fn a_sealed_secret_copied_to_another_users_or_devices_row_does_not_open() {
    let key = key();
    let mut env = TestEnv::new();
    env.reopen(Some(Arc::clone(&key)));
    env.add_totp("mallory", "phone", b"mallory's own secret");
    env.add_totp("alice", "phone", SECRET);
    env.add_totp("alice", "tablet", SECRET);
    // Someone with write access to the file (not the key) moves mallory's
    // sealed secret into alice's row, to log in as alice with mallory's app.
    let copy = |env: &mut TestEnv, device: &str| {
        let path = env.config.database.clone();
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute(
            "UPDATE devices SET secret_sealed =
                 (SELECT secret_sealed FROM devices WHERE user = 'mallory')
             WHERE user = 'alice' AND name = ?1",
            [device],
        )
        .unwrap();
    };
    copy(&mut env, "phone");
    env.reopen(Some(Arc::clone(&key)));
    assert_unavailable_and_nothing_counted(&mut env, "copied from another row");

    // Within one account: alice's tablet secret moved to her phone's row.
    let mut env = TestEnv::new();
    env.reopen(Some(Arc::clone(&key)));
    env.add_totp("alice", "phone", SECRET);
    env.add_totp("alice", "tablet", b"another secret 12345");
    let path = env.config.database.clone();
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(
            "UPDATE devices SET secret_sealed =
                 (SELECT secret_sealed FROM devices WHERE name = 'tablet')
             WHERE name = 'phone'",
        )
        .unwrap();
    env.reopen(Some(key));
    assert_unavailable_and_nothing_counted(&mut env, "copied from another row");
}
