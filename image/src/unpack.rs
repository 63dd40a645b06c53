//! Unpacking a layer tar into a snapshot directory in overlayfs's format: OCI
//! whiteouts (`.wh.name`) become 0:0 character devices, opaque markers
//! (`.wh..wh..opq`) become the `trusted.overlay.opaque` xattr.
//!
//! Path safety: every entry is created by walking its parent directories from the
//! layer's root with O_NOFOLLOW, one component at a time, so nothing is written or
//! removed outside the layer: absolute paths and `..` are refused, a path that
//! goes through a symlink is refused, a hard link must point inside the layer (or,
//! deferred, into a lower layer). The bytes written are bounded so a small
//! compressed layer cannot fill the disk.

use crate::error::{ImageError, Result};
use sha2::{Digest as _, Sha256};
use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What a layer unpack produced.
#[derive(Debug)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: String,
    /// Bytes of file content written.
    pub size: u64,
    /// Hard links whose target is not in this layer: (link, target), both relative
    /// to the layer root, to be resolved against the lower layers.
    pub deferred_links: Vec<(PathBuf, PathBuf)>,
}

/// Reads through and hashes everything read (the diff_id).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn cstr(p: &std::ffi::OsStr) -> CString {
    CString::new(p.as_bytes()).unwrap_or_default()
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

/// Checks an entry path: relative, no `..`, no empty name. Returns its components.
fn components(layer: &str, raw: &Path) -> Result<Vec<std::ffi::OsString>> {
    let bad = |msg: &str| ImageError::Unpack {
        layer: layer.to_string(),
        entry: raw.display().to_string(),
        msg: msg.to_string(),
    };
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad("absolute paths are refused"));
            }
            Component::ParentDir => return Err(bad("'..' would leave the layer; refused")),
        }
    }
    Ok(out)
}

/// Opens (creating when missing) each directory of `dirs` below `root`, never
/// following a symlink.
fn open_dirs(root: &OwnedFd, dirs: &[std::ffi::OsString], create: bool) -> io::Result<OwnedFd> {
    let mut cur = root.try_clone()?;
    for d in dirs {
        let name = cstr(d);
        let flags = libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_RDONLY | libc::O_CLOEXEC;
        // SAFETY: openat/mkdirat with a valid dirfd and one path component.
        let mut fd = unsafe { libc::openat(cur.as_raw_fd(), name.as_ptr(), flags) };
        if fd == -1 && create && last_err().raw_os_error() == Some(libc::ENOENT) {
            unsafe {
                if libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) == -1
                    && last_err().raw_os_error() != Some(libc::EEXIST)
                {
                    return Err(last_err());
                }
                fd = libc::openat(cur.as_raw_fd(), name.as_ptr(), flags);
            }
        }
        if fd == -1 {
            return Err(last_err());
        }
        // SAFETY: a fresh fd we own.
        cur = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    Ok(cur)
}

/// Removes whatever is at `name` in `dir` (recursively for a directory).
fn remove_at(dir: &OwnedFd, name: &CString) -> io::Result<()> {
    // SAFETY: unlinkat with a valid dirfd and one component.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    match last_err().raw_os_error() {
        Some(libc::ENOENT) => Ok(()),
        Some(libc::EISDIR) => {
            let sub = open_dirs(
                dir,
                &[std::ffi::OsStr::from_bytes(name.as_bytes()).to_os_string()],
                false,
            )?;
            let path = PathBuf::from(format!("/proc/self/fd/{}", sub.as_raw_fd()));
            for e in std::fs::read_dir(&path)?.flatten() {
                remove_at(&sub, &cstr(e.file_name().as_os_str()))?;
            }
            // SAFETY: as above, removing the now empty directory.
            if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } == 0 {
                Ok(())
            } else {
                Err(last_err())
            }
        }
        _ => Err(last_err()),
    }
}

