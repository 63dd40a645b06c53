//! The catalogue of berth's test images. `hack/testimages/README.md` says what
//! each contains and why.

use crate::layer::{self, Blob, Entry};
use crate::layout::{self, Layout};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One built image: its repository name (under `library/`), tag and top digest.
pub struct Built {
    pub name: &'static str,
    pub tag: &'static str,
    pub digest: String,
}

/// Builds every test image into `out/<name>` and returns what was built.
pub fn build_all(busybox: &Path, out: &Path) -> Result<Vec<Built>> {
    let base = layer::build(&busybox_entries(busybox)?)?;
    let mut built = Vec::new();
    built.push(single(
        out,
        "busybox",
        &base,
        &[],
        json!({"Env": [PATH_ENV], "Cmd": ["sh"]}),
    )?);
    built.push(single(
        out,
        "httpd",
        &base,
        &[web_layer()?],
        json!({
            "Env": [PATH_ENV],
            "Cmd": ["httpd", "-f", "-v", "-p", "80", "-h", "/www"],
            "ExposedPorts": {"80/tcp": {}},
            "WorkingDir": "/www",
            "StopSignal": "SIGTERM",
            "Labels": {"org.berth.test": "httpd"},
        }),
    )?);
    // A sandbox image for containerd's CRI in the benchmarks: sleeps until killed.
    built.push(single(
        out,
        "pause",
        &base,
        &[],
        json!({"Env": [PATH_ENV], "Entrypoint": ["sleep", "2147483647"]}),
    )?);
    let users = users_layer()?;
    built.push(single(
        out,
        "user-uid",
        &base,
        std::slice::from_ref(&users),
        json!({"Env": [PATH_ENV], "Cmd": ["id"], "User": "1000"}),
    )?);
    built.push(single(
        out,
        "user-name",
        &base,
        &[users],
        json!({"Env": [PATH_ENV], "Cmd": ["id"], "User": "berth", "WorkingDir": "/home/berth"}),
    )?);
    let (lower, upper) = changes_layers()?;
    built.push(single(
        out,
        "layers",
        &base,
        &[lower, upper],
        json!({"Env": [PATH_ENV], "Cmd": ["sh"]}),
    )?);
    built.push(multiarch(out, &base)?);
    built.extend(hostile(out, &base)?);
    Ok(built)
}

/// Where the hostile layers try to write on the host; a test checks nothing lands.
pub const HOSTILE_TARGET: &str = "/tmp/berth-hostile-escape";

