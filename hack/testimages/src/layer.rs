//! Layers as lists of entries, written as reproducible tar + gzip blobs.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;

/// Every entry gets this mtime so that digests do not depend on the build time.
pub const EPOCH: u64 = 1_700_000_000;

/// What a layer entry is.
#[derive(Clone, Debug)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A hard link to another path of the same layer.
    Hardlink(String),
    Fifo,
}

/// One entry of a layer tar, with its path relative to the root (no leading '/').
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub fn dir(path: &str, mode: u32) -> Self {
        Self::new(path, Kind::Dir, mode)
    }
    pub fn file(path: &str, mode: u32, data: impl Into<Vec<u8>>) -> Self {
        Self::new(path, Kind::File(data.into()), mode)
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        Self::new(path, Kind::Symlink(target.to_string()), 0o777)
    }
    pub fn hardlink(path: &str, target: &str) -> Self {
        Self::new(path, Kind::Hardlink(target.to_string()), 0o644)
    }
    pub fn fifo(path: &str, mode: u32) -> Self {
        Self::new(path, Kind::Fifo, mode)
    }
    /// An OCI whiteout: deletes `path` from the layers below.
    pub fn whiteout(path: &str) -> Self {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let wh = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        Self::file(&wh, 0o644, Vec::new())
    }
    /// An OCI opaque whiteout: hides everything below `dir` in lower layers.
    pub fn opaque(dir: &str) -> Self {
        Self::file(&format!("{dir}/.wh..wh..opq"), 0o644, Vec::new())
    }
    fn new(path: &str, kind: Kind, mode: u32) -> Self {
        Entry {
            path: path.trim_start_matches('/').to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            xattrs: Vec::new(),
        }
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn xattr(mut self, name: &str, value: &[u8]) -> Self {
        self.xattrs.push((name.to_string(), value.to_vec()));
        self
    }
}

/// A layer blob ready to be stored: the gzip bytes and both digests.
pub struct Blob {
    pub gz: Vec<u8>,
    /// sha256 of the compressed blob (the descriptor digest).
    pub digest: String,
    /// sha256 of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Writes the entries as a tar sorted by path (parents before children; hard links
/// last, after their targets, as tar writers emit them), then gzips it with a zero
/// mtime in the gzip header.
pub fn build(entries: &[Entry]) -> Result<Blob> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        let link = |e: &Entry| matches!(e.kind, Kind::Hardlink(_));
        (link(a), &a.path).cmp(&(link(b), &b.path))
    });
    let mut builder = tar::Builder::new(Vec::new());
    for e in sorted {
        append(&mut builder, e).with_context(|| format!("layer entry {}", e.path))?;
    }
    compress(builder.into_inner()?)
}

/// Gzips a tar with a zero mtime in the header, and computes both digests.
fn compress(tar_bytes: Vec<u8>) -> Result<Blob> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar_bytes)?;
    let gz = gz.finish()?;
    Ok(Blob {
        digest: sha256(&gz),
        diff_id: sha256(&tar_bytes),
        gz,
    })
}

fn append(builder: &mut tar::Builder<Vec<u8>>, e: &Entry) -> Result<()> {
    if !e.xattrs.is_empty() {
        let pax: Vec<(String, &[u8])> = e
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
    }
    let mut h = tar::Header::new_ustar();
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(EPOCH);
    h.set_size(0);
    let path = match e.kind {
        Kind::Dir => format!("{}/", e.path),
        _ => e.path.clone(),
    };
    match &e.kind {
        Kind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            builder.append_data(&mut h, &path, std::io::empty())?;
        }
        Kind::File(data) => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            builder.append_data(&mut h, &path, data.as_slice())?;
        }
        Kind::Symlink(target) => {
            h.set_entry_type(tar::EntryType::Symlink);
            builder.append_link(&mut h, &path, target)?;
        }
        Kind::Hardlink(target) => {
            h.set_entry_type(tar::EntryType::Link);
            builder.append_link(&mut h, &path, target)?;
        }
        Kind::Fifo => {
            h.set_entry_type(tar::EntryType::Fifo);
            builder.append_data(&mut h, &path, std::io::empty())?;
        }
    }
    Ok(())
}

/// A layer written with raw tar headers, bypassing the checks of the tar crate's
/// builder: for the hostile fixtures, whose names an honest writer refuses.
/// A raw tar entry: (name, type, content, link target).
pub type RawEntry<'a> = (&'a str, tar::EntryType, &'a [u8], Option<&'a str>);

pub fn build_raw(entries: &[RawEntry]) -> Result<Blob> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(EPOCH);
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, *data)?;
    }
    compress(b.into_inner()?)
}
