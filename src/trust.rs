//! File trust: whether a file or directory we rely on (the config, the
//! database and its directory, the secrets key, the PostgreSQL password
//! file, the SMS file, the socket's directory) is owned by someone we trust
//! and closed to everyone else. One check for all of them; each caller says
//! what it expects and turns a [`Distrust`] into its own message, since the
//! remedy differs (chmod 0600 for a key, 0700 for a directory, ...).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Who may own a file we trust: root, or the user this process runs as (so
/// tests and `mfa --config` work unprivileged without trusting anyone else).
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Mode bits that let someone other than the owner write.
pub const OTHERS_WRITE: u32 = 0o022;
/// Mode bits that let someone other than the owner in at all: for files
/// holding secrets.
pub const OTHERS_ANY: u32 = 0o077;

/// What the file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (not a FIFO, device, directory or, unless followed,
    /// a symbolic link).
    File,
    /// Whatever the path names; the caller's next step fails on a wrong type.
    Any,
}

/// Whether [`check_path`] looks through a symbolic link at the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// stat(2): judge what the link points to.
    Follow,
    /// lstat(2): a link at the path is refused as [`Distrust::Symlink`].
    Refuse,
}

/// What a caller expects of a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub kind: Kind,
    /// Mode bits that must all be clear: [`OTHERS_WRITE`] or [`OTHERS_ANY`].
    pub forbidden: u32,
    /// A sticky directory (like /tmp) may be writable by others: nobody
    /// can remove or rename what another user put there.
    pub sticky_ok: bool,
    pub links: Links,
}

impl Expect {
    /// A regular file with none of `forbidden` set, through no link.
    pub const fn file(forbidden: u32) -> Expect {
        Expect {
            kind: Kind::File,
            forbidden,
            sticky_ok: false,
            links: Links::Refuse,
        }
    }

    /// A directory, found through links, with none of `forbidden` set.
    pub const fn dir(forbidden: u32) -> Expect {
        Expect {
            kind: Kind::Any,
            forbidden,
            sticky_ok: false,
            links: Links::Follow,
        }
    }

    pub const fn kind(self, kind: Kind) -> Expect {
        Expect { kind, ..self }
    }

    pub const fn links(self, links: Links) -> Expect {
        Expect { links, ..self }
    }

    pub const fn sticky_ok(self) -> Expect {
        Expect {
            sticky_ok: true,
            ..self
        }
    }
}

/// Why a file is not trusted. Checked in this order: what it is, who owns
/// it, its mode.
#[derive(Debug)]
pub enum Distrust {
    /// [`check_path`] could not stat it (including "not found").
    Stat(std::io::Error),
    /// A symbolic link where [`Links::Refuse`] was asked.
    Symlink,
    /// Not a regular file where [`Kind::File`] was asked.
    NotAFile,
    Owner {
        uid: u32,
    },
    /// `mode` is the permission bits (`& 0o7777`), for the message.
    Mode {
        mode: u32,
    },
}

impl Distrust {
    /// Whether a [`Distrust::Mode`] lets others write (not only read).
    pub fn others_may_write(&self) -> bool {
        matches!(self, Distrust::Mode { mode } if mode & OTHERS_WRITE != 0)
    }
}

/// Judges metadata already in hand (an opened file's fstat, so the file
/// read is the file judged).
pub fn check(meta: &Metadata, expect: Expect) -> Result<(), Distrust> {
    judge(meta.uid(), meta.mode(), expect)
}

/// Stats `path` as `expect.links` says and judges it; returns the metadata
/// for callers that need more of it (identity, size).
pub fn check_path(path: &Path, expect: Expect) -> Result<Metadata, Distrust> {
    let meta = match expect.links {
        Links::Follow => std::fs::metadata(path),
        Links::Refuse => std::fs::symlink_metadata(path),
    }
    .map_err(Distrust::Stat)?;
    check(&meta, expect)?;
    Ok(meta)
}

