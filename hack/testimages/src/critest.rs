//! The images critest pulls, built locally under the same repository paths and
//! tags (hack/critest/prepare.sh pushes them and points berthd's mirrors at them).
//!
//! What each must hold, from critest's `pkg/validate` and `pkg/framework`:
//! - a busybox whose applets are found through `$PATH` (a dynamically linked
//!   busybox with one link per applet), plus `pgrep` and `ipcs`, which Debian's
//!   busybox lacks (copied from the host with their libraries);
//! - web servers on port 80 (nginx, httpd) and on the host network at 12003;
//! - `nonewprivs`: a setuid-root program printing `Effective uid: N`;
//! - `nginx`: a process named nginx, "master process" in its command line, its
//!   pid in /var/run/nginx.pid;
//! - users by uid, by name, with groups, and a user whose group comes from
//!   the image's /etc/group;
//! - tags that name distinct images, tags that name one image, and two pause
//!   images that differ (a spec removes one registry's tags and counts the rest).

use crate::layer::{self, Blob, Entry};
use crate::layout::{self, Layout};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One image to push: `registry` 0 is the mirror of registry.k8s.io, gcr.io and
/// docker.io; 1 is the mirror of k8s.gcr.io.
pub struct Target {
    pub registry: u8,
    pub reference: String,
    pub layout: String,
}

pub struct Inputs<'a> {
    pub busybox: &'a Path,
    pub host_bins: &'a [std::path::PathBuf],
    pub nnp: &'a Path,
    pub nginx: &'a Path,
}

pub fn build(out: &Path, inputs: &Inputs) -> Result<Vec<Target>> {
    let base = layer::build(&base_entries(inputs)?)?;
    let mut targets = Vec::new();
    let mut n = 0;
    let mut push =
        |registries: &[u8], refs: &[&str], extra: &[&Blob], config: Value| -> Result<()> {
            n += 1;
            let dir = format!("critest-{n}");
            let layout = Layout::create(&out.join(&dir))?;
            let layers: Vec<Blob> = std::iter::once(&base)
                .chain(extra.iter().copied())
                .map(clone)
                .collect();
            let cfg = layout::image_config("amd64", config, &layers, "berth-testimages --critest");
            let manifest = layout.put_image(&layers, &cfg)?;
            layout.finish(
                &manifest,
                "latest",
                Some(json!({"architecture": "amd64", "os": "linux"})),
            )?;
            for &registry in registries {
                for r in refs {
                    targets.push(Target {
                        registry,
                        reference: r.to_string(),
                        layout: dir.clone(),
                    });
                }
            }
            Ok(())
        };
    let sh = json!({"Env": [PATH_ENV], "Cmd": ["sh"]});
    // Says its name on stderr first, as Apache does: a spec looks for "httpd" in the log.
    let web = |port: u16| {
        let script = format!(
            "echo 'httpd: serving /www on port {port}' >&2; exec httpd -f -p {port} -h /www"
        );
        json!({"Env": [PATH_ENV], "Cmd": ["sh", "-c", script]})
    };
    let www = layer::build(&[
        Entry::dir("www", 0o755),
        Entry::file(
            "www/index.html",
            0o644,
            "<h1>Welcome to berth's test web server</h1>\n",
        ),
    ])?;
    let e2e = "e2e-test-images";
    push(&[0], &[&format!("{e2e}/busybox:1.29-2")], &[], sh.clone())?;
    let nginx = std::fs::read(inputs.nginx)
        .with_context(|| format!("reading {}", inputs.nginx.display()))?;
    let nginx = layer::build(&[Entry::file("usr/sbin/nginx", 0o755, nginx)])?;
    push(
        &[0],
        &[&format!("{e2e}/nginx:1.14-2")],
        &[&www, &nginx],
        json!({"Env": [PATH_ENV], "Cmd": ["/usr/sbin/nginx"]}),
    )?;
    push(&[0], &[&format!("{e2e}/httpd:2.4.39-4")], &[&www], web(80))?;
    let nnp =
        std::fs::read(inputs.nnp).with_context(|| format!("reading {}", inputs.nnp.display()))?;
    let nnp = layer::build(&[
        Entry::dir("usr/local/bin", 0o755),
        Entry::file("usr/local/bin/nnp", 0o4755, nnp),
    ])?;
    push(
        &[0],
        &[&format!("{e2e}/nonewprivs:1.3")],
        &[&nnp],
        json!({"Env": [PATH_ENV], "Entrypoint": ["/usr/local/bin/nnp"]}),
    )?;
    // One image under both registries: critest checks that it has one ID and that
    // removing it by either name removes both.
    let sleep = json!({"Env": [PATH_ENV], "Entrypoint": ["sleep", "2147483647"]});
    push(&[0, 1], &["pause:3.9"], &[], sleep)?;

    let cri = "k8s-staging-cri-tools";
    for (name, user) in [
        ("test-image-user-uid", "1002"),
        ("test-image-user-username", "www-data"),
        ("test-image-user-uid-group", "1003:100"),
        ("test-image-user-username-group", "www-data:www-data"),
    ] {
        push(
            &[0],
            &[&format!("{cri}/{name}:latest")],
            &[],
            json!({"Env": [PATH_ENV], "Cmd": ["sh"], "User": user}),
        )?;
    }
    let predefined = layer::build(&[Entry::file(
        "etc/group",
        0o644,
        "root:x:0:\nusers:x:100:\nwww-data:x:33:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\nnobody:x:65534:\n",
    )
    .owner(0, 0)])?;
    push(
        &[0],
        &[&format!("{cri}/test-image-predefined-group:latest")],
        &[&predefined],
        json!({"Env": [PATH_ENV], "Cmd": ["sh"], "User": "1000"}),
    )?;
    let tagged = |what: &str| layer::build(&[Entry::file(what, 0o644, what)]);
    push(
        &[0],
        &[&format!("{cri}/test-image-latest:latest")],
        &[&tagged("latest")?],
        sh.clone(),
    )?;
    push(
        &[0],
        &[&format!("{cri}/test-image-tag:test")],
        &[&tagged("test")?],
        sh.clone(),
    )?;
    push(
        &[0],
        &[&format!("{cri}/test-image-tag:all")],
        &[&tagged("all")?],
        sh.clone(),
    )?;
    for i in 1..=3 {
        push(
            &[0],
            &[&format!("{cri}/test-image-{i}:latest")],
            &[&tagged(&format!("image-{i}"))?],
            sh.clone(),
        )?;
    }
    push(
        &[0],
        &[
            &format!("{cri}/test-image-tags:1"),
            &format!("{cri}/test-image-tags:2"),
            &format!("{cri}/test-image-tags:3"),
        ],
        &[&tagged("tags")?],
        sh.clone(),
    )?;
    push(
        &[0],
        &[&format!("{cri}/hostnet-nginx-amd64:latest")],
        &[&www],
        web(12003),
    )?;
    Ok(targets)
}

