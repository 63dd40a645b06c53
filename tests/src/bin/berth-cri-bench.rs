//! A CRI client for the benchmarks: stays connected to one socket and times each
//! call server-round-trip, so the figures are the runtime's, not a CLI's start-up.
//!
//! `berth-cri-bench --socket PATH --image IMAGE --pods N [--hold]`
//! runs N pods (RunPodSandbox, CreateContainer, StartContainer), then tears them
//! down (StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox), one
//! after another; with `--hold` all N pods run at once before the teardown, and
//! the tool waits for a line on stdin in between (the caller measures memory).
//! Prints one JSON object: call name to a list of milliseconds.
//!
//! `berth-cri-bench --socket PATH --image IMAGE --concurrent N --clients K --containers C`
//! starts N pods with C containers each from K clients at once (each on its own
//! connection), then stops and removes them the same way; failed calls are
//! counted, not fatal. Adds "errors", "create_wall_s" and "pods_per_s" to the JSON.
//!
//! `berth-cri-bench --socket PATH --image IMAGE --exec-sync N [--exec-stream M]`
//! times N ExecSync calls of `true` in one running container, then M streamed
//! execs of `true` (the Exec call, the SPDY upgrade, until the exit status).

use berth_proto::v1::image_service_client::ImageServiceClient;
use berth_proto::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::v1::*;
use std::collections::BTreeMap;
use std::time::Instant;

struct Args {
    socket: String,
    image: String,
    pods: usize,
    hold: bool,
    exec_sync: usize,
    exec_stream: usize,
    concurrent: usize,
    clients: usize,
    containers: usize,
}

fn args() -> Args {
    let mut a = Args {
        socket: String::new(),
        image: String::new(),
        pods: 10,
        hold: false,
        exec_sync: 0,
        exec_stream: 0,
        concurrent: 0,
        clients: 8,
        containers: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--socket" => a.socket = it.next().expect("--socket PATH"),
            "--image" => a.image = it.next().expect("--image IMAGE"),
            "--pods" => a.pods = it.next().and_then(|n| n.parse().ok()).expect("--pods N"),
            "--exec-sync" => {
                a.exec_sync = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--exec-sync N")
            }
            "--exec-stream" => {
                a.exec_stream = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--exec-stream N")
            }
            "--hold" => a.hold = true,
            "--concurrent" => a.concurrent = num(it.next(), "--concurrent N"),
            "--clients" => a.clients = num(it.next(), "--clients K"),
            "--containers" => a.containers = num(it.next(), "--containers C"),
            other => panic!("unknown argument {other:?}"),
        }
    }
    a
}

fn num(v: Option<String>, what: &str) -> usize {
    v.and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{what}"))
}

type Times = BTreeMap<&'static str, Vec<f64>>;

/// Times a call; a failure is counted in `errors` (and printed), not fatal.
async fn counted<T>(
    times: &mut Times,
    errors: &mut usize,
    name: &'static str,
    f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Option<T> {
    let t = Instant::now();
    match f.await {
        Ok(r) => {
            times
                .entry(name)
                .or_default()
                .push(t.elapsed().as_secs_f64() * 1000.0);
            Some(r.into_inner())
        }
        Err(e) => {
            eprintln!("{name}: {:?}: {}", e.code(), e.message());
            *errors += 1;
            None
        }
    }
}

/// One client's share of the concurrent run: pods `i ≡ client (mod clients)`.
async fn concurrent_client(
    socket: String,
    image: String,
    logs: String,
    a: (usize, usize, usize, usize),
    start: std::sync::Arc<tokio::sync::Barrier>,
) -> (Times, usize, Vec<String>) {
    let (client, clients, pods, containers) = a;
    let ch = berth_tests::berthd::connect(socket.into()).await;
    let mut rt = RuntimeServiceClient::new(ch);
    let (mut times, mut errors, mut made) = (Times::new(), 0, Vec::new());
    start.wait().await;
    for i in (client..pods).step_by(clients) {
        let pc = pod_config(i, &logs);
        let run = rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pc.clone()),
            ..Default::default()
        });
        let Some(pod) = counted(&mut times, &mut errors, "RunPodSandbox", run).await else {
            continue;
        };
        let pod = pod.pod_sandbox_id;
        for c in 0..containers {
            let mut cc = container_config(&image);
            cc.metadata = Some(ContainerMetadata {
                name: format!("c{c}"),
                attempt: 0,
            });
            cc.log_path = format!("c{c}.log");
            let create = rt.create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cc),
                sandbox_config: Some(pc.clone()),
            });
            if let Some(r) = counted(&mut times, &mut errors, "CreateContainer", create).await {
                let start = rt.start_container(StartContainerRequest {
                    container_id: r.container_id,
                });
                counted(&mut times, &mut errors, "StartContainer", start).await;
            }
        }
        made.push(pod);
    }
    (times, errors, made)
}

