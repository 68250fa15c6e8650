//! Linux-PAM's C interface, as much of it as pam_mfa and its benchmark use
//! (`<security/_pam_types.h>`, `<security/pam_modules.h>`). Declarations
//! only: every call through them is an `unsafe` block with its own SAFETY
//! comment at the call site. `bench/src/bin/login.rs` includes this file by
//! path, so it depends on nothing but `std` and `libc`.
#![allow(dead_code)]

use std::ffi::{c_char, c_int, c_void};

/// `pam_handle_t *`, opaque.
pub type PamHandle = *mut c_void;

// Return codes.
pub const PAM_SUCCESS: c_int = 0;
pub const PAM_SERVICE_ERR: c_int = 3;
pub const PAM_BUF_ERR: c_int = 5;
pub const PAM_PERM_DENIED: c_int = 6;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_USER_UNKNOWN: c_int = 10;
pub const PAM_MAXTRIES: c_int = 11;
pub const PAM_CONV_ERR: c_int = 19;

// Item types for pam_get_item.
pub const PAM_SERVICE: c_int = 1;
pub const PAM_USER: c_int = 2;
pub const PAM_RHOST: c_int = 4;
pub const PAM_CONV: c_int = 5;
pub const PAM_AUTHTOK: c_int = 6;

/// The `flags` bit that asks a module to print nothing.
pub const PAM_SILENT: c_int = 0x8000;

// Conversation message styles.
pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_PROMPT_ECHO_ON: c_int = 2;
pub const PAM_ERROR_MSG: c_int = 3;
pub const PAM_TEXT_INFO: c_int = 4;

/// Linux-PAM's limits (PAM_MAX_NUM_MSG, PAM_MAX_MSG_SIZE).
pub const PAM_MAX_NUM_MSG: usize = 32;
pub const PAM_MAX_MSG_SIZE: usize = 512;

#[repr(C)]
pub struct PamMessage {
    pub msg_style: c_int,
    pub msg: *const c_char,
}

#[repr(C)]
pub struct PamResponse {
    pub resp: *mut c_char,
    pub resp_retcode: c_int,
}

pub type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
pub struct PamConv {
    pub conv: Option<ConvFn>,
    pub appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    pub fn pam_get_item(pamh: *const c_void, item_type: c_int, item: *mut *const c_void) -> c_int;
    pub fn pam_get_user(pamh: PamHandle, user: *mut *const c_char, prompt: *const c_char) -> c_int;
    pub fn pam_start(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        pamh: *mut PamHandle,
    ) -> c_int;
    pub fn pam_authenticate(pamh: PamHandle, flags: c_int) -> c_int;
    pub fn pam_acct_mgmt(pamh: PamHandle, flags: c_int) -> c_int;
    pub fn pam_end(pamh: PamHandle, pam_status: c_int) -> c_int;
    pub fn pam_strerror(pamh: PamHandle, errnum: c_int) -> *const c_char;
}
