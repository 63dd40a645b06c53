//! A registry that lies: an HTTP server on 127.0.0.1 that serves exactly the
//! manifests and blobs a test gives it, however they disagree with each other
//! (a blob longer than its descriptor, an endless blob, an oversized manifest, a
//! config whose diff_ids do not match its layers). docker-registry checks what
//! is pushed to it, so these cases cannot be put there; every other test uses
//! the real registry.

use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the server answers for one path.
#[derive(Clone)]
pub enum Body {
    /// These bytes, with their Content-Length.
    Bytes(Vec<u8>, &'static str),
    /// These bytes and no Content-Length (the end is the connection's close).
    Unsized(Vec<u8>),
    /// Zeros with no Content-Length until `limit` bytes or the client goes.
    Endless { limit: u64 },
}

pub struct HostileRegistry {
    pub addr: String,
    routes: Arc<Mutex<HashMap<String, Body>>>,
    /// Bytes sent per path, to check that a client stopped reading.
    pub sent: Arc<Mutex<HashMap<String, u64>>>,
}

impl HostileRegistry {
    pub fn start() -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let addr = listener.local_addr().unwrap().to_string();
        let routes: Arc<Mutex<HashMap<String, Body>>> = Arc::default();
        let sent: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let (r, s) = (routes.clone(), sent.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let (r, s) = (r.clone(), s.clone());
                std::thread::spawn(move || serve(conn, &r, &s));
            }
        });
        HostileRegistry { addr, routes, sent }
    }

    pub fn route(&self, path: &str, body: Body) {
        self.routes.lock().unwrap().insert(path.to_string(), body);
    }

    /// Serves `data` as the blob `digest` of `repo` (the digest is not checked).
    pub fn blob(&self, repo: &str, digest: &str, body: Body) {
        self.route(&format!("/v2/{repo}/blobs/{digest}"), body);
    }

    /// Serves `manifest` under `repo:tag`; returns its digest.
    pub fn manifest(&self, repo: &str, tag: &str, manifest: &[u8]) -> String {
        let d = digest(manifest);
        let body = Body::Bytes(
            manifest.to_vec(),
            "application/vnd.oci.image.manifest.v1+json",
        );
        self.route(&format!("/v2/{repo}/manifests/{tag}"), body.clone());
        self.route(&format!("/v2/{repo}/manifests/{d}"), body);
        d
    }

    pub fn sent_to(&self, path: &str) -> u64 {
        self.sent.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn serve(
    conn: std::net::TcpStream,
    routes: &Mutex<HashMap<String, Body>>,
    sent: &Mutex<HashMap<String, u64>>,
) {
    let mut reader = BufReader::new(conn.try_clone().expect("cloning a socket"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    // The headers end at an empty line.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut conn = conn;
    let route = if path == "/v2/" {
        Some(Body::Bytes(b"{}".to_vec(), "application/json"))
    } else {
        routes.lock().unwrap().get(&path).cloned()
    };
    let count = |n: usize| *sent.lock().unwrap().entry(path.clone()).or_default() += n as u64;
    match route {
        None => {
            let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(body);
        }
        Some(Body::Bytes(data, media_type)) => {
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                data.len()
            );
            if conn.write_all(&data).is_ok() {
                count(data.len());
            }
        }
        Some(Body::Unsized(data)) => {
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
            );
            if conn.write_all(&data).is_ok() {
                count(data.len());
            }
        }
        Some(Body::Endless { limit }) => {
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
            );
            let chunk = vec![0u8; 64 << 10];
            let mut done = 0u64;
            while done < limit {
                if conn.write_all(&chunk).is_err() {
                    break;
                }
                done += chunk.len() as u64;
                count(chunk.len());
            }
        }
    }
    let _ = conn.flush();
}

/// An OCI image built in memory: layers (uncompressed tars, served as plain
/// `tar` layers), its config and its manifest.
pub struct Image {
    pub layers: Vec<Vec<u8>>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Image {
    /// The config's diff_ids are the layers' digests unless `diff_ids` says
    /// otherwise; `sizes` overrides the sizes the manifest declares.
    pub fn new(
        layers: Vec<Vec<u8>>,
        diff_ids: Option<Vec<String>>,
        sizes: Option<Vec<u64>>,
    ) -> Image {
        let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|l| digest(l)).collect());
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let sizes = sizes.unwrap_or_else(|| layers.iter().map(|l| l.len() as u64).collect());
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(&config), "size": config.len()},
            "layers": layers.iter().zip(&sizes).map(|(l, s)| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest(l), "size": s})).collect::<Vec<_>>(),
        }))
        .unwrap();
        Image {
            layers,
            config,
            manifest,
        }
    }

    /// Serves the whole image as `repo:tag` on `reg`.
    pub fn serve(&self, reg: &HostileRegistry, repo: &str, tag: &str) {
        for l in &self.layers {
            reg.blob(
                repo,
                &digest(l),
                Body::Bytes(l.clone(), "application/octet-stream"),
            );
        }
        reg.blob(
            repo,
            &digest(&self.config),
            Body::Bytes(self.config.clone(), "application/octet-stream"),
        );
        reg.manifest(repo, tag, &self.manifest);
    }
}

/// A tar of (path, kind, content, link target, pax xattrs), written raw so that
/// entries the tar crate's helpers would refuse can be made.
pub type TarEntry<'a> = (
    &'a str,
    tar::EntryType,
    &'a [u8],
    Option<&'a str>,
    &'a [(&'a str, &'a [u8])],
);

pub fn tar_of(entries: &[TarEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, link, xattrs) in entries {
        if !xattrs.is_empty() {
            let mut pax = Vec::new();
            for (k, v) in xattrs.iter() {
                pax.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
            }
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(pax.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, pax.as_slice()).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
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

/// One pax extended-header record: "LEN key=value\n", LEN counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}
