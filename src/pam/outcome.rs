//! The one place where results become PAM return codes. Its default denies.

use super::args::Mode;
use super::sys::{
    PAM_AUTH_ERR, PAM_CONV_ERR, PAM_MAXTRIES, PAM_PERM_DENIED, PAM_SUCCESS, PAM_USER_UNKNOWN,
};
use crate::login::Denial;
use crate::protocol::Verdict;
use std::ffi::c_int;

/// Everything an entry point can end with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Result {
    /// The daemon's verdict.
    Ran(Verdict),
    /// The daemon is not running; `allow` is the admin's `on_unavailable`
    /// (false when the daemon is there but failed).
    Unavailable {
        allow: bool,
    },
    BadArguments,
    NoUser,
    Panicked,
}

pub fn pam_code(mode: Mode, result: &Result) -> c_int {
    use Verdict::*;
    let deny = if mode == Mode::Account {
        PAM_PERM_DENIED
    } else {
        PAM_AUTH_ERR
    };
    match (mode, result) {
        // authfail runs only after a wrong password: it never lets anyone in.
        (Mode::Authfail, _) => PAM_AUTH_ERR,
        (_, Result::Ran(Success)) => PAM_SUCCESS,
        // The password module already decided; "allow" lets that decision stand.
        // SUCCESS, not IGNORE: after a `success=1` jump the stack holds no success yet.
        (_, Result::Unavailable { allow: true } | Result::Ran(Unavailable { allow: true })) => {
            PAM_SUCCESS
        }
        (Mode::Account, Result::Ran(Denied(Denial::UnknownUser))) => PAM_USER_UNKNOWN,
        // A locked account: no retry can help. sshd stops offering
        // keyboard-interactive on this connection instead of running the
        // stack (and showing the locked message) again for each of the
        // client's retries.
        (Mode::SecondFactor, Result::Ran(Denied(Denial::Locked))) => PAM_MAXTRIES,
        // Likewise while MFA is unavailable: a retry meets the same daemon.
        // Not a way to tell names apart: it is the same for every user.
        (
            Mode::Preauth | Mode::SecondFactor,
            Result::Unavailable { allow: false } | Result::Ran(Unavailable { allow: false }),
        ) => PAM_MAXTRIES,
        (_, Result::Ran(ConversationFailed)) => PAM_CONV_ERR,
        _ => deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_explicit_successes_succeed() {
        let ok = [
            Result::Ran(Verdict::Success),
            Result::Ran(Verdict::Unavailable { allow: true }),
            Result::Unavailable { allow: true },
        ];
        for r in &ok {
            assert_eq!(pam_code(Mode::SecondFactor, r), PAM_SUCCESS, "{r:?}");
            assert_eq!(pam_code(Mode::Authfail, r), PAM_AUTH_ERR, "{r:?}");
        }
        let denied = [
            Result::Ran(Verdict::Denied(Denial::WrongCode)),
            Result::Ran(Verdict::Denied(Denial::Locked)),
            Result::Ran(Verdict::Denied(Denial::NotEnrolled)),
            Result::Ran(Verdict::Denied(Denial::UnknownUser)),
            Result::Ran(Verdict::Denied(Denial::Internal)),
            Result::Ran(Verdict::Unavailable { allow: false }),
            Result::Ran(Verdict::Refused),
            Result::Unavailable { allow: false },
            Result::BadArguments,
            Result::NoUser,
            Result::Panicked,
        ];
        for r in &denied {
            let unavailable = matches!(
                r,
                Result::Unavailable { allow: false }
                    | Result::Ran(Verdict::Unavailable { allow: false })
            );
            let preauth = if unavailable {
                PAM_MAXTRIES
            } else {
                PAM_AUTH_ERR
            };
            assert_eq!(pam_code(Mode::Preauth, r), preauth, "{r:?}");
            let locked = *r == Result::Ran(Verdict::Denied(Denial::Locked));
            let auth = if locked || unavailable {
                PAM_MAXTRIES
            } else {
                PAM_AUTH_ERR
            };
            assert_eq!(pam_code(Mode::SecondFactor, r), auth, "{r:?}");
            assert_ne!(pam_code(Mode::Account, r), PAM_SUCCESS, "{r:?}");
        }
        assert_eq!(
            pam_code(
                Mode::SecondFactor,
                &Result::Ran(Verdict::ConversationFailed)
            ),
            PAM_CONV_ERR
        );
        assert_eq!(
            pam_code(Mode::Account, &Result::Ran(Verdict::Denied(Denial::Locked))),
            PAM_PERM_DENIED
        );
    }
}