/// The rule itself, over the owner and the full `st_mode`.
fn judge(uid: u32, st_mode: u32, expect: Expect) -> Result<(), Distrust> {
    let file_type = st_mode & libc::S_IFMT;
    if file_type == libc::S_IFLNK && expect.links == Links::Refuse {
        return Err(Distrust::Symlink);
    }
    if expect.kind == Kind::File && file_type != libc::S_IFREG {
        return Err(Distrust::NotAFile);
    }
    if !trusted_owner(uid) {
        return Err(Distrust::Owner { uid });
    }
    let sticky_dir = file_type == libc::S_IFDIR && st_mode & libc::S_ISVTX != 0;
    if st_mode & expect.forbidden != 0 && !(expect.sticky_ok && sticky_dir) {
        return Err(Distrust::Mode {
            mode: st_mode & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const FILE: u32 = libc::S_IFREG;
    const DIR: u32 = libc::S_IFDIR;

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    /// A uid that is neither root nor us.
    fn stranger() -> u32 {
        if me() == 4242 {
            4243
        } else {
            4242
        }
    }

    #[test]
    fn root_and_self_are_trusted_owners_others_are_not() {
        assert!(trusted_owner(0));
        assert!(trusted_owner(me()));
        assert!(!trusted_owner(stranger()));
        let key = Expect::file(OTHERS_ANY);
        assert!(judge(0, FILE | 0o600, key).is_ok());
        assert!(judge(me(), FILE | 0o600, key).is_ok());
        assert!(matches!(
            judge(stranger(), FILE | 0o600, key),
            Err(Distrust::Owner { uid }) if uid == stranger()
        ));
    }

    #[test]
    fn group_or_world_writable_is_refused() {
        let config = Expect::file(OTHERS_WRITE);
        assert!(judge(0, FILE | 0o644, config).is_ok());
        for mode in [0o664, 0o646, 0o666, 0o4620] {
            match judge(0, FILE | mode, config) {
                Err(e @ Distrust::Mode { .. }) => {
                    assert!(e.others_may_write());
                    assert!(matches!(e, Distrust::Mode { mode: m } if m == mode));
                }
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_key_readable_by_others_is_refused_where_a_config_is_not() {
        let key = Expect::file(OTHERS_ANY);
        assert!(judge(0, FILE | 0o600, key).is_ok());
        assert!(judge(0, FILE | 0o400, key).is_ok());
        for mode in [0o640, 0o604, 0o610] {
            let e = judge(0, FILE | mode, key).unwrap_err();
            assert!(matches!(e, Distrust::Mode { mode: m } if m == mode));
            assert!(!e.others_may_write());
        }
        assert!(judge(0, FILE | 0o644, Expect::file(OTHERS_WRITE)).is_ok());
    }

    #[test]
    fn a_sticky_directory_may_be_world_writable_only_if_allowed() {
        let plain = Expect::dir(OTHERS_WRITE);
        let sticky = plain.sticky_ok();
        assert!(judge(0, DIR | 0o1777, sticky).is_ok());
        assert!(matches!(
            judge(0, DIR | 0o1777, plain),
            Err(Distrust::Mode { mode: 0o1777 })
        ));
        assert!(matches!(
            judge(0, DIR | 0o777, sticky),
            Err(Distrust::Mode { mode: 0o777 })
        ));
        // The sticky bit means nothing on a file.
        assert!(judge(0, FILE | 0o1666, Expect::file(OTHERS_WRITE).sticky_ok()).is_err());
        // Nor does it excuse a stranger's directory.
        assert!(matches!(
            judge(stranger(), DIR | 0o1777, sticky),
            Err(Distrust::Owner { .. })
        ));
    }

    #[test]
    fn a_symlink_is_refused_or_followed_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "x").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let key = Expect::file(OTHERS_ANY);
        assert!(matches!(check_path(&link, key), Err(Distrust::Symlink)));
        assert!(matches!(
            check_path(&link, key.kind(Kind::Any)),
            Err(Distrust::Symlink)
        ));
        let meta = check_path(&link, key.links(Links::Follow)).unwrap();
        assert!(meta.is_file());
        check_path(&target, key).unwrap();
    }

    #[test]
    fn not_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = Expect::file(OTHERS_ANY);
        assert!(matches!(
            check_path(dir.path(), key),
            Err(Distrust::NotAFile)
        ));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(check_path(&fifo, key), Err(Distrust::NotAFile)));
        // A caller that takes any type judges only owner and mode.
        check_path(dir.path(), Expect::dir(OTHERS_WRITE)).unwrap();
        check_path(&fifo, key.kind(Kind::Any)).unwrap();
    }

    #[test]
    fn a_missing_path_is_a_stat_error() {
        let dir = tempfile::tempdir().unwrap();
        match check_path(&dir.path().join("nope"), Expect::file(OTHERS_ANY)) {
            Err(Distrust::Stat(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn real_files_with_open_modes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "x").unwrap();
        let key = Expect::file(OTHERS_ANY);
        for (mode, ok) in [
            (0o600, true),
            (0o640, false),
            (0o620, false),
            (0o602, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(check_path(&path, key).is_ok(), ok, "mode {mode:o}");
        }
    }
}
