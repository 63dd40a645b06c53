//! Exec, attach and port-forward through berthd's streaming server, over SPDY and
//! over WebSocket, with clients written here; and with crictl where it is built.

use berth_cri::streaming::spdy;
use berth_proto::v1::image_service_client::ImageServiceClient;
use berth_proto::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::v1::*;
use berth_tests::berthd::Berthd;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tonic::transport::Channel;

const BUSYBOX: &str = "registry.berth.test/library/busybox:latest";
const HTTPD: &str = "registry.berth.test/library/httpd:latest";

/// A pod with a web server (httpd on :80) and a shell that reads its stdin.
struct Fixture {
    d: Berthd,
    rt: RuntimeServiceClient<Channel>,
    pod: String,
    web: String,
    shell: String,
}

async fn fixture() -> Fixture {
    let d = Berthd::with_network();
    let ch = d.channel().await;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let mut img = ImageServiceClient::new(ch);
    for i in [BUSYBOX, HTTPD] {
        img.pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: i.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let pc = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "streams".into(),
            uid: "s1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: d.dir.path().join("logs").to_string_lossy().to_string(),
        ..Default::default()
    };
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pc.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mut make = async |name: &str, image: &str, cmd: &[&str], stdin: bool| {
        let cfg = ContainerConfig {
            stdin,
            ..berth_tests::cri::container_config(name, image, cmd)
        };
        let id = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cfg),
                sandbox_config: Some(pc.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        rt.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
        id
    };
    let web = make("web", HTTPD, &[], false).await;
    let shell = make("shell", BUSYBOX, &["sh"], true).await;
    Fixture {
        d,
        rt,
        pod,
        web,
        shell,
    }
}

