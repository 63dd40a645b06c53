//! berthd's files import each other in one direction: no file reaches back to a
//! file that reaches it. A name used through a module's `mod.rs` counts as a use
//! of the file the `mod.rs` re-exports it from; test modules do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `container/create.rs` is ["container", "create"].
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The file that defines `name` inside module `module`, following `pub use`
/// re-exports of a `mod.rs`.
fn resolve(src: &Path, module: &[String], name: &str) -> Option<PathBuf> {
    let dir: PathBuf = module.iter().collect();
    let as_file = src.join(&dir).join(format!("{name}.rs"));
    if as_file.exists() {
        return Some(as_file);
    }
    let as_dir = src.join(&dir).join(name).join("mod.rs");
    if as_dir.exists() {
        return Some(as_dir);
    }
    let facade = if module.is_empty() {
        return None;
    } else {
        src.join(&dir).join("mod.rs")
    };
    let text = std::fs::read_to_string(&facade).ok()?;
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix("pub use ") {
            let sub = ident_at(rest);
            let names = rest[sub.len()..].trim_start_matches("::");
            let listed = names
                .trim_matches(|c| c == '{' || c == '}' || c == ';')
                .split(',')
                .any(|n| n.trim() == name);
            if listed {
                return Some(src.join(&dir).join(format!("{sub}.rs")));
            }
        }
    }
    Some(facade)
}

/// `crate::a::b` and `super::b` references, as (module, name) pairs, and the
/// names brought in by `use crate::{a, b::c}`.
fn references(text: &str, module: &[String]) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut push_path = |base: Vec<String>, rest: &str| {
        let segs: Vec<&str> = rest.split("::").map(ident_at).collect();
        let mut m = base;
        for s in segs.iter().filter(|s| !s.is_empty()) {
            if *s == "self" {
                continue;
            }
            out.push((m.clone(), s.to_string()));
            m.push(s.to_string());
        }
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                push_path(Vec::new(), item.trim());
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            push_path(Vec::new(), &rest[..end]);
        }
    }
    if !module.is_empty() {
        let parent = module[..module.len() - 1].to_vec();
        for (i, _) in code.match_indices("super::") {
            let rest = &code[i + 7..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            push_path(parent.clone(), &rest[..end]);
        }
    }
    out
}

#[test]
fn the_files_of_berthd_import_each_other_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap();
        let mut to = BTreeSet::new();
        for (m, name) in references(&text, &module) {
            if let Some(target) = resolve(&src, &m, &name)
                && target != *f
                // A facade declares its children; that is not an import.
                && !(f.ends_with("mod.rs") && target.parent() == f.parent())
                && !f.ends_with("lib.rs")
                && !f.ends_with("main.rs")
            {
                to.insert(target);
            }
        }
        edges.insert(f.clone(), to);
    }
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 50,
        "the scan found the imports"
    );
    // Depth-first search for a back edge.
    fn visit(
        f: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        path: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(i) = path.iter().position(|p| p == f) {
            return Some(path[i..].to_vec());
        }
        if done.contains(f) {
            return None;
        }
        path.push(f.clone());
        for t in edges.get(f).into_iter().flatten() {
            if let Some(c) = visit(t, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(f.clone());
        None
    }
    let mut done = BTreeSet::new();
    for f in edges.keys() {
        if let Some(cycle) = visit(f, &edges, &mut Vec::new(), &mut done) {
            let names: Vec<String> = cycle
                .iter()
                .map(|p| p.strip_prefix(&src).unwrap().display().to_string())
                .collect();
            panic!("an import circle: {}", names.join(" -> "));
        }
    }
}
