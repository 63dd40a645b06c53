//! Pulling: resolve the reference through the configured mirrors, pick the
//! platform's manifest, then download the layers in parallel, each streamed from
//! the network through its digest check and decompression straight into the
//! unpacker, while the compressed blob is also written to the content store.

use crate::error::{ImageError, Result};
use crate::metadata::ImageRecord;
use crate::reference::Reference;
use crate::store::sha256_digest;
use crate::unpack::Parents;
use crate::{ImageStore, snapshot};
use futures_util::StreamExt;
use oci_client::Client;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// A layer unpacked into a prepared snapshot directory, and whether it must be
/// applied again onto its parents (see [`crate::unpack`]).
type Fetched = (PathBuf, bool);

/// The largest manifest or index accepted, as containerd's bound.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// The largest image config accepted.
pub const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// Registry credentials, from the CRI's AuthConfig or a docker config.json.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
}

impl Auth {
    fn to_registry(&self) -> RegistryAuth {
        match self {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Auth::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        }
    }

    /// Credentials for `host` from a docker `config.json` (`auths.<host>.auth`, or
    /// `username`/`password`, or `identitytoken`).
    pub fn from_docker_config(json: &[u8], host: &str) -> Option<Auth> {
        use base64::Engine;
        let v: Value = serde_json::from_slice(json).ok()?;
        let auths = v.get("auths")?.as_object()?;
        let entry = auths
            .iter()
            .find(|(k, _)| {
                let k = k
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                k.split('/').next() == Some(host)
                    || (host == "docker.io" && k.contains("index.docker.io"))
            })?
            .1;
        if let Some(t) = entry
            .get("identitytoken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            return Some(Auth::Bearer(t.to_string()));
        }
        if let Some(a) = entry.get("auth").and_then(Value::as_str) {
            let raw = base64::engine::general_purpose::STANDARD.decode(a).ok()?;
            let (u, p) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
            return Some(Auth::Basic {
                username: u.into(),
                password: p.into(),
            });
        }
        Some(Auth::Basic {
            username: entry.get("username")?.as_str()?.into(),
            password: entry.get("password")?.as_str()?.into(),
        })
    }
}

/// What a pull reports as it goes.
#[derive(Clone, Debug)]
pub enum Progress {
    Resolved { image: String, layers: usize },
    LayerStarted { digest: String, size: u64 },
    LayerBytes { digest: String, done: u64 },
    LayerExists { digest: String },
    LayerDone { digest: String },
}

pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

#[derive(Clone, Default)]
pub struct PullOptions {
    pub auth: Auth,
    pub progress: Option<ProgressFn>,
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn current_platform() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        other => (other, None),
    }
}