struct DirMeta {
    parents: Vec<std::ffi::OsString>,
    name: std::ffi::OsString,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// Unpacks the uncompressed tar `reader` into the empty directory `dest`.
/// `limit` bounds the bytes of file content written.
pub fn unpack_layer(reader: impl Read, dest: &Path, layer: &str, limit: u64) -> Result<Unpacked> {
    let root = crate::sys_open_dir(dest).map_err(|e| ImageError::io("opening", dest, e))?;
    let mut hashing = Hashing {
        inner: reader,
        hasher: Sha256::new(),
    };
    let mut size = 0u64;
    let mut deferred = Vec::new();
    let mut dirs: Vec<DirMeta> = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive
            .entries()
            .map_err(|e| ImageError::io("reading layer", dest, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ImageError::Unpack {
                layer: layer.into(),
                entry: String::new(),
                msg: format!("corrupt tar: {e}"),
            })?;
            let raw = entry
                .path()
                .map_err(|e| ImageError::Unpack {
                    layer: layer.into(),
                    entry: String::new(),
                    msg: e.to_string(),
                })?
                .into_owned();
            let fail = |msg: String| ImageError::Unpack {
                layer: layer.to_string(),
                entry: raw.display().to_string(),
                msg,
            };
            let kind = entry.header().entry_type();
            if matches!(
                kind,
                tar::EntryType::XGlobalHeader
                    | tar::EntryType::XHeader
                    | tar::EntryType::GNULongName
                    | tar::EntryType::GNULongLink
            ) {
                continue;
            }
            let mut comps = components(layer, &raw)?;
            let Some(name) = comps.pop() else { continue };
            let header = entry.header();
            let mode = header.mode().unwrap_or(0o644) & 0o7777;
            let uid = header.uid().unwrap_or(0) as u32;
            let gid = header.gid().unwrap_or(0) as u32;
            let mtime = header.mtime().unwrap_or(0) as i64;
            let parent = open_dirs(&root, &comps, true).map_err(|e| {
                fail(
                    if e.raw_os_error() == Some(libc::ELOOP)
                        || e.raw_os_error() == Some(libc::ENOTDIR)
                    {
                        "its path goes through a symlink or a non-directory; refused".to_string()
                    } else {
                        format!("creating its directory: {e}")
                    },
                )
            })?;
            let name_bytes = name.as_bytes();
            // Whiteouts, in overlayfs's format.
            if name_bytes == b".wh..wh..opq" {
                let opaque = c"trusted.overlay.opaque";
                // SAFETY: fsetxattr on an open directory with a static name and value.
                if unsafe {
                    libc::fsetxattr(
                        parent.as_raw_fd(),
                        opaque.as_ptr(),
                        b"y".as_ptr().cast(),
                        1,
                        0,
                    )
                } == -1
                {
                    return Err(fail(format!("marking directory opaque: {}", last_err())));
                }
                continue;
            }
            if let Some(hidden) = name_bytes.strip_prefix(b".wh.") {
                if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/')
                {
                    return Err(fail(
                        "a whiteout must name an entry of its own directory; refused".into(),
                    ));
                }
                let target = CString::new(hidden).unwrap_or_default();
                remove_at(&parent, &target).map_err(|e| fail(e.to_string()))?;
                // SAFETY: mknodat of a 0:0 character device: overlayfs's whiteout.
                if unsafe { libc::mknodat(parent.as_raw_fd(), target.as_ptr(), libc::S_IFCHR, 0) }
                    == -1
                {
                    return Err(fail(format!("creating whiteout: {}", last_err())));
                }
                continue;
            }
            let cname = cstr(&name);
            if kind != tar::EntryType::Directory {
                remove_at(&parent, &cname).map_err(|e| fail(e.to_string()))?;
            }
            match kind {
                tar::EntryType::Directory => {
                    // SAFETY: mkdirat with a valid dirfd; an existing directory is kept.
                    let r = unsafe { libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o700) };
                    if r == -1 && last_err().raw_os_error() == Some(libc::EEXIST) {
                        // Replace a non-directory of the same name.
                        let st = stat_at(&parent, &cname).map_err(|e| fail(e.to_string()))?;
                        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                            remove_at(&parent, &cname).map_err(|e| fail(e.to_string()))?;
                            unsafe { libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o700) };
                        }
                    } else if r == -1 {
                        return Err(fail(format!("creating directory: {}", last_err())));
                    }
                    set_xattrs(&parent, &cname, &mut entry).map_err(fail)?;
                    dirs.push(DirMeta {
                        parents: comps,
                        name,
                        mode,
                        uid,
                        gid,
                        mtime,
                    });
                    continue;
                }
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    let flags = libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC;
                    // SAFETY: openat with a valid dirfd and one component.
                    let fd =
                        unsafe { libc::openat(parent.as_raw_fd(), cname.as_ptr(), flags, 0o600) };
                    if fd == -1 {
                        return Err(fail(format!("creating file: {}", last_err())));
                    }
                    // SAFETY: a fresh fd we own.
                    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                    let mut limited = (&mut entry).take(limit.saturating_sub(size) + 1);
                    let n = io::copy(&mut limited, &mut file).map_err(|e| {
                        // A full disk is the store's state, not the layer's fault.
                        if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                            ImageError::io("unpacking a layer into", dest, e)
                        } else {
                            fail(format!("writing: {e}"))
                        }
                    })?;
                    size += n;
                    if size > limit {
                        return Err(ImageError::TooLarge {
                            layer: layer.to_string(),
                            limit,
                        });
                    }
                    drop(file);
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .ok()
                        .flatten()
                        .ok_or_else(|| fail("symlink without a target".into()))?;
                    let t = cstr(target.as_os_str());
                    // SAFETY: symlinkat with a valid dirfd; the target is only content.
                    if unsafe { libc::symlinkat(t.as_ptr(), parent.as_raw_fd(), cname.as_ptr()) }
                        == -1
                    {
                        return Err(fail(format!("creating symlink: {}", last_err())));
                    }
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .ok()
                        .flatten()
                        .ok_or_else(|| fail("hard link without a target".into()))?
                        .into_owned();
                    let mut tcomps = components(layer, &target).map_err(|_| {
                        fail(format!(
                            "hard link to {} leaves the layer; refused",
                            target.display()
                        ))
                    })?;
                    let Some(tname) = tcomps.pop() else {
                        return Err(fail("hard link to the layer root".into()));
                    };
                    let tdir = open_dirs(&root, &tcomps, false);
                    let tc = cstr(&tname);
                    // SAFETY: linkat without AT_SYMLINK_FOLLOW: links the entry itself.
                    let linked = tdir.as_ref().is_ok_and(|d| unsafe { libc::linkat(d.as_raw_fd(), tc.as_ptr(), parent.as_raw_fd(), cname.as_ptr(), 0) } == 0);
                    if !linked {
                        let e = tdir.err().unwrap_or_else(last_err);
                        match e.raw_os_error() {
                            Some(libc::ENOENT) => {
                                let mut link = comps.iter().collect::<PathBuf>();
                                link.push(&name);
                                deferred.push((link, target.clone()));
                            }
                            Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                                return Err(fail(format!(
                                    "hard link target {} goes through a symlink; refused",
                                    target.display()
                                )));
                            }
                            _ => {
                                return Err(fail(format!(
                                    "hard link to {}: {e}",
                                    target.display()
                                )));
                            }
                        }
                    }
                    continue;
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let (fmt, dev) = match kind {
                        tar::EntryType::Char => (libc::S_IFCHR, dev_of(&entry)),
                        tar::EntryType::Block => (libc::S_IFBLK, dev_of(&entry)),
                        _ => (libc::S_IFIFO, 0),
                    };
                    // SAFETY: mknodat with a valid dirfd and one component.
                    if unsafe {
                        libc::mknodat(parent.as_raw_fd(), cname.as_ptr(), fmt | 0o600, dev)
                    } == -1
                    {
                        return Err(fail(format!("creating node: {}", last_err())));
                    }
                }
                other => return Err(fail(format!("unsupported tar entry type {other:?}"))),
            }
            set_meta(
                &parent,
                &cname,
                kind == tar::EntryType::Symlink,
                mode,
                uid,
                gid,
                mtime,
            )
            .map_err(|e| fail(e.to_string()))?;
            if kind != tar::EntryType::Symlink {
                set_xattrs(&parent, &cname, &mut entry).map_err(fail)?;
            }
        }
    }
    // Directory metadata last, deepest first, so creating children does not
    // disturb the modes and mtimes restored.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.parents.len()));
    for d in dirs {
        let parent = open_dirs(&root, &d.parents, false).map_err(|e| {
            ImageError::io(
                "reopening",
                dest.join(d.parents.iter().collect::<PathBuf>()),
                e,
            )
        })?;
        set_meta(
            &parent,
            &cstr(&d.name),
            false,
            d.mode,
            d.uid,
            d.gid,
            d.mtime,
        )
        .map_err(|e| ImageError::io("setting metadata of", dest.join(&d.name), e))?;
    }
    // The diff_id covers the whole stream, including the tar's end padding.
    io::copy(&mut hashing, &mut io::sink())
        .map_err(|e| ImageError::io("reading layer", dest, e))?;
    // A link may come before its target in a badly ordered tar: try this layer
    // again before deferring to the layers below.
    deferred.retain(|(link, target)| {
        resolve_deferred_links(
            dest,
            &[dest.to_path_buf()],
            &[(link.clone(), target.clone())],
            layer,
        )
        .is_err()
    });
    Ok(Unpacked {
        diff_id: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
        size,
        deferred_links: deferred,
    })
}

