//! The tree a layer is applied onto: the layer's own directory on top of its
//! parents' snapshots, seen as overlayfs shows them (the top-most entry of a name
//! wins, a 0:0 character device hides what is below it, an opaque directory hides
//! the lower directories of its name).
//!
//! Paths resolve inside that merged tree as `openat2(RESOLVE_IN_ROOT)` resolves
//! them in one directory: symlinks are followed, `..` and absolute targets are
//! clamped to the root, so no resolution ever leaves it. Every step is an
//! `openat` of one name with `O_NOFOLLOW` on a directory fd: a symlink is read and
//! resolved here, never by the kernel against the host's `/`.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The kernel's own bound on symlinks followed in one resolution.
const MAX_LINKS: u32 = 40;

/// Why a path did not resolve to a directory of the layer being written.
#[derive(Debug)]
pub enum WalkError {
    /// The answer depends on the parent layers, which this view does not have
    /// (the layer is being unpacked alongside them).
    NeedsParents,
    /// A component is a file, a device or a whiteout, not a directory.
    NotADirectory(PathBuf),
    /// A component is missing (only when not creating).
    NotFound(PathBuf),
    /// More than 40 symlinks on the way.
    TooManyLinks,
    Io(io::Error),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::NeedsParents => write!(f, "resolving it needs the parent layers"),
            WalkError::NotADirectory(p) => {
                write!(
                    f,
                    "its path runs through /{}, which is not a directory",
                    p.display()
                )
            }
            WalkError::NotFound(p) => write!(f, "/{} is in no layer of the image", p.display()),
            WalkError::TooManyLinks => write!(f, "its path follows more than 40 symlinks"),
            WalkError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for WalkError {
    fn from(e: io::Error) -> Self {
        WalkError::Io(e)
    }
}

/// What a name is in the merged tree, and in which layer (0 is the top).
#[derive(Debug)]
pub enum Entry {
    Missing,
    Whiteout(usize),
    Dir(usize),
    Symlink(usize, Vec<u8>),
    Other(usize),
}

/// One directory of the merged tree: its fd in each layer that shows it.
pub struct Dir {
    /// Indexed like the view's layers; None where a layer has nothing of that
    /// name, or is hidden by a layer above it.
    pub layers: Vec<Option<OwnedFd>>,
    /// Its path below the root, free of symlinks.
    pub path: Vec<OsString>,
}

impl Dir {
    /// The directory's fd in the layer being written.
    pub fn top(&self) -> Option<&OwnedFd> {
        self.layers.first().and_then(Option::as_ref)
    }
}

pub struct View {
    /// The layer being written first, then its parents, top first.
    layers: Vec<OwnedFd>,
    /// The parents exist but are not in this view: an answer that needs them
    /// is `NeedsParents`, never a guess.
    parents_unknown: bool,
}

pub(crate) fn cstr(name: &OsStr) -> CString {
    CString::new(name.as_bytes()).unwrap_or_default()
}

pub(crate) fn last_err() -> io::Error {
    io::Error::last_os_error()
}

/// `openat(dir, name, O_DIRECTORY | O_NOFOLLOW)`.
pub fn open_dir_at(dir: &OwnedFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_RDONLY | libc::O_CLOEXEC;
    // SAFETY: openat with a valid dirfd and one path component.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if fd == -1 {
        return Err(last_err());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn stat_at(dir: &OwnedFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: zeroed is a valid stat; fstatat with a valid dirfd and out pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } == -1
    {
        return Err(last_err());
    }
    Ok(st)
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: as above, on an open fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == -1 {
        return Err(last_err());
    }
    Ok(st)
}

pub fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// The directory carries overlayfs's opaque marker.
pub fn is_opaque(dir: &OwnedFd) -> bool {
    let mut v = [0u8; 1];
    // SAFETY: fgetxattr into a one-byte buffer.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}

pub fn set_opaque(dir: &OwnedFd) -> io::Result<()> {
    // SAFETY: fsetxattr on an open directory with a static name and value.
    if unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    } == -1
    {
        return Err(last_err());
    }
    Ok(())
}

fn readlink_at(dir: &OwnedFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat into a buffer of the given length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(last_err());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// `mkdirat`, tolerating a directory that is already there.
fn mkdir_at(dir: &OwnedFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: mkdirat with a valid dirfd and one component.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } == -1
        && last_err().raw_os_error() != Some(libc::EEXIST)
    {
        return Err(last_err());
    }
    Ok(())
}

/// Gives `to` the owner, mode and times of `from` (a parent layer's directory
/// of the same name), as containerd does for the parents it creates.
fn copy_dir_meta(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
    let st = fstat(from)?;
    let times = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    // SAFETY: f* calls on an fd we own.
    unsafe {
        if libc::fchown(to.as_raw_fd(), st.st_uid, st.st_gid) == -1
            || libc::fchmod(to.as_raw_fd(), st.st_mode & 0o7777) == -1
            || libc::futimens(to.as_raw_fd(), times.as_ptr()) == -1
        {
            return Err(last_err());
        }
    }
    Ok(())
}

impl View {
    /// The layer at `top` with its parents `lowers` (top first).
    pub fn new(top: OwnedFd, lowers: Vec<OwnedFd>, parents_unknown: bool) -> View {
        let mut layers = vec![top];
        layers.extend(lowers);
        View {
            layers,
            parents_unknown,
        }
    }

