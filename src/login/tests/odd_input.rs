//! What a client may send instead of a code: the password (sshd's password
//! method), nothing, far too much, bytes that are not text. Each is refused
//! and counted like any wrong code, and nothing panics.

use super::env::*;
use super::fakes::*;
use crate::attempt::Accepted;
use crate::login::{Denial, Outcome, CODE_PROMPT, MSG_WRONG};

/// Offers `input` at alice's code prompt and checks it was refused and
/// counted as exactly one failure.
fn assert_refused_and_counted(input: &[u8]) {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    let (outcome, p) = env.second_factor(&user("alice"), vec![typed(input)]);
    assert_eq!(
        outcome,
        Outcome::Denied(Denial::WrongCode),
        "input {input:?}"
    );
    assert_eq!(
        p.shown,
        [
            Shown::Prompt(CODE_PROMPT.into()),
            Shown::Error(MSG_WRONG.into())
        ]
    );
    assert_eq!(env.account("alice").failures, 1, "input {input:?}");
    assert_eq!(env.last_step("alice", "phone"), None);
}

#[test]
fn a_valid_code_equal_to_the_password_is_refused_and_counted() {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    let alice = user("alice");
    let code = code_at(SECRET, T0);
    let (outcome, p) =
        env.second_factor_after_password(&alice, code.as_bytes(), vec![typed(&code)]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(p.errors(), [MSG_WRONG]);
    assert_eq!(env.account("alice").failures, 1);
    let failures: Vec<String> = env
        .failure_entries("alice")
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert_eq!(
        failures,
        [format!(
            "failures=1 reason=code-equals-password factor=code service={SERVICE} rhost={RHOST}"
        )]
    );
    // It was refused for being the password, not spent: with another
    // password the same code still works.
    let (outcome, _) =
        env.second_factor_after_password(&alice, b"correct horse", vec![typed(&code)]);
    assert_eq!(
        outcome,
        Outcome::Verified(Accepted::Totp {
            device: "phone".into()
        })
    );
}

#[test]
fn a_bypass_code_equal_to_the_password_is_refused_and_kept() {
    let mut env = TestEnv::new();
    let alice = user("alice");
    let codes = env.give_bypass_codes("alice", 2);
    let (outcome, _) =
        env.second_factor_after_password(&alice, codes[0].as_bytes(), vec![typed(&codes[0])]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    assert_eq!(env.account("alice").failures, 1);
    assert_eq!(env.bypass_hashes("alice").len(), 2);
}

#[test]
fn an_empty_code_is_refused_and_counted() {
    assert_refused_and_counted(b"");
}

#[test]
fn a_5000_byte_code_is_refused_and_counted() {
    assert_refused_and_counted(&[b'1'; 5000]);
}

#[test]
fn a_valid_code_padded_to_5000_bytes_is_refused_and_counted() {
    let mut padded = code_at(SECRET, T0).into_bytes();
    padded.resize(5000, b' ');
    assert_refused_and_counted(&padded);
}

#[test]
fn bytes_that_are_not_utf8_are_refused_and_counted() {
    assert_refused_and_counted(&[0xff, 0xfe]);
}

#[test]
fn a_valid_code_with_a_nul_byte_is_refused_and_counted() {
    let mut with_nul = code_at(SECRET, T0).into_bytes();
    with_nul.push(0);
    assert_refused_and_counted(&with_nul);
    assert_refused_and_counted(b"12\x0034\x0056");
}

#[test]
fn a_whitespace_only_code_is_refused_and_counted() {
    assert_refused_and_counted(b"      ");
    assert_refused_and_counted(b" \t\r\n ");
}

#[test]
fn a_code_with_full_width_digits_is_refused_and_counted() {
    let wide: String = code_at(SECRET, T0)
        .chars()
        .map(|c| char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap())
        .collect();
    assert_refused_and_counted(wide.as_bytes());
}