fn dev_of<R: Read>(e: &tar::Entry<R>) -> libc::dev_t {
    let h = e.header();
    libc::makedev(
        h.device_major().ok().flatten().unwrap_or(0),
        h.device_minor().ok().flatten().unwrap_or(0),
    )
}

fn stat_at(dir: &OwnedFd, name: &CString) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat with a valid dirfd and out pointer.
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

fn set_meta(
    dir: &OwnedFd,
    name: &CString,
    symlink: bool,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
) -> io::Result<()> {
    // SAFETY: *at calls with a valid dirfd and one component, never following links.
    unsafe {
        if libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        ) == -1
        {
            return Err(last_err());
        }
        // chown clears setuid bits: the mode goes after it. Symlinks have no mode.
        if !symlink && libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) == -1 {
            return Err(last_err());
        }
        let t = libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        };
        let times = [t, t];
        if libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        ) == -1
        {
            return Err(last_err());
        }
    }
    Ok(())
}

fn set_xattrs<R: Read>(
    dir: &OwnedFd,
    name: &CString,
    entry: &mut tar::Entry<R>,
) -> std::result::Result<(), String> {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Ok(());
    };
    for ext in exts.flatten() {
        let Ok(key) = ext.key() else { continue };
        let Some(attr) = key.strip_prefix("SCHILY.xattr.") else {
            continue;
        };
        let path = CString::new(format!(
            "/proc/self/fd/{}/{}",
            dir.as_raw_fd(),
            name.to_string_lossy()
        ))
        .unwrap_or_default();
        let a = CString::new(attr).unwrap_or_default();
        let v = ext.value_bytes();
        // SAFETY: lsetxattr on a path through our directory fd; never follows a link.
        if unsafe { libc::lsetxattr(path.as_ptr(), a.as_ptr(), v.as_ptr().cast(), v.len(), 0) }
            == -1
        {
            return Err(format!("setting xattr {attr}: {}", last_err()));
        }
    }
    Ok(())
}

