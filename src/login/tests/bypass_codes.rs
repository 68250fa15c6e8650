//! Bypass codes at the code prompt: single use, one salt per set, forgiving
//! about case, dashes and look-alike letters, and the 8-digit scratch codes
//! imported from google-authenticator files.

use super::env::*;
use super::fakes::*;
use crate::attempt::Accepted;
use crate::google_auth;
use crate::login::{Denial, Outcome, CODE_PROMPT, MSG_WRONG};

fn bypass(left: usize) -> Outcome {
    Outcome::Verified(Accepted::Bypass { left })
}

fn left_message(left: usize) -> String {
    format!("Bypass code accepted; {left} left. Generate new ones with `mfa bypass generate`.")
}

#[test]
fn a_bypass_code_works_once() {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    let alice = user("alice");
    let codes = env.give_bypass_codes("alice", 2);

    let (outcome, p) = env.second_factor(&alice, vec![typed(&codes[1])]);
    assert_eq!(outcome, bypass(1));
    assert_eq!(
        p.shown,
        [
            Shown::Prompt(CODE_PROMPT.into()),
            Shown::Info(left_message(1))
        ]
    );
    assert_eq!(env.bypass_hashes("alice").len(), 1);
    let accepted = env.audit(Some("alice")).pop().unwrap();
    assert_eq!(accepted.event, "code-accepted");
    assert_eq!(
        accepted.detail,
        format!("method=bypass factor=code service={SERVICE} rhost={RHOST}")
    );

    let (outcome, p) = env.second_factor(&alice, vec![typed(&codes[1])]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(p.errors(), [MSG_WRONG]);
    assert_eq!(env.account("alice").failures, 1);
    assert_eq!(env.bypass_hashes("alice").len(), 1);
}

#[test]
fn a_set_shares_one_salt_and_spends_only_the_code_used() {
    let mut env = TestEnv::new();
    let alice = user("alice");
    let codes = env.give_bypass_codes("alice", 5);
    let hashes = env.bypass_hashes("alice");
    assert_eq!(hashes.len(), 5);
    assert!(
        hashes.iter().all(|h| h.salt == hashes[0].salt),
        "one salt per set"
    );

    assert_eq!(
        env.second_factor(&alice, vec![typed(&codes[3])]).0,
        bypass(4)
    );
    let mut kept = hashes.clone();
    kept.remove(3);
    assert_eq!(
        env.bypass_hashes("alice"),
        kept,
        "only the code used is gone"
    );
}

#[test]
fn the_last_bypass_code_leaves_none() {
    let mut env = TestEnv::new();
    let alice = user("alice");
    let codes = env.give_bypass_codes("alice", 1);
    let (outcome, p) = env.second_factor(&alice, vec![typed(&codes[0])]);
    assert_eq!(outcome, bypass(0));
    assert_eq!(p.infos(), [left_message(0)]);
    assert!(env.bypass_hashes("alice").is_empty());
}

#[test]
fn a_bypass_code_typed_in_lower_case_is_accepted() {
    let mut env = TestEnv::new();
    let codes = env.give_bypass_codes("alice", 2);
    let lower = codes[0].to_lowercase();
    assert_eq!(
        env.second_factor(&user("alice"), vec![typed(lower)]).0,
        bypass(1)
    );
}

#[test]
fn a_bypass_code_typed_without_its_dash_is_accepted() {
    let mut env = TestEnv::new();
    let codes = env.give_bypass_codes("alice", 2);
    let compact = codes[0].replace('-', "");
    assert_eq!(compact.len(), 10);
    assert_eq!(
        env.second_factor(&user("alice"), vec![typed(compact)]).0,
        bypass(1)
    );
}

#[test]
fn look_alike_letters_are_read_as_the_digits_they_resemble() {
    let mut env = TestEnv::new();
    env.store_bypass_codes("alice", &["01ABC-DEF10"]);
    let (outcome, _) = env.second_factor(&user("alice"), vec![typed("oIabc def Lo")]);
    assert_eq!(outcome, bypass(0));
}

#[test]
fn a_new_set_replaces_the_unused_old_one() {
    let mut env = TestEnv::new();
    let alice = user("alice");
    let old = env.give_bypass_codes("alice", 1);
    env.give_bypass_codes("alice", 2);
    let (outcome, _) = env.second_factor(&alice, vec![typed(&old[0])]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.bypass_hashes("alice").len(), 2);
}

/// Scratch codes of a migrated `~/.google_authenticator` file, stored the way
/// the import does: hashed as bypass codes with one salt.
#[test]
fn imported_scratch_codes_are_accepted_once() {
    let file = google_auth::parse(
        b"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n\" WINDOW_SIZE 3\n40817263\n95736241\n",
    )
    .unwrap();
    let mut env = TestEnv::new();
    env.insert_totp(
        "alice",
        "imported",
        &file.secret,
        true,
        Some(file.step_window()),
    );
    let scratch: Vec<&str> = file.scratch_codes.iter().map(|c| c.as_str()).collect();
    env.store_bypass_codes("alice", &scratch);
    let alice = user("alice");

    let (outcome, p) = env.second_factor(&alice, vec![typed("95736241")]);
    assert_eq!(outcome, bypass(1));
    assert_eq!(p.infos(), [left_message(1)]);
    let (outcome, _) = env.second_factor(&alice, vec![typed("95736241")]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.account("alice").failures, 1);
    // The imported app keeps working beside them.
    let (outcome, _) = env.second_factor(&alice, vec![typed(code_at(SECRET, T0))]);
    assert_eq!(
        outcome,
        Outcome::Verified(Accepted::Totp {
            device: "imported".into()
        })
    );
}

#[test]
fn a_wrong_bypass_code_is_refused_and_counted() {
    let mut env = TestEnv::new();
    env.give_bypass_codes("alice", 2);
    // A code of the right shape that is not in the set.
    let (outcome, _) = env.second_factor(&user("alice"), vec![typed("ZZZZZ-ZZZZZ")]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.account("alice").failures, 1);
    assert_eq!(env.bypass_hashes("alice").len(), 2);
}