/// Images whose top layer tries to write or delete outside the layer directory.
/// An unpacker must refuse each, naming the entry, and touch nothing outside.
fn hostile(out: &Path, base: &Blob) -> Result<Vec<Built>> {
    use tar::EntryType as T;
    let t = HOSTILE_TARGET;
    let dotdot = format!("../../../../../../..{t}");
    let cases: [(&'static str, Vec<layer::RawEntry>); 5] = [
        (
            "hostile-dotdot",
            vec![(dotdot.as_str(), T::Regular, b"escaped", None)],
        ),
        ("hostile-absolute", vec![(t, T::Regular, b"escaped", None)]),
        (
            "hostile-symlink",
            vec![
                ("escape", T::Symlink, b"", Some("/tmp")),
                ("escape/berth-hostile-escape", T::Regular, b"escaped", None),
            ],
        ),
        (
            "hostile-hardlink",
            vec![(
                "passwd-link",
                T::Link,
                b"",
                Some("../../../../../../../etc/passwd"),
            )],
        ),
        (
            "hostile-whiteout",
            vec![("etc/.wh...", T::Regular, b"", None)],
        ),
    ];
    let mut built = Vec::new();
    for (name, entries) in cases {
        let layer = layer::build_raw(&entries)?;
        built.push(single(
            out,
            name,
            base,
            &[layer],
            json!({"Env": [PATH_ENV], "Cmd": ["sh"]}),
        )?);
    }
    Ok(built)
}

/// An image with one manifest: the busybox base plus `extra` layers.
fn single(
    out: &Path,
    name: &'static str,
    base: &Blob,
    extra: &[Blob],
    runtime: Value,
) -> Result<Built> {
    let layout = Layout::create(&out.join(name))?;
    let layers: Vec<&Blob> = std::iter::once(base).chain(extra).collect();
    let owned: Vec<Blob> = layers.iter().map(|b| clone_blob(b)).collect();
    let config = layout::image_config("amd64", runtime, &owned, "berth-testimages");
    let manifest = layout.put_image(&owned, &config)?;
    let platform = json!({"architecture": "amd64", "os": "linux"});
    layout.finish(&manifest, "latest", Some(platform))?;
    Ok(Built {
        name,
        tag: "latest",
        digest: manifest.digest,
    })
}

fn clone_blob(b: &Blob) -> Blob {
    Blob {
        gz: b.gz.clone(),
        digest: b.digest.clone(),
        diff_id: b.diff_id.clone(),
    }
}

/// The directories of a minimal root filesystem.
pub fn root_dirs() -> Vec<Entry> {
    [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/run", 0o755),
    ]
    .iter()
    .map(|(p, m)| Entry::dir(p, *m))
    .collect()
}

/// The busybox base: `/bin/busybox` plus a symlink per applet, and a minimal /etc.
fn busybox_entries(busybox: &Path) -> Result<Vec<Entry>> {
    let binary =
        std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {} --list-full", busybox.display()))?;
    if !list.status.success() {
        bail!("{} --list-full failed", busybox.display());
    }
    let mut entries = root_dirs();
    entries.extend([
        Entry::file("bin/busybox", 0o755, binary),
        Entry::file(
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        Entry::file("etc/group", 0o644, "root:x:0:\nnobody:x:65534:\n"),
    ]);
    let text = String::from_utf8(list.stdout).context("applet list is not UTF-8")?;
    for applet in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if applet == "bin/busybox" {
            continue;
        }
        entries.push(Entry::symlink(applet, "/bin/busybox"));
    }
    Ok(entries)
}

fn web_layer() -> Result<Blob> {
    layer::build(&[
        Entry::dir("www", 0o755),
        Entry::file("www/index.html", 0o644, "hello from berth httpd\n"),
    ])
}

/// /etc/passwd and /etc/group with a named user `berth` (1001:1001) who is also in
/// group `extra` (1002); uid 1000 deliberately has no entry.
fn users_layer() -> Result<Blob> {
    layer::build(&[
        Entry::dir("etc", 0o755),
        Entry::file(
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\n\
             berth:x:1001:1001:berth test user:/home/berth:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        Entry::file(
            "etc/group",
            0o644,
            "root:x:0:\nberth:x:1001:\nextra:x:1002:berth\nnobody:x:65534:\n",
        ),
        Entry::dir("home", 0o755),
        Entry::dir("home/berth", 0o755).owner(1001, 1001),
    ])
}

/// Two layers over the base that exercise every kind of change an unpacker must get
/// right; `hack/testimages/README.md` lists what each path must look like.
fn changes_layers() -> Result<(Blob, Blob)> {
    let lower = layer::build(&[
        Entry::dir("data", 0o755),
        Entry::file("data/keep.txt", 0o644, "keep\n"),
        Entry::file("data/remove-me.txt", 0o644, "gone\n"),
        Entry::dir("data/removed-dir", 0o755),
        Entry::file("data/removed-dir/inner.txt", 0o644, "gone too\n"),
        Entry::dir("data/replaced", 0o755),
        Entry::file("data/replaced/old-a.txt", 0o644, "old a\n"),
        Entry::file("data/replaced/old-b.txt", 0o644, "old b\n"),
    ])?;
    let upper = layer::build(&[
        Entry::dir("data", 0o755),
        Entry::whiteout("data/remove-me.txt"),
        Entry::whiteout("data/removed-dir"),
        Entry::dir("data/replaced", 0o750),
        Entry::opaque("data/replaced"),
        Entry::file("data/replaced/new.txt", 0o644, "new\n"),
        Entry::file("data/original.txt", 0o644, "linked\n"),
        Entry::hardlink("data/hardlink.txt", "data/original.txt"),
        Entry::symlink("data/symlink", "keep.txt"),
        Entry::symlink("data/abs-symlink", "/data/keep.txt"),
        Entry::fifo("data/fifo", 0o644),
        Entry::dir("data/modes", 0o755),
        Entry::file("data/modes/secret", 0o600, "secret\n"),
        Entry::file("data/modes/exec", 0o755, "#!/bin/sh\necho exec\n"),
        Entry::file("data/modes/setuid", 0o4755, "#!/bin/sh\n"),
        Entry::dir("data/modes/sticky", 0o1777),
        Entry::dir("data/owners", 0o755),
        Entry::file("data/owners/user-file", 0o644, "uid 1000\n").owner(1000, 1000),
        Entry::file("data/owners/group-file", 0o640, "gid 50\n").owner(0, 50),
        Entry::file("data/xattr.txt", 0o644, "has xattr\n").xattr("user.berth", b"layered"),
    ])?;
    Ok((lower, upper))
}

/// An index with an amd64 and an arm64 manifest. Each carries `/etc/berth-arch`
/// naming its platform so a test can see which one was picked; both reuse the amd64
/// busybox base, so only the amd64 one can run here.
fn multiarch(out: &Path, base: &Blob) -> Result<Built> {
    let layout = Layout::create(&out.join("multiarch"))?;
    let mut manifests = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let marker = layer::build(&[
            Entry::dir("etc", 0o755),
            Entry::file("etc/berth-arch", 0o644, format!("{arch}\n")),
        ])?;
        let layers = [clone_blob(base), marker];
        let runtime = json!({"Env": [PATH_ENV], "Cmd": ["cat", "/etc/berth-arch"]});
        let mut config = layout::image_config(arch, runtime, &layers, "berth-testimages");
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            config["variant"] = json!(v);
            platform["variant"] = json!(v);
        }
        let manifest = layout.put_image(&layers, &config)?;
        let mut desc = manifest.to_json();
        desc["platform"] = platform;
        manifests.push(desc);
    }
    let index = json!({"schemaVersion": 2, "mediaType": layout::INDEX, "manifests": manifests});
    let top = layout.put_json(layout::INDEX, &index)?;
    layout.finish(&top, "latest", None)?;
    Ok(Built {
        name: "multiarch",
        tag: "latest",
        digest: top.digest,
    })
}

