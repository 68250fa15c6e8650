//! PAM glue: the only unsafe code in the crate. Entry points read the PAM
//! items, run [`run::run`] under `catch_unwind`, and map the result to a PAM
//! code in [`outcome::pam_code`], whose default denies.

mod args;
mod client;
mod conv;
mod outcome;
mod run;

use crate::audit::{self, Level};
use crate::secret::SecretBytes;
use args::Mode;
use conv::Conversation;
use outcome::Result;
use pamsm::{pam_module, Pam, PamError, PamFlags, PamLibExt, PamServiceModule};
use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use zeroize::Zeroizing;

struct PamMfa;

pam_module!(PamMfa);

impl PamServiceModule for PamMfa {
    fn authenticate(pamh: Pam, flags: PamFlags, args: Vec<String>) -> PamError {
        entry(&pamh, flags, &args, false)
    }

    fn setcred(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::SUCCESS
    }

    fn acct_mgmt(pamh: Pam, flags: PamFlags, args: Vec<String>) -> PamError {
        entry(&pamh, flags, &args, true)
    }
}

fn entry(pamh: &Pam, flags: PamFlags, args: &[String], account_phase: bool) -> PamError {
    audit::set_ident("pam_mfa");
    let fallback_mode = if account_phase {
        Mode::Account
    } else {
        Mode::SecondFactor
    };
    let ran = catch_unwind(AssertUnwindSafe(|| {
        let args = match args::parse(args, account_phase) {
            Ok(a) => a,
            Err(e) => {
                audit::syslog(Level::Error, &format!("bad module arguments: {e}; denying"));
                return (fallback_mode, Result::BadArguments);
            }
        };
        (args.mode, with_items(pamh, flags, &args))
    }));
    let (mode, result) = ran.unwrap_or_else(|_| {
        audit::syslog(Level::Error, "internal error (panic) in pam_mfa; denying");
        (fallback_mode, Result::Panicked)
    });
    outcome::pam_code(mode, &result)
}

fn text(item: pamsm::PamResult<Option<&CStr>>) -> Option<String> {
    item.ok()
        .flatten()
        .map(|s| s.to_string_lossy().into_owned())
}

fn with_items(pamh: &Pam, flags: PamFlags, args: &args::Args) -> Result {
    let password: Option<SecretBytes> = pamh
        .get_cached_authtok()
        .ok()
        .flatten()
        .map(|p| Zeroizing::new(p.to_bytes().to_vec()));
    let items = run::Items {
        user: text(pamh.get_user(None)),
        service: text(pamh.get_service()).unwrap_or_default(),
        rhost: text(pamh.get_rhost()).unwrap_or_default(),
        password,
    };
    let silent = flags.contains(PamFlags::SILENT);
    let mut conversation = match Conversation::from_handle(raw_handle(pamh), silent) {
        Ok(c) => c,
        Err(_) => {
            audit::syslog(
                Level::Error,
                "the application gave no PAM conversation; denying",
            );
            return Result::Ran(crate::protocol::Verdict::ConversationFailed);
        }
    };
    run::run(args, &items, &mut conversation)
}

fn raw_handle(pamh: &Pam) -> *const c_void {
    // SAFETY: pamsm declares `Pam` as #[repr(transparent)] over its handle,
    // a `*const c_void`, so reading the first pointer-sized field is reading
    // the handle libpam passed to this call.
    unsafe { *(pamh as *const Pam as *const *const c_void) }
}
