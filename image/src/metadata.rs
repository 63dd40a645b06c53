//! Image records: which images exist, their names, config and layers, in
//! `<root>/images.json`, rewritten atomically under an exclusive `flock` of
//! `<root>/images.lock`, so `berthd` and the `berth` CLI can share one store.

use crate::error::{ImageError, Result};
use crate::lockfile::{self, Lock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One image. Its id is the digest of its config, as containerd and Docker use.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    pub id: String,
    /// The platform manifest the layers come from.
    pub manifest_digest: String,
    /// `registry/repository:tag` names pointing at this image.
    pub repo_tags: Vec<String>,
    /// `registry/repository@digest`: the digest as pulled (index or manifest).
    pub repo_digests: Vec<String>,
    /// Compressed size of config and layers, as a registry serves them.
    pub size: u64,
    /// Layer blob digests, bottom first.
    pub layers: Vec<String>,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<String>,
    /// Snapshot keys, bottom first.
    pub chain_ids: Vec<String>,
    #[serde(default)]
    pub pinned: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct Db {
    images: BTreeMap<String, ImageRecord>,
}

pub struct Images {
    path: PathBuf,
    lock: PathBuf,
}

impl Images {
    pub fn open(root: &Path) -> Images {
        Images {
            path: root.join("images.json"),
            lock: root.join("images.lock"),
        }
    }

    fn lock(&self, exclusive: bool) -> Result<Lock> {
        lockfile::lock(&self.lock, exclusive, true)
            .map(|l| l.expect("a waiting flock returns only once it holds the lock"))
    }

    fn read(&self) -> Result<Db> {
        match std::fs::read(&self.path) {
            Ok(d) => serde_json::from_slice(&d)
                .map_err(|e| ImageError::invalid(self.path.display().to_string(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Db::default()),
            Err(e) => Err(ImageError::io("reading", &self.path, e)),
        }
    }

    fn write(&self, db: &Db) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let data = serde_json::to_vec_pretty(db)
            .map_err(|e| ImageError::invalid("image metadata", e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| ImageError::io("writing", &tmp, e))?;
        f.write_all(&data)
            .and_then(|_| f.sync_all())
            .map_err(|e| ImageError::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| ImageError::io("writing", &self.path, e))
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let _l = self.lock(false)?;
        Ok(self.read()?.images.into_values().collect())
    }

    /// Adds or updates an image; its tags move to it from any other image.
    pub fn add(&self, rec: ImageRecord) -> Result<ImageRecord> {
        let _l = self.lock(true)?;
        let mut db = self.read()?;
        for other in db.images.values_mut() {
            if other.id != rec.id {
                other.repo_tags.retain(|t| !rec.repo_tags.contains(t));
            }
        }
        let merged = match db.images.remove(&rec.id) {
            Some(mut old) => {
                for t in rec.repo_tags {
                    if !old.repo_tags.contains(&t) {
                        old.repo_tags.push(t);
                    }
                }
                for d in rec.repo_digests {
                    if !old.repo_digests.contains(&d) {
                        old.repo_digests.push(d);
                    }
                }
                old
            }
            None => rec,
        };
        db.images.insert(merged.id.clone(), merged.clone());
        self.write(&db)?;
        Ok(merged)
    }

    /// Finds an image by id (full or an unambiguous prefix of at least 4 hex
    /// digits), by tag, or by repo digest.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord> {
        let _l = self.lock(false)?;
        resolve_in(&self.read()?, name).cloned()
    }

    /// Removes `name`: a tag of an image with other names only loses that tag;
    /// otherwise the image goes. Returns the removed image, if it went.
    pub fn remove(&self, name: &str) -> Result<Option<ImageRecord>> {
        let _l = self.lock(true)?;
        let mut db = self.read()?;
        let rec = resolve_in(&db, name)?.clone();
        let tag = normalized(name);
        let by_tag = tag.as_ref().is_some_and(|t| rec.repo_tags.contains(t));
        let names = rec.repo_tags.len() + rec.repo_digests.len();
        if by_tag && names > 1 && rec.repo_tags.len() > 1 {
            let img = db.images.get_mut(&rec.id).expect("resolved");
            img.repo_tags.retain(|t| Some(t) != tag.as_ref());
            self.write(&db)?;
            return Ok(None);
        }
        db.images.remove(&rec.id);
        self.write(&db)?;
        Ok(Some(rec))
    }
}

fn normalized(name: &str) -> Option<String> {
    crate::Reference::parse(name).ok().map(|r| r.to_string())
}

fn resolve_in<'a>(db: &'a Db, name: &str) -> Result<&'a ImageRecord> {
    let bare = name.strip_prefix("sha256:").unwrap_or(name);
    if let Some(r) = db.images.get(&format!("sha256:{bare}")) {
        return Ok(r);
    }
    if let Ok(r) = crate::Reference::parse(name) {
        let full = r.to_string();
        let by_name = db.images.values().find(|i| {
            i.repo_tags.contains(&full)
                || i.repo_digests.iter().any(|d| {
                    r.digest.is_some()
                        && *d == format!("{}@{}", r.name(), r.digest.as_deref().unwrap_or(""))
                })
        });
        if let Some(i) = by_name {
            return Ok(i);
        }
        // name@digest also matches the manifest chosen from an index.
        if let Some(d) = &r.digest
            && let Some(i) = db.images.values().find(|i| {
                &i.manifest_digest == d
                    && i.repo_digests
                        .iter()
                        .any(|rd| rd.starts_with(&format!("{}@", r.name())))
            })
        {
            return Ok(i);
        }
    }
    if bare.len() >= 4 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hits: Vec<_> = db
            .images
            .values()
            .filter(|i| i.id.trim_start_matches("sha256:").starts_with(bare))
            .collect();
        match hits.len() {
            1 => return Ok(hits[0]),
            0 => {}
            n => {
                return Err(ImageError::Ambiguous {
                    name: name.to_string(),
                    count: n,
                });
            }
        }
    }
    Err(ImageError::NotFound(name.to_string()))
}