impl ImageStore {
    fn client(&self, hosts: &[String]) -> Client {
        let mut plain: Vec<String> = self.config.insecure.clone();
        plain.extend(hosts.iter().filter(|h| is_loopback(h)).cloned());
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        })
    }

    fn emit(&self, opts: &PullOptions, p: Progress) {
        if let Some(f) = &opts.progress {
            f(p);
        }
    }

    /// Pulls `name` into the store and returns its record.
    pub async fn pull(&self, name: &str, opts: &PullOptions) -> Result<ImageRecord> {
        let r = Reference::parse(name)?;
        let _gc_waits = self.pull_lock().await?;
        let mut hosts: Vec<String> = self
            .config
            .mirrors
            .get(&r.registry)
            .cloned()
            .unwrap_or_default();
        hosts.push(r.registry.clone());
        let client = self.client(&hosts);
        let auth = match (&opts.auth, &self.config.docker_config) {
            (Auth::Anonymous, Some(path)) => std::fs::read(path)
                .ok()
                .and_then(|j| Auth::from_docker_config(&j, &r.registry))
                .unwrap_or_default(),
            (a, _) => a.clone(),
        };
        let auth = auth.to_registry();
        let image = r.to_string();

        // The first host that serves the manifest serves the blobs too. When none
        // does, the error says what each answered (kubelet shows it in events).
        let mut answers = Vec::new();
        let mut found = None;
        for (i, host) in hosts.iter().enumerate() {
            let oref = oci_ref(&r, host, None);
            match client.pull_manifest_raw(&oref, &auth, MANIFEST_TYPES).await {
                Ok((bytes, digest)) => {
                    found = Some((host.clone(), bytes.to_vec(), digest));
                    break;
                }
                Err(e) => {
                    answers.push((host.clone(), i + 1 < hosts.len(), map_err(&image, host, e)))
                }
            }
        }
        let Some((host, top_raw, _)) = found else {
            return Err(ImageError::from_hosts(&image, answers));
        };
        check_manifest_size(&top_raw, r.digest.as_deref().unwrap_or("of the tag"), None)?;
        let top_digest = sha256_digest(&top_raw);
        if let Some(want) = &r.digest
            && want != &top_digest
        {
            return Err(ImageError::DigestMismatch {
                expected: want.clone(),
                actual: top_digest,
            });
        }
        self.content.put(&top_digest, &top_raw)?;
        crate::crash::point("pull:manifest");
        let top: Value = serde_json::from_slice(&top_raw)
            .map_err(|e| ImageError::invalid(&image, format!("manifest is not JSON: {e}")))?;
        let (manifest_digest, manifest) = if top.get("manifests").is_some() {
            let digest = select_platform(&image, &top)?;
            let oref = oci_ref(&r, &host, Some(&digest));
            let (bytes, _) = client
                .pull_manifest_raw(&oref, &auth, MANIFEST_TYPES)
                .await
                .map_err(|e| map_err(&image, &host, e))?;
            check_manifest_size(&bytes, &digest, declared_size(&top, &digest))?;
            let actual = sha256_digest(&bytes);
            if actual != digest {
                return Err(ImageError::DigestMismatch {
                    expected: digest,
                    actual,
                });
            }
            self.content.put(&digest, &bytes)?;
            let m: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::invalid(&image, format!("manifest is not JSON: {e}")))?;
            (digest, m)
        } else {
            (top_digest.clone(), top)
        };
        if manifest.get("schemaVersion").and_then(Value::as_u64) == Some(1) {
            return Err(ImageError::Unsupported {
                image,
                media_type: "Docker image manifest v1 (schema 1)".into(),
                hint: "; it was deprecated in 2019: push the image again with a current client",
            });
        }
        let plan = layers_of(&image, &manifest)?;
        let config_digest = plan.config_digest.clone();
        let oref = oci_ref(&r, &host, None);
        if !self.content.has(&config_digest) {
            let buf = fetch_small_blob(&client, &oref, &config_digest, plan.config_size)
                .await
                .map_err(|e| match e {
                    Fetch::Client(e) => map_err(&image, &host, e),
                    Fetch::Refused(e) => e,
                })?;
            self.content.put(&config_digest, &buf)?;
        }
        let config: Value = serde_json::from_slice(&self.content.read(&config_digest)?)
            .map_err(|e| ImageError::invalid(&image, format!("config is not JSON: {e}")))?;
        let diff_ids = diff_ids_of(&image, &config, plan.layers.len())?;
        let layers = plan.layers;
        let chain_ids = snapshot::chain_ids(&diff_ids);
        self.emit(
            opts,
            Progress::Resolved {
                image: image.clone(),
                layers: layers.len(),
            },
        );

        let limit = self.unpack_limit();
        // Owned per-layer data: the futures must not borrow the closure's argument,
        // so that the whole pull stays Send for the gRPC server.
        let work: Vec<(usize, String, String, u64, String, String)> = layers
            .iter()
            .enumerate()
            .map(|(i, (d, m, sz))| {
                (
                    i,
                    d.clone(),
                    m.clone(),
                    *sz,
                    diff_ids[i].clone(),
                    chain_ids[i].clone(),
                )
            })
            .collect();
        let (client_ref, oref_ref) = (&client, &oref);
        let jobs = work
            .into_iter()
            .map(|(i, digest, media_type, size, diff_id, chain_id)| {
                let (client, oref) = (client_ref, oref_ref);
                async move {
                    let (digest, media_type, size) = (&digest, &media_type, &size);
                    if self.snapshots.exists(&chain_id) {
                        self.emit(
                            opts,
                            Progress::LayerExists {
                                digest: digest.clone(),
                            },
                        );
                        return Ok((i, None));
                    }
                    self.emit(
                        opts,
                        Progress::LayerStarted {
                            digest: digest.clone(),
                            size: *size,
                        },
                    );
                    let mut attempt = 0;
                    loop {
                        attempt += 1;
                        match self
                            .fetch_layer(
                                client,
                                oref,
                                (digest, media_type, *size),
                                i == 0,
                                &diff_id,
                                &chain_id,
                                limit,
                                opts,
                            )
                            .await
                        {
                            Ok(done) => {
                                self.emit(
                                    opts,
                                    Progress::LayerDone {
                                        digest: digest.clone(),
                                    },
                                );
                                return Ok((i, Some(done)));
                            }
                            // Only a broken transfer is worth another try.
                            Err(e) if e.is_out_of_space() => return Err(e),
                            Err(ImageError::Unreachable { .. } | ImageError::Io { .. })
                                if attempt < 3 =>
                            {
                                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt))
                                    .await;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            });
        // Both cores stay busy: one layer inflates while another downloads.
        // Every job runs to its end, even after another failed: a job dropped
        // midway would leave its unpack thread writing into a snapshot (and an
        // ingest file) that the sweep below is removing.
        let outcomes: Vec<Result<(usize, Option<Fetched>)>> = futures_util::stream::iter(jobs)
            .buffer_unordered(3)
            .collect()
            .await;
        let mut results = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            match o {
                Ok(r) => results.push(r),
                Err(e) => {
                    self.sweep_prepared();
                    return Err(e);
                }
            }
        }
        results.sort_by_key(|(i, _)| *i);
        // Layers whose first pass needed their parents are applied again, bottom
        // up, onto the parents now complete; then everything commits bottom-up.
        let mut lowers: Vec<PathBuf> = Vec::new();
        for (i, done) in &results {
            if let Some((fs, true)) = done {
                let mut below = lowers.clone();
                below.reverse();
                let (digest, media_type, _) = layers[*i].clone();
                let blob = self.content.path(&digest)?;
                let (fs2, diff_id) = (fs.clone(), diff_ids[*i].clone());
                background(move || {
                    reapply(&blob, &media_type, &fs2, &below, &digest, &diff_id, limit)
                })
                .await
                .inspect_err(|_| self.sweep_prepared())?;
            }
            lowers.push(match done {
                Some((fs, _)) => fs.clone(),
                None => self.snapshots.fs(&chain_ids[*i])?,
            });
        }
        crate::crash::point("pull:blobs");
        for (i, done) in results {
            if let Some((fs, _)) = done {
                self.snapshots.commit(&fs, &chain_ids[i])?;
            }
        }
        crate::crash::point("pull:snapshots");
        let size = plan.config_size + layers.iter().map(|l| l.2).sum::<u64>();
        let record = ImageRecord {
            id: config_digest,
            manifest_digest,
            repo_tags: r.tag.iter().map(|t| format!("{}:{t}", r.name())).collect(),
            repo_digests: vec![format!("{}@{top_digest}", r.name())],
            size,
            layers: layers.into_iter().map(|l| l.0).collect(),
            diff_ids,
            chain_ids,
            pinned: false,
        };
        let added = self.images.add(record);
        crate::crash::point("pull:record");
        added
    }

    fn sweep_prepared(&self) {
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .for_each(|p| self.snapshots.abort(&p));
    }

    /// Downloads one layer and unpacks it as it arrives. Returns the prepared
    /// snapshot directory and whether it must be applied again onto its parents.
    /// The declared `size` bounds the download.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_layer(
        &self,
        client: &Client,
        oref: &oci_client::Reference,
        (digest, media_type, size): (&str, &str, u64),
        bottom: bool,
        diff_id: &str,
        chain_id: &str,
        limit: u64,
        opts: &PullOptions,
    ) -> Result<Fetched> {
        let compression = Compression::of(media_type).ok_or_else(|| ImageError::Unsupported {
            image: oref.whole(),
            media_type: media_type.to_string(),
            hint: " as a layer (tar, tar+gzip and tar+zstd are)",
        })?;
        let fs = self.snapshots.prepare(chain_id)?;
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fs.clone());
        let writer_needed = !self.content.has(digest);
        let writer = if writer_needed {
            Some(self.content.writer(digest)?)
        } else {
            None
        };
        // An async channel: a slow unpack must hold back the download, never block
        // one of the runtime's worker threads (berthd's calls are served there).
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(64);
        let (fs2, layer, diff_id_want) = (fs.clone(), digest.to_string(), diff_id.to_string());
        let stored = (!writer_needed)
            .then(|| self.content.path(digest))
            .transpose()?;
        let unpacker = background(move || -> Result<bool> {
            let source: Box<dyn Read + Send> = match stored {
                Some(path) => Box::new(
                    std::fs::File::open(&path)
                        .map_err(|e| ImageError::io("opening blob", path, e))?,
                ),
                None => Box::new(ChannelReader {
                    rx,
                    chunk: bytes::Bytes::new(),
                }),
            };
            // The blob writer hashes what it stores and refuses a mismatch at commit;
            // a blob read back from the store was verified when it was stored.
            let mut tee = Tee {
                inner: source,
                writer,
            };
            let decoded = compression.decoder(&mut tee, &fs2)?;
            let parents = if bottom {
                Parents::None
            } else {
                Parents::Unknown
            };
            let unpacked = crate::unpack::unpack_layer(decoded, &fs2, &layer, limit, parents)?;
            std::io::copy(&mut tee, &mut std::io::sink())
                .map_err(|e| ImageError::io("reading layer", &fs2, e))?;
            // The layer must be the config's before its blob is kept.
            check_diff_id(&layer, &diff_id_want, unpacked.diff_id)?;
            if let Some(w) = tee.writer.take() {
                w.commit()?;
            }
            Ok(unpacked.needs_parents)
        });
        // A broken transfer is reported as such (and retried), not as a corrupt tar.
        let mut transfer_error = None;
        if writer_needed {
            match client.pull_blob_stream(oref, digest).await {
                Ok(stream) if stream.content_length.is_some_and(|n| n != size) => {
                    transfer_error = Some(ImageError::SizeMismatch {
                        digest: digest.to_string(),
                        declared: size,
                        sent: format!(
                            "{} (its Content-Length)",
                            stream.content_length.unwrap_or(0)
                        ),
                    });
                    let _ = tx.send(Err(std::io::Error::other("size mismatch"))).await;
                }
                Ok(mut stream) => {
                    let (mut done, mut unpacker_stopped) = (0u64, false);
                    while let Some(chunk) = stream.next().await {
                        match chunk {
                            // Past the declared size: stop reading, whatever comes.
                            Ok(c) if done + c.len() as u64 > size => {
                                transfer_error = Some(ImageError::SizeMismatch {
                                    digest: digest.to_string(),
                                    declared: size,
                                    sent: format!("more than {size}"),
                                });
                                let _ = tx.send(Err(std::io::Error::other("too long"))).await;
                                break;
                            }
                            Ok(c) => {
                                done += c.len() as u64;
                                self.emit(
                                    opts,
                                    Progress::LayerBytes {
                                        digest: digest.to_string(),
                                        done,
                                    },
                                );
                                if tx.send(Ok(c)).await.is_err() {
                                    unpacker_stopped = true; // its error says why
                                    break;
                                }
                            }
                            Err(e) => {
                                let text = e.to_string();
                                // The client checks digests too: a mismatch is final,
                                // not a broken transfer to retry.
                                transfer_error = Some(match text.split_once("got ") {
                                    Some((_, actual)) if text.contains("digest") => {
                                        ImageError::DigestMismatch {
                                            expected: digest.to_string(),
                                            actual: actual.trim().to_string(),
                                        }
                                    }
                                    _ => ImageError::Unreachable {
                                        host: oref.registry().to_string(),
                                        msg: format!("downloading {digest}: {text}"),
                                    },
                                });
                                let _ = tx.send(Err(e)).await;
                                break;
                            }
                        }
                    }
                    if transfer_error.is_none() && !unpacker_stopped && done < size {
                        transfer_error = Some(ImageError::SizeMismatch {
                            digest: digest.to_string(),
                            declared: size,
                            sent: format!("only {done}"),
                        });
                        let _ = tx.send(Err(std::io::Error::other("too short"))).await;
                    }
                }
                Err(e) => transfer_error = Some(map_err(&oref.whole(), oref.registry(), e)),
            }
        }
        drop(tx);
        let result = unpacker.await;
        let result = match transfer_error {
            Some(e) => Err(e),
            None => result,
        };
        self.finish_layer(fs, result)
    }

    fn finish_layer(&self, fs: PathBuf, result: Result<bool>) -> Result<Fetched> {
        match result {
            Ok(again) => Ok((fs, again)),
            Err(e) => {
                self.snapshots.abort(&fs);
                self.prepared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|p| p != &fs);
                Err(e)
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// A reader of the uncompressed tar (`what` names it in an error).
    fn decoder<'a>(self, r: impl Read + 'a, what: &std::path::Path) -> Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(r).map_err(|e| ImageError::io("zstd", what, e))?,
            ),
            Compression::None => Box::new(r),
        })
    }

    fn of(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
            _ => None,
        }
    }
}

