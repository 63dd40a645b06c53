//! What CNI plugins with the `portMappings` and `dns` capabilities are given:
//! the `runtimeConfig` entries, as containerd and CRI-O write them.

use serde::{Deserialize, Serialize};

/// One published port (the portmap plugin's `portMappings` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

impl PortMapping {
    /// docker's `-p HOST:CONTAINER[/tcp|udp]`.
    pub fn parse(p: &str) -> Result<PortMapping, String> {
        let (ports, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        if proto != "tcp" && proto != "udp" {
            return Err(format!("-p {p:?}: the protocol is tcp or udp"));
        }
        let (host, ctr) = ports
            .split_once(':')
            .ok_or_else(|| format!("-p {p:?}: use HOST:CONTAINER[/tcp|udp]"))?;
        let port = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("-p {p:?}: {s:?} is not a port"))
        };
        Ok(PortMapping {
            host_port: port(host)?,
            container_port: port(ctr)?,
            protocol: proto.into(),
            host_ip: String::new(),
        })
    }
}

/// The pod's DNS settings (the `dns` capability).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mappings_parse_as_docker_writes_them() {
        let m = PortMapping::parse("8080:80").unwrap();
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"})
        );
        assert_eq!(PortMapping::parse("53:53/udp").unwrap().protocol, "udp");
        assert!(
            PortMapping::parse("80").is_err()
                && PortMapping::parse("1:2/sctp").is_err()
                && PortMapping::parse("x:80").is_err()
        );
    }
}
