//! Account policy (`required` / `optional`) and exemptions.

use crate::config::{Config, EnrollAtLogin, Policy};
use crate::store::{Settings, StoreResult};
use crate::users::UserInfo;

const POLICY_KEY: &str = "policy";

/// The policy in force: what an administrator set with `mfa admin policy`,
/// else the config's initial value.
pub fn current(settings: &dyn Settings, config: &Config) -> StoreResult<Policy> {
    Ok(settings
        .setting(POLICY_KEY)?
        .and_then(|v| Policy::parse(&v))
        .unwrap_or(config.policy))
}

pub fn set(settings: &dyn Settings, policy: Policy) -> StoreResult<()> {
    settings.put_setting(POLICY_KEY, policy.as_str())
}

/// Break-glass accounts are never asked for a second factor.
pub fn is_exempt(user: &UserInfo, config: &Config) -> bool {
    user.in_any_group(&config.exempt_groups)
}

/// What a user without any usable factor gets at login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoFactor {
    /// Policy optional: the password alone.
    PasswordOnly,
    /// Policy required: set up a device now.
    EnrollNow,
    /// Policy required, in-login setup off: refused.
    Refuse,
    /// Policy optional, `enroll_at_login = "offer"`: asked whether to set
    /// one up now (unless the user declined before).
    Offer,
}

pub fn without_factor(policy: Policy, config: &Config) -> NoFactor {
    match (policy, config.enroll_at_login) {
        (Policy::Optional, EnrollAtLogin::Offer) => NoFactor::Offer,
        (Policy::Optional, _) => NoFactor::PasswordOnly,
        (Policy::Required, EnrollAtLogin::Off) => NoFactor::Refuse,
        (Policy::Required, _) => NoFactor::EnrollNow,
    }
}

/// The setting that remembers a user said "no" to the offer of setup at
/// login (`enroll_at_login = "offer"`): one row per user, holding the time.
fn declined_key(user: &str) -> String {
    format!("setup-declined:{user}")
}

/// Whether `user` declined the offer of setup at login.
pub fn offer_declined(settings: &dyn Settings, user: &str) -> StoreResult<bool> {
    Ok(settings.setting(&declined_key(user))?.is_some())
}

/// Remembers that `user` declined the offer, so it is not asked again.
pub fn decline_offer(settings: &dyn Settings, user: &str, now: i64) -> StoreResult<()> {
    settings.put_setting(&declined_key(user), &now.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(std::cell::RefCell<Option<String>>);
    impl Settings for Mem {
        fn setting(&self, _: &str) -> StoreResult<Option<String>> {
            Ok(self.0.borrow().clone())
        }
        fn put_setting(&self, _: &str, v: &str) -> StoreResult<()> {
            *self.0.borrow_mut() = Some(v.into());
            Ok(())
        }
        fn all_settings(&self) -> StoreResult<Vec<(String, String)>> {
            Ok(self
                .0
                .borrow()
                .iter()
                .map(|v| ("policy".into(), v.clone()))
                .collect())
        }
    }

    #[test]
    fn stored_policy_overrides_config() {
        let mem = Mem(Default::default());
        let config = Config {
            policy: Policy::Required,
            ..Default::default()
        };
        assert_eq!(current(&mem, &config).unwrap(), Policy::Required);
        set(&mem, Policy::Optional).unwrap();
        assert_eq!(current(&mem, &config).unwrap(), Policy::Optional);
    }

    #[test]
    fn no_factor_outcomes() {
        let mut config = Config::default();
        assert_eq!(
            without_factor(Policy::Optional, &config),
            NoFactor::PasswordOnly
        );
        assert_eq!(
            without_factor(Policy::Required, &config),
            NoFactor::EnrollNow
        );
        config.enroll_at_login = EnrollAtLogin::Off;
        assert_eq!(without_factor(Policy::Required, &config), NoFactor::Refuse);
        config.enroll_at_login = EnrollAtLogin::Offer;
        assert_eq!(without_factor(Policy::Optional, &config), NoFactor::Offer);
        assert_eq!(
            without_factor(Policy::Required, &config),
            NoFactor::EnrollNow
        );
    }

    #[test]
    fn exempt_groups() {
        let config = Config {
            exempt_groups: vec!["breakglass".into()],
            ..Default::default()
        };
        let user = |groups: &[&str]| UserInfo {
            name: "u".into(),
            uid: 1000,
            groups: groups.iter().map(|s| s.to_string()).collect(),
        };
        assert!(is_exempt(&user(&["users", "breakglass"]), &config));
        assert!(!is_exempt(&user(&["users"]), &config));
    }
}
