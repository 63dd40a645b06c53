//! berth-testimages: builds berth's test images from local material (busybox-static)
//! as OCI image layouts whose digests are the same on every build.
//!
//! Usage: `berth-testimages [--busybox PATH] --out DIR`, or
//! `berth-testimages --big MB:LAYERS --out DIR` for one large image named `big`, or
//! `berth-testimages --critest --busybox DYNAMIC-BUSYBOX --host-bin PATH... --nnp PATH
//! --nginx PATH --out DIR` for the images critest pulls (listed in `DIR/critest.tsv`).
//! Writes `DIR/<name>/` (an OCI layout tagged `latest`) per image and
//! `DIR/digests.tsv` (`name<TAB>tag<TAB>digest`), which the tests compare against
//! what the registry serves.

mod critest;
mod images;
mod layer;
mod layout;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut busybox = PathBuf::from("/bin/busybox");
    let mut out = None;
    let mut big = None;
    let mut for_critest = false;
    let mut host_bins = Vec::new();
    let mut nnp = None;
    let mut nginx = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--busybox" => busybox = args.next().context("--busybox needs a path")?.into(),
            "--out" => out = Some(PathBuf::from(args.next().context("--out needs a dir")?)),
            "--big" => big = Some(args.next().context("--big needs MB:LAYERS")?),
            "--critest" => for_critest = true,
            "--host-bin" => host_bins.push(PathBuf::from(
                args.next().context("--host-bin needs a path")?,
            )),
            "--nnp" => nnp = Some(PathBuf::from(args.next().context("--nnp needs a path")?)),
            "--nginx" => nginx = Some(PathBuf::from(args.next().context("--nginx needs a path")?)),
            other => bail!(
                "unknown argument {other:?}; usage: berth-testimages [--busybox PATH] --out DIR"
            ),
        }
    }
    let out = out.context("usage: berth-testimages [--busybox PATH] --out DIR")?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if for_critest {
        let nnp = nnp.context("--critest needs --nnp PATH")?;
        let nginx = nginx.context("--critest needs --nginx PATH")?;
        let inputs = critest::Inputs {
            busybox: &busybox,
            host_bins: &host_bins,
            nnp: &nnp,
            nginx: &nginx,
        };
        let mut tsv = String::new();
        for t in critest::build(&out, &inputs)? {
            tsv.push_str(&format!("{}\t{}\t{}\n", t.registry, t.reference, t.layout));
        }
        std::fs::write(out.join("critest.tsv"), tsv)?;
        return Ok(());
    }
    let built = match big {
        Some(spec) => {
            let (mb, layers) = spec.split_once(':').context("--big MB:LAYERS")?;
            vec![images::big(&out, "big", mb.parse()?, layers.parse()?)?]
        }
        None => images::build_all(&busybox, &out)?,
    };
    let mut tsv = String::new();
    for b in &built {
        tsv.push_str(&format!("{}\t{}\t{}\n", b.name, b.tag, b.digest));
        println!("{}:{} {}", b.name, b.tag, b.digest);
    }
    std::fs::write(out.join("digests.tsv"), tsv)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn busybox() -> &'static Path {
        Path::new("/bin/busybox")
    }

    #[test]
    fn builds_are_reproducible() {
        assert!(
            busybox().exists(),
            "busybox-static must be installed (hack/setup.sh)"
        );
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = images::build_all(busybox(), a.path()).unwrap();
        let second = images::build_all(busybox(), b.path()).unwrap();
        let digests = |v: &[images::Built]| v.iter().map(|x| x.digest.clone()).collect::<Vec<_>>();
        assert_eq!(digests(&first), digests(&second));
        assert_eq!(first.len(), 12);
    }

    #[test]
    fn changes_layer_has_whiteouts_links_fifo_and_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        images::build_all(busybox(), dir.path()).unwrap();
        let layout = dir.path().join("layers");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let blob = |digest: &str| {
            std::fs::read(
                layout
                    .join("blobs/sha256")
                    .join(digest.trim_start_matches("sha256:")),
            )
            .unwrap()
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap()))
                .unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3);
        let top = blob(layers[2]["digest"].as_str().unwrap());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(top.as_slice()));
        let mut seen = std::collections::BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let xattr = entry
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .any(|p| p.unwrap().key().unwrap() == "SCHILY.xattr.user.berth");
            seen.insert(
                path,
                (
                    entry.header().entry_type(),
                    entry.header().mode().unwrap(),
                    xattr,
                ),
            );
        }
        assert!(seen.contains_key("data/.wh.remove-me.txt"));
        assert!(seen.contains_key("data/replaced/.wh..wh..opq"));
        assert_eq!(seen["data/hardlink.txt"].0, tar::EntryType::Link);
        assert_eq!(seen["data/symlink"].0, tar::EntryType::Symlink);
        assert_eq!(seen["data/fifo"].0, tar::EntryType::Fifo);
        assert_eq!(seen["data/modes/setuid"].1, 0o4755);
        assert!(
            seen["data/xattr.txt"].2,
            "xattr must be carried in a PAX header"
        );
    }
}