async fn concurrent_teardown(socket: String, pods: Vec<String>) -> (Times, usize) {
    let ch = berth_tests::berthd::connect(socket.into()).await;
    let mut rt = RuntimeServiceClient::new(ch);
    let (mut times, mut errors) = (Times::new(), 0);
    for pod in pods {
        let stop = rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        });
        counted(&mut times, &mut errors, "StopPodSandbox", stop).await;
        let remove = rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        });
        counted(&mut times, &mut errors, "RemovePodSandbox", remove).await;
    }
    (times, errors)
}

fn merge(into: &mut Times, from: Times) {
    for (k, v) in from {
        into.entry(k).or_default().extend(v);
    }
}

async fn timed<T>(
    times: &mut Times,
    name: &'static str,
    f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    let t = Instant::now();
    let r = f.await.unwrap_or_else(|e| panic!("{name}: {e}"));
    times
        .entry(name)
        .or_default()
        .push(t.elapsed().as_secs_f64() * 1000.0);
    r.into_inner()
}

fn pod_config(i: usize, logs: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("bench-{i}"),
            uid: format!("bench-uid-{i}-{}", std::process::id()),
            namespace: "bench".into(),
            attempt: 0,
        }),
        log_directory: logs.into(),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

fn container_config(image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "main".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "main.log".into(),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// RunPodSandbox, CreateContainer and StartContainer of pod `i`, timed.
async fn start_pod(
    rt: &mut RuntimeServiceClient<tonic::transport::Channel>,
    times: &mut Times,
    i: usize,
    image: &str,
    logs: &str,
) -> (String, String) {
    let pc = pod_config(i, logs);
    let run = rt.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(pc.clone()),
        ..Default::default()
    });
    let pod = timed(times, "RunPodSandbox", run).await.pod_sandbox_id;
    let create = rt.create_container(CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(container_config(image)),
        sandbox_config: Some(pc),
    });
    let id = timed(times, "CreateContainer", create).await.container_id;
    let start = rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    });
    timed(times, "StartContainer", start).await;
    (pod, id)
}

