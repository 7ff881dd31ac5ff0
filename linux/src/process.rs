//! What the `smtpd` process does to itself around binding its port: a descriptor limit
//! that fits its connection cap, and, when started as root, a switch to an unprivileged
//! user once it listens (Python smtpd's default; `-n` keeps the user).

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Descriptors the server holds whatever its connections: standard streams, the log, the
/// signal pipe, and per thread its listener, ring, timer and wake-up descriptors.
fn descriptors_kept(threads: usize) -> u64 {
    64 + 8 * threads as u64
}

/// Raises the soft limit on open descriptors to the hard limit, as a server that may hold
/// thousands of connections needs (the usual soft limit is 1024). Returns the soft limit in
/// force, and why it could not be raised, if it could not.
pub fn raise_descriptor_limit() -> io::Result<(u64, Option<io::Error>)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= limit.rlim_max {
        return Ok((limit.rlim_cur, None));
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: plain system call with a valid rlimit.
    match unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } {
        0 => Ok((raised.rlim_cur, None)),
        _ => Ok((limit.rlim_cur, Some(io::Error::last_os_error()))),
    }
}

/// How many connections `limit` descriptors hold, at `per_connection` each (a relay's
/// upstream connection, a message file), beside what `threads` threads keep open.
pub fn connections_within(limit: u64, per_connection: u64, threads: usize) -> usize {
    let room = limit.saturating_sub(descriptors_kept(threads)) / per_connection.max(1);
    usize::try_from(room).unwrap_or(usize::MAX)
}

/// A user to run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

impl User {
    /// The user called `name` in the password database.
    pub fn named(name: &str) -> io::Result<User> {
        let c_name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
        let found = password_entry(|entry, strings, found| {
            // SAFETY: every pointer is valid for the call (see `password_entry`).
            unsafe {
                libc::getpwnam_r(
                    c_name.as_ptr(),
                    entry,
                    strings.as_mut_ptr(),
                    strings.len(),
                    found,
                )
            }
        })?;
        found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no user {name:?}")))
    }

    /// The user with id `uid`, with its name and primary group from the password database.
    pub fn with_id(uid: u32) -> io::Result<User> {
        let found = password_entry(|entry, strings, found| {
            // SAFETY: every pointer is valid for the call (see `password_entry`).
            unsafe { libc::getpwuid_r(uid, entry, strings.as_mut_ptr(), strings.len(), found) }
        })?;
        found.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("uid {uid} has no user name or group"),
            )
        })
    }

    /// The owner of the directory `path` (a symbolic link's target), with its own primary
    /// group, never the directory's.
    pub fn owner_of(path: &Path) -> io::Result<User> {
        User::with_id(std::fs::metadata(path)?.uid())
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Runs a `get*_r` password lookup: `lookup(entry, strings, found)` returns its status.
fn password_entry(
    lookup: impl FnOnce(&mut libc::passwd, &mut [libc::c_char], &mut *mut libc::passwd) -> libc::c_int,
) -> io::Result<Option<User>> {
    // SAFETY: a zeroed passwd is a valid value for the lookup to fill in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut strings = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    match lookup(&mut entry, &mut strings, &mut found) {
        0 if found.is_null() => Ok(None),
        // SAFETY: on success `entry.pw_name` points into `strings`, a C string.
        0 => Ok(Some(User {
            name: unsafe { CStr::from_ptr(entry.pw_name) }
                .to_string_lossy()
                .into_owned(),
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        })),
        error => Err(io::Error::from_raw_os_error(error)),
    }
}

/// Whether the process is root, or can become root again: its real, effective or saved user
/// id is 0.
pub fn is_root() -> bool {
    let (mut real, mut effective, mut saved) = (0, 0, 0);
    // SAFETY: three valid places for the ids.
    let status = unsafe { libc::getresuid(&mut real, &mut effective, &mut saved) };
    status != 0 || real == 0 || effective == 0 || saved == 0
}

