//! Pins: images that something outside the image records still uses (berthd's
//! image volumes), so that removing the image's names does not free its blobs and
//! snapshots. A holder (a container) has one file `<root>/pins/<holder>.json`
//! with the records of the images it pins, as they were when pinned; GC keeps
//! what those records name until the holder lets go.

use crate::error::{ImageError, Result};
use crate::metadata::ImageRecord;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Pins {
    dir: PathBuf,
}

impl Pins {
    pub fn open(root: &Path) -> Pins {
        Pins {
            dir: root.join("pins"),
        }
    }

    fn file(&self, holder: &str) -> Result<PathBuf> {
        let ok = !holder.is_empty()
            && !holder.starts_with('.')
            && holder
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !ok {
            return Err(ImageError::invalid(
                "pin holder",
                format!("{holder:?} is not a plain name"),
            ));
        }
        Ok(self.dir.join(format!("{holder}.json")))
    }

    /// The images `holder` pins (none when it has no file).
    pub fn of(&self, holder: &str) -> Result<Vec<ImageRecord>> {
        let f = self.file(holder)?;
        match std::fs::read(&f) {
            Ok(d) => serde_json::from_slice(&d)
                .map_err(|e| ImageError::invalid(f.display().to_string(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ImageError::io("reading", &f, e)),
        }
    }

    /// Adds `rec` to what `holder` pins (written atomically and synced).
    pub fn add(&self, holder: &str, rec: &ImageRecord) -> Result<()> {
        let f = self.file(holder)?;
        let mut recs = self.of(holder)?;
        if recs.iter().any(|r| r.id == rec.id) {
            return Ok(());
        }
        recs.push(rec.clone());
        std::fs::create_dir_all(&self.dir).map_err(|e| ImageError::io("creating", &self.dir, e))?;
        let tmp = f.with_extension("json.tmp");
        let data = serde_json::to_vec_pretty(&recs)
            .map_err(|e| ImageError::invalid("pins", e.to_string()))?;
        let mut w = std::fs::File::create(&tmp).map_err(|e| ImageError::io("writing", &tmp, e))?;
        w.write_all(&data)
            .and_then(|_| w.sync_all())
            .map_err(|e| ImageError::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &f).map_err(|e| ImageError::io("writing", &f, e))
    }

    /// Drops every pin of `holder`.
    pub fn remove(&self, holder: &str) -> Result<()> {
        let f = self.file(holder)?;
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ImageError::io("removing", &f, e))
            }
            _ => Ok(()),
        }
    }

    /// The holders with pins.
    pub fn holders(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".json")
                    .filter(|h| !h.starts_with('.'))
                    .map(str::to_string)
            })
            .collect()
    }

    /// Every pinned record, of every holder. A pin file that cannot be read is
    /// an error: GC must not free what it may pin.
    pub fn all(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for h in self.holders() {
            out.extend(self.of(&h)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            manifest_digest: "sha256:m".into(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: 0,
            layers: Vec::new(),
            diff_ids: Vec::new(),
            chain_ids: Vec::new(),
            pinned: false,
        }
    }

    #[test]
    fn holders_pin_and_let_go() {
        let d = tempfile::tempdir().unwrap();
        let p = Pins::open(d.path());
        assert!(p.all().unwrap().is_empty());
        p.add("c1", &rec("sha256:a")).unwrap();
        p.add("c1", &rec("sha256:a")).unwrap();
        p.add("c1", &rec("sha256:b")).unwrap();
        p.add("c2", &rec("sha256:a")).unwrap();
        assert_eq!(p.of("c1").unwrap().len(), 2);
        let mut h = p.holders();
        h.sort();
        assert_eq!(h, ["c1", "c2"]);
        p.remove("c1").unwrap();
        p.remove("c1").unwrap();
        assert_eq!(p.all().unwrap(), vec![rec("sha256:a")]);
        assert!(p.add("../x", &rec("sha256:a")).is_err());
        assert!(p.add("", &rec("sha256:a")).is_err());
    }
}
