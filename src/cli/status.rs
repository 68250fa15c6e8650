//! `mfa status`, `mfa admin show NAME` and `mfa audit`: read-only views.

use super::context::{self, Ctx};
use super::output::{self, printable, utc};
use crate::cli::error::Result;
use crate::config::Policy;
use crate::lockout;
use crate::policy;
use crate::store::{Device, DeviceKind, Store};
use crate::users;
use serde::Serialize;

#[derive(Serialize)]
pub struct DeviceView {
    pub name: String,
    pub kind: DeviceKind,
    pub verified: bool,
    pub created: i64,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        DeviceView {
            name: d.name.clone(),
            kind: d.kind(),
            verified: d.verified,
            created: d.created,
        }
    }
}

/// One line per device, for the human views.
pub fn device_lines(devices: &[DeviceView]) -> String {
    devices
        .iter()
        .map(|d| {
            format!(
                "  {:<24} {:<5} {:<9} added {}",
                printable(&d.name),
                d.kind.as_str(),
                if d.verified { "verified" } else { "pending" },
                utc(d.created)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Serialize)]
struct StatusView {
    user: String,
    /// Whether the system's user database knows the name.
    system_account: bool,
    /// Never asked for a second factor (an `exempt_groups` member).
    exempt: bool,
    policy: Policy,
    locked: bool,
    failures: u32,
    locked_at: Option<i64>,
    devices: Vec<DeviceView>,
    bypass_codes_left: usize,
}

/// `status` for the target account and `admin show NAME`.
pub fn show(ctx: &mut Ctx, user: &str) -> Result<()> {
    let now = ctx.now();
    let info = users::lookup(user);
    let tx = ctx.store.begin_read()?;
    let account = lockout::current(tx.account(user)?, &ctx.config.lockout, now);
    let locked = lockout::is_locked(&account, &ctx.config.lockout, now);
    let devices = tx.devices(user)?;
    let bypass_codes_left = tx.bypass_codes(user)?.len();
    if info.is_none() {
        let in_store =
            account != Default::default() || !devices.is_empty() || bypass_codes_left > 0;
        context::require_known_account(user, in_store)?;
    }
    let view = StatusView {
        user: user.to_owned(),
        system_account: info.is_some(),
        exempt: info
            .as_ref()
            .is_some_and(|i| policy::is_exempt(i, &ctx.config)),
        policy: policy::current(&*tx, &ctx.config)?,
        locked,
        failures: account.failures,
        locked_at: account.locked_at.filter(|_| locked),
        devices: devices.iter().map(DeviceView::from).collect(),
        bypass_codes_left,
    };
    drop(tx);
    if ctx.json {
        return output::json(&view);
    }
    let mut text = format!("User:          {}", printable(user));
    if !view.system_account {
        text.push_str(" (unknown to this system)");
    }
    text.push_str(&format!("\nPolicy:        {}", view.policy.as_str()));
    if view.exempt {
        text.push_str(" (this user is exempt: in an exempt group)");
    }
    text.push_str("\nAccount:       ");
    match view.locked_at {
        Some(at) if ctx.admin => text.push_str(&format!(
            "LOCKED since {} after {} failures; unlock with `mfa admin unlock {}`",
            utc(at),
            view.failures,
            printable(user)
        )),
        Some(at) => text.push_str(&format!(
            "LOCKED since {} after {} failures; ask your administrator to unlock it",
            utc(at),
            view.failures
        )),
        None => text.push_str(&format!(
            "not locked, {} failed attempt(s) in a row",
            view.failures
        )),
    }
    if view.devices.is_empty() {
        text.push_str("\nDevices:       none");
    } else {
        text.push_str("\nDevices:\n");
        text.push_str(&device_lines(&view.devices));
    }
    text.push_str(&format!("\nBypass codes:  {} left", view.bypass_codes_left));
    output::text(&text)
}

/// `audit [--user NAME] [--host NAME] [--limit N]`: the newest entries,
/// oldest first.
pub fn audit(ctx: &mut Ctx, user: Option<&str>, host: Option<&str>, limit: u32) -> Result<()> {
    let entries = ctx.store.begin_read()?.audit_entries(user, host, limit)?;
    if ctx.json {
        return output::json(&entries);
    }
    if entries.is_empty() {
        return output::text("No audit entries.");
    }
    let lines: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{}  {:<12} {:<12} {:<20} {}",
                utc(e.time),
                printable(if e.host.is_empty() { "-" } else { &e.host }),
                printable(&e.user),
                printable(&e.event),
                printable(&e.detail)
            )
            .trim_end()
            .to_owned()
        })
        .collect();
    output::text(&lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Account;

    #[test]
    fn a_name_neither_the_system_nor_the_store_knows_is_refused_not_shown_empty() {
        let (mut ctx, _dir) = context::test_ctx("status_unknown");
        let e = show(&mut ctx, "nosuchuserxyz").unwrap_err();
        assert_eq!(e.exit_code(), 6, "{e}");
        assert!(
            e.to_string().contains("there is no user nosuchuserxyz"),
            "{e}"
        );
        // A user deleted from the system is still shown while the store
        // holds something for the name, so an administrator can clear it.
        let now = ctx.now();
        let tx = ctx.store.begin().unwrap();
        let failed = Account {
            failures: 2,
            last_failure: Some(now),
            ..Account::default()
        };
        tx.put_account("nosuchuserxyz", &failed).unwrap();
        tx.commit().unwrap();
        show(&mut ctx, "nosuchuserxyz").unwrap();
    }
}
