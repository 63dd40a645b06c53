//! Exec and attach, the Kubernetes remotecommand protocol.
//!
//! Over SPDY the client opens one stream per channel (header `streamtype`:
//! `error`, `stdin`, `stdout`, `stderr`, `resize`); over WebSocket every binary
//! message starts with its channel (0 stdin, 1 stdout, 2 stderr, 3 error,
//! 4 resize; with v5, 255 closes the channel named by the next byte). At the end
//! the error channel carries the outcome: from v4 on a JSON `Status` (Success, or
//! Failure with reason NonZeroExitCode and the code), before that a message.
//!
//! An exec runs under a shim of its own started with `--attach-first`, so not a
//! byte of output is lost before berthd joins its attach socket; an attach joins
//! the container's shim.

use super::Request;
use super::attach::{AttachSocket, Input, Output, parse_resizes};
use super::spdy::{self, Event};
use crate::daemon::Daemon;
use crate::{container, shim, store};
use futures_util::{SinkExt, StreamExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// In the server's order of preference.
pub const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
pub const WS_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How the command ended, as the error channel reports it.
enum Outcome {
    Exited(i32),
    Failed(String),
}

fn status_message(protocol: &str, outcome: &Outcome) -> Option<Vec<u8>> {
    let v4 = protocol == "v4.channel.k8s.io" || protocol == "v5.channel.k8s.io";
    match (outcome, v4) {
        (Outcome::Exited(0), true) => Some(br#"{"metadata":{},"status":"Success"}"#.to_vec()),
        (Outcome::Exited(0), false) => None,
        (Outcome::Exited(code), true) => Some(
            serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
            })
            .to_string()
            .into_bytes(),
        ),
        (Outcome::Exited(code), false) => Some(format!("command terminated with exit code {code}").into_bytes()),
        (Outcome::Failed(msg), true) => Some(
            serde_json::json!({"metadata": {}, "status": "Failure", "message": msg, "reason": "InternalError"})
                .to_string()
                .into_bytes(),
        ),
        (Outcome::Failed(msg), false) => Some(msg.clone().into_bytes()),
    }
}

/// The process side of a session: where its attach socket is, and for an exec
/// the shim directory to learn the exit from.
struct Target {
    socket: PathBuf,
    exec_dir: Option<PathBuf>,
}

