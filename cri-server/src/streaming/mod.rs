//! The streaming server: the HTTP endpoint kubelet, crictl and critest connect to
//! after the CRI's Exec, Attach and PortForward calls returned its URL.
//!
//! Each URL carries a single-use token that expires after a minute and is bound to
//! the one request it was made for. A connection upgrades to SPDY/3.1
//! (`X-Stream-Protocol-Version`) or to WebSocket (`Sec-WebSocket-Protocol`):
//! - `remotecommand`: exec and attach, `v4.channel.k8s.io` down to `channel.k8s.io`
//!   over SPDY, `v5.channel.k8s.io` down to `channel.k8s.io` over WebSocket;
//! - `portforward`: `portforward.k8s.io` over SPDY, also tunnelled through a
//!   WebSocket (`SPDY/3.1+portforward.k8s.io`), and the WebSocket channel framing
//!   (`v4.channel.k8s.io`);
//! - `spdy`: the SPDY framing; `attach`: the shim's attach socket.

pub mod attach;
pub mod portforward;
pub mod remotecommand;
pub mod spdy;

use crate::daemon::{Daemon, lock};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long a URL stays usable.
const TOKEN_TTL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub enum Request {
    Exec {
        container_id: String,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Attach {
        container_id: String,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        /// The container's: its stdin closes when the client's does.
        stdin_once: bool,
    },
    PortForward {
        pod_id: String,
    },
}

pub struct Server {
    /// `http://host:port`
    pub base: String,
    daemon: Arc<Daemon>,
    tokens: Mutex<HashMap<String, (Request, Instant)>>,
}

impl Server {
    /// Binds `addr` (port 0: any free port) and serves until berthd exits.
    pub async fn start(addr: &str, daemon: Arc<Daemon>) -> std::io::Result<Arc<Server>> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let server = Arc::new(Server {
            base: format!("http://{local}"),
            daemon,
            tokens: Mutex::default(),
        });
        tracing::info!(address = %local, "streaming server");
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    if let Err(e) = s.handle(conn).await {
                        tracing::warn!("streaming: {e}");
                    }
                });
            }
        });
        Ok(server)
    }

    /// A URL for `req`, usable once within a minute.
    pub fn url(&self, req: Request) -> String {
        let kind = match &req {
            Request::Exec { .. } => "exec",
            Request::Attach { .. } => "attach",
            Request::PortForward { .. } => "portforward",
        };
        let mut b = [0u8; 12];
        // SAFETY: getrandom into a local buffer.
        unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let mut tokens = lock(&self.tokens);
        tokens.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
        tokens.insert(token.clone(), (req, Instant::now()));
        format!("{}/{kind}/{token}", self.base)
    }

    fn take(&self, kind: &str, token: &str) -> Option<Request> {
        let (req, at) = lock(&self.tokens).remove(token)?;
        let matches = matches!(
            (kind, &req),
            ("exec", Request::Exec { .. })
                | ("attach", Request::Attach { .. })
                | ("portforward", Request::PortForward { .. })
        );
        (matches && at.elapsed() < TOKEN_TTL).then_some(req)
    }

    async fn handle(self: Arc<Self>, mut conn: TcpStream) -> Result<(), String> {
        let _ = conn.set_nodelay(true);
        let (head, leftover) = read_head(&mut conn).await?;
        let mut header_buf = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut header_buf);
        parsed
            .parse(&head)
            .map_err(|e| format!("bad HTTP request: {e}"))?;
        let path = parsed.path.unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect();
        let (route, query) = path.split_once('?').unwrap_or((&path, ""));
        let mut parts = route.trim_start_matches('/').splitn(2, '/');
        let (kind, token) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let Some(req) = self.take(kind, token) else {
            respond(
                &mut conn,
                "404 Not Found",
                "unknown or expired streaming URL: ask the CRI for a new one\n",
            )
            .await;
            return Err(format!("unknown or expired token for {route}"));
        };
        let get = |name: &str| {
            headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        let offered = |name: &str| -> Vec<String> {
            get(name)
                .iter()
                .flat_map(|v| v.split(','))
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        };
        let upgrade = get("upgrade")
            .first()
            .map(|u| u.to_ascii_lowercase())
            .unwrap_or_default();
        if upgrade == "spdy/3.1" {
            let supported: &[&str] = match req {
                Request::PortForward { .. } => &[portforward::PROTOCOL],
                _ => remotecommand::SPDY_PROTOCOLS,
            };
            let client = offered("x-stream-protocol-version");
            let protocol = match supported.iter().find(|p| client.iter().any(|c| c == *p)) {
                Some(p) => p.to_string(),
                // No header at all: the first version of the protocol.
                None if client.is_empty() && !matches!(req, Request::PortForward { .. }) => {
                    String::new()
                }
                None => {
                    let msg = format!(
                        "none of the offered protocols {client:?} is supported: {supported:?}\n"
                    );
                    respond(&mut conn, "403 Forbidden", &msg).await;
                    return Err(msg);
                }
            };
            let mut reply =
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                    .to_string();
            if !protocol.is_empty() {
                reply.push_str(&format!("X-Stream-Protocol-Version: {protocol}\r\n"));
            }
            reply.push_str("\r\n");
            conn.write_all(reply.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let pipe = Pipe::tcp(conn, leftover);
            match req {
                Request::PortForward { pod_id } => {
                    portforward::serve_spdy(&self.daemon, &pod_id, pipe).await
                }
                req => remotecommand::serve_spdy(&self.daemon, req, &protocol, pipe).await,
            }
        } else if upgrade == "websocket" {
            let key = get("sec-websocket-key")
                .first()
                .map(|k| k.to_string())
                .unwrap_or_default();
            if key.is_empty() {
                respond(
                    &mut conn,
                    "400 Bad Request",
                    "Sec-WebSocket-Key is missing\n",
                )
                .await;
                return Err("a WebSocket upgrade without a key".into());
            }
            let supported: &[&str] = match req {
                Request::PortForward { .. } => portforward::WS_PROTOCOLS,
                _ => remotecommand::WS_PROTOCOLS,
            };
            let client = offered("sec-websocket-protocol");
            let protocol = supported
                .iter()
                .find(|p| client.iter().any(|c| c == *p))
                .map(|p| p.to_string());
            let Some(protocol) =
                protocol.or_else(|| client.is_empty().then(|| "channel.k8s.io".to_string()))
            else {
                let msg = format!(
                    "none of the offered protocols {client:?} is supported: {supported:?}\n"
                );
                respond(&mut conn, "403 Forbidden", &msg).await;
                return Err(msg);
            };
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
            );
            conn.write_all(reply.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let ws = tokio_tungstenite::WebSocketStream::from_partially_read(
                conn,
                leftover,
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            match req {
                Request::PortForward { pod_id } if protocol.starts_with("SPDY/3.1+") => {
                    portforward::serve_spdy(&self.daemon, &pod_id, Pipe::websocket(ws)).await
                }
                Request::PortForward { pod_id } => {
                    let ports: Vec<u16> = query
                        .split('&')
                        .filter_map(|kv| kv.strip_prefix("port="))
                        .filter_map(|p| p.parse().ok())
                        .collect();
                    portforward::serve_ws_channels(&self.daemon, &pod_id, &ports, ws).await
                }
                req => remotecommand::serve_ws(&self.daemon, req, &protocol, ws).await,
            }
        } else {
            respond(
                &mut conn,
                "400 Bad Request",
                "upgrade to SPDY/3.1 or websocket\n",
            )
            .await;
            Err(format!("no usable Upgrade header ({upgrade:?})"))
        }
    }
}

/// Reads the request head (up to the blank line); returns it and what followed.
async fn read_head(conn: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    let read = async {
        loop {
            let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the client closed before its request".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = buf.split_off(end + 4);
                return Ok((std::mem::take(&mut buf), rest));
            }
            if buf.len() > 64 << 10 {
                return Err("a request head over 64 KiB".to_string());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| "no request within 10 s".to_string())?
}

async fn respond(conn: &mut TcpStream, status: &str, body: &str) {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(msg.as_bytes()).await;
}

/// A byte stream as two channels of chunks, whatever carries it (a TCP
/// connection, or a WebSocket's binary messages when SPDY is tunnelled).
pub struct Pipe {
    pub rx: mpsc::Receiver<Vec<u8>>,
    pub tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl Pipe {
    fn tcp(conn: TcpStream, leftover: Vec<u8>) -> Pipe {
        let (mut rd, mut wr) = conn.into_split();
        let (in_tx, rx) = mpsc::channel::<Vec<u8>>(64);
        let (tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            if !leftover.is_empty() && in_tx.send(leftover).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if in_tx.send(buf[..n].to_vec()).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        tokio::spawn(async move {
            while let Some(chunk) = out_rx.recv().await {
                if wr.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        Pipe { rx, tx }
    }

    fn websocket(ws: tokio_tungstenite::WebSocketStream<TcpStream>) -> Pipe {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (mut sink, mut stream) = ws.split();
        let (in_tx, rx) = mpsc::channel::<Vec<u8>>(64);
        let (tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    Message::Binary(b) if in_tx.send(b.to_vec()).await.is_err() => return,
                    Message::Close(_) => return,
                    _ => {}
                }
            }
        });
        tokio::spawn(async move {
            while let Some(chunk) = out_rx.recv().await {
                if sink.send(Message::Binary(chunk.into())).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        Pipe { rx, tx }
    }
}
