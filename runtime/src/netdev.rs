//! linux.netDevices: host network interfaces moved into the container's network
//! namespace, renamed as asked, with their permanent addresses kept (the kernel
//! drops addresses when a device changes namespace), as the spec says and runc
//! does: the device is set down, moved and renamed in one RTM_NEWLINK, its
//! addresses are added again inside, and it is set up. A small rtnetlink client.

use crate::error::{Error, Result};
use crate::sys;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDRLEN: usize = 16;
const IFINFO_LEN: usize = 16;
const IFADDR_LEN: usize = 8;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u32 = 0x80;

fn err(msg: String) -> Error {
    Error::config("linux.netDevices", msg)
}

struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn attr(buf: &mut Vec<u8>, typ: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&typ.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align(buf.len()), 0);
}

/// The attributes of one message body from `off`: (type, payload).
fn attrs(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= b.len() {
        let len = u16::from_ne_bytes([b[i], b[i + 1]]) as usize;
        let typ = u16::from_ne_bytes([b[i + 2], b[i + 3]]) & 0x3fff;
        if len < 4 || i + len > b.len() {
            break;
        }
        out.push((typ, &b[i + 4..i + len]));
        i += align(len);
    }
    out
}

/// One permanent address of a device.
struct Addr {
    family: u8,
    prefixlen: u8,
    flags: u8,
    scope: u8,
    local: Option<Vec<u8>>,
    address: Option<Vec<u8>>,
}

impl Netlink {
    /// A NETLINK_ROUTE socket in the caller's network namespace.
    fn open() -> Result<Netlink> {
        // SAFETY: plain socket call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        let fd = sys::check_int(fd).map_err(|e| Error::sys("netlink socket", e))?;
        // SAFETY: a fresh fd we own.
        Ok(Netlink {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            seq: 0,
        })
    }

    /// Sends a request (header added here) and collects the answers until ACK,
    /// DONE or an error.
    fn request(&mut self, typ: u16, flags: u16, body: &[u8]) -> std::io::Result<Vec<Vec<u8>>> {
        self.seq += 1;
        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + body.len());
        let len = (NLMSG_HDRLEN + body.len()) as u32;
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&typ.to_ne_bytes());
        msg.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        sys::send(&self.fd, &msg)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: buf is a valid writable buffer.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let n = sys::check(n as libc::c_long)? as usize;
            let mut i = 0;
            while i + NLMSG_HDRLEN <= n {
                let mlen = u32::from_ne_bytes(buf[i..i + 4].try_into().unwrap()) as usize;
                let mtyp = u16::from_ne_bytes([buf[i + 4], buf[i + 5]]);
                if mlen < NLMSG_HDRLEN || i + mlen > n {
                    break;
                }
                let payload = &buf[i + NLMSG_HDRLEN..i + mlen];
                match mtyp as libc::c_int {
                    libc::NLMSG_DONE => return Ok(out),
                    libc::NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(payload[0..4].try_into().unwrap());
                        return if code == 0 {
                            Ok(out)
                        } else {
                            Err(std::io::Error::from_raw_os_error(-code))
                        };
                    }
                    _ => out.push(payload.to_vec()),
                }
                i += align(mlen);
            }
        }
    }

    fn ifinfo(index: i32, flags: u32, change: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(IFINFO_LEN);
        b.push(libc::AF_UNSPEC as u8);
        b.push(0);
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&index.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&change.to_ne_bytes());
        b
    }

    fn set_up(&mut self, index: i32, up: bool) -> std::io::Result<()> {
        let flags = if up { libc::IFF_UP as u32 } else { 0 };
        let body = Self::ifinfo(index, flags, libc::IFF_UP as u32);
        self.request(libc::RTM_NEWLINK, libc::NLM_F_ACK as u16, &body)
            .map(drop)
    }

    /// The device's permanent addresses (both families).
    fn addresses(&mut self, index: i32) -> std::io::Result<Vec<Addr>> {
        let body = [0u8; IFADDR_LEN];
        let msgs = self.request(libc::RTM_GETADDR, libc::NLM_F_DUMP as u16, &body)?;
        let mut out = Vec::new();
        for m in msgs {
            if m.len() < IFADDR_LEN {
                continue;
            }
            let idx = u32::from_ne_bytes(m[4..8].try_into().unwrap()) as i32;
            if idx != index {
                continue;
            }
            let mut a = Addr {
                family: m[0],
                prefixlen: m[1],
                flags: m[2],
                scope: m[3],
                local: None,
                address: None,
            };
            let mut flags = m[2] as u32;
            for (t, v) in attrs(&m[IFADDR_LEN..]) {
                match t {
                    IFA_LOCAL => a.local = Some(v.to_vec()),
                    IFA_ADDRESS => a.address = Some(v.to_vec()),
                    IFA_FLAGS if v.len() >= 4 => {
                        flags = u32::from_ne_bytes(v[0..4].try_into().unwrap())
                    }
                    _ => {}
                }
            }
            if flags & IFA_F_PERMANENT != 0 {
                out.push(a);
            }
        }
        Ok(out)
    }

    fn add_address(&mut self, index: i32, a: &Addr) -> std::io::Result<()> {
        let mut body = vec![a.family, a.prefixlen, a.flags, a.scope];
        body.extend_from_slice(&(index as u32).to_ne_bytes());
        if let Some(l) = &a.local {
            attr(&mut body, IFA_LOCAL, l);
        }
        if let Some(ad) = &a.address {
            attr(&mut body, IFA_ADDRESS, ad);
        }
        let flags = libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_REPLACE;
        self.request(libc::RTM_NEWADDR, flags as u16, &body)
            .map(drop)
    }
}

