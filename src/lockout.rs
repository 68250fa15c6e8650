//! Failure counting and locking. Pure functions over [`Account`]; callers run
//! them inside the store's exclusive transaction.
#![forbid(unsafe_code)]

use crate::config::LockoutConfig;
use crate::store::Account;

/// Whether the account is locked now. A lock with `unlock_after` > 0 expires.
pub fn is_locked(account: &Account, rules: &LockoutConfig, now: i64) -> bool {
    match account.locked_at {
        None => false,
        Some(_) if rules.unlock_after == 0 => true,
        Some(at) => now < at.saturating_add(rules.unlock_after as i64),
    }
}

/// The account as it stands now: an expired lock is gone, with its count.
pub fn current(account: Account, rules: &LockoutConfig, now: i64) -> Account {
    if account.locked_at.is_some() && !is_locked(&account, rules, now) {
        Account::default()
    } else {
        account
    }
}

/// Counts one failure. Returns the new state and whether this failure locked
/// the account. Root is never locked unless `lock_root` says so.
pub fn record_failure(
    account: &Account,
    rules: &LockoutConfig,
    now: i64,
    is_root: bool,
) -> (Account, bool) {
    let failures = account.failures.saturating_add(1);
    let lock_now =
        account.locked_at.is_none() && failures >= rules.deny && (!is_root || rules.lock_root);
    let next = Account {
        failures,
        locked_at: if lock_now {
            Some(now)
        } else {
            account.locked_at
        },
        last_failure: Some(now),
    };
    (next, lock_now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(deny: u32, unlock_after: u64, lock_root: bool) -> LockoutConfig {
        LockoutConfig {
            deny,
            unlock_after,
            lock_root,
        }
    }

    #[test]
    fn sixth_failure_locks_and_not_before() {
        let r = rules(6, 0, false);
        let mut a = Account::default();
        for i in 1..=5 {
            let (next, locked) = record_failure(&a, &r, 100 + i, false);
            assert!(!locked);
            assert!(!is_locked(&next, &r, 100 + i));
            a = next;
        }
        let (a, locked) = record_failure(&a, &r, 200, false);
        assert!(locked);
        assert_eq!(a.failures, 6);
        assert!(is_locked(&a, &r, 200));
        // Only an administrator unlocks: still locked a year later.
        assert!(is_locked(&a, &r, 200 + 365 * 86400));
    }

    #[test]
    fn unlock_after_expires_the_lock_exactly_then() {
        let r = rules(2, 600, false);
        let (a, _) = record_failure(&Account::default(), &r, 1000, false);
        let (a, locked) = record_failure(&a, &r, 1010, false);
        assert!(locked);
        assert!(is_locked(&a, &r, 1609));
        assert!(!is_locked(&a, &r, 1610));
        assert_eq!(current(a.clone(), &r, 1609), a);
        assert_eq!(current(a, &r, 1610), Account::default());
    }

    #[test]
    fn root_is_exempt_unless_configured() {
        let mut a = Account::default();
        for t in 0..20 {
            a = record_failure(&a, &rules(6, 0, false), t, true).0;
        }
        assert!(!is_locked(&a, &rules(6, 0, false), 20));
        let (a, locked) = record_failure(
            &Account {
                failures: 5,
                ..Default::default()
            },
            &rules(6, 0, true),
            1,
            true,
        );
        assert!(locked && a.locked_at == Some(1));
    }

    #[test]
    fn a_locked_account_keeps_its_lock_time() {
        let r = rules(1, 0, false);
        let (a, _) = record_failure(&Account::default(), &r, 5, false);
        let (b, again) = record_failure(&a, &r, 9, false);
        assert!(!again);
        assert_eq!(b.locked_at, Some(5));
    }
}