/// A large image for pull tests and benchmarks: `layers` layers of `mb` MiB in all,
/// each a few files of deterministic pseudo-random data.
pub fn big(out: &Path, name: &'static str, mb: usize, layers: usize) -> Result<Built> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let per_layer = (mb << 20) / layers.max(1);
    let mut blobs = Vec::new();
    for l in 0..layers {
        let mut entries = vec![Entry::dir("data", 0o755)];
        let files = 4;
        for f in 0..files {
            let mut data = vec![0u8; per_layer / files];
            for chunk in data.chunks_mut(32) {
                // Three quarters of each 32 bytes random, a quarter repeated:
                // about 1.3:1 under gzip, like typical binaries and libraries.
                let (r1, r2, r3) = (
                    next().to_le_bytes(),
                    next().to_le_bytes(),
                    next().to_le_bytes(),
                );
                for (i, b) in chunk.iter_mut().enumerate() {
                    *b = match i % 32 {
                        0..8 => r1[i % 8],
                        8..16 => r2[i % 8],
                        16..24 => r3[i % 8],
                        _ => r1[i % 8],
                    };
                }
            }
            entries.push(Entry::file(
                &format!("data/layer{l}-file{f}.bin"),
                0o644,
                data,
            ));
        }
        blobs.push(layer::build(&entries)?);
    }
    let layout = Layout::create(&out.join(name))?;
    let config = layout::image_config(
        "amd64",
        json!({"Env": [PATH_ENV], "Cmd": ["sh"]}),
        &blobs,
        "berth-testimages --big",
    );
    let manifest = layout.put_image(&blobs, &config)?;
    layout.finish(
        &manifest,
        "latest",
        Some(json!({"architecture": "amd64", "os": "linux"})),
    )?;
    Ok(Built {
        name,
        tag: "latest",
        digest: manifest.digest,
    })
}