/// An exec over SPDY v4 (error, stdout, stderr streams) until the server has
/// finished the error stream, which carries the exit status.
async fn streamed_exec(url: &str) {
    use berth_cri::streaming::spdy;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut conn = tokio::net::TcpStream::connect(host)
        .await
        .expect("connecting to the streaming server");
    let _ = conn.set_nodelay(true);
    let req = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut codec = spdy::Codec::new();
    let mut wire = Vec::new();
    for (id, kind) in [(1, "error"), (3, "stdout"), (5, "stderr")] {
        wire.extend_from_slice(&codec.syn_stream(id, &[("streamtype", kind)], false));
    }
    let mut buf = Vec::new();
    let mut b = vec![0u8; 16384];
    let mut upgraded = false;
    loop {
        let n = conn.read(&mut b).await.expect("reading the stream");
        assert!(
            n > 0,
            "the streaming server at {url} closed early: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&b[..n]);
        if !upgraded {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            assert!(
                buf.starts_with(b"HTTP/1.1 101"),
                "no upgrade: {}",
                String::from_utf8_lossy(&buf)
            );
            buf.drain(..end + 4);
            upgraded = true;
            conn.write_all(&wire).await.unwrap();
        }
        while let Some((f, n)) = codec.parse(&buf).expect("a SPDY frame") {
            buf.drain(..n);
            if std::env::var_os("BENCH_DEBUG").is_some() {
                eprintln!("{f:?}");
            }
            // The error stream's end (a FIN, or containerd's RST_STREAM) or the
            // session's: the exit status is in.
            if matches!(
                f,
                spdy::Frame::Data {
                    stream_id: 1,
                    fin: true,
                    ..
                } | spdy::Frame::RstStream { stream_id: 1, .. }
                    | spdy::Frame::GoAway { .. }
            ) {
                return;
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let ch = berth_tests::berthd::connect(a.socket.clone().into()).await;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let mut img = ImageServiceClient::new(ch);
    img.pull_image(PullImageRequest {
        image: Some(ImageSpec {
            image: a.image.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("pulling the image");
    let logs = format!("/run/berth-cri-bench-logs-{}", std::process::id());
    let mut times = Times::new();
    if a.concurrent > 0 {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(a.clients));
        let t = Instant::now();
        let tasks: Vec<_> = (0..a.clients)
            .map(|c| {
                tokio::spawn(concurrent_client(
                    a.socket.clone(),
                    a.image.clone(),
                    logs.clone(),
                    (c, a.clients, a.concurrent, a.containers),
                    barrier.clone(),
                ))
            })
            .collect();
        let (mut errors, mut pods) = (0, Vec::new());
        for task in tasks {
            let (t, e, made) = task.await.expect("a client task");
            merge(&mut times, t);
            errors += e;
            pods.push(made);
        }
        let wall = t.elapsed().as_secs_f64();
        let tasks: Vec<_> = pods
            .into_iter()
            .map(|p| tokio::spawn(concurrent_teardown(a.socket.clone(), p)))
            .collect();
        for task in tasks {
            let (t, e) = task.await.expect("a teardown task");
            merge(&mut times, t);
            errors += e;
        }
        let _ = std::fs::remove_dir_all(&logs);
        let mut out = serde_json::to_value(&times).unwrap();
        out["errors"] = errors.into();
        out["create_wall_s"] = wall.into();
        out["pods_per_s"] = (a.concurrent as f64 / wall).into();
        println!("{out}");
        return;
    }
    if a.exec_sync > 0 || a.exec_stream > 0 {
        let (pod, id) = start_pod(&mut rt, &mut times, 0, &a.image, &logs).await;
        for _ in 0..a.exec_sync {
            let r = timed(
                &mut times,
                "ExecSync",
                rt.exec_sync(ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: vec!["true".into()],
                    timeout: 10,
                }),
            )
            .await;
            assert_eq!(r.exit_code, 0);
        }
        for _ in 0..a.exec_stream {
            let t = Instant::now();
            let url = rt
                .exec(ExecRequest {
                    container_id: id.clone(),
                    cmd: vec!["true".into()],
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                })
                .await
                .expect("Exec")
                .into_inner()
                .url;
            streamed_exec(&url).await;
            times
                .entry("ExecStreamed")
                .or_default()
                .push(t.elapsed().as_secs_f64() * 1000.0);
        }
        timed(
            &mut times,
            "StopPodSandbox",
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            }),
        )
        .await;
        timed(
            &mut times,
            "RemovePodSandbox",
            rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            }),
        )
        .await;
    } else {
        let mut running = Vec::new();
        let teardown =
            async |rt: &mut RuntimeServiceClient<_>, times: &mut Times, pod: String, id: String| {
                timed(
                    times,
                    "StopContainer",
                    rt.stop_container(StopContainerRequest {
                        container_id: id.clone(),
                        timeout: 0,
                    }),
                )
                .await;
                timed(
                    times,
                    "RemoveContainer",
                    rt.remove_container(RemoveContainerRequest { container_id: id }),
                )
                .await;
                timed(
                    times,
                    "StopPodSandbox",
                    rt.stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: pod.clone(),
                    }),
                )
                .await;
                timed(
                    times,
                    "RemovePodSandbox",
                    rt.remove_pod_sandbox(RemovePodSandboxRequest {
                        pod_sandbox_id: pod,
                    }),
                )
                .await;
            };
        for i in 0..a.pods {
            let start = Instant::now();
            let (pod, id) = start_pod(&mut rt, &mut times, i, &a.image, &logs).await;
            times
                .entry("PodStart")
                .or_default()
                .push(start.elapsed().as_secs_f64() * 1000.0);
            if a.hold {
                running.push((pod, id));
            } else {
                teardown(&mut rt, &mut times, pod, id).await;
            }
        }
        if a.hold {
            println!("{{\"holding\": {}}}", running.len());
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            for (pod, id) in running {
                teardown(&mut rt, &mut times, pod, id).await;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&logs);
    println!("{}", serde_json::to_string(&times).unwrap());
}
