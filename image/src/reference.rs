//! Image references, normalised like Docker and containerd do:
//! `busybox` is `docker.io/library/busybox:latest`.

use std::fmt;

const DEFAULT_REGISTRY: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";

/// A fully qualified image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with its port if any (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/busybox`).
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// The digest (`sha256:<64 hex>`), when pinned.
    pub digest: Option<String>,
}

/// Why a string is not a valid image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid image reference {0:?}: it is empty")]
    Empty(String),
    #[error(
        "invalid image reference {reference:?}: repository {repository:?} must be lowercase letters, digits and separators (., _, __, -) between '/'"
    )]
    Repository {
        reference: String,
        repository: String,
    },
    #[error(
        "invalid image reference {reference:?}: tag {tag:?} must be 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
    )]
    Tag { reference: String, tag: String },
    #[error(
        "invalid image reference {reference:?}: digest {digest:?} must be sha256:<64 lowercase hex> (or another algorithm:hex)"
    )]
    Digest { reference: String, digest: String },
    #[error(
        "invalid image reference {reference:?}: registry host {host:?} is not a valid host[:port]"
    )]
    Host { reference: String, host: String },
}

impl Reference {
    /// Parses and normalises a reference such as `busybox`, `localhost:5000/a/b:1`,
    /// `quay.io/x/y@sha256:…` or `name:tag@sha256:…`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ReferenceError::Empty(input.to_string()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(|()| ReferenceError::Digest {
                    reference: input.to_string(),
                    digest: d.to_string(),
                })?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' only if no '/' comes after it (else it is a port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::Tag {
                reference: input.to_string(),
                tag: t.clone(),
            });
        }
        let (registry, repository) = split_registry(name);
        let registry = match registry {
            Some(host) => {
                if !valid_host(host) {
                    return Err(ReferenceError::Host {
                        reference: input.to_string(),
                        host: host.to_string(),
                    });
                }
                if host == "index.docker.io" || host == "registry-1.docker.io" {
                    DEFAULT_REGISTRY.to_string()
                } else {
                    host.to_string()
                }
            }
            None => DEFAULT_REGISTRY.to_string(),
        };
        if !valid_repository(repository) {
            return Err(ReferenceError::Repository {
                reference: input.to_string(),
                repository: repository.to_string(),
            });
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        // The bound is on the whole normalised name, as Docker's: a short name that
        // fits alone may not once `docker.io/library/` is added (found by fuzzing).
        if registry.len() + 1 + repository.len() > 255 {
            return Err(ReferenceError::Repository {
                reference: input.to_string(),
                repository: format!("{registry}/{repository} (longer than 255 bytes)"),
            });
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (t, _) => t,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Splits off the registry host: the first component is a host when it has a '.'
/// or a ':' or is `localhost`, as Docker decides.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn valid_host(host: &str) -> bool {
    let (h, port) = match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (host, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if h.starts_with('[') && h.ends_with(']') {
        return h[1..h.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
    }
    !h.is_empty()
        && h.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn valid_repository(repo: &str) -> bool {
    !repo.is_empty() && repo.len() <= 255 && repo.split('/').all(valid_path_component)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

fn validate_digest(d: &str) -> Result<(), ()> {
    let (alg, hex) = d.split_once(':').ok_or(())?;
    let alg_ok = !alg.is_empty()
        && alg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let hex_ok = match alg {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => hex.len() >= 32,
    } && hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if alg_ok && hex_ok { Ok(()) } else { Err(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn short_names_normalise_to_docker_hub() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn hosts_ports_tags_and_digests() {
        assert_eq!(
            norm("localhost:5000/library/busybox:latest"),
            "localhost:5000/library/busybox:latest"
        );
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(
            norm("registry.k8s.io/e2e-test-images/busybox:1.29-2"),
            "registry.k8s.io/e2e-test-images/busybox:1.29-2"
        );
        let by_digest = Reference::parse(&format!("127.0.0.1:5000/a/b@{D}")).unwrap();
        assert_eq!(by_digest.tag, None);
        assert_eq!(by_digest.digest.as_deref(), Some(D));
        let both = Reference::parse(&format!("quay.io/a/b:v1@{D}")).unwrap();
        assert_eq!(both.tag.as_deref(), Some("v1"));
        assert_eq!(both.name(), "quay.io/a/b");
    }

    #[test]
    fn invalid_references_say_what_is_wrong() {
        assert!(matches!(
            Reference::parse(""),
            Err(ReferenceError::Empty(_))
        ));
        assert!(matches!(
            Reference::parse("BusyBox"),
            Err(ReferenceError::Repository { .. })
        ));
        assert!(matches!(
            Reference::parse("busybox:-bad"),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse("busybox@sha256:1234"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            Reference::parse("host:99x/a"),
            Err(ReferenceError::Host { .. })
        ));
        assert!(matches!(
            Reference::parse("a//b"),
            Err(ReferenceError::Repository { .. })
        ));
        let msg = Reference::parse("busybox:-bad").unwrap_err().to_string();
        assert!(msg.contains("-bad"), "{msg}");
    }
}