impl Target {
    /// `size`: the client's terminal (rows, columns) for an exec with a tty, so
    /// the command starts with it rather than racing the first resize.
    async fn open(
        d: &Arc<Daemon>,
        req: &Request,
        size: Option<(u16, u16)>,
    ) -> Result<Target, String> {
        match req {
            Request::Exec {
                container_id,
                cmd,
                tty,
                stdin,
                ..
            } => {
                let c = container::running(d, container_id).map_err(|s| s.message().to_string())?;
                let id = c.get().id;
                let mut process = container::exec_process(d, &id, cmd, *tty)
                    .map_err(|s| s.message().to_string())?;
                if let (true, Some((rows, cols))) = (*tty, size) {
                    let size = berth_bundle::oci::BoxBuilder::default()
                        .height(rows as u64)
                        .width(cols as u64)
                        .build()
                        .map_err(|e| e.to_string())?;
                    process.set_console_size(Some(size));
                }
                let dir = d.paths.state.join("execs").join(store::new_id());
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                let file = dir.join("process.json");
                store::write_atomic(&file, &serde_json::to_vec(&process).unwrap_or_default())
                    .map_err(|e| format!("writing {}: {e}", file.display()))?;
                let launch = shim::Launch {
                    id,
                    shim_dir: dir.clone(),
                    exec_process: Some(file),
                    stdin: *stdin,
                    terminal: *tty,
                    attach_first: true,
                    ..Default::default()
                };
                if let Err(e) = shim::start(&d.bins, &launch).await {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
                Ok(Target {
                    socket: dir.join("attach.sock"),
                    exec_dir: Some(dir),
                })
            }
            Request::Attach { container_id, .. } => {
                let c = container::running(d, container_id).map_err(|s| s.message().to_string())?;
                Ok(Target {
                    socket: d.paths.shim_dir(&c.get().id).join("attach.sock"),
                    exec_dir: None,
                })
            }
            Request::PortForward { .. } => Err("not an exec or attach".into()),
        }
    }

    /// Joins the attach socket to the client's channels; returns when the
    /// process's output has ended (or the client left: then an exec is killed).
    async fn run(
        &self,
        input: mpsc::Receiver<Input>,
        output: mpsc::UnboundedSender<Output>,
        client_gone: impl std::future::Future<Output = ()>,
    ) -> Outcome {
        let sock = match AttachSocket::connect(&self.socket) {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failed(format!("attaching to {}: {e}", self.socket.display()));
            }
        };
        tokio::select! {
            _ = sock.pump(input, output) => {}
            _ = client_gone => {
                if let Some(dir) = &self.exec_dir {
                    let _ = shim::control(dir, "signal 9").await;
                }
            }
        }
        match &self.exec_dir {
            Some(dir) => match shim::wait(dir).await {
                Some(e) => Outcome::Exited(e.exit_code),
                None => Outcome::Failed("the exec's shim ended without recording an exit".into()),
            },
            None => Outcome::Exited(0),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(dir) = &self.exec_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What the client closing its stdin means, as containerd has it: an exec's
/// stdin closes; a container's closes only with stdin_once (without a tty), and
/// otherwise the attach session ends while the container keeps running.
#[derive(Clone, Copy)]
enum StdinClose {
    Forward,
    Detach,
}

impl StdinClose {
    fn of(req: &Request) -> StdinClose {
        match req {
            Request::Attach {
                stdin_once: true,
                tty: false,
                ..
            }
            | Request::Exec { .. } => StdinClose::Forward,
            _ => StdinClose::Detach,
        }
    }
}

fn flags(req: &Request) -> (bool, bool, bool, bool) {
    match req {
        Request::Exec {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        }
        | Request::Attach {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        } => (*tty, *stdin, *stdout, *stderr),
        Request::PortForward { .. } => (false, false, false, false),
    }
}

/// What a client sent, whatever carried it.
enum FromClient {
    Stdin(Vec<u8>),
    CloseStdin,
    /// Bytes of the resize channel: JSON sizes, possibly split.
    Resize(Vec<u8>),
}

/// The middle of every session, whatever the transport: waits a moment for a
/// terminal's first size (so an exec starts with it), opens the process, feeds it
/// what the client sends and hands its output to `to_client`, until the output
/// ends or the client goes (`from` closes) or detaches. Returns the outcome.
async fn session(
    d: &Arc<Daemon>,
    req: &Request,
    mut from: mpsc::Receiver<FromClient>,
    to_client: impl Fn(Output) + Send + 'static,
) -> Outcome {
    let (tty, ..) = flags(req);
    let mut resize_buf = Vec::new();
    let mut early = Vec::new();
    let mut size = None;
    if tty && matches!(req, Request::Exec { .. }) {
        let first = async {
            while let Some(m) = from.recv().await {
                if let FromClient::Resize(b) = &m {
                    resize_buf.extend_from_slice(b);
                    if let Some(s) = parse_resizes(&mut resize_buf).last() {
                        return Some(*s);
                    }
                    continue;
                }
                early.push(m);
            }
            None
        };
        size = tokio::time::timeout(Duration::from_secs(1), first)
            .await
            .ok()
            .flatten();
    }
    let target = match Target::open(d, req, size).await {
        Ok(t) => t,
        Err(e) => return Outcome::Failed(e),
    };
    let (in_tx, in_rx) = mpsc::channel::<Input>(64);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Output>();
    let forward = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            to_client(o);
        }
    });
    let on_close = StdinClose::of(req);
    // Client → process; it ends when the client is gone or detaches.
    let client = async move {
        let mut early = early.into_iter();
        loop {
            let m = match early.next() {
                Some(m) => m,
                None => match from.recv().await {
                    Some(m) => m,
                    None => return,
                },
            };
            let input = match m {
                FromClient::Stdin(b) => Input::Stdin(b),
                FromClient::CloseStdin => match on_close {
                    StdinClose::Forward => Input::CloseStdin,
                    StdinClose::Detach => return,
                },
                FromClient::Resize(b) => {
                    resize_buf.extend_from_slice(&b);
                    for (rows, cols) in parse_resizes(&mut resize_buf) {
                        let _ = in_tx.send(Input::Resize(rows, cols)).await;
                    }
                    continue;
                }
            };
            if in_tx.send(input).await.is_err() {
                return;
            }
        }
    };
    let outcome = target.run(in_rx, out_tx, client).await;
    let _ = forward.await;
    outcome
}

