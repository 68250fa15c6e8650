//! The audit table records what happened, never a code or secret. Every
//! [`TestEnv`] checks this when dropped; here the check itself is tested,
//! and every flow runs against one database whose trail is read in full.

use super::env::*;
use super::fakes::*;
use crate::attempt::Accepted;
use crate::config::Policy;
use crate::login::{Denial, Outcome};
use crate::secret::base32_encode;
use crate::store::AuditEntry;

#[test]
fn the_leak_check_finds_a_code_in_an_audit_detail() {
    let mut env = TestEnv::new();
    env.remember_secret("52830417");
    env.remember_secret("abcde-fghjk");
    assert!(env.leaked_secrets().is_empty());
    let tx = crate::store::Store::begin(&mut env.store).unwrap();
    tx.append_audit(&AuditEntry {
        time: T0,
        host: "test-host".into(),
        user: "alice".into(),
        event: "wrong-code".into(),
        detail: "typed=52830417 other=ABCDE-FGHJK".into(),
    })
    .unwrap();
    tx.commit().unwrap();
    assert_eq!(env.leaked_secrets(), ["52830417", "abcde-fghjk"]);
    // Planted on purpose: do not fail the drop-time check.
    env.forget_secrets();
}

/// Every detail is `key=value` words from a fixed vocabulary, so no typed
/// text can ride along.
fn assert_detail_is_vocabulary_only(e: &AuditEntry) {
    for word in e.detail.split_whitespace() {
        if word == "setup-at-login" {
            continue;
        }
        let (key, value) = word
            .split_once('=')
            .unwrap_or_else(|| panic!("bare word in {e:?}"));
        let allowed: &[&str] = match key {
            "method" => &["totp", "bypass", "temporary", "sms"],
            "kind" => &["totp", "sms"],
            "reason" => &["code-equals-password"],
            "factor" => &["password", "code"],
            "mode" => &["authfail", "auth", "account"],
            "device" => &["phone", "login"],
            "service" => &[SERVICE],
            "rhost" => &[RHOST],
            "failures" if value.parse::<u32>().is_ok() => continue,
            _ => panic!("unexpected key {key:?} in {e:?}"),
        };
        assert!(allowed.contains(&value), "unexpected {word:?} in {e:?}");
    }
}

#[test]
fn no_code_or_secret_reaches_the_audit_table_in_any_flow() {
    let mut env = TestEnv::with(|c| c.policy = Policy::Required);
    let alice = user("alice");
    env.add_totp("alice", "phone", SECRET);
    let bypass = env.give_bypass_codes("alice", 2);
    env.store_bypass_codes("dora", &["40817263", "95736241"]);
    env.give_temporary_code("alice", "52830417", T0 + 300);

    let ok = code_at(SECRET, T0);
    let wrong = wrong_code(SECRET, T0);
    env.second_factor_after_password(&alice, ok.as_bytes(), vec![typed(&ok)]);
    env.second_factor_after_password(&alice, b"s3cret-Passw0rd", vec![typed(&ok)]);
    env.second_factor(&alice, vec![typed(&ok)]);
    env.second_factor(&alice, vec![typed(&wrong)]);
    // Successes in between keep alice below the lockout limit.
    let (outcome, _) = env.second_factor(&alice, vec![typed(bypass[0].to_lowercase())]);
    assert_eq!(outcome, Outcome::Verified(Accepted::Bypass { left: 1 }));
    for odd in [
        &b""[..],
        &[0xff, 0xfe],
        b"1234\x005678",
        b"   ",
        &[b'7'; 5000],
    ] {
        env.second_factor(&alice, vec![typed(odd)]);
    }
    let (outcome, _) = env.second_factor(&alice, vec![typed("52830417")]);
    assert_eq!(outcome, Outcome::Verified(Accepted::Temporary));
    env.second_factor(&user("dora"), vec![typed("95736241")]);

    let (enrolled, p) = env.second_factor(&user("bob"), vec![setup_code_at(T0)]);
    assert_eq!(enrolled, Outcome::Enrolled);
    env.remember_secret(base32_encode(&shown_secret(&p.shown)).as_str());

    let carol = user("carol");
    env.add_totp("carol", "phone", SECRET);
    env.lock_out(&carol);
    let (locked, _) = env.second_factor(&carol, vec![typed(&ok)]);
    assert_eq!(locked, Outcome::Denied(Denial::Locked));

    let entries = env.audit(None);
    let events: Vec<&str> = entries.iter().map(|e| e.event.as_str()).collect();
    for event in ["code-accepted", "locked", "device-verified", "login-locked"] {
        assert!(events.contains(&event), "{event} was audited: {events:?}");
    }
    assert!(
        !env.failure_entries("alice").is_empty(),
        "failures were audited"
    );
    let methods = ["totp", "bypass", "temporary"].map(|m| format!("method={m} "));
    for m in &methods {
        assert!(
            entries.iter().any(|e| e.detail.starts_with(m.as_str())),
            "{m}"
        );
    }
    assert!(entries.iter().any(|e| e.detail.contains("factor=password")));
    for e in &entries {
        assert_detail_is_vocabulary_only(e);
    }
    assert_eq!(env.leaked_secrets(), Vec::<String>::new());
}

/// Issue 14 #10: an attempt on a locked account is in the audit trail
/// (`login-locked`, with the phase), not only in syslog; a wrong code's
/// failure names its factor as a wrong password's does.
#[test]
fn attempts_on_a_locked_account_and_code_failures_are_audited_with_their_factor() {
    let mut env = TestEnv::new();
    env.add_totp("alice", "phone", SECRET);
    let alice = user("alice");
    let (outcome, _) = env.second_factor(&alice, vec![typed(wrong_code(SECRET, T0))]);
    assert_eq!(outcome, Outcome::Denied(Denial::WrongCode));
    env.authfail(&alice);
    let details: Vec<String> = env
        .failure_entries("alice")
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert!(
        details[0].starts_with("failures=1 factor=code service="),
        "{details:?}"
    );
    assert!(
        details[1].starts_with("failures=2 factor=password service="),
        "{details:?}"
    );

    env.lock_out(&alice);
    let before = env.audit_events("alice").len();
    env.authfail(&alice);
    env.second_factor(&alice, vec![typed("123456")]);
    env.account_phase(&alice);
    let rows: Vec<(String, String)> = env
        .audit(Some("alice"))
        .into_iter()
        .skip(before)
        .map(|e| (e.event, e.detail))
        .collect();
    let modes: Vec<&str> = rows
        .iter()
        .map(|(event, detail)| {
            assert_eq!(event, "login-locked");
            detail.split(' ').next().unwrap()
        })
        .collect();
    assert_eq!(modes, ["mode=authfail", "mode=auth", "mode=account"]);
}
