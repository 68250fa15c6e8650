//! Failure counting and locking. Pure functions over [`Account`]; callers run
//! them inside the store's exclusive transaction.

use crate::config::LockoutConfig;
use crate::store::Account;
use std::time::Duration;

/// The longest pause after one failure: below the module's 10 s wait for
/// the daemon's next message, so a paused login is still answered.
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(8);

/// What a locked message tells the reader to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// A user who is not an administrator: ask one.
    AskAdministrator,
    /// An administrator: the command that unlocks it.
    Unlock,
}

/// The one wording of "this account is locked" for `mfa` and the daemon's
/// commands (the login prompt says it as `login::MSG_LOCKED`).
pub fn locked_message(user: &str, remedy: Remedy) -> String {
    let how = match remedy {
        Remedy::AskAdministrator => ": ask your administrator".to_owned(),
        Remedy::Unlock => format!(" with `mfa admin unlock {user}`"),
    };
    format!(
        "the account {user} is locked after too many failed attempts; an administrator must unlock it{how}"
    )
}

/// Whether the account is locked now. A lock with its own end (root's) or
/// with `unlock_after` > 0 expires.
pub fn is_locked(account: &Account, rules: &LockoutConfig, now: i64) -> bool {
    match (account.locked_at, account.locked_until) {
        (None, _) => false,
        (Some(_), Some(until)) => now < until,
        (Some(_), None) if rules.unlock_after == 0 => true,
        (Some(at), None) => now < at.saturating_add(rules.unlock_after as i64),
    }
}

/// Whether root's failures lock it for `root_unlock_time` only (in the
/// manner of pam_faillock): root is never locked for good unless
/// `lock_root` says so.
fn root_locks_for_a_while(rules: &LockoutConfig, is_root: bool) -> bool {
    is_root && !rules.lock_root && rules.root_unlock_time > 0
}

/// How long to pause after a failure that made `failures` in a row,
/// before the verdict: root (under `lock_root = false`, whose lock ends by
/// itself) waits 1 s after its first failure in a row, doubling up to
/// [`MAX_FAILURE_DELAY`]. Others are locked for good after `deny`, which
/// limits guessing enough.
pub fn failure_delay(failures: u32, rules: &LockoutConfig, is_root: bool) -> Duration {
    if !root_locks_for_a_while(rules, is_root) || failures == 0 {
        return Duration::ZERO;
    }
    let doublings = (failures - 1).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_FAILURE_DELAY)
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
/// the account. Root is locked for good only if `lock_root` says so;
/// otherwise for `root_unlock_time` seconds (never, when that is 0).
pub fn record_failure(
    account: &Account,
    rules: &LockoutConfig,
    now: i64,
    is_root: bool,
) -> (Account, bool) {
    let failures = account.failures.saturating_add(1);
    let root_for_a_while = root_locks_for_a_while(rules, is_root);
    let may_lock = !is_root || rules.lock_root || root_for_a_while;
    let lock_now = account.locked_at.is_none() && failures >= rules.deny && may_lock;
    let next = Account {
        failures,
        locked_at: if lock_now {
            Some(now)
        } else {
            account.locked_at
        },
        last_failure: Some(now),
        locked_until: if lock_now && root_for_a_while {
            Some(now.saturating_add(rules.root_unlock_time as i64))
        } else {
            account.locked_until
        },
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
            root_unlock_time: 0,
        }
    }

    fn root_rules(deny: u32, root_unlock_time: u64) -> LockoutConfig {
        LockoutConfig {
            root_unlock_time,
            ..rules(deny, 0, false)
        }
    }

    #[test]
    fn root_is_locked_for_root_unlock_time_after_deny_failures() {
        let r = root_rules(6, 600);
        let mut a = Account::default();
        for t in 0..5 {
            let (next, locked) = record_failure(&a, &r, 1000 + t, true);
            assert!(!locked && !is_locked(&next, &r, 1000 + t));
            a = next;
        }
        let (a, locked) = record_failure(&a, &r, 1010, true);
        assert!(locked);
        assert_eq!(a.locked_until, Some(1610));
        assert!(is_locked(&a, &r, 1010));
        assert!(is_locked(&a, &r, 1609));
        assert!(!is_locked(&a, &r, 1610), "root is never locked for good");
        // Expired, the lock and its count are gone: `deny` more tries.
        assert_eq!(current(a.clone(), &r, 1610), Account::default());
        // A failure while locked keeps the end where it was.
        let (b, again) = record_failure(&a, &r, 1100, true);
        assert!(!again);
        assert_eq!(b.locked_until, Some(1610));
        // An ordinary user under the same rules is locked for good.
        let mut u = Account::default();
        for t in 0..6 {
            u = record_failure(&u, &r, 1000 + t, false).0;
        }
        assert_eq!(u.locked_until, None);
        assert!(is_locked(&u, &r, 1000 + 365 * 86400));
    }

    #[test]
    fn root_failures_pause_one_second_doubling_up_to_the_cap() {
        let r = root_rules(6, 600);
        let delays: Vec<u64> = (0..8)
            .map(|failures| failure_delay(failures, &r, true).as_secs())
            .collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 8, 8, 8]);
        assert_eq!(failure_delay(u32::MAX, &r, true), MAX_FAILURE_DELAY);
        assert_eq!(failure_delay(1, &r, false), Duration::ZERO, "not root");
        assert_eq!(
            failure_delay(1, &rules(6, 0, true), true),
            Duration::ZERO,
            "lock_root: root is locked like anyone"
        );
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