impl Fixture {
    async fn exec_url(&mut self, cmd: &[&str], tty: bool, stdin: bool) -> String {
        self.rt
            .exec(ExecRequest {
                container_id: self.web.clone(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                tty,
                stdin,
                stdout: true,
                stderr: !tty,
            })
            .await
            .unwrap()
            .into_inner()
            .url
    }

    async fn attach_url(&mut self) -> String {
        self.rt
            .attach(AttachRequest {
                container_id: self.shell.clone(),
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false,
            })
            .await
            .unwrap()
            .into_inner()
            .url
    }

    async fn port_forward_url(&mut self) -> String {
        self.rt
            .port_forward(PortForwardRequest {
                pod_sandbox_id: self.pod.clone(),
                port: vec![],
            })
            .await
            .unwrap()
            .into_inner()
            .url
    }
}

fn host_and_path(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    (host.to_string(), format!("/{path}"))
}

/// A SPDY client: the HTTP upgrade, then frames.
struct SpdyClient {
    conn: TcpStream,
    codec: spdy::Codec,
    buf: Vec<u8>,
    next_id: u32,
}

impl SpdyClient {
    async fn connect(url: &str, protocol: &str) -> SpdyClient {
        let (host, path) = host_and_path(url);
        let mut conn = TcpStream::connect(&host).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut b = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut b).await.unwrap();
            assert!(n > 0, "the server closed during the upgrade");
            buf.extend_from_slice(&b[..n]);
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains(&format!("X-Stream-Protocol-Version: {protocol}")),
            "{head}"
        );
        SpdyClient {
            conn,
            codec: spdy::Codec::new(),
            buf: buf[end..].to_vec(),
            next_id: 1,
        }
    }

    async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let f = self.codec.syn_stream(id, headers, false);
        self.conn.write_all(&f).await.unwrap();
        id
    }

    async fn send(&mut self, id: u32, data: &[u8], fin: bool) {
        self.conn
            .write_all(&spdy::data(id, data, fin))
            .await
            .unwrap();
    }

    /// Frames until `done` says so; data per stream, and which streams finished.
    async fn read_until(
        &mut self,
        mut done: impl FnMut(&HashMap<u32, Vec<u8>>, &[u32]) -> bool,
    ) -> (HashMap<u32, Vec<u8>>, Vec<u32>) {
        let (mut data, mut fins) = (HashMap::new(), Vec::new());
        let mut b = vec![0u8; 65536];
        let read = async {
            loop {
                while let Some((f, n)) = self.codec.parse(&self.buf).unwrap() {
                    self.buf.drain(..n);
                    if let spdy::Frame::Data {
                        stream_id,
                        data: d,
                        fin,
                    } = f
                    {
                        data.entry(stream_id)
                            .or_insert_with(Vec::new)
                            .extend_from_slice(&d);
                        if fin {
                            fins.push(stream_id);
                        }
                    }
                }
                if done(&data, &fins) {
                    return;
                }
                let n = self.conn.read(&mut b).await.unwrap();
                if n == 0 {
                    return;
                }
                self.buf.extend_from_slice(&b[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("no answer in 20 s");
        (data, fins)
    }
}

/// Runs an exec over SPDY v4: stdin (closed after), optional resize; returns
/// stdout, stderr and the status JSON.
async fn spdy_exec(
    url: &str,
    stdin: Option<&[u8]>,
    tty: Option<(u16, u16)>,
) -> (String, String, serde_json::Value) {
    let mut c = SpdyClient::connect(url, "v4.channel.k8s.io").await;
    let err = c.open(&[("streamtype", "error")]).await;
    let input = match stdin {
        Some(_) => Some(c.open(&[("streamtype", "stdin")]).await),
        None => None,
    };
    let out = c.open(&[("streamtype", "stdout")]).await;
    let stderr = if tty.is_none() {
        Some(c.open(&[("streamtype", "stderr")]).await)
    } else {
        None
    };
    if let Some((rows, cols)) = tty {
        let resize = c.open(&[("streamtype", "resize")]).await;
        c.send(
            resize,
            format!("{{\"Width\":{cols},\"Height\":{rows}}}\n").as_bytes(),
            false,
        )
        .await;
    }
    if let (Some(id), Some(bytes)) = (input, stdin) {
        c.send(id, bytes, true).await;
    }
    let (data, _) = c
        .read_until(|_, fins| fins.contains(&out) && fins.contains(&err))
        .await;
    let text = |id: Option<u32>| {
        id.and_then(|i| data.get(&i))
            .map(|d| String::from_utf8_lossy(d).to_string())
            .unwrap_or_default()
    };
    let status = serde_json::from_str(&text(Some(err))).unwrap_or(serde_json::Value::Null);
    (text(Some(out)), text(stderr), status)
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_connect(url: &str, protocol: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (host, _) = host_and_path(url);
    let mut req = url
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let conn = TcpStream::connect(&host).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, conn).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    ws
}

/// Reads channel messages until the server closes; output per channel.
async fn ws_collect(ws: &mut Ws) -> HashMap<u8, Vec<u8>> {
    let mut out: HashMap<u8, Vec<u8>> = HashMap::new();
    let read = async {
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Binary(b) if !b.is_empty() => {
                    out.entry(b[0]).or_default().extend_from_slice(&b[1..])
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no close in 20 s");
    out
}

fn text(m: &HashMap<u8, Vec<u8>>, ch: u8) -> String {
    m.get(&ch)
        .map(|d| String::from_utf8_lossy(d).to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn exec_over_spdy_with_stdin_tty_resize_and_exit_codes() {
    let mut f = fixture().await;
    let url = f
        .exec_url(&["sh", "-c", "cat; echo to-stderr >&2"], false, true)
        .await;
    let (out, err, status) = spdy_exec(&url, Some(b"piped stdin\n"), None).await;
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("piped stdin\n", "to-stderr\n")
    );
    assert_eq!(status["status"], "Success");

    let url = f.exec_url(&["sh", "-c", "exit 3"], false, false).await;
    let (_, _, status) = spdy_exec(&url, None, None).await;
    assert_eq!(
        (status["status"].as_str(), status["reason"].as_str()),
        (Some("Failure"), Some("NonZeroExitCode"))
    );
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    let url = f.exec_url(&["stty", "size"], true, false).await;
    let (out, _, status) = spdy_exec(&url, None, Some((22, 77))).await;
    assert_eq!(
        out.trim(),
        "22 77",
        "the command sees the client's terminal size"
    );
    assert_eq!(status["status"], "Success");

    // A used URL is gone.
    let (host, path) = host_and_path(&url);
    let mut conn = TcpStream::connect(&host).await.unwrap();
    conn.write_all(
        format!("POST {path} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = String::new();
    let _ = conn.read_to_string(&mut resp).await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    drop(f.d);
}

#[tokio::test]
async fn exec_over_websocket_with_stdin_close_tty_resize_and_exit_codes() {
    let mut f = fixture().await;
    let url = f
        .exec_url(
            &["sh", "-c", "cat; echo to-stderr >&2; exit 4"],
            false,
            true,
        )
        .await;
    let mut ws = ws_connect(&url, "v5.channel.k8s.io").await;
    ws.send(Message::Binary(
        [&[0u8][..], b"over websocket\n"].concat().into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap(); // v5: close stdin
    let m = ws_collect(&mut ws).await;
    assert_eq!(
        (text(&m, 1).as_str(), text(&m, 2).as_str()),
        ("over websocket\n", "to-stderr\n")
    );
    let status: serde_json::Value = serde_json::from_str(&text(&m, 3)).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "4");

    let url = f.exec_url(&["stty", "size"], true, false).await;
    let mut ws = ws_connect(&url, "v4.channel.k8s.io").await;
    ws.send(Message::Binary(
        [&[4u8][..], br#"{"Width":91,"Height":19}"#].concat().into(),
    ))
    .await
    .unwrap();
    let m = ws_collect(&mut ws).await;
    assert_eq!(text(&m, 1).trim(), "19 91");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text(&m, 3)).unwrap()["status"],
        "Success"
    );
}

#[tokio::test]
async fn attach_sends_input_and_receives_output_over_both() {
    let mut f = fixture().await;
    let url = f.attach_url().await;
    let mut c = SpdyClient::connect(&url, "v4.channel.k8s.io").await;
    let _err = c.open(&[("streamtype", "error")]).await;
    let input = c.open(&[("streamtype", "stdin")]).await;
    let out = c.open(&[("streamtype", "stdout")]).await;
    let _stderr = c.open(&[("streamtype", "stderr")]).await;
    c.send(input, b"echo attached over spdy\n", false).await;
    let (data, _) = c
        .read_until(|d, _| {
            d.get(&out)
                .is_some_and(|o| o.ends_with(b"attached over spdy\n"))
        })
        .await;
    assert_eq!(data[&out], b"attached over spdy\n");
    drop(c);

    let url = f.attach_url().await;
    let mut ws = ws_connect(&url, "v5.channel.k8s.io").await;
    ws.send(Message::Binary(
        [&[0u8][..], b"echo attached over ws; exit 0\n"]
            .concat()
            .into(),
    ))
    .await
    .unwrap();
    // The shell exits; the attach ends with the container.
    let m = ws_collect(&mut ws).await;
    assert_eq!(text(&m, 1), "attached over ws\n");
}

#[tokio::test]
async fn port_forward_reaches_the_pods_web_server_over_spdy_and_websocket() {
    let mut f = fixture().await;
    let get = b"GET /index.html HTTP/1.0\r\n\r\n";
    let page = "hello from berth httpd";
    // Wait until httpd listens.
    for _ in 0..50 {
        let r =
            f.rt.exec_sync(ExecSyncRequest {
                container_id: f.shell.clone(),
                cmd: vec!["wget".into(), "-qO-".into(), "http://127.0.0.1/".into()],
                timeout: 5,
            })
            .await
            .unwrap()
            .into_inner();
        if r.exit_code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SPDY: two connections on one session.
    let url = f.port_forward_url().await;
    let mut c = SpdyClient::connect(&url, "portforward.k8s.io").await;
    let mut data_ids = Vec::new();
    for req in ["0", "1"] {
        c.open(&[("streamtype", "error"), ("port", "80"), ("requestid", req)])
            .await;
        let d = c
            .open(&[("streamtype", "data"), ("port", "80"), ("requestid", req)])
            .await;
        c.send(d, get, true).await;
        data_ids.push(d);
    }
    let ids = data_ids.clone();
    let (data, _) = c
        .read_until(|_, fins| ids.iter().all(|i| fins.contains(i)))
        .await;
    for d in &data_ids {
        assert!(
            String::from_utf8_lossy(&data[d]).contains(page),
            "{:?}",
            String::from_utf8_lossy(&data[d])
        );
    }

    // WebSocket channels: port 80 on channels 0 (data) and 1 (error).
    let url = f.port_forward_url().await;
    let mut ws = ws_connect(&format!("{url}?port=80"), "v4.channel.k8s.io").await;
    ws.send(Message::Binary([&[0u8][..], get].concat().into()))
        .await
        .unwrap();
    let mut body = Vec::new();
    let read = async {
        while let Some(Ok(Message::Binary(b))) = ws.next().await {
            if b[0] == 0 {
                body.extend_from_slice(&b[1..]);
                if String::from_utf8_lossy(&body).contains(page) {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no page over the websocket channels");
    assert_eq!(
        &body[..2],
        &80u16.to_le_bytes(),
        "each channel opens with its port"
    );

    // SPDY tunnelled through a WebSocket, as client-go does it.
    let url = f.port_forward_url().await;
    let mut ws = ws_connect(&url, "SPDY/3.1+portforward.k8s.io").await;
    let mut codec = spdy::Codec::new();
    let mut wire = codec.syn_stream(
        1,
        &[("streamtype", "error"), ("port", "80"), ("requestid", "0")],
        false,
    );
    wire.extend_from_slice(&codec.syn_stream(
        3,
        &[("streamtype", "data"), ("port", "80"), ("requestid", "0")],
        false,
    ));
    wire.extend_from_slice(&spdy::data(3, get, true));
    ws.send(Message::Binary(wire.into())).await.unwrap();
    let (mut buf, mut got) = (Vec::new(), Vec::new());
    let read = async {
        while let Some(Ok(Message::Binary(b))) = ws.next().await {
            buf.extend_from_slice(&b);
            while let Some((frame, n)) = codec.parse(&buf).unwrap() {
                buf.drain(..n);
                if let spdy::Frame::Data {
                    stream_id: 3,
                    data,
                    fin,
                } = frame
                {
                    got.extend_from_slice(&data);
                    if fin {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no page through the tunnel");
    assert!(String::from_utf8_lossy(&got).contains(page));
}

/// crictl (built from cri-tools, see docs) drives the same server when present.
#[tokio::test]
async fn crictl_exec_attach_and_port_forward_when_built() {
    let Ok(crictl) = which("crictl") else {
        eprintln!("crictl is not on PATH: skipped (README: building crictl)");
        return;
    };
    let f = fixture().await;
    let endpoint = format!("unix://{}", f.d.sock().display());
    let run = |args: &[&str], stdin: &[u8]| {
        let mut child = std::process::Command::new(&crictl)
            .args([
                "--runtime-endpoint",
                &endpoint,
                "--image-endpoint",
                &endpoint,
            ])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut i = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut i, stdin).unwrap();
        drop(i);
        child.wait_with_output().unwrap()
    };
    for transport in ["spdy", "websocket"] {
        let out = run(
            &[
                "exec",
                "-i",
                "--transport",
                transport,
                &f.web,
                "sh",
                "-c",
                "cat; exit 6",
            ],
            b"through crictl\n",
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "through crictl\n");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("exit code 6"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = 17000 + (std::process::id() % 1000) as u16;
    let mut pf = std::process::Command::new(&crictl)
        .args([
            "--runtime-endpoint",
            &endpoint,
            "port-forward",
            &f.pod,
            &format!("{port}:80"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut page = String::new();
    for _ in 0..50 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                .await
                .unwrap();
            let _ = s.read_to_string(&mut page).await;
            if page.contains("hello from berth httpd") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(page.contains("hello from berth httpd"), "{page}");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}