    pub fn top(&self) -> &OwnedFd {
        &self.layers[0]
    }

    pub fn parents_unknown(&self) -> bool {
        self.parents_unknown
    }

    pub fn root(&self) -> io::Result<Dir> {
        Ok(Dir {
            layers: self
                .layers
                .iter()
                .map(|l| l.try_clone().map(Some))
                .collect::<io::Result<_>>()?,
            path: Vec::new(),
        })
    }

    /// What `name` is in `dir`: the top-most layer's entry of that name.
    pub fn lookup(&self, dir: &Dir, name: &CStr) -> io::Result<Entry> {
        for (i, fd) in dir.layers.iter().enumerate() {
            let Some(fd) = fd else { continue };
            let st = match stat_at(fd, name) {
                Ok(st) => st,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            };
            return Ok(match st.st_mode & libc::S_IFMT {
                _ if is_whiteout(&st) => Entry::Whiteout(i),
                libc::S_IFDIR => Entry::Dir(i),
                libc::S_IFLNK => Entry::Symlink(i, readlink_at(fd, name)?),
                _ => Entry::Other(i),
            });
        }
        Ok(Entry::Missing)
    }

    /// The child directory `name` of `dir`, in every layer that shows it.
    fn descend(&self, dir: &Dir, name: &CStr, path: Vec<OsString>) -> io::Result<Dir> {
        let mut layers = Vec::with_capacity(dir.layers.len());
        let mut visible = true;
        for fd in &dir.layers {
            let Some(fd) = fd.as_ref().filter(|_| visible) else {
                layers.push(None);
                continue;
            };
            match open_dir_at(fd, name) {
                Ok(child) => {
                    visible = !is_opaque(&child);
                    layers.push(Some(child));
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => layers.push(None),
                // A file, symlink or whiteout of that name hides the layers below.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
                    visible = false;
                    layers.push(None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Dir { layers, path })
    }

    /// Resolves the directory `names` (relative to the root, already free of
    /// `.` and `..`). With `create`, each directory is made in the top layer
    /// where only a parent has it (with the parent's owner, mode and times) or
    /// where no layer has it (root's, 0755), so the result's `top()` is set.
    pub fn walk(&self, names: &[OsString], create: bool) -> Result<Dir, WalkError> {
        let mut stack = vec![self.root()?];
        let mut todo: std::collections::VecDeque<OsString> = names.iter().cloned().collect();
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            match name.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let dir = stack.last().expect("the root stays");
            let c = cstr(&name);
            let mut path = dir.path.clone();
            path.push(name.clone());
            let entry = self.lookup(dir, &c)?;
            if self.parents_unknown && matches!(entry, Entry::Missing) {
                return Err(WalkError::NeedsParents);
            }
            match entry {
                Entry::Symlink(_, target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(WalkError::TooManyLinks);
                    }
                    if target.first() == Some(&b'/') {
                        stack.truncate(1);
                    }
                    for part in target.split(|b| *b == b'/').rev() {
                        todo.push_front(OsStr::from_bytes(part).to_os_string());
                    }
                    continue;
                }
                Entry::Other(_) => return Err(WalkError::NotADirectory(path.iter().collect())),
                Entry::Dir(0) => {}
                _ if !create => return Err(WalkError::NotFound(path.iter().collect())),
                Entry::Dir(i) => {
                    let top = dir.top().expect("creating walks keep the top layer");
                    mkdir_at(top, &c, 0o755)?;
                    let made = open_dir_at(top, &c)?;
                    let lower = dir.layers[i].as_ref().expect("found in that layer");
                    copy_dir_meta(&open_dir_at(lower, &c)?, &made)?;
                }
                Entry::Whiteout(i) => {
                    let top = dir.top().expect("creating walks keep the top layer");
                    if i == 0 {
                        // This layer removed the name and now puts a directory
                        // there: the directory must not show the parents' one.
                        // SAFETY: unlinkat of one component.
                        if unsafe { libc::unlinkat(top.as_raw_fd(), c.as_ptr(), 0) } == -1 {
                            return Err(last_err().into());
                        }
                        mkdir_at(top, &c, 0o755)?;
                        set_opaque(&open_dir_at(top, &c)?)?;
                    } else {
                        mkdir_at(top, &c, 0o755)?;
                    }
                }
                Entry::Missing => {
                    let top = dir.top().expect("creating walks keep the top layer");
                    mkdir_at(top, &c, 0o755)?;
                }
            }
            let child = self.descend(dir, &c, path)?;
            stack.push(child);
        }
        Ok(stack.pop().expect("the root stays"))
    }
}

/// Opens the directory `names` of one layer as it is on disk, following no
/// symlink (for a path that a walk already resolved).
pub fn walk_top(top: &OwnedFd, names: &[OsString]) -> io::Result<OwnedFd> {
    let mut cur = top.try_clone()?;
    for n in names {
        cur = open_dir_at(&cur, &cstr(n))?;
    }
    Ok(cur)
}

/// A tar entry's path as names below the root: `.` dropped, a leading `/`
/// ignored, `..` taking back a name but never going above the root (as
/// containerd clamps them). The flag tells whether a `..` had to be clamped.
pub fn clean(raw: &std::path::Path) -> (Vec<OsString>, bool) {
    use std::path::Component;
    let mut out: Vec<OsString> = Vec::new();
    let mut clamped = false;
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                if out.pop().is_none() {
                    clamped = true;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (out, clamped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fd(p: &Path) -> OwnedFd {
        crate::sys_open_dir(p).unwrap()
    }

    fn names(p: &str) -> Vec<OsString> {
        clean(Path::new(p)).0
    }

    #[test]
    fn clean_clamps_at_the_root() {
        assert_eq!(names("../../etc/x"), names("etc/x"));
        assert_eq!(names("/abs/./p"), names("abs/p"));
        assert_eq!(names("a/../../b"), names("b"));
        assert!(clean(Path::new("a/../../b")).1);
        assert!(!clean(Path::new("a/../b")).1);
    }

    #[test]
    fn a_lower_symlink_is_followed_and_the_directory_made_on_top() {
        let t = tempfile::tempdir().unwrap();
        let (low, top) = (t.path().join("low"), t.path().join("top"));
        std::fs::create_dir_all(low.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", low.join("lib")).unwrap();
        std::fs::create_dir(&top).unwrap();
        let v = View::new(fd(&top), vec![fd(&low)], false);
        let d = v.walk(&names("lib"), true).unwrap();
        assert_eq!(d.path, names("usr/lib"));
        assert!(top.join("usr/lib").is_dir());
        assert!(!top.join("lib").exists());
    }

    #[test]
    fn symlinks_never_leave_the_root() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("top");
        std::fs::create_dir(&top).unwrap();
        std::os::unix::fs::symlink("/../../..", top.join("up")).unwrap();
        std::os::unix::fs::symlink("../../../tmp", top.join("rel")).unwrap();
        let v = View::new(fd(&top), vec![], false);
        assert_eq!(v.walk(&names("up/x"), true).unwrap().path, names("x"));
        assert_eq!(v.walk(&names("rel/y"), true).unwrap().path, names("tmp/y"));
        assert!(top.join("x").is_dir() && top.join("tmp/y").is_dir());
        std::os::unix::fs::symlink("loop", top.join("loop")).unwrap();
        assert!(matches!(
            v.walk(&names("loop/z"), true),
            Err(WalkError::TooManyLinks)
        ));
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_the_layers_below() {
        let t = tempfile::tempdir().unwrap();
        let (low, mid, top) = (t.path().join("l"), t.path().join("m"), t.path().join("t"));
        std::fs::create_dir_all(low.join("gone")).unwrap();
        std::fs::create_dir_all(low.join("o")).unwrap();
        std::os::unix::fs::symlink("/elsewhere", low.join("o/link")).unwrap();
        std::fs::create_dir_all(mid.join("o")).unwrap();
        set_opaque(&fd(&mid.join("o"))).unwrap();
        let c = CString::new(mid.join("gone").as_os_str().as_bytes()).unwrap();
        // SAFETY: mknod of a 0:0 character device (a whiteout).
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) }, 0);
        std::fs::create_dir(&top).unwrap();
        let v = View::new(fd(&top), vec![fd(&mid), fd(&low)], false);
        assert!(matches!(
            v.walk(&names("gone"), false),
            Err(WalkError::NotFound(_))
        ));
        // The opaque o hides low's o/link: o/link is a fresh directory.
        let d = v.walk(&names("o/link"), true).unwrap();
        assert_eq!(d.path, names("o/link"));
        assert!(top.join("o/link").is_dir());
    }

    #[test]
    fn without_the_parents_a_missing_name_is_not_guessed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("here")).unwrap();
        let v = View::new(fd(t.path()), vec![], true);
        assert!(v.walk(&names("here"), true).is_ok());
        assert!(matches!(
            v.walk(&names("here/missing"), true),
            Err(WalkError::NeedsParents)
        ));
    }
}