/// The first directory or symbolic link on the way to `path` (as written, and as its links
/// lead, `path` included) that someone other than root could change, and who: its owner, if
/// not root, or anyone, for a directory anyone may write without the sticky bit. Whoever can
/// change one can put something else in the place of what lies below it.
pub fn held_by_another(path: &Path) -> io::Result<Option<(PathBuf, String)>> {
    let written = std::env::current_dir()?.join(path);
    let resolved = resolved_as_far_as_it_exists(&written)?;
    for path in [written, resolved] {
        let mut prefix = PathBuf::new();
        for part in path.components() {
            prefix.push(part);
            let metadata = match std::fs::symlink_metadata(&prefix) {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == io::ErrorKind::NotFound => break,
                Err(error) => return Err(error),
            };
            let open_to_all = metadata.is_dir() && metadata.mode() & 0o1002 == 0o002;
            if metadata.uid() != 0 || open_to_all {
                let who = match open_to_all {
                    true => "anyone's to change".to_owned(),
                    false => format!("uid {}'s", metadata.uid()),
                };
                return Ok(Some((prefix, who)));
            }
        }
    }
    Ok(None)
}

/// `path` with its symbolic links followed, as far as it exists (the rest as written).
fn resolved_as_far_as_it_exists(path: &Path) -> io::Result<PathBuf> {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        match std::fs::canonicalize(existing) {
            Ok(resolved) => return Ok(missing.iter().rev().fold(resolved, |p, part| p.join(part))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    return Ok(path.to_owned());
                };
                missing.push(name);
                existing = parent;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Leaves root for `user` (neither root nor of root's group), for good: no supplementary
/// groups, then its group, then its user (real, effective and saved ids), for every thread
/// of the process.
///
/// Rings set up before, as root, keep root's unlimited locked memory for the connections'
/// receive buffers (`Server::run_after`).
pub fn switch_to(user: &User) -> io::Result<()> {
    let check = |status: libc::c_int| match status {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    };
    if user.uid == 0 || user.gid == 0 {
        return Err(io::Error::other(format!(
            "{} is root or of root's group",
            user.name
        )));
    }
    let unchanged = libc::uid_t::MAX;
    // SAFETY: plain system calls with valid arguments; glibc applies the id changes to every
    // thread.
    unsafe {
        // Root in full first (a saved or real id of 0 may give the effective one back), so
        // that the groups can be dropped.
        libc::setresuid(unchanged, 0, unchanged);
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(user.gid, user.gid, user.gid))?;
        check(libc::setresuid(user.uid, user.uid, user.uid))?;
        // Root must be gone for good.
        if libc::setuid(0) == 0 || libc::setgid(0) == 0 {
            return Err(io::Error::other("root privileges could be regained"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_the_descriptors_left_after_the_servers_own() {
        assert_eq!(connections_within(1024, 1, 2), 1024 - 80);
        assert_eq!(connections_within(1024, 3, 2), (1024 - 80) / 3);
        assert_eq!(connections_within(50, 1, 2), 0);
        // RLIM_INFINITY: any cap fits.
        assert!(connections_within(u64::MAX, 1, 1) > 1 << 40);
    }

    #[test]
    fn users_are_found_by_name_and_id_and_owners_bring_their_own_group() {
        let root = User::named("root").unwrap();
        assert!(root.is_root());
        assert_eq!((root.gid, root.name.as_str()), (0, "root"));
        assert_eq!(User::with_id(0).unwrap(), root);
        assert_eq!(
            User::named("no-such-user-here").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            User::with_id(4_000_000_000).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: plain system call.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(
            User::owner_of(dir.path()).unwrap(),
            User::with_id(uid).unwrap()
        );
    }

    #[test]
    fn a_path_under_another_users_directory_is_held_by_that_user() {
        // SAFETY: plain system call.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        assert_eq!(held_by_another(&inner.join("c")).unwrap(), None);
        std::os::unix::fs::lchown(dir.path().join("a"), Some(65534), None).unwrap();
        let nobodys = "uid 65534's".to_owned();
        let held = Some((dir.path().join("a"), nobodys.clone()));
        assert_eq!(held_by_another(&inner.join("c")).unwrap(), held);
        // A symbolic link is its owner's, whatever it points to.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/", &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
        assert_eq!(
            held_by_another(&link).unwrap(),
            Some((link, nobodys.clone()))
        );
        // A link of root's into another user's directory: that directory holds the way.
        let root_link = dir.path().join("root-link");
        std::os::unix::fs::symlink(&inner, &root_link).unwrap();
        assert_eq!(held_by_another(&root_link.join("md")).unwrap(), held);
        // A directory anyone may write, without the sticky bit.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let anyones = Some((open.clone(), "anyone's to change".to_owned()));
        assert_eq!(held_by_another(&open.join("md")).unwrap(), anyones);
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .unwrap();
        assert_eq!(held_by_another(&open.join("md")).unwrap(), None);
    }
}