fn index_of(name: &str) -> i32 {
    let c = sys::cstring(name);
    // SAFETY: valid C string.
    unsafe { libc::if_nametoindex(c.as_ptr()) as i32 }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() < libc::IFNAMSIZ
        && n != "."
        && n != ".."
        && !n
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// Checks the names before anything is made.
pub fn validate(
    devices: &std::collections::HashMap<String, oci_spec::runtime::LinuxNetDevice>,
) -> Result<()> {
    for (host, d) in devices {
        let name = d.name().as_deref().unwrap_or(host);
        for n in [host.as_str(), name] {
            if !valid_name(n) {
                return Err(err(format!("{n:?} is not a network interface name")));
            }
        }
    }
    Ok(())
}

/// Moves the devices into the network namespace of `pid`.
pub fn move_into(
    devices: &std::collections::HashMap<String, oci_spec::runtime::LinuxNetDevice>,
    pid: i32,
) -> Result<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let ns_path = format!("/proc/{pid}/ns/net");
    let target = sys::open(std::path::Path::new(&ns_path), libc::O_RDONLY)
        .map_err(|e| Error::path("opening", &ns_path, e))?;
    let own = sys::open(std::path::Path::new("/proc/self/ns/net"), libc::O_RDONLY)
        .map_err(|e| Error::path("opening", "/proc/self/ns/net", e))?;
    let mut host = Netlink::open()?;
    // The same order every time (a HashMap's is not).
    let mut names: Vec<&String> = devices.keys().collect();
    names.sort();
    for name in names {
        let d = &devices[name];
        let new_name = d.name().as_deref().unwrap_or(name);
        let index = index_of(name);
        if index == 0 {
            return Err(err(format!(
                "host device {name:?}: no such network interface"
            )));
        }
        let fail = |what: &str, e: std::io::Error| err(format!("{what} {name:?}: {e}"));
        host.set_up(index, false)
            .map_err(|e| fail("setting down", e))?;
        let addrs = host
            .addresses(index)
            .map_err(|e| fail("reading the addresses of", e))?;
        let mut body = Netlink::ifinfo(index, 0, 0);
        let mut n = new_name.as_bytes().to_vec();
        n.push(0);
        attr(&mut body, IFLA_IFNAME, &n);
        attr(
            &mut body,
            IFLA_NET_NS_FD,
            &(target.as_raw_fd() as u32).to_ne_bytes(),
        );
        host.request(libc::RTM_NEWLINK, libc::NLM_F_ACK as u16, &body)
            .map_err(|e| fail("moving into the container's network namespace", e))?;
        // Inside: a netlink socket made there; then back to our own namespace.
        namespaces_enter(&target)?;
        let inside = (|| {
            let mut nl = Netlink::open()?;
            let idx = index_of(new_name);
            if idx == 0 {
                return Err(err(format!("{new_name:?} did not appear in the container")));
            }
            for a in &addrs {
                nl.add_address(idx, a)
                    .map_err(|e| err(format!("restoring an address of {new_name:?}: {e}")))?;
            }
            nl.set_up(idx, true)
                .map_err(|e| err(format!("setting up {new_name:?}: {e}")))
        })();
        namespaces_enter(&own)?;
        inside?;
    }
    Ok(())
}

fn namespaces_enter(fd: &OwnedFd) -> Result<()> {
    // SAFETY: fd is an open network namespace file.
    sys::check_int(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })
        .map(drop)
        .map_err(|e| Error::sys("joining a network namespace", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let mut b = Vec::new();
        attr(&mut b, IFLA_IFNAME, b"eth1\0");
        attr(&mut b, IFLA_NET_NS_FD, &7u32.to_ne_bytes());
        let a = attrs(&b);
        assert_eq!(a[0], (IFLA_IFNAME, &b"eth1\0"[..]));
        assert_eq!(a[1], (IFLA_NET_NS_FD, &7u32.to_ne_bytes()[..]));
    }

    #[test]
    fn interface_names() {
        assert!(valid_name("eth0") && valid_name("veth-x1"));
        for bad in ["", "a/b", "a b", "0123456789abcdef", ".", "a:b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
