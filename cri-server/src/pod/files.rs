//! The files a pod's containers bind: hostname, hosts, resolv.conf.

use super::spec::host_network;
use crate::store;
use berth_proto::v1 as cri;
use std::path::Path;

/// hostname, hosts and resolv.conf for the pod's containers to bind.
pub fn write_pod_files(dir: &Path, c: &cri::PodSandboxConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let host_net = host_network(c);
    let hostname = if c.hostname.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string()
    } else {
        c.hostname.clone()
    };
    store::write_atomic(&dir.join("hostname"), format!("{hostname}\n").as_bytes())?;
    let hosts = if host_net {
        std::fs::read("/etc/hosts").unwrap_or_default()
    } else {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
            .as_bytes()
            .to_vec()
    };
    store::write_atomic(&dir.join("hosts"), &hosts)?;
    let resolv = match &c.dns_config {
        Some(dns)
            if !(dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty()) =>
        {
            resolv_conf(dns).into_bytes()
        }
        _ => std::fs::read("/etc/resolv.conf").unwrap_or_default(),
    };
    store::write_atomic(&dir.join("resolv.conf"), &resolv)?;
    Ok(())
}

pub fn resolv_conf(dns: &cri::DnsConfig) -> String {
    let mut s = String::new();
    if !dns.searches.is_empty() {
        s.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for n in &dns.servers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !dns.options.is_empty() {
        s.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    s
}
