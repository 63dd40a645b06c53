//! Applying a layer tar to a snapshot directory in overlayfs's format: OCI
//! whiteouts (`.wh.name`) become 0:0 character devices, opaque markers
//! (`.wh..wh..opq`) become the `trusted.overlay.opaque` xattr.
//!
//! A layer is applied onto its parents' view, as containerd and Docker apply
//! it: each entry's parent path resolves in the merged tree of the parents plus
//! this layer ([`crate::layered`]), following symlinks but never leaving the
//! root, and the entry is written in this layer where that resolution lands
//! (`L2: lib -> usr/lib`, `L3: lib/x.so` writes `usr/lib/x.so`). `..` and absolute
//! paths are clamped to the root. A hard link must name a file inside the root.
//! Layers are unpacked in parallel as they download, before their parents are
//! complete: an entry whose resolution needs a parent stops that first pass
//! (`needs_parents`) and the layer is applied again from its stored blob once
//! the parents are in place. The bytes written are bounded so a small
//! compressed layer cannot fill the disk.
//!
//! Extended attributes: `trusted.*` and `security.*` from a layer are dropped
//! (they steer overlayfs and the kernel's security modules; the only overlay
//! attribute berth writes is the opaque marker it derives from OCI whiteouts),
//! except `security.capability`, a file's capabilities, which images carry
//! legitimately and which Docker and containerd keep.

use crate::error::{ImageError, Result};
use crate::layered::{self, Entry, View, WalkError, cstr, last_err};
use sha2::{Digest as _, Sha256};
use std::ffi::{CStr, CString, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What is known of the layers below the one being unpacked.
#[derive(Clone, Copy, Debug)]
pub enum Parents<'a> {
    /// The image's bottom layer.
    None,
    /// Unpacked alongside its parents: an entry that needs them stops the
    /// unpack with `needs_parents` set.
    Unknown,
    /// The parents' snapshot directories, top first.
    Known(&'a [PathBuf]),
}

/// What a layer unpack produced.
#[derive(Debug)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: String,
    /// Bytes of file content written.
    pub size: u64,
    /// The unpack stopped at an entry that needs the parent layers: apply the
    /// layer again with `Parents::Known` (the stream was still read to its end,
    /// so `diff_id` is whole).
    pub needs_parents: bool,
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

/// What `remove_at` took away.
#[derive(PartialEq)]
enum Removed {
    Nothing,
    File,
    /// A directory or a symlink: paths resolved before may resolve otherwise now.
    Tree,
}

/// Removes whatever is at `name` in `dir` (recursively for a directory).
fn remove_at(dir: &OwnedFd, name: &CStr) -> io::Result<Removed> {
    let st = match layered::stat_at(dir, name) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Removed::Nothing),
        Err(e) => return Err(e),
    };
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFDIR {
        // SAFETY: unlinkat with a valid dirfd and one component.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } == -1 {
            return Err(last_err());
        }
        return Ok(if kind == libc::S_IFLNK {
            Removed::Tree
        } else {
            Removed::File
        });
    }
    let sub = layered::open_dir_at(dir, name)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", sub.as_raw_fd()));
    for e in std::fs::read_dir(&path)?.flatten() {
        remove_at(&sub, &cstr(e.file_name().as_os_str()))?;
    }
    // SAFETY: as above, removing the now empty directory.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } == -1 {
        return Err(last_err());
    }
    Ok(Removed::Tree)
}