/// Resolves hard links deferred to lower layers: finds each target in `lowers`
/// (top first, each a layer root) and links it into `dest`.
pub fn resolve_deferred_links(
    dest: &Path,
    lowers: &[PathBuf],
    links: &[(PathBuf, PathBuf)],
    layer: &str,
) -> Result<()> {
    let root = crate::sys_open_dir(dest).map_err(|e| ImageError::io("opening", dest, e))?;
    for (link, target) in links {
        let fail = |msg: String| ImageError::Unpack {
            layer: layer.to_string(),
            entry: link.display().to_string(),
            msg,
        };
        let mut lcomps = components(layer, link)?;
        let lname = lcomps.pop().ok_or_else(|| fail("empty link".into()))?;
        let mut tcomps = components(layer, target)?;
        let tname = tcomps.pop().ok_or_else(|| fail("empty target".into()))?;
        let ldir = open_dirs(&root, &lcomps, false).map_err(|e| fail(e.to_string()))?;
        let mut done = false;
        for lower in lowers {
            let Ok(lroot) = crate::sys_open_dir(lower) else {
                continue;
            };
            let Ok(tdir) = open_dirs(&lroot, &tcomps, false) else {
                continue;
            };
            let (tc, lc) = (cstr(&tname), cstr(&lname));
            // SAFETY: linkat between two directories of the same store, no following.
            if unsafe {
                libc::linkat(
                    tdir.as_raw_fd(),
                    tc.as_ptr(),
                    ldir.as_raw_fd(),
                    lc.as_ptr(),
                    0,
                )
            } == 0
            {
                done = true;
                break;
            }
        }
        if !done {
            return Err(fail(format!(
                "hard link target {} is in no layer of the image",
                target.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            // Raw names: the builder's helpers would refuse the hostile ones.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                let ln = h.as_old_mut().linkname.as_mut();
                ln[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack(tar: &[u8]) -> (tempfile::TempDir, Result<Unpacked>) {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("fs");
        std::fs::create_dir(&layer).unwrap();
        let r = unpack_layer(tar, &layer, "test", 1 << 20);
        (dir, r)
    }

    #[test]
    fn regular_content_and_diff_id() {
        let t = tar_of(&[
            ("a/b.txt", tar::EntryType::Regular, b"hi", None),
            ("a/link", tar::EntryType::Symlink, b"", Some("b.txt")),
        ]);
        let (dir, r) = unpack(&t);
        let r = r.unwrap();
        assert_eq!(std::fs::read(dir.path().join("fs/a/b.txt")).unwrap(), b"hi");
        assert_eq!(
            std::fs::read_link(dir.path().join("fs/a/link")).unwrap(),
            Path::new("b.txt")
        );
        assert_eq!(r.diff_id, crate::store::sha256_digest(&t));
        assert_eq!(r.size, 2);
    }

    #[test]
    fn hostile_entries_are_refused_and_nothing_leaves_the_layer() {
        let outside = tempfile::tempdir().unwrap();
        let o = outside.path().display().to_string();
        let cases: Vec<Vec<u8>> = vec![
            tar_of(&[("../escape", tar::EntryType::Regular, b"x", None)]),
            tar_of(&[("a/../../escape", tar::EntryType::Regular, b"x", None)]),
            tar_of(&[(&format!("{o}/abs"), tar::EntryType::Regular, b"x", None)]),
            tar_of(&[
                ("l", tar::EntryType::Symlink, b"", Some(&o)),
                ("l/through", tar::EntryType::Regular, b"x", None),
            ]),
            tar_of(&[("h", tar::EntryType::Link, b"", Some("../../etc/passwd"))]),
            tar_of(&[("d/.wh...", tar::EntryType::Regular, b"", None)]),
        ];
        for (i, t) in cases.iter().enumerate() {
            let (_dir, r) = unpack(t);
            assert!(
                matches!(r, Err(ImageError::Unpack { .. })),
                "case {i}: {r:?}"
            );
        }
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing written outside"
        );
    }

    #[test]
    fn size_bound_stops_a_bomb() {
        let big = vec![0u8; 4096];
        let t = tar_of(&[
            ("a", tar::EntryType::Regular, &big, None),
            ("b", tar::EntryType::Regular, &big, None),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let r = unpack_layer(t.as_slice(), dir.path(), "bomb", 6000);
        assert!(
            matches!(r, Err(ImageError::TooLarge { limit: 6000, .. })),
            "{r:?}"
        );
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let t = tar_of(&[
            ("d/", tar::EntryType::Directory, b"", None),
            ("d/.wh.gone", tar::EntryType::Regular, b"", None),
            ("o/", tar::EntryType::Directory, b"", None),
            ("o/.wh..wh..opq", tar::EntryType::Regular, b"", None),
        ]);
        let (dir, r) = unpack(&t);
        r.unwrap();
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = std::fs::symlink_metadata(dir.path().join("fs/d/gone")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0);
        let o = CString::new(dir.path().join("fs/o").as_os_str().as_bytes()).unwrap();
        let mut buf = [0u8; 4];
        // SAFETY: getxattr into a valid buffer.
        let n = unsafe {
            libc::getxattr(
                o.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(&buf[..n.max(0) as usize], b"y");
    }
}