fn clone(b: &Blob) -> Blob {
    Blob {
        gz: b.gz.clone(),
        digest: b.digest.clone(),
        diff_id: b.diff_id.clone(),
    }
}

/// The dynamic busybox with a link per applet, the host programs and every
/// library they load, and the users critest names.
fn base_entries(inputs: &Inputs) -> Result<Vec<Entry>> {
    let mut entries = crate::images::root_dirs();
    entries.extend([
        Entry::dir("lib", 0o755),
        Entry::dir("lib/x86_64-linux-gnu", 0o755),
        Entry::dir("lib64", 0o755),
        Entry::dir("usr/local", 0o755),
        Entry::file(
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\n\
             default-user:x:1000:1000::/home/default-user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        Entry::file(
            "etc/group",
            0o644,
            "root:x:0:\nusers:x:100:\nwww-data:x:33:\ndefault-user:x:1000:\nnobody:x:65534:\n",
        ),
    ]);
    let bb = std::fs::read(inputs.busybox)
        .with_context(|| format!("reading {}", inputs.busybox.display()))?;
    entries.push(Entry::file("bin/busybox", 0o755, bb));
    let list = Command::new(inputs.busybox).arg("--list-full").output()?;
    if !list.status.success() {
        bail!("{} --list-full failed", inputs.busybox.display());
    }
    let mut seen: Vec<String> = vec!["bin/busybox".into()];
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if !seen.iter().any(|s| s == applet) {
            seen.push(applet.to_string());
            // Hard links, as in the upstream image: masking /bin/ls must not mask sh.
            entries.push(Entry::hardlink(applet, "bin/busybox"));
        }
    }
    let mut programs = vec![inputs.busybox.to_path_buf()];
    programs.extend(inputs.host_bins.iter().cloned());
    for p in inputs.host_bins {
        let name = p
            .file_name()
            .context("a program name")?
            .to_string_lossy()
            .to_string();
        let dest = format!("usr/bin/{name}");
        let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        entries.retain(|e| e.path != dest && e.path != format!("bin/{name}"));
        entries.push(Entry::file(&dest, 0o755, data));
    }
    for lib in libraries(&programs)? {
        let rel = lib.trim_start_matches('/').to_string();
        if entries.iter().any(|e| e.path == rel) {
            continue;
        }
        let data = std::fs::read(&lib).with_context(|| format!("reading {lib}"))?;
        entries.push(Entry::file(&rel, 0o755, data));
    }
    Ok(entries)
}

/// The shared libraries (and the loader) the programs load, from ldd.
fn libraries(programs: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut libs = Vec::new();
    for p in programs {
        let out = Command::new("ldd").arg(p).output().context("running ldd")?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(path) = path.filter(|p| p.starts_with('/'))
                && !libs.iter().any(|l| l == path)
            {
                libs.push(path.to_string());
            }
        }
    }
    libs.sort();
    Ok(libs)
}
