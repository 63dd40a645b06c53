//! The content store: blobs by digest under `<root>/content/blobs/sha256/`.
//! A blob is written to `ingest/` while it is hashed, and renamed into place only
//! when its digest matches, after an fsync: a blob that does not match is never
//! stored, and a write killed at any point leaves only an ingest file, which the
//! next open sweeps away.

use crate::error::{ImageError, Result};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

/// Splits `sha256:<64 hex>`; other algorithms are refused.
pub fn sha256_hex(digest: &str) -> Result<&str> {
    match digest.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            Ok(hex)
        }
        _ => Err(ImageError::invalid(
            format!("digest {digest:?}"),
            "only sha256:<64 lowercase hex> digests are supported",
        )),
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<ContentStore> {
        let blobs = root.join("content/blobs/sha256");
        let ingest = root.join("content/ingest");
        for d in [&blobs, &ingest] {
            std::fs::create_dir_all(d).map_err(|e| ImageError::io("creating", d, e))?;
        }
        let store = ContentStore { blobs, ingest };
        store.sweep_ingest();
        Ok(store)
    }

    /// Removes ingest files of writers that are gone (their pid is in the name).
    fn sweep_ingest(&self) {
        for e in std::fs::read_dir(&self.ingest)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid: Option<i32> = name.rsplit('-').nth(1).and_then(|p| p.parse().ok());
            // SAFETY: kill with signal 0 only checks that the pid exists.
            let alive = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0);
            if !alive {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blobs.join(sha256_hex(digest)?))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.exists())
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.path(digest)?;
        std::fs::read(&p).map_err(|e| ImageError::io("reading blob", p, e))
    }

    /// Stores `data` as `digest`, refusing it if it does not hash to `digest`.
    pub fn put(&self, digest: &str, data: &[u8]) -> Result<()> {
        let mut w = self.writer(digest)?;
        w.write_all(data)
            .map_err(|e| ImageError::io("writing blob", &w.tmp, e))?;
        w.commit()
    }

    /// A writer that becomes the blob `digest` on `commit`, if the content matches.
    pub fn writer(&self, digest: &str) -> Result<BlobWriter> {
        let hex = sha256_hex(digest)?.to_string();
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .ingest
            .join(format!("{hex}-{}-{n}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| ImageError::io("creating", &tmp, e))?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            tmp,
            dest: self.blobs.join(&hex),
            expected: digest.to_string(),
            committed: false,
            size: 0,
        })
    }

    pub fn delete(&self, digest: &str) -> Result<()> {
        let p = self.path(digest)?;
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ImageError::io("removing blob", p, e))
            }
            _ => Ok(()),
        }
    }

    /// Every stored blob's digest.
    pub fn list(&self) -> Vec<String> {
        std::fs::read_dir(&self.blobs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
            .collect()
    }
}

pub struct BlobWriter {
    file: File,
    hasher: Sha256,
    tmp: PathBuf,
    dest: PathBuf,
    expected: String,
    committed: bool,
    pub size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Checks the digest, makes the content durable, and moves it into place.
    pub fn commit(mut self) -> Result<()> {
        let actual = format!(
            "sha256:{}",
            hex::encode(std::mem::take(&mut self.hasher).finalize())
        );
        if actual != self.expected {
            return Err(ImageError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        self.file
            .sync_all()
            .map_err(|e| ImageError::io("syncing", &self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.dest)
            .map_err(|e| ImageError::io("storing blob", &self.dest, e))?;
        self.committed = true;
        if let Some(dir) = self.dest.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_only_when_they_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = b"hello";
        let d = sha256_digest(data);
        store.put(&d, data).unwrap();
        assert!(store.has(&d));
        assert_eq!(store.read(&d).unwrap(), data);
        let wrong = sha256_digest(b"other");
        let err = store.put(&wrong, data).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!store.has(&wrong));
        assert_eq!(
            std::fs::read_dir(dir.path().join("content/ingest"))
                .unwrap()
                .count(),
            0,
            "no ingest file left"
        );
        assert!(sha256_hex("md5:abc").is_err());
        assert!(sha256_hex("sha256:../../etc/passwd").is_err());
    }

    #[test]
    fn stale_ingest_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        ContentStore::open(dir.path()).unwrap();
        let stale = dir
            .path()
            .join("content/ingest")
            .join(format!("{}-999999999-0", "a".repeat(64)));
        std::fs::write(&stale, b"partial").unwrap();
        ContentStore::open(dir.path()).unwrap();
        assert!(!stale.exists());
    }
}
