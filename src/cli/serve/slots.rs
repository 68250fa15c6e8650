//! How many connections the daemon serves at once, so that no one user can
//! take every place: ordinary users get a few each and share a part, root
//! (sshd, su, login and the like, and root's own `mfa`) keeps the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Connections served at once, in all.
pub const MAX_CONNECTIONS: usize = 512;
/// Of which ordinary users (not root) may hold at most this many together...
pub const MAX_UNPRIVILEGED: usize = 128;
/// ...and each of them at most this many.
pub const MAX_PER_USER: usize = 4;

#[derive(Default)]
pub struct Slots {
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    unprivileged: usize,
    per_uid: HashMap<u32, usize>,
}

/// A place held by one connection; given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    uid: u32,
    privileged: bool,
}

impl Slots {
    pub fn take(self: &Arc<Self>, uid: u32, privileged: bool) -> Option<Slot> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.total >= MAX_CONNECTIONS {
            return None;
        }
        if !privileged {
            let mine = c.per_uid.get(&uid).copied().unwrap_or(0);
            if mine >= MAX_PER_USER || c.unprivileged >= MAX_UNPRIVILEGED {
                return None;
            }
            c.per_uid.insert(uid, mine + 1);
            c.unprivileged += 1;
        }
        c.total += 1;
        Some(Slot {
            slots: Arc::clone(self),
            uid,
            privileged,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total -= 1;
        if !self.privileged {
            c.unprivileged -= 1;
            if let Some(n) = c.per_uid.get_mut(&self.uid) {
                *n -= 1;
                if *n == 0 {
                    c.per_uid.remove(&self.uid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_user_cannot_take_every_place() {
        let slots = Arc::new(Slots::default());
        let mine: Vec<Slot> = (0..MAX_PER_USER)
            .map(|_| slots.take(1000, false).unwrap())
            .collect();
        assert!(slots.take(1000, false).is_none());
        assert!(slots.take(1001, false).is_some());
        assert!(slots.take(0, true).is_some());
        drop(mine);
        assert!(slots.take(1000, false).is_some());
    }

    #[test]
    fn ordinary_users_together_leave_room_for_root() {
        let slots = Arc::new(Slots::default());
        let held: Vec<Slot> = (0..MAX_UNPRIVILEGED as u32)
            .map(|i| slots.take(2000 + i, false).unwrap())
            .collect();
        assert!(slots.take(9999, false).is_none());
        let root: Vec<Slot> = (0..MAX_CONNECTIONS - MAX_UNPRIVILEGED)
            .map(|_| slots.take(0, true).unwrap())
            .collect();
        assert!(slots.take(0, true).is_none());
        drop(root);
        drop(held);
        assert_eq!(slots.counts.lock().unwrap().total, 0);
        assert!(slots.counts.lock().unwrap().per_uid.is_empty());
    }
}
