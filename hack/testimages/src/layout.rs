//! Writes images as OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/`).

use crate::layer::{self, Blob};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A fixed creation time keeps the config, and so every digest, stable.
pub const CREATED: &str = "2024-01-01T00:00:00Z";

/// A descriptor of a blob that has been written.
#[derive(Clone, Debug)]
pub struct Descriptor {
    pub media_type: &'static str,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    pub fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// An OCI layout directory being filled.
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn create(dir: &Path) -> Result<Self> {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir.join("blobs/sha256"))
            .with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    pub fn put(&self, media_type: &'static str, data: &[u8]) -> Result<Descriptor> {
        let digest = layer::sha256(data);
        let hex = digest.trim_start_matches("sha256:");
        fs::write(self.dir.join("blobs/sha256").join(hex), data)?;
        Ok(Descriptor {
            media_type,
            digest,
            size: data.len() as u64,
        })
    }

    pub fn put_json(&self, media_type: &'static str, value: &Value) -> Result<Descriptor> {
        self.put(media_type, &serde_json::to_vec(value)?)
    }

    /// Stores the layers and the config, then the manifest; returns the manifest.
    pub fn put_image(&self, layers: &[Blob], config: &Value) -> Result<Descriptor> {
        let mut layer_descs = Vec::new();
        for blob in layers {
            let d = self.put(LAYER_GZIP, &blob.gz)?;
            layer_descs.push(d.to_json());
        }
        let config = self.put_json(CONFIG, config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.to_json(),
            "layers": layer_descs,
        });
        self.put_json(MANIFEST, &manifest)
    }

    /// Writes `index.json` naming `top` with the tag `tag`.
    pub fn finish(self, top: &Descriptor, tag: &str, platform: Option<Value>) -> Result<()> {
        let mut desc = top.to_json();
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        if let Some(p) = platform {
            desc["platform"] = p;
        }
        let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]});
        fs::write(self.dir.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }
}

/// The image config: `runtime` is the `config` object (Env, Cmd, User, ...).
pub fn image_config(arch: &str, runtime: Value, layers: &[Blob], created_by: &str) -> Value {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let history: Vec<Value> = layers
        .iter()
        .map(|_| json!({"created": CREATED, "created_by": created_by}))
        .collect();
    json!({
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    })
}
