//! Port forwarding into a pod: connections to `localhost:PORT` made inside the
//! pod's network namespace (from a thread of their own that enters it, so no
//! tokio worker ever changes namespace).
//!
//! Over SPDY (`portforward.k8s.io`, also tunnelled in a WebSocket) the client
//! opens an `error` and a `data` stream per connection, paired by `requestid`
//! and naming the `port`; many connections share one session. Over WebSocket
//! channels (`v4.channel.k8s.io`) each `port` of the query gets a data channel
//! (2i) and an error channel (2i+1), each opened by the port as two
//! little-endian bytes.

use super::spdy::{self, Event};
use crate::daemon::Daemon;
use crate::pod::PodState;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

pub const PROTOCOL: &str = "portforward.k8s.io";
pub const WS_PROTOCOLS: &[&str] = &[
    "SPDY/3.1+portforward.k8s.io",
    "v4.channel.k8s.io",
    "portforward.k8s.io",
];

/// The pod's network namespace (None: the host's network).
fn pod_netns(d: &Daemon, pod_id: &str) -> Result<Option<PathBuf>, String> {
    let pod = d.pod(pod_id).map_err(|s| s.message().to_string())?.get();
    if pod.state != PodState::Ready {
        return Err(format!("pod sandbox {} is not ready", pod.id));
    }
    Ok(pod.netns)
}

/// Connects to 127.0.0.1:`port` inside `netns`.
pub async fn connect(netns: Option<&Path>, port: u16) -> std::io::Result<TcpStream> {
    let Some(ns) = netns else {
        return TcpStream::connect(("127.0.0.1", port)).await;
    };
    let ns = ns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| {
            let f = std::fs::File::open(&ns)?;
            // SAFETY: setns on this thread only, which ends after the connect.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })();
        let _ = tx.send(r);
    });
    let s = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread died"))??;
    TcpStream::from_std(s)
}

pub async fn serve_spdy(d: &Arc<Daemon>, pod_id: &str, pipe: super::Pipe) -> Result<(), String> {
    let netns = pod_netns(d, pod_id)?;
    let (mut events, out) = spdy::session(pipe);
    // requestid → error stream; data stream → its connection's writer.
    let mut error_streams: HashMap<String, u32> = HashMap::new();
    let mut writers: HashMap<u32, mpsc::UnboundedSender<Option<Vec<u8>>>> = HashMap::new();
    let mut pending_errors: HashMap<String, String> = HashMap::new();
    while let Some(e) = events.recv().await {
        match e {
            Event::Open { id, headers } => {
                let kind = spdy::header(&headers, "streamtype").unwrap_or_default();
                let request = spdy::header(&headers, "requestid")
                    .unwrap_or_default()
                    .to_string();
                match kind {
                    "error" => {
                        if let Some(msg) = pending_errors.remove(&request) {
                            out.data(id, msg.as_bytes(), true);
                        }
                        error_streams.insert(request, id);
                    }
                    "data" => {
                        let port =
                            spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok());
                        let Some(port) = port else {
                            out.reset(id, spdy::PROTOCOL_ERROR);
                            continue;
                        };
                        let (w_tx, w_rx) = mpsc::unbounded_channel();
                        writers.insert(id, w_tx);
                        let err_id = error_streams.get(&request).copied();
                        let (out, netns) = (out.clone(), netns.clone());
                        tokio::spawn(async move {
                            match connect(netns.as_deref(), port).await {
                                Ok(conn) => {
                                    pump_spdy(conn, id, out.clone(), w_rx).await;
                                    // client-go reads the error stream to its end
                                    // before it lets the connection go.
                                    if let Some(err) = err_id {
                                        out.data(err, &[], true);
                                    }
                                }
                                Err(e) => {
                                    let msg = format!("error forwarding port {port} to pod: {e}");
                                    if let Some(err) = err_id {
                                        out.data(err, msg.as_bytes(), true);
                                    }
                                    out.data(id, &[], true);
                                }
                            }
                        });
                    }
                    _ => out.reset(id, spdy::PROTOCOL_ERROR),
                }
            }
            Event::Data { id, data } => {
                if let Some(w) = writers.get(&id) {
                    let _ = w.send(Some(data));
                }
            }
            Event::Fin { id } | Event::Reset { id } => {
                if let Some(w) = writers.remove(&id) {
                    let _ = w.send(None);
                }
            }
        }
    }
    Ok(())
}

/// One forwarded connection: bytes both ways; end of input from either side
/// half-closes the other.
async fn pump_spdy(
    conn: TcpStream,
    id: u32,
    out: spdy::Out,
    mut from_client: mpsc::UnboundedReceiver<Option<Vec<u8>>>,
) {
    let (mut rd, mut wr) = conn.into_split();
    let to_pod = async move {
        while let Some(Some(b)) = from_client.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let from_pod = async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.data(id, &buf[..n], false),
            }
        }
        out.data(id, &[], true);
    };
    tokio::join!(to_pod, from_pod);
}

pub async fn serve_ws_channels(
    d: &Arc<Daemon>,
    pod_id: &str,
    ports: &[u16],
    ws: WebSocketStream<TcpStream>,
) -> Result<(), String> {
    let netns = pod_netns(d, pod_id)?;
    if ports.is_empty() {
        return Err("a WebSocket port-forward needs at least one port=N in its URL".into());
    }
    let (mut sink, mut stream) = ws.split();
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = msg_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut writers = Vec::new();
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        let [lo, hi] = port.to_le_bytes();
        let _ = msg_tx.send(Message::Binary(vec![data_ch, lo, hi].into()));
        let _ = msg_tx.send(Message::Binary(vec![err_ch, lo, hi].into()));
        let (w_tx, mut w_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        writers.push(w_tx);
        let (m, netns, port) = (msg_tx.clone(), netns.clone(), *port);
        tasks.push(tokio::spawn(async move {
            let conn = match connect(netns.as_deref(), port).await {
                Ok(c) => c,
                Err(e) => {
                    let msg = format!("error forwarding port {port} to pod: {e}");
                    let _ = m.send(Message::Binary(
                        [&[err_ch][..], msg.as_bytes()].concat().into(),
                    ));
                    return;
                }
            };
            let (mut rd, mut wr) = conn.into_split();
            let to_pod = async move {
                while let Some(b) = w_rx.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                let _ = wr.shutdown().await;
            };
            let from_pod = async move {
                let mut buf = vec![0u8; 32 << 10];
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let _ = m.send(Message::Binary([&[data_ch][..], &buf[..n]].concat().into()));
                }
            };
            tokio::select! {
                _ = to_pod => {}
                _ = from_pod => {}
            }
        }));
    }
    while let Some(Ok(m)) = stream.next().await {
        match m {
            Message::Binary(b) if !b.is_empty() && b[0] % 2 == 0 => {
                if let Some(w) = writers.get((b[0] / 2) as usize) {
                    let _ = w.send(b[1..].to_vec());
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    drop(writers);
    for t in tasks {
        let _ = t.await;
    }
    drop(msg_tx);
    let _ = writer.await;
    Ok(())
}
