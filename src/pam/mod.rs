//! PAM glue: the only unsafe code in the crate. The `pam_sm_*` entry points
//! read the PAM items, run [`run::run`] under `catch_unwind`, and map the
//! result to a PAM code in [`outcome::pam_code`], whose default denies.

mod args;
mod client;
mod conv;
mod outcome;
mod run;
pub mod sys;

use crate::audit::{self, Level};
use crate::secret::SecretBytes;
use args::Mode;
use conv::Conversation;
use outcome::Result;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use sys::PamHandle;
use zeroize::Zeroizing;

/// # Safety
/// Called by libpam only: `pamh` is a live handle and `argv` holds `argc`
/// NUL-terminated strings, all valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's contract, stated above, is entry's contract.
    unsafe { entry(pamh, flags, argc, argv, false) }
}

/// # Safety
/// As for [`pam_sm_authenticate`].
#[no_mangle]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    pamh: PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's contract, stated above, is entry's contract.
    unsafe { entry(pamh, flags, argc, argv, true) }
}

/// The second factor sets no credentials.
#[no_mangle]
pub extern "C" fn pam_sm_setcred(
    _: PamHandle,
    _: c_int,
    _: c_int,
    _: *const *const c_char,
) -> c_int {
    sys::PAM_SUCCESS
}

/// Not a session or password module: a stack that uses it as one is
/// misconfigured, and the error says so instead of silently passing.
#[no_mangle]
pub extern "C" fn pam_sm_open_session(
    _: PamHandle,
    _: c_int,
    _: c_int,
    _: *const *const c_char,
) -> c_int {
    sys::PAM_SERVICE_ERR
}

/// As for [`pam_sm_open_session`].
#[no_mangle]
pub extern "C" fn pam_sm_close_session(
    _: PamHandle,
    _: c_int,
    _: c_int,
    _: *const *const c_char,
) -> c_int {
    sys::PAM_SERVICE_ERR
}

/// As for [`pam_sm_open_session`].
#[no_mangle]
pub extern "C" fn pam_sm_chauthtok(
    _: PamHandle,
    _: c_int,
    _: c_int,
    _: *const *const c_char,
) -> c_int {
    sys::PAM_SERVICE_ERR
}

/// # Safety
/// `pamh` is the live handle of the running call; `argv` holds `argc`
/// NUL-terminated strings (or is NULL when `argc` is 0).
unsafe fn entry(
    pamh: PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
    account_phase: bool,
) -> c_int {
    audit::set_ident("pam_mfa");
    let fallback_mode = if account_phase {
        Mode::Account
    } else {
        Mode::SecondFactor
    };
    let ran = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: argv/argc as this function's contract says.
        let words = unsafe { module_arguments(argc, argv) };
        let args = match args::parse(&words, account_phase) {
            Ok(a) => a,
            Err(e) => {
                audit::syslog(Level::Error, &format!("bad module arguments: {e}; denying"));
                return (fallback_mode, Result::BadArguments);
            }
        };
        let handle = Handle(pamh);
        (args.mode, with_items(&handle, flags, &args))
    }));
    let (mode, result) = ran.unwrap_or_else(|_| {
        audit::syslog(Level::Error, "internal error (panic) in pam_mfa; denying");
        (fallback_mode, Result::Panicked)
    });
    outcome::pam_code(mode, &result)
}

/// The words after the module's name in the PAM file.
///
/// # Safety
/// `argv` holds `argc` NUL-terminated strings, or `argc` is 0 or less.
unsafe fn module_arguments(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    if argv.is_null() {
        return Vec::new();
    }
    (0..usize::try_from(argc).unwrap_or(0))
        .filter_map(|i| {
            // SAFETY: i < argc, within the array.
            let word = unsafe { *argv.add(i) };
            if word.is_null() {
                return None;
            }
            // SAFETY: each non-NULL entry is a NUL-terminated string.
            let word = unsafe { CStr::from_ptr(word) };
            Some(word.to_string_lossy().into_owned())
        })
        .collect()
}

/// The handle libpam passed to the running `pam_sm_*` call. Items borrowed
/// from it are libpam's, valid until the call returns.
struct Handle(PamHandle);

impl Handle {
    /// An item's pointer, libpam's to keep; None when unset.
    fn raw_item(&self, kind: c_int) -> Option<*const c_void> {
        let mut item: *const c_void = std::ptr::null();
        // SAFETY: self.0 is the live handle; pam_get_item only writes the
        // item pointer, which libpam owns and keeps alive for the call.
        let rc = unsafe { sys::pam_get_item(self.0, kind, &mut item) };
        (rc == sys::PAM_SUCCESS && !item.is_null()).then_some(item)
    }

    /// A string item (PAM_SERVICE, PAM_RHOST, PAM_AUTHTOK, ...).
    fn item(&self, kind: c_int) -> Option<&CStr> {
        // SAFETY: the string items are NUL-terminated C strings that libpam
        // keeps for the rest of the call, which outlives &self.
        self.raw_item(kind)
            .map(|item| unsafe { CStr::from_ptr(item as *const c_char) })
    }

    /// PAM_USER, asking the application for it if no one has yet.
    fn user(&self) -> Option<&CStr> {
        let mut user: *const c_char = std::ptr::null();
        // SAFETY: the live handle; a NULL prompt means libpam's default;
        // libpam keeps the returned string for the rest of the call.
        let rc = unsafe { sys::pam_get_user(self.0, &mut user, std::ptr::null()) };
        // SAFETY: non-NULL and NUL-terminated on success.
        (rc == sys::PAM_SUCCESS && !user.is_null()).then(|| unsafe { CStr::from_ptr(user) })
    }
}

fn text(item: Option<&CStr>) -> Option<String> {
    item.map(|s| s.to_string_lossy().into_owned())
}

fn with_items(pamh: &Handle, flags: c_int, args: &args::Args) -> Result {
    let password: Option<SecretBytes> = pamh
        .item(sys::PAM_AUTHTOK)
        .map(|p| Zeroizing::new(p.to_bytes().to_vec()));
    let items = run::Items {
        user: text(pamh.user()),
        service: text(pamh.item(sys::PAM_SERVICE)).unwrap_or_default(),
        rhost: text(pamh.item(sys::PAM_RHOST)).unwrap_or_default(),
        password,
    };
    let silent = flags & sys::PAM_SILENT != 0;
    let mut conversation = match Conversation::from_handle(pamh, silent) {
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