struct DirMeta {
    /// Where the directory landed, below the layer's root.
    parent: Vec<OsString>,
    name: OsString,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// The entry that needs the parents: the first pass ends there.
struct Stop;

/// Unpacks the uncompressed tar `reader` into the empty directory `dest`, onto
/// `parents`. `limit` bounds the bytes of file content written.
pub fn unpack_layer(
    reader: impl Read,
    dest: &Path,
    layer: &str,
    limit: u64,
    parents: Parents,
) -> Result<Unpacked> {
    let open = |p: &Path| crate::sys_open_dir(p).map_err(|e| ImageError::io("opening", p, e));
    let lowers = match parents {
        Parents::Known(dirs) => dirs.iter().map(|d| open(d)).collect::<Result<_>>()?,
        _ => Vec::new(),
    };
    let view = View::new(open(dest)?, lowers, matches!(parents, Parents::Unknown));
    let mut hashing = Hashing {
        inner: reader,
        hasher: Sha256::new(),
    };
    let mut state = Apply {
        view: &view,
        layer,
        limit,
        size: 0,
        dirs: Vec::new(),
        late_links: Vec::new(),
        last_parent: None,
    };
    let mut needs_parents = false;
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
            match state.entry(&mut entry, dest) {
                Ok(()) => {}
                Err(Ok(Stop)) => {
                    needs_parents = true;
                    break;
                }
                Err(Err(e)) => return Err(e),
            }
        }
    }
    // The diff_id covers the whole stream, including the tar's end padding.
    io::copy(&mut hashing, &mut io::sink())
        .map_err(|e| ImageError::io("reading layer", dest, e))?;
    if !needs_parents {
        state.finish(dest)?;
    }
    Ok(Unpacked {
        diff_id: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
        size: state.size,
        needs_parents,
    })
}

/// One layer's application in progress.
struct Apply<'a> {
    view: &'a View,
    layer: &'a str,
    limit: u64,
    size: u64,
    /// Directory metadata is set last, so creating children does not disturb it.
    dirs: Vec<DirMeta>,
    /// Hard links that came before their target (a badly ordered tar).
    late_links: Vec<(PathBuf, Vec<OsString>, Vec<OsString>)>,
    /// The last parent resolved: tars list a directory's entries together.
    last_parent: Option<(Vec<OsString>, layered::Dir)>,
}

type EntryResult = std::result::Result<(), std::result::Result<Stop, ImageError>>;

