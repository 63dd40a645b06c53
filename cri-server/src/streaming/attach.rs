//! berthd's client of a shim's attach socket (SOCK_SEQPACKET: every message keeps
//! its boundary; the first byte says what it is, see berth-shim's `attach.rs`),
//! and the loop that joins it to a streaming client: output out, stdin, stdin
//! close and terminal resizes in.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const RESIZE: u8 = 3;
const CLOSE_STDIN: u8 = 4;
/// The shim's largest message: a type byte and 32 KiB.
const MAX_MESSAGE: usize = 32 * 1024 + 1;

/// What a streaming client sends toward the process.
#[derive(Debug)]
pub enum Input {
    Stdin(Vec<u8>),
    CloseStdin,
    /// Rows, columns.
    Resize(u16, u16),
}

/// What the process wrote.
#[derive(Debug)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

pub struct AttachSocket {
    fd: AsyncFd<OwnedFd>,
}

impl AttachSocket {
    pub fn connect(path: &Path) -> std::io::Result<AttachSocket> {
        // SAFETY: socket/connect with a filled sockaddr_un; the fd becomes owned.
        unsafe {
            let fd = libc::socket(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let bytes = path.as_os_str().as_encoded_bytes();
            if bytes.len() >= addr.sun_path.len() {
                return Err(std::io::Error::other(format!(
                    "{} is too long for a socket path",
                    path.display()
                )));
            }
            for (i, b) in bytes.iter().enumerate() {
                addr.sun_path[i] = *b as libc::c_char;
            }
            let rc = libc::connect(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_un>() as u32,
            );
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(AttachSocket {
                fd: AsyncFd::register(fd).map_err(|e| e.into_parts().1)?,
            })
        }
    }

    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            // SAFETY: recv into a valid buffer.
            match guard.try_io(|fd| {
                let n = unsafe {
                    libc::recv(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    async fn send(&self, msg: &[u8]) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            // SAFETY: send of a valid buffer.
            match guard.try_io(|fd| {
                let n = unsafe {
                    libc::send(
                        fd.as_raw_fd(),
                        msg.as_ptr().cast(),
                        msg.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Joins the socket to a client until the shim closes it (the process and
    /// its output ended). Input stops being read once its sender is gone.
    pub async fn pump(
        self,
        mut input: mpsc::Receiver<Input>,
        output: mpsc::UnboundedSender<Output>,
    ) {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut input_open = true;
        loop {
            tokio::select! {
                r = self.recv(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let out = match buf[0] {
                            STDOUT => Output::Stdout(buf[1..n].to_vec()),
                            STDERR => Output::Stderr(buf[1..n].to_vec()),
                            _ => continue,
                        };
                        let _ = output.send(out);
                    }
                },
                msg = input.recv(), if input_open => match msg {
                    None => input_open = false,
                    Some(Input::Stdin(data)) => {
                        for chunk in data.chunks(MAX_MESSAGE - 1) {
                            let mut m = Vec::with_capacity(chunk.len() + 1);
                            m.push(STDIN);
                            m.extend_from_slice(chunk);
                            if self.send(&m).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Input::CloseStdin) => {
                        let _ = self.send(&[CLOSE_STDIN]).await;
                    }
                    Some(Input::Resize(rows, cols)) => {
                        let [r0, r1] = rows.to_be_bytes();
                        let [c0, c1] = cols.to_be_bytes();
                        let _ = self.send(&[RESIZE, r0, r1, c0, c1]).await;
                    }
                },
            }
        }
    }
}

/// Terminal sizes from a resize stream: JSON objects `{"Width":W,"Height":H}`,
/// one after another. Returns the sizes found and keeps a partial object.
pub fn parse_resizes(pending: &mut Vec<u8>) -> Vec<(u16, u16)> {
    #[derive(serde::Deserialize)]
    struct Size {
        #[serde(rename = "Width")]
        width: u16,
        #[serde(rename = "Height")]
        height: u16,
    }
    let mut out = Vec::new();
    let mut used = 0;
    let mut it = serde_json::Deserializer::from_slice(pending).into_iter::<Size>();
    while let Some(Ok(s)) = it.next() {
        used = it.byte_offset();
        out.push((s.height, s.width));
    }
    pending.drain(..used);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_objects_are_split_and_partial_ones_kept() {
        let mut p = br#"{"Width":80,"Height":24}
{"Width":100,"Height":30}{"Wid"#
            .to_vec();
        assert_eq!(parse_resizes(&mut p), vec![(24, 80), (30, 100)]);
        assert_eq!(p, br#"{"Wid"#);
        p.extend_from_slice(br#"th":1,"Height":2}"#);
        assert_eq!(parse_resizes(&mut p), vec![(2, 1)]);
    }
}