pub async fn serve_spdy(
    d: &Arc<Daemon>,
    req: Request,
    protocol: &str,
    pipe: super::Pipe,
) -> Result<(), String> {
    let (mut events, out) = spdy::session(pipe);
    let (tty, stdin, stdout, stderr) = flags(&req);
    // The streams the client opens for this request, as kubelet counts them.
    let resize_stream = tty && !matches!(protocol, "" | "channel.k8s.io" | "v2.channel.k8s.io");
    let expected =
        1 + stdin as usize + stdout as usize + (stderr && !tty) as usize + resize_stream as usize;
    let mut ids: std::collections::HashMap<String, u32> = Default::default();
    let mut early: Vec<Event> = Vec::new();
    let gather = async {
        while ids.len() < expected {
            match events.recv().await {
                Some(Event::Open { id, headers }) => {
                    let kind = spdy::header(&headers, "streamtype")
                        .unwrap_or_default()
                        .to_string();
                    ids.insert(kind, id);
                }
                Some(e) => early.push(e),
                None => return false,
            }
        }
        true
    };
    match tokio::time::timeout(Duration::from_secs(30), gather).await {
        Ok(true) => {}
        Ok(false) => return Err("the client left before opening its streams".into()),
        Err(_) => {
            out.go_away(0);
            return Err(format!(
                "the client opened {} of {expected} streams within 30 s",
                ids.len()
            ));
        }
    }
    let id = |k: &str| ids.get(k).copied();
    let (err_id, stdin_id, stdout_id, stderr_id, resize_id) = (
        id("error"),
        id("stdin"),
        id("stdout"),
        id("stderr"),
        id("resize"),
    );
    // SPDY streams to client messages.
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut pending = early.into_iter();
        loop {
            let e = match pending.next() {
                Some(e) => e,
                None => match events.recv().await {
                    Some(e) => e,
                    None => return,
                },
            };
            let m = match e {
                Event::Data { id, data } if Some(id) == stdin_id => FromClient::Stdin(data),
                Event::Fin { id } | Event::Reset { id } if Some(id) == stdin_id => {
                    FromClient::CloseStdin
                }
                Event::Data { id, data } if Some(id) == resize_id => FromClient::Resize(data),
                _ => continue,
            };
            if tx.send(m).await.is_err() {
                return;
            }
        }
    });
    let o = out.clone();
    let outcome = session(d, &req, rx, move |msg| {
        let (id, b) = match msg {
            Output::Stdout(b) => (stdout_id, b),
            Output::Stderr(b) => (stderr_id.or(stdout_id), b),
        };
        if let Some(id) = id {
            o.data(id, &b, false);
        }
    })
    .await;
    // The outcome on the error stream, then every stream finished and the
    // connection closed.
    if let (Some(e), Some(msg)) = (err_id, status_message(protocol, &outcome)) {
        out.data(e, &msg, false);
    }
    let mut all: Vec<u32> = ids.values().copied().collect();
    all.sort_unstable();
    for id in &all {
        out.data(*id, &[], true);
    }
    out.go_away(all.last().copied().unwrap_or(0));
    Ok(())
}

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

pub async fn serve_ws(
    d: &Arc<Daemon>,
    req: Request,
    protocol: &str,
    ws: WebSocketStream<TcpStream>,
) -> Result<(), String> {
    let (mut sink, mut stream) = ws.split();
    let (tty, ..) = flags(&req);
    // Channel messages to client messages; pings are answered by tungstenite as
    // it reads.
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            let b = match m {
                Message::Binary(b) => b,
                Message::Close(_) => return,
                _ => continue,
            };
            let m = match (b.first().copied(), b.get(1).copied()) {
                (Some(STDIN), _) => FromClient::Stdin(b[1..].to_vec()),
                (Some(RESIZE), _) => FromClient::Resize(b[1..].to_vec()),
                (Some(CLOSE), Some(STDIN)) => FromClient::CloseStdin,
                _ => continue,
            };
            if tx.send(m).await.is_err() {
                return;
            }
        }
    });
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = msg_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
    });
    let m = msg_tx.clone();
    let outcome = session(d, &req, rx, move |o| {
        let (ch, b) = match o {
            Output::Stdout(b) => (STDOUT, b),
            Output::Stderr(b) => (if tty { STDOUT } else { STDERR }, b),
        };
        let _ = m.send(Message::Binary([&[ch][..], &b].concat().into()));
    })
    .await;
    if let Some(msg) = status_message(protocol, &outcome) {
        let _ = msg_tx.send(Message::Binary([&[ERROR][..], &msg].concat().into()));
    }
    let _ = msg_tx.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    })));
    drop(msg_tx);
    let _ = writer.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_per_protocol_version() {
        let ok = status_message("v4.channel.k8s.io", &Outcome::Exited(0)).unwrap();
        assert_eq!(ok, br#"{"metadata":{},"status":"Success"}"#);
        let bad: serde_json::Value = serde_json::from_slice(
            &status_message("v5.channel.k8s.io", &Outcome::Exited(3)).unwrap(),
        )
        .unwrap();
        assert_eq!(bad["reason"], "NonZeroExitCode");
        assert_eq!(bad["details"]["causes"][0]["message"], "3");
        assert!(status_message("v2.channel.k8s.io", &Outcome::Exited(0)).is_none());
        assert!(
            String::from_utf8(status_message("channel.k8s.io", &Outcome::Exited(2)).unwrap())
                .unwrap()
                .contains('2')
        );
    }
}