impl Apply<'_> {
    fn fail(&self, raw: &Path, msg: impl Into<String>) -> ImageError {
        ImageError::Unpack {
            layer: self.layer.to_string(),
            entry: raw.display().to_string(),
            msg: msg.into(),
        }
    }

    fn walk_error(&self, raw: &Path, e: WalkError) -> std::result::Result<Stop, ImageError> {
        match e {
            WalkError::NeedsParents => Ok(Stop),
            e => Err(self.fail(raw, e.to_string())),
        }
    }

    /// The directory an entry goes in, resolved in the merged tree and made in
    /// this layer where it is missing.
    fn parent_of(
        &mut self,
        raw: &Path,
        names: &[OsString],
    ) -> std::result::Result<&layered::Dir, std::result::Result<Stop, ImageError>> {
        let hit = self.last_parent.as_ref().is_some_and(|(n, _)| n == names);
        if !hit {
            let dir = self
                .view
                .walk(names, true)
                .map_err(|e| self.walk_error(raw, e))?;
            self.last_parent = Some((names.to_vec(), dir));
        }
        Ok(&self.last_parent.as_ref().expect("just set").1)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>, dest: &Path) -> EntryResult {
        let raw = entry
            .path()
            .map_err(|e| Err(self.fail(Path::new(""), e.to_string())))?
            .into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let (mut names, _) = layered::clean(&raw);
        let Some(name) = names.pop() else {
            return Ok(()); // the root itself
        };
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let name_bytes = name.as_bytes().to_vec();
        let parent_dir = self.parent_of(&raw, &names)?;
        let resolved_parent = parent_dir.path.clone();
        let parent = parent_dir
            .top()
            .expect("a creating walk keeps the top layer")
            .try_clone()
            .map_err(|e| Err(self.fail(&raw, e.to_string())))?;
        let layer = self.layer;
        let fail = |msg: String| {
            Err(ImageError::Unpack {
                layer: layer.to_string(),
                entry: raw.display().to_string(),
                msg,
            })
        };
        // Whiteouts, in overlayfs's format.
        if name_bytes == b".wh..wh..opq" {
            layered::set_opaque(&parent)
                .map_err(|e| fail(format!("marking directory opaque: {e}")))?;
            self.last_parent = None;
            return Ok(());
        }
        if let Some(hidden) = name_bytes.strip_prefix(b".wh.") {
            if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
                return Err(fail(
                    "a whiteout must name an entry of its own directory; refused".into(),
                ));
            }
            let target = CString::new(hidden).unwrap_or_default();
            remove_at(&parent, &target).map_err(|e| fail(e.to_string()))?;
            // SAFETY: mknodat of a 0:0 character device: overlayfs's whiteout.
            if unsafe { libc::mknodat(parent.as_raw_fd(), target.as_ptr(), libc::S_IFCHR, 0) } == -1
            {
                return Err(fail(format!("creating whiteout: {}", last_err())));
            }
            self.last_parent = None;
            return Ok(());
        }
        let cname = cstr(&name);
        if kind != tar::EntryType::Directory
            && remove_at(&parent, &cname).map_err(|e| fail(e.to_string()))? == Removed::Tree
        {
            self.last_parent = None;
        }
        match kind {
            tar::EntryType::Directory => {
                // SAFETY: mkdirat with a valid dirfd; an existing directory is kept.
                let r = unsafe { libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o700) };
                if r == -1 && last_err().raw_os_error() == Some(libc::EEXIST) {
                    // Replace a non-directory of the same name.
                    let st = layered::stat_at(&parent, &cname).map_err(|e| fail(e.to_string()))?;
                    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                        remove_at(&parent, &cname).map_err(|e| fail(e.to_string()))?;
                        self.last_parent = None;
                        // SAFETY: as above.
                        if unsafe { libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o700) } == -1
                        {
                            return Err(fail(format!("creating directory: {}", last_err())));
                        }
                    }
                } else if r == -1 {
                    return Err(fail(format!("creating directory: {}", last_err())));
                }
                set_xattrs(&parent, &cname, entry).map_err(fail)?;
                self.dirs.push(DirMeta {
                    parent: resolved_parent,
                    name,
                    mode,
                    uid,
                    gid,
                    mtime,
                });
                return Ok(());
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let flags = libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_WRONLY
                    | libc::O_NOFOLLOW
                    | libc::O_CLOEXEC;
                // SAFETY: openat with a valid dirfd and one component.
                let fd = unsafe { libc::openat(parent.as_raw_fd(), cname.as_ptr(), flags, 0o600) };
                if fd == -1 {
                    return Err(fail(format!("creating file: {}", last_err())));
                }
                // SAFETY: a fresh fd we own.
                let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                let mut limited = (&mut *entry).take(self.limit.saturating_sub(self.size) + 1);
                let n = io::copy(&mut limited, &mut file).map_err(|e| {
                    // A full disk is the store's state, not the layer's fault.
                    if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                        Err(ImageError::io("unpacking a layer into", dest, e))
                    } else {
                        Err(self.fail(&raw, format!("writing: {e}")))
                    }
                })?;
                self.size += n;
                if self.size > self.limit {
                    return Err(Err(ImageError::TooLarge {
                        layer: self.layer.to_string(),
                        limit: self.limit,
                    }));
                }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| fail("symlink without a target".into()))?;
                let t = cstr(target.as_os_str());
                // SAFETY: symlinkat with a valid dirfd; the target is only content.
                if unsafe { libc::symlinkat(t.as_ptr(), parent.as_raw_fd(), cname.as_ptr()) } == -1
                {
                    return Err(fail(format!("creating symlink: {}", last_err())));
                }
                self.last_parent = None;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| fail("hard link without a target".into()))?
                    .into_owned();
                let (mut tnames, clamped) = layered::clean(&target);
                if clamped {
                    return Err(fail(format!(
                        "hard link to {} leaves the root; refused",
                        target.display()
                    )));
                }
                let Some(tname) = tnames.pop() else {
                    return Err(fail("hard link to the root".into()));
                };
                let mut lpath = resolved_parent;
                lpath.push(name);
                if !self.link(&raw, &parent, &cname, &tnames, &tname)? {
                    self.late_links
                        .push((raw.clone(), lpath, [tnames, vec![tname]].concat()));
                }
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (fmt, dev) = match kind {
                    tar::EntryType::Char => (libc::S_IFCHR, dev_of(entry)),
                    tar::EntryType::Block => (libc::S_IFBLK, dev_of(entry)),
                    _ => (libc::S_IFIFO, 0),
                };
                // SAFETY: mknodat with a valid dirfd and one component.
                if unsafe { libc::mknodat(parent.as_raw_fd(), cname.as_ptr(), fmt | 0o600, dev) }
                    == -1
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
            set_xattrs(&parent, &cname, entry).map_err(fail)?;
        }
        Ok(())
    }

    /// Hard-links `cname` in `parent` to the file `tdir/tname` of the merged
    /// tree (the top-most layer that has it). False when no layer has it yet.
    fn link(
        &self,
        raw: &Path,
        parent: &OwnedFd,
        cname: &CStr,
        tdir: &[OsString],
        tname: &OsString,
    ) -> std::result::Result<bool, std::result::Result<Stop, ImageError>> {
        let dir = match self.view.walk(tdir, false) {
            Ok(d) => d,
            Err(WalkError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(self.walk_error(raw, e)),
        };
        let tc = cstr(tname);
        let entry = self
            .view
            .lookup(&dir, &tc)
            .map_err(|e| Err(self.fail(raw, e.to_string())))?;
        let layer = match entry {
            Entry::Other(i) | Entry::Symlink(i, _) => i,
            Entry::Dir(_) => return Err(Err(self.fail(raw, "hard link to a directory; refused"))),
            Entry::Missing if self.view.parents_unknown() => return Err(Ok(Stop)),
            Entry::Missing | Entry::Whiteout(_) => return Ok(false),
        };
        let from = dir.layers[layer].as_ref().expect("found in that layer");
        // SAFETY: linkat without AT_SYMLINK_FOLLOW: links the entry itself.
        if unsafe {
            libc::linkat(
                from.as_raw_fd(),
                tc.as_ptr(),
                parent.as_raw_fd(),
                cname.as_ptr(),
                0,
            )
        } == -1
        {
            return Err(Err(self.fail(raw, format!("hard link: {}", last_err()))));
        }
        Ok(true)
    }

    /// Links that came before their targets, then directory metadata, deepest
    /// first.
    fn finish(&mut self, dest: &Path) -> Result<()> {
        for (raw, lpath, tpath) in std::mem::take(&mut self.late_links) {
            let (lname, ldir) = lpath.split_last().expect("a link has a name");
            let (tname, tdir) = tpath.split_last().expect("a target has a name");
            let parent = layered::walk_top(self.view.top(), ldir)
                .map_err(|e| ImageError::io("reopening", dest.join(&raw), e))?;
            match self.link(&raw, &parent, &cstr(lname), tdir, tname) {
                Ok(true) => {}
                Ok(false) | Err(Ok(Stop)) => {
                    return Err(self.fail(
                        &raw,
                        format!(
                            "hard link target /{} is in no layer of the image",
                            tpath.iter().collect::<PathBuf>().display()
                        ),
                    ));
                }
                Err(Err(e)) => return Err(e),
            }
        }
        self.dirs.sort_by_key(|d| std::cmp::Reverse(d.parent.len()));
        for d in &self.dirs {
            // A directory that a later entry replaced has no metadata to restore.
            let Ok(parent) = layered::walk_top(self.view.top(), &d.parent) else {
                continue;
            };
            match set_meta(
                &parent,
                &cstr(&d.name),
                false,
                d.mode,
                d.uid,
                d.gid,
                d.mtime,
            ) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                r => r.map_err(|e| ImageError::io("setting metadata of", dest.join(&d.name), e))?,
            }
        }
        Ok(())
    }
}