/// Applies a layer again from its stored (verified) blob, onto its parents'
/// snapshot directories `below` (top first), into the emptied `fs`.
fn reapply(
    blob: &std::path::Path,
    media_type: &str,
    fs: &std::path::Path,
    below: &[PathBuf],
    layer: &str,
    diff_id: &str,
    limit: u64,
) -> Result<()> {
    std::fs::remove_dir_all(fs).map_err(|e| ImageError::io("emptying", fs, e))?;
    std::fs::create_dir(fs).map_err(|e| ImageError::io("creating", fs, e))?;
    let file = std::fs::File::open(blob).map_err(|e| ImageError::io("opening blob", blob, e))?;
    let decoded = Compression::of(media_type)
        .unwrap_or(Compression::None)
        .decoder(std::io::BufReader::new(file), blob)?;
    let unpacked = crate::unpack::unpack_layer(decoded, fs, layer, limit, Parents::Known(below))?;
    check_diff_id(layer, diff_id, unpacked.diff_id)
}

/// The uncompressed layer is the one the image config names.
fn check_diff_id(layer: &str, expected: &str, actual: String) -> Result<()> {
    if actual != expected {
        return Err(ImageError::DiffIdMismatch {
            layer: layer.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// A manifest over containerd's bound, or not of the size its index declares.
fn check_manifest_size(bytes: &[u8], digest: &str, declared: Option<u64>) -> Result<()> {
    let n = bytes.len() as u64;
    if n > MAX_MANIFEST_SIZE {
        return Err(ImageError::TooBig {
            what: "manifest",
            digest: digest.to_string(),
            limit: MAX_MANIFEST_SIZE,
        });
    }
    match declared {
        Some(d) if d != n => Err(ImageError::SizeMismatch {
            digest: digest.to_string(),
            declared: d,
            sent: n.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The size an index declares for its manifest `digest`.
fn declared_size(index: &Value, digest: &str) -> Option<u64> {
    index["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["digest"].as_str() == Some(digest))?["size"]
        .as_u64()
}

enum Fetch {
    Client(oci_client::errors::OciDistributionError),
    Refused(ImageError),
}

/// Downloads a small blob (an image config) whole, reading no more than its
/// declared size (and never more than the config bound).
async fn fetch_small_blob(
    client: &Client,
    oref: &oci_client::Reference,
    digest: &str,
    declared: u64,
) -> std::result::Result<Vec<u8>, Fetch> {
    if declared > MAX_CONFIG_SIZE {
        return Err(Fetch::Refused(ImageError::TooBig {
            what: "image config",
            digest: digest.to_string(),
            limit: MAX_CONFIG_SIZE,
        }));
    }
    let mismatch = |sent: String| {
        Fetch::Refused(ImageError::SizeMismatch {
            digest: digest.to_string(),
            declared,
            sent,
        })
    };
    let mut stream = client
        .pull_blob_stream(oref, digest)
        .await
        .map_err(Fetch::Client)?;
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let c = chunk.map_err(|e| {
            Fetch::Refused(ImageError::Unreachable {
                host: oref.registry().to_string(),
                msg: format!("downloading {digest}: {e}"),
            })
        })?;
        if (buf.len() + c.len()) as u64 > declared {
            return Err(mismatch(format!("more than {declared}")));
        }
        buf.extend_from_slice(&c);
    }
    if (buf.len() as u64) < declared {
        return Err(mismatch(format!("only {}", buf.len())));
    }
    Ok(buf)
}

/// Reads the chunks the download task sends.
/// Runs CPU-heavy work (inflating, hashing, unpacking a layer) on a thread of its
/// own at a lower priority (nice 5), so that on a busy node a pull yields the CPU
/// to the CRI calls kubelet waits on, without being starved by them.
/// The thread starts at once (the download feeds it as it goes); the returned
/// future yields its result.
fn background<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> impl Future<Output = Result<T>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("berth-unpack".into())
        .spawn(move || {
            // SAFETY: raising the nice value of this thread only (Linux keeps
            // nice values per thread).
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 5) };
            let _ = tx.send(f());
        });
    async move {
        spawned.map_err(|e| ImageError::io("starting an unpack thread", "", e))?;
        rx.await
            .map_err(|_| ImageError::invalid("unpack thread", "ended without a result"))?
    }
}

struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Passes the compressed bytes through, writing them to the store.
struct Tee<R> {
    inner: R,
    writer: Option<crate::store::BlobWriter>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(w) = &mut self.writer {
            std::io::Write::write_all(w, &buf[..n])?;
        }
        Ok(n)
    }
}

fn oci_ref(r: &Reference, host: &str, digest: Option<&str>) -> oci_client::Reference {
    match (digest.or(r.digest.as_deref()), &r.tag) {
        (Some(d), Some(t)) if digest.is_none() => oci_client::Reference::with_tag_and_digest(
            host.into(),
            r.repository.clone(),
            t.clone(),
            d.into(),
        ),
        (Some(d), _) => {
            oci_client::Reference::with_digest(host.into(), r.repository.clone(), d.into())
        }
        (None, t) => oci_client::Reference::with_tag(
            host.into(),
            r.repository.clone(),
            t.clone().unwrap_or_else(|| "latest".into()),
        ),
    }
}

/// Picks this machine's manifest from an index (linux, its architecture; the
/// variant when the index names one).
/// What a manifest says to fetch: the config, and each layer's (digest, media
/// type, size), bottom first.
#[derive(Debug)]
pub struct LayerPlan {
    pub config_digest: String,
    pub config_size: u64,
    pub layers: Vec<(String, String, u64)>,
}

/// Reads an image manifest (OCI or Docker v2); refuses one whose config or
/// layer digests are not sha256 digests, before anything is fetched.
pub fn layers_of(image: &str, manifest: &Value) -> Result<LayerPlan> {
    let config_desc = &manifest["config"];
    let config_digest = config_desc["digest"]
        .as_str()
        .ok_or_else(|| ImageError::invalid(image, "manifest has no config"))?
        .to_string();
    crate::store::sha256_hex(&config_digest)?;
    let mut layers = Vec::new();
    for l in manifest["layers"].as_array().into_iter().flatten() {
        let digest = l["digest"].as_str().unwrap_or_default().to_string();
        crate::store::sha256_hex(&digest)?;
        layers.push((
            digest,
            l["mediaType"].as_str().unwrap_or_default().to_string(),
            l["size"].as_u64().unwrap_or(0),
        ));
    }
    Ok(LayerPlan {
        config_digest,
        config_size: config_desc["size"].as_u64().unwrap_or(0),
        layers,
    })
}

/// The config's diff_ids, one per layer of the manifest.
pub fn diff_ids_of(image: &str, config: &Value, layers: usize) -> Result<Vec<String>> {
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(String::from))
        .collect();
    if layers != diff_ids.len() {
        return Err(ImageError::invalid(
            image,
            format!(
                "{layers} layers but {} diff_ids in the config",
                diff_ids.len()
            ),
        ));
    }
    for d in &diff_ids {
        crate::store::sha256_hex(d)?;
    }
    Ok(diff_ids)
}

/// The digest of this machine's manifest in an image index.
pub fn select_platform(image: &str, index: &Value) -> Result<String> {
    let (arch, variant) = current_platform();
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let matches = |m: &&Value, strict_variant: bool| {
        let p = &m["platform"];
        p["os"] == "linux"
            && p["architecture"] == arch
            && (!strict_variant
                || variant.is_none()
                || p["variant"].as_str().is_none_or(|v| Some(v) == variant))
    };
    manifests
        .iter()
        .find(|m| matches(m, true))
        .or_else(|| manifests.iter().find(|m| matches(m, false)))
        .and_then(|m| m["digest"].as_str().map(String::from))
        .ok_or_else(|| ImageError::NoPlatform {
            image: image.to_string(),
            platform: format!(
                "linux/{arch}{}",
                variant.map(|v| format!("/{v}")).unwrap_or_default()
            ),
            offered: manifests
                .iter()
                .map(|m| {
                    format!(
                        "{}/{}",
                        m["platform"]["os"].as_str().unwrap_or("?"),
                        m["platform"]["architecture"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Turns a registry client error into the one-line error a person can act on.
fn map_err(image: &str, host: &str, e: oci_client::errors::OciDistributionError) -> ImageError {
    use oci_client::errors::OciDistributionError as E;
    let text = e.to_string();
    let lower = text.to_lowercase();
    let mut chain = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    match e {
        E::AuthenticationFailure(_) => ImageError::Unauthorized {
            image: image.into(),
            host: host.into(),
        },
        E::ImageManifestNotFoundError(_) => ImageError::ManifestUnknown {
            image: image.into(),
            host: host.into(),
        },
        E::RequestError(_) => ImageError::Unreachable {
            host: host.into(),
            msg: format!("{text}{chain}"),
        },
        _ if lower.contains("manifest unknown")
            || lower.contains("manifest_unknown")
            || lower.contains("name unknown")
            || lower.contains("name_unknown")
            || text.contains(" 404") =>
        {
            ImageError::ManifestUnknown {
                image: image.into(),
                host: host.into(),
            }
        }
        _ if lower.contains("unauthorized")
            || lower.contains("not authorized")
            || text.contains("401") =>
        {
            ImageError::Unauthorized {
                image: image.into(),
                host: host.into(),
            }
        }
        _ => ImageError::Registry {
            image: image.into(),
            host: host.into(),
            msg: format!("{text}{chain}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_use_plain_http() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.k8s.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn platform_selection_prefers_this_machine() {
        let index = serde_json::json!({"manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
        ]});
        let (arch, _) = current_platform();
        let got = select_platform("x", &index);
        match arch {
            "amd64" => assert_eq!(got.unwrap(), "sha256:amd"),
            "arm64" => assert_eq!(got.unwrap(), "sha256:arm"),
            _ => assert!(got.is_err()),
        }
        let none = serde_json::json!({"manifests": [{"digest": "sha256:s", "platform": {"os": "linux", "architecture": "s390x"}}]});
        let e = select_platform("x", &none).unwrap_err().to_string();
        assert!(e.contains("linux/s390x"), "{e}");
    }

    #[test]
    fn docker_config_credentials() {
        let cfg = br#"{"auths": {"127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"}, "https://index.docker.io/v1/": {"identitytoken": "tok"}}}"#;
        assert!(
            matches!(Auth::from_docker_config(cfg, "127.0.0.1:5000"), Some(Auth::Basic { username, password }) if username == "user" && password == "pass")
        );
        assert!(
            matches!(Auth::from_docker_config(cfg, "docker.io"), Some(Auth::Bearer(t)) if t == "tok")
        );
        assert!(Auth::from_docker_config(cfg, "quay.io").is_none());
    }
}
