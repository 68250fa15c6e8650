//! The PAM conversation. It frees every reply, wipes reply text before
//! freeing it, treats a NULL reply as an error, and sends pending
//! information lines in the same call as the next prompt.

use crate::login::{ConversationFailed, Prompter};
use crate::secret::SecretBytes;
use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr;
use zeroize::{Zeroize, Zeroizing};

use super::sys::{
    PamConv, PamMessage, PamResponse, PAM_CONV, PAM_ERROR_MSG,
    PAM_MAX_MSG_SIZE as MAX_MESSAGE_BYTES, PAM_MAX_NUM_MSG as MAX_MESSAGES, PAM_PROMPT_ECHO_OFF,
    PAM_PROMPT_ECHO_ON, PAM_SUCCESS, PAM_TEXT_INFO,
};
use super::Handle;

pub struct Conversation {
    conv: *const PamConv,
    pending: Vec<(c_int, String)>,
    silent: bool,
}

impl Conversation {
    /// The application's conversation, or an error if it gave none.
    pub(super) fn from_handle(
        pamh: &Handle,
        silent: bool,
    ) -> Result<Conversation, ConversationFailed> {
        let conv = pamh.raw_item(PAM_CONV).ok_or(ConversationFailed)? as *const PamConv;
        // SAFETY: a PAM_CONV item is a `struct pam_conv`, laid out as
        // PamConv, that the application keeps alive for the whole call.
        if unsafe { (*conv).conv.is_none() } {
            return Err(ConversationFailed);
        }
        Ok(Conversation {
            conv,
            pending: Vec::new(),
            silent,
        })
    }

    /// Sends pending lines that no prompt followed (e.g. a final error).
    pub fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for batch in pending.chunks(MAX_MESSAGES) {
            let _ = self.call(batch);
        }
    }

    fn queue(&mut self, style: c_int, text: &str) {
        for piece in split_message(text) {
            self.pending.push((style, piece));
        }
    }

    /// One conversation call. Returns the reply to the last message if it
    /// was a prompt; every reply is wiped and freed.
    fn call(
        &self,
        messages: &[(c_int, String)],
    ) -> Result<Option<SecretBytes>, ConversationFailed> {
        if messages.is_empty() {
            return Ok(None);
        }
        let texts: Vec<CString> = messages
            .iter()
            .map(|(_, t)| CString::new(t.replace('\0', " ")).unwrap_or_default())
            .collect();
        let structs: Vec<PamMessage> = messages
            .iter()
            .zip(&texts)
            .map(|((style, _), text)| PamMessage {
                msg_style: *style,
                msg: text.as_ptr(),
            })
            .collect();
        // An array of pointers, each to its own struct: correct under both
        // the Linux-PAM and the Solaris reading of `const pam_message **`.
        let mut pointers: Vec<*const PamMessage> = structs.iter().map(|m| m as *const _).collect();
        let mut replies: *mut PamResponse = ptr::null_mut();
        // SAFETY: self.conv was checked non-null with a non-null function in
        // from_handle and stays valid for this pam_sm_* call.
        let conv = unsafe { &*self.conv };
        let Some(callback) = conv.conv else {
            return Err(ConversationFailed);
        };
        // SAFETY: pointers/structs/texts outlive the call; the callback
        // allocates `replies` (an array of messages.len() entries) with malloc.
        let rc = unsafe {
            callback(
                messages.len() as c_int,
                pointers.as_mut_ptr(),
                &mut replies,
                conv.appdata_ptr,
            )
        };
        // SAFETY: replies is either NULL or the malloc'd array of
        // messages.len() responses the callback returned; we own it now.
        let answer = unsafe { take_replies(replies, messages.len()) };
        if rc != PAM_SUCCESS {
            return Err(ConversationFailed);
        }
        if !matches!(
            messages.last().map(|(s, _)| *s),
            Some(PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON)
        ) {
            return Ok(None);
        }
        answer.map(Some).ok_or(ConversationFailed)
    }
}

