//! Who a container runs as: the image's USER or the CRI's run-as fields, resolved
//! against the container's own `/etc/passwd` and `/etc/group`. Those files are
//! opened with `openat2(RESOLVE_IN_ROOT)`: an image whose `/etc/passwd` is a
//! symlink to `/../../etc/shadow` reads its own rootfs, never the host's.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// What the CRI and the image ask for.
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: &'a str,
    /// The image's `User` (`name`, `uid`, `name:group`, `uid:gid`).
    pub image_user: &'a str,
    pub supplemental_groups: &'a [i64],
    /// SupplementalGroupsPolicy Strict: no groups from the image's /etc/group.
    pub strict_groups: bool,
}

/// Resolves the user against the rootfs at `root`.
pub fn resolve(root: &Path, r: &Request) -> Result<User, String> {
    let passwd = read_in_root(root, "etc/passwd").unwrap_or_default();
    let group = read_in_root(root, "etc/group").unwrap_or_default();
    let (user_part, group_part) = if let Some(uid) = r.run_as_user {
        (uid.to_string(), None)
    } else if !r.run_as_username.is_empty() {
        (r.run_as_username.to_string(), None)
    } else {
        match r.image_user.split_once(':') {
            Some((u, g)) => (u.to_string(), Some(g.to_string())),
            None => (r.image_user.to_string(), None),
        }
    };
    let user_part = if user_part.is_empty() {
        "0".to_string()
    } else {
        user_part
    };
    // passwd: name:x:uid:gid:gecos:home:shell
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == user_part || f[2] == user_part));
    let (uid, mut gid, name) = match (user_part.parse::<u32>(), &entry) {
        (Ok(uid), Some(f)) => (uid, f[3].parse().unwrap_or(0), f[0].to_string()),
        (Ok(uid), None) => (uid, 0, String::new()),
        (Err(_), Some(f)) => (
            f[2].parse()
                .map_err(|_| format!("bad uid in /etc/passwd for {user_part:?}"))?,
            f[3].parse().unwrap_or(0),
            f[0].to_string(),
        ),
        (Err(_), None) => {
            return Err(format!(
                "user {user_part:?} is not in the image's /etc/passwd"
            ));
        }
    };
    // group: name:x:gid:member,member
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = r.run_as_group {
        gid = g as u32;
    } else if let Some(g) = group_part {
        gid = match g.parse() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("group {g:?} is not in the image's /etc/group"))?,
        };
    }
    let mut additional: Vec<u32> = Vec::new();
    if !r.strict_groups && !name.is_empty() {
        for f in &groups {
            if f.len() >= 4
                && f[3].split(',').any(|m| m == name)
                && let Ok(g) = f[2].parse()
            {
                additional.push(g);
            }
        }
    }
    additional.extend(r.supplemental_groups.iter().map(|&g| g as u32));
    additional.push(gid);
    additional.sort_unstable();
    additional.dedup();
    Ok(User {
        uid,
        gid,
        additional_gids: additional,
    })
}

/// An O_PATH handle on the rootfs directory.
fn open_root(root: &Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(root.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: open of a valid C string; the fd becomes owned.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd of ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `rel` below `dir` with every component resolved inside the rootfs
/// `dir` stands in (`RESOLVE_IN_ROOT`), so symlinks cannot lead out of it.
fn open_in_root(dir: &OwnedFd, rel: &str, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let c = CString::new(rel).map_err(std::io::Error::other)?;
    // SAFETY: openat2 with a zeroed, filled open_how; the fd becomes owned.
    unsafe {
        let mut how: libc::open_how = std::mem::zeroed();
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        let fd = libc::syscall(
            libc::SYS_openat2,
            std::os::fd::AsRawFd::as_raw_fd(dir),
            c.as_ptr(),
            &how,
            std::mem::size_of::<libc::open_how>(),
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd as i32))
    }
}

/// Reads a file of the rootfs with every path component resolved inside it.
pub fn read_in_root(root: &Path, rel: &str) -> Option<String> {
    let fd = open_in_root(&open_root(root).ok()?, rel, libc::O_RDONLY).ok()?;
    let mut s = String::new();
    // /etc/passwd of any sane size; a huge one is not ours to read whole.
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// Creates `path` (a file, or a directory) in the rootfs if it is missing, its
/// parents resolved inside the rootfs and made as needed.
pub fn create_in_root(root: &Path, path: &str, is_dir: bool) -> std::io::Result<()> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(std::io::Error::other("a mount target with '..'"));
    }
    let mut dir = open_root(root)?;
    for (i, part) in parts.iter().enumerate() {
        match open_in_root(&dir, part, libc::O_PATH) {
            Ok(fd) => {
                dir = fd;
                continue;
            }
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            Err(_) => {}
        }
        let name = CString::new(*part).map_err(std::io::Error::other)?;
        let at = std::os::fd::AsRawFd::as_raw_fd(&dir);
        // SAFETY: openat/mkdirat relative to an fd we hold, names without '/'.
        unsafe {
            if i == parts.len() - 1 && !is_dir {
                let flags = libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_NOFOLLOW
                    | libc::O_CLOEXEC
                    | libc::O_WRONLY;
                let f = libc::openat(at, name.as_ptr(), flags, 0o644);
                if f < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(f);
                return Ok(());
            }
            if libc::mkdirat(at, name.as_ptr(), 0o755) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        dir = open_in_root(
            &dir,
            part,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:34:\nweb:x:500:www,other\nadm:x:4:root\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn names_numbers_and_groups() {
        let d = rootfs();
        let r = |req: Request| resolve(d.path(), &req);
        assert_eq!(
            r(Request {
                image_user: "www",
                ..Default::default()
            })
            .unwrap(),
            User {
                uid: 33,
                gid: 34,
                additional_gids: vec![34, 500]
            }
        );
        assert_eq!(
            r(Request {
                image_user: "www:web",
                ..Default::default()
            })
            .unwrap()
            .gid,
            500
        );
        let u = r(Request {
            run_as_user: Some(1234),
            supplemental_groups: &[77],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            u,
            User {
                uid: 1234,
                gid: 0,
                additional_gids: vec![0, 77]
            }
        );
        let strict = r(Request {
            run_as_username: "www",
            strict_groups: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            strict.additional_gids,
            vec![34],
            "strict: no /etc/group membership"
        );
        assert!(
            r(Request {
                image_user: "nobody-here",
                ..Default::default()
            })
            .is_err()
        );
        assert_eq!(r(Request::default()).unwrap().uid, 0);
    }

    #[test]
    fn mount_targets_are_made_inside_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("etc")).unwrap();
        // /etc leads nowhere inside the rootfs: refused, and nothing made outside.
        assert!(create_in_root(d.path(), "/etc/hosts", false).is_err());
        assert!(!outside.path().join("hosts").exists());
        create_in_root(d.path(), "/a/b/c", true).unwrap();
        assert!(d.path().join("a/b/c").is_dir());
        assert!(create_in_root(d.path(), "/a/../../x", false).is_err());
    }

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/../../../../etc/hostname", d.path().join("etc/passwd"))
            .unwrap();
        assert_eq!(
            read_in_root(d.path(), "etc/passwd"),
            None,
            "must not read the host's file"
        );
    }
}