fn dev_of<R: Read>(e: &tar::Entry<R>) -> libc::dev_t {
    let h = e.header();
    libc::makedev(
        h.device_major().ok().flatten().unwrap_or(0),
        h.device_minor().ok().flatten().unwrap_or(0),
    )
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

/// Whether an extended attribute from a layer is written (see the module's doc).
fn xattr_allowed(name: &str) -> bool {
    !(name.starts_with("trusted.") || name.starts_with("security."))
        || name == "security.capability"
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
        if !xattr_allowed(attr) {
            continue;
        }
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
        let r = unpack_layer(tar, &layer, "test", 1 << 20, Parents::None);
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
    fn paths_are_clamped_inside_the_root_and_nothing_leaves_it() {
        let outside = tempfile::tempdir().unwrap();
        let o = outside.path().display().to_string();
        let clamped: Vec<(Vec<u8>, String)> = vec![
            (
                tar_of(&[("../escape", tar::EntryType::Regular, b"x", None)]),
                "escape".into(),
            ),
            (
                tar_of(&[("a/../../escape", tar::EntryType::Regular, b"x", None)]),
                "escape".into(),
            ),
            (
                tar_of(&[(&format!("{o}/abs"), tar::EntryType::Regular, b"x", None)]),
                format!("{}/abs", o.trim_start_matches('/')),
            ),
            (
                tar_of(&[
                    ("l", tar::EntryType::Symlink, b"", Some(&o)),
                    ("l/through", tar::EntryType::Regular, b"x", None),
                ]),
                format!("{}/through", o.trim_start_matches('/')),
            ),
        ];
        for (i, (t, inside)) in clamped.iter().enumerate() {
            let (dir, r) = unpack(t);
            r.unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert!(
                dir.path().join("fs").join(inside).is_file(),
                "case {i}: {inside}"
            );
        }
        for (i, t) in [
            tar_of(&[("h", tar::EntryType::Link, b"", Some("../../etc/passwd"))]),
            tar_of(&[("d/.wh...", tar::EntryType::Regular, b"", None)]),
        ]
        .iter()
        .enumerate()
        {
            let (_dir, r) = unpack(t);
            assert!(
                matches!(r, Err(ImageError::Unpack { .. })),
                "refused {i}: {r:?}"
            );
        }
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing written outside"
        );
    }

    #[test]
    fn an_entry_that_needs_the_parents_stops_the_first_pass() {
        let t = tar_of(&[
            ("here/", tar::EntryType::Directory, b"", None),
            ("here/a", tar::EntryType::Regular, b"a", None),
            ("lib/x.so", tar::EntryType::Regular, b"x", None),
            ("late", tar::EntryType::Regular, b"late", None),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let r = unpack_layer(t.as_slice(), dir.path(), "t", 1 << 20, Parents::Unknown).unwrap();
        assert!(r.needs_parents);
        assert_eq!(
            r.diff_id,
            crate::store::sha256_digest(&t),
            "the whole stream is hashed"
        );
        // Onto a parent with lib -> usr/lib, the same layer lands through it.
        let lower = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(lower.path().join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", lower.path().join("lib")).unwrap();
        let top = tempfile::tempdir().unwrap();
        let below = [lower.path().to_path_buf()];
        let r = unpack_layer(
            t.as_slice(),
            top.path(),
            "t",
            1 << 20,
            Parents::Known(&below),
        )
        .unwrap();
        assert!(!r.needs_parents);
        assert_eq!(
            std::fs::read(top.path().join("usr/lib/x.so")).unwrap(),
            b"x"
        );
        assert!(
            !top.path().join("lib").exists(),
            "the symlink is not hidden"
        );
        assert_eq!(std::fs::read(top.path().join("late")).unwrap(), b"late");
    }

    #[test]
    fn size_bound_stops_a_bomb() {
        let big = vec![0u8; 4096];
        let t = tar_of(&[
            ("a", tar::EntryType::Regular, &big, None),
            ("b", tar::EntryType::Regular, &big, None),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let r = unpack_layer(t.as_slice(), dir.path(), "bomb", 6000, Parents::None);
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
