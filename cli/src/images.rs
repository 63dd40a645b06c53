//! The image commands.

use berth_image::{Auth, ImageStore, Progress, PullOptions, StoreConfig};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub fn store_config(
    root: &Path,
    mirrors: &[String],
    insecure: &[String],
) -> Result<StoreConfig, String> {
    let mut c = StoreConfig::new(root);
    for m in mirrors {
        let (host, mirror) = m
            .split_once('=')
            .ok_or_else(|| format!("--registry-mirror {m:?}: use HOST=MIRROR"))?;
        c.mirrors
            .entry(host.to_string())
            .or_default()
            .push(mirror.to_string());
    }
    c.insecure = insecure.to_vec();
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    let docker = home.join(".docker/config.json");
    c.docker_config = docker.exists().then_some(docker);
    Ok(c)
}

fn open(config: StoreConfig) -> Result<ImageStore, String> {
    ImageStore::open(config).map_err(|e| e.to_string())
}

fn short(id: &str) -> &str {
    let hex = id.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", units[i])
    }
}

pub fn pull(
    config: StoreConfig,
    image: &str,
    quiet: bool,
    creds: Option<&str>,
) -> Result<(), String> {
    let store = open(config)?;
    let auth = match creds {
        Some(c) => {
            let (u, p) = c.split_once(':').ok_or("--creds: use user:password")?;
            Auth::Basic {
                username: u.into(),
                password: p.into(),
            }
        }
        None => Auth::Anonymous,
    };
    let rec = pull_into(&store, image, auth, !quiet)?;
    if quiet {
        println!("{}", rec.id);
    } else {
        println!("{}: pulled {} ({})", image, short(&rec.id), human(rec.size));
    }
    Ok(())
}

/// Pulls into `store`, with a progress bar per layer on stderr when `progress`.
pub fn pull_into(
    store: &ImageStore,
    image: &str,
    auth: Auth,
    progress: bool,
) -> Result<berth_image::ImageRecord, String> {
    let progress = progress.then(|| {
        let multi = MultiProgress::new();
        let bars: Mutex<HashMap<String, ProgressBar>> = Mutex::new(HashMap::new());
        let style =
            ProgressStyle::with_template("{prefix:.bold} {bar:30} {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        let f: berth_image::pull::ProgressFn = Arc::new(move |p: Progress| {
            let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
            match p {
                Progress::Resolved { image, layers } => {
                    let _ = multi.println(format!("{image}: {layers} layers"));
                }
                Progress::LayerStarted { digest, size } => {
                    let bar = multi.add(
                        ProgressBar::new(size)
                            .with_style(style.clone())
                            .with_prefix(short(&digest).to_string()),
                    );
                    bars.insert(digest, bar);
                }
                Progress::LayerBytes { digest, done } => {
                    if let Some(b) = bars.get(&digest) {
                        b.set_position(done);
                    }
                }
                Progress::LayerExists { digest } => {
                    let _ = multi.println(format!("{} already present", short(&digest)));
                }
                Progress::LayerDone { digest } => {
                    if let Some(b) = bars.get(&digest) {
                        b.finish_with_message("done");
                    }
                }
            }
        });
        f
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(store.pull(image, &PullOptions { auth, progress }))
        .map_err(|e| e.to_string())
}

pub fn list(config: StoreConfig, quiet: bool) -> Result<(), String> {
    let store = open(config)?;
    let images = store.list().map_err(|e| e.to_string())?;
    if std::env::var_os("BERTH_SHOW_USAGE").is_some() {
        let (bytes, inodes) = store.usage().map_err(|e| e.to_string())?;
        eprintln!("store usage: {bytes} bytes, {inodes} inodes");
    }
    if quiet {
        for i in &images {
            println!("{}", short(&i.id));
        }
        return Ok(());
    }
    println!(
        "{:<50} {:<20} {:<14} {:>10}",
        "REPOSITORY", "TAG", "IMAGE ID", "SIZE"
    );
    for i in &images {
        let names: Vec<(String, String)> = if i.repo_tags.is_empty() {
            vec![(
                i.repo_digests
                    .first()
                    .and_then(|d| d.split_once('@'))
                    .map_or("<none>".into(), |(r, _)| r.to_string()),
                "<none>".into(),
            )]
        } else {
            i.repo_tags
                .iter()
                .filter_map(|t| {
                    t.rsplit_once(':')
                        .map(|(r, t)| (r.to_string(), t.to_string()))
                })
                .collect()
        };
        for (repo, tag) in names {
            println!(
                "{:<50} {:<20} {:<14} {:>10}",
                repo,
                tag,
                short(&i.id),
                human(i.size)
            );
        }
    }
    Ok(())
}

pub fn remove(config: StoreConfig, names: &[String]) -> Result<(), String> {
    let store = open(config)?;
    for n in names {
        match store.remove(n).map_err(|e| e.to_string())? {
            Some(rec) => println!("Deleted: {}", rec.id),
            None => println!("Untagged: {n}"),
        }
    }
    Ok(())
}

pub fn inspect(config: StoreConfig, name: &str) -> Result<(), String> {
    let store = open(config)?;
    let rec = store.get(name).map_err(|e| e.to_string())?;
    let cfg = store.config_json(&rec).map_err(|e| e.to_string())?;
    let mut out = serde_json::to_value(&rec).map_err(|e| e.to_string())?;
    out["config"] = cfg;
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    Ok(())
}

pub fn mount(config: StoreConfig, name: &str, dir: &Path, target: &Path) -> Result<(), String> {
    let store = open(config)?;
    let rec = store.get(name).map_err(|e| e.to_string())?;
    let kind = store
        .mount_rootfs(&rec, &dir.join("upper"), &dir.join("work"), target)
        .map_err(|e| e.to_string())?;
    println!("{kind:?}");
    Ok(())
}
