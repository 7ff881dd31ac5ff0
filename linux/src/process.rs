//! What the `smtpd` process does to itself around binding its port: a descriptor limit
//! that fits its connection cap, and, when started as root, a switch to an unprivileged
//! user once it listens (Python smtpd's default; `-n` keeps the user).

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Descriptors the server holds whatever its connections: standard streams, the log, the
/// signal pipe, and per thread its listener, ring, timer and wake-up descriptors.
fn descriptors_kept(threads: usize) -> u64 {
    64 + 8 * threads as u64
}

/// Raises the soft limit on open descriptors to the hard limit, as a server that may hold
/// thousands of connections needs (the usual soft limit is 1024). Returns the limit now.
pub fn raise_descriptor_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: plain system call with a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
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
    pub gid: u32,
}

impl User {
    /// The user called `name` in the password database.
    pub fn named(name: &str) -> io::Result<User> {
        let c_name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: zeroed passwd is a valid value for getpwnam_r to fill in.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut strings = vec![0 as libc::c_char; 4096];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `strings` outlives its use.
        let status = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                strings.as_mut_ptr(),
                strings.len(),
                &mut found,
            )
        };
        match (status, found.is_null()) {
            (0, false) => Ok(User {
                name: name.to_owned(),
                uid: entry.pw_uid,
                gid: entry.pw_gid,
            }),
            (0, true) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no user {name:?}"),
            )),
            (error, _) => Err(io::Error::from_raw_os_error(error)),
        }
    }

    /// The owner of `path` (its user and group), by name where the user has one.
    pub fn owner_of(path: &Path) -> io::Result<User> {
        let metadata = std::fs::metadata(path)?;
        // SAFETY: getpwuid_r as above, for the name only.
        let name = unsafe {
            let mut entry: libc::passwd = std::mem::zeroed();
            let mut strings = vec![0 as libc::c_char; 4096];
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let status = libc::getpwuid_r(
                metadata.uid(),
                &mut entry,
                strings.as_mut_ptr(),
                strings.len(),
                &mut found,
            );
            match status == 0 && !found.is_null() {
                true => CStr::from_ptr(entry.pw_name).to_string_lossy().into_owned(),
                false => metadata.uid().to_string(),
            }
        };
        Ok(User {
            name,
            uid: metadata.uid(),
            gid: metadata.gid(),
        })
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: plain system call.
    unsafe { libc::geteuid() == 0 }
}

/// Leaves root for `user` (not root), for good: no supplementary groups, then its group,
/// then its user (real, effective and saved ids), for every thread of the process.
///
/// Rings set up before, as root, keep root's unlimited locked memory for the connections'
/// receive buffers (`Server::run_after`).
pub fn switch_to(user: &User) -> io::Result<()> {
    let check = |status: libc::c_int| match status {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    };
    // SAFETY: plain system calls with valid arguments; glibc applies the id changes to every
    // thread.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(user.gid, user.gid, user.gid))?;
        check(libc::setresuid(user.uid, user.uid, user.uid))?;
        // Root must be gone for good.
        if libc::setuid(0) == 0 {
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
    fn users_are_found_by_name_and_as_owners() {
        let root = User::named("root").unwrap();
        assert!(root.is_root());
        assert_eq!(root.gid, 0);
        assert_eq!(
            User::named("no-such-user-here").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let dir = tempfile::tempdir().unwrap();
        let owner = User::owner_of(dir.path()).unwrap();
        // SAFETY: plain system calls.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        assert_eq!((owner.uid, owner.gid), (uid, gid));
    }
}