/// Copies out the last reply, then wipes and frees every reply and the array.
///
/// # Safety
/// `replies` must be NULL or a malloc'd array of `n` PamResponse whose `resp`
/// fields are NULL or malloc'd NUL-terminated strings.
unsafe fn take_replies(replies: *mut PamResponse, n: usize) -> Option<SecretBytes> {
    if replies.is_null() {
        return None;
    }
    let mut last = None;
    for i in 0..n {
        // SAFETY: i < n, within the array per the contract above.
        let reply = unsafe { &mut *replies.add(i) };
        if reply.resp.is_null() {
            continue;
        }
        // SAFETY: resp is a NUL-terminated malloc'd string per the contract.
        let bytes = unsafe { CStr::from_ptr(reply.resp) }.to_bytes();
        if i == n - 1 {
            last = Some(Zeroizing::new(bytes.to_vec()));
        }
        let len = bytes.len();
        // SAFETY: the string is len bytes long plus its NUL; we wipe then
        // free it exactly once and clear the pointer.
        unsafe {
            std::slice::from_raw_parts_mut(reply.resp as *mut u8, len).zeroize();
            libc::free(reply.resp as *mut c_void);
        }
        reply.resp = ptr::null_mut();
    }
    // SAFETY: the array itself was malloc'd by the callback.
    unsafe { libc::free(replies as *mut c_void) };
    last
}

/// Splits text into pieces Linux-PAM accepts (at most 511 bytes), at line
/// boundaries where possible, never inside a UTF-8 character.
fn split_message(text: &str) -> Vec<String> {
    let limit = MAX_MESSAGE_BYTES - 1;
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut empty = true;
    for line in text.split('\n') {
        let sep = usize::from(!empty);
        if current.len() + sep + line.len() <= limit {
            if !empty {
                current.push('\n');
            }
            current.push_str(line);
            empty = false;
            continue;
        }
        if !empty {
            pieces.push(std::mem::take(&mut current));
        }
        let mut rest = line;
        while rest.len() > limit {
            let mut cut = limit;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            pieces.push(rest[..cut].to_owned());
            rest = &rest[cut..];
        }
        current.push_str(rest);
        empty = false;
    }
    pieces.push(current);
    pieces
}

impl Prompter for Conversation {
    fn info(&mut self, text: &str) {
        self.queue(PAM_TEXT_INFO, text);
    }

    fn error(&mut self, text: &str) {
        if !self.silent {
            self.queue(PAM_ERROR_MSG, text);
        }
    }

    fn ask_hidden(&mut self, prompt: &str) -> Result<SecretBytes, ConversationFailed> {
        self.ask(PAM_PROMPT_ECHO_OFF, prompt)
    }

    fn ask_visible(&mut self, prompt: &str) -> Result<SecretBytes, ConversationFailed> {
        self.ask(PAM_PROMPT_ECHO_ON, prompt)
    }
}

impl Conversation {
    fn ask(&mut self, style: c_int, prompt: &str) -> Result<SecretBytes, ConversationFailed> {
        let mut messages = std::mem::take(&mut self.pending);
        // Keep room for the prompt in the final batch.
        while messages.len() >= MAX_MESSAGES {
            let rest = messages.split_off(MAX_MESSAGES - 1);
            self.call(&messages)?;
            messages = rest;
        }
        messages.push((style, prompt.to_owned()));
        self.call(&messages)?.ok_or(ConversationFailed)
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_split_at_lines_within_limits() {
        let line = "█".repeat(50); // 150 bytes
        let text = vec![line.as_str(); 20].join("\n");
        let pieces = split_message(&text);
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| p.len() < MAX_MESSAGE_BYTES));
        assert_eq!(pieces.join("\n"), text);
    }

    #[test]
    fn an_overlong_line_is_cut_on_char_boundaries() {
        let text = "é".repeat(600);
        let pieces = split_message(&text);
        assert!(pieces.iter().all(|p| p.len() < MAX_MESSAGE_BYTES));
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn blank_lines_survive() {
        assert_eq!(split_message("a\n\nb"), vec!["a\n\nb".to_string()]);
    }

    #[test]
    fn empty_text_is_one_empty_message() {
        assert_eq!(split_message(""), vec![String::new()]);
    }
}
