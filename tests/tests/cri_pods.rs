//! berthd's pods and containers end to end, through a tonic client on its
//! socket: the lifecycle, logs, exec, stats, networking, OOM, errors, restarts.

use berth_proto::v1::image_service_client::ImageServiceClient;
use berth_proto::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::v1::*;
use berth_tests::berthd::Berthd;
use berth_tests::cri::{container_config, pod_config};
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const BUSYBOX: &str = "registry.berth.test/library/busybox:latest";
const HTTPD: &str = "registry.berth.test/library/httpd:latest";

struct Client {
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
}

async fn client(d: &Berthd) -> Client {
    let ch = d.channel().await;
    Client {
        rt: RuntimeServiceClient::new(ch.clone()),
        img: ImageServiceClient::new(ch),
    }
}

impl Client {
    async fn pull(&mut self, image: &str) {
        self.img
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn run_pod(&mut self, config: PodSandboxConfig) -> String {
        self.rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id
    }

    async fn create(
        &mut self,
        pod: &str,
        pod_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    async fn start(&mut self, id: &str) {
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .unwrap();
    }

    async fn status(&mut self, id: &str) -> ContainerStatus {
        self.rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
    }

    async fn exec(&mut self, id: &str, cmd: &[&str]) -> ExecSyncResponse {
        self.rt
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Polls ContainerStatus until the container has exited.
    async fn wait_exited(&mut self, id: &str) -> ContainerStatus {
        for _ in 0..200 {
            let s = self.status(id).await;
            if s.state == ContainerState::ContainerExited as i32 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("container {id} did not exit");
    }

    async fn remove_pod(&mut self, id: &str) {
        self.rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap();
        self.rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap();
    }
}

/// The CRI log lines' contents, format checked.
fn log_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let (ts, stream, tag) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            assert!(
                ts.ends_with('Z') && ts.len() == 30,
                "RFC3339Nano timestamp: {l}"
            );
            assert!(stream == "stdout" || stream == "stderr", "{l}");
            assert!(tag == "F" || tag == "P", "{l}");
            f.next().unwrap_or_default().to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_pod_and_its_container_from_start_to_removal() {
    let d = Berthd::with_network();
    let mut c = client(&d).await;
    c.pull(BUSYBOX).await;
    let mut events =
        c.rt.get_container_events(GetEventsRequest::default())
            .await
            .unwrap()
            .into_inner();
    let logs = d.dir.path().join("logs");
    let mut pc = pod_config("walk", &logs, "");
    pc.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["default.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let pod = c.run_pod(pc.clone()).await;
    let ps =
        c.rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let st = ps.status.unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    let ip = st.network.unwrap().ip;
    assert!(
        ip.starts_with("10."),
        "the pod has an IP from the bridge: {ip:?}"
    );

    let id = c
        .create(&pod, &pc, {
            let mut c = container_config(
                "main",
                BUSYBOX,
                &["sh", "-c", "echo hello; echo oops >&2; exec sleep 1000"],
            );
            c.linux = Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    seccomp: Some(SecurityProfile {
                        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            c
        })
        .await
        .unwrap();
    assert_eq!(
        c.status(&id).await.state,
        ContainerState::ContainerCreated as i32
    );
    c.start(&id).await;
    let s = c.status(&id).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32);
    assert!(
        s.started_at > 0 && s.image_id.starts_with("sha256:"),
        "{s:?}"
    );

    // The log, in the CRI format, under the pod's log directory.
    let log = logs.join("main.log");
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = log_lines(&log);
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        lines.contains(&"hello".to_string()) && lines.contains(&"oops".to_string()),
        "{lines:?}"
    );

    // Exec: output, exit codes, the pod's hostname, DNS and network.
    let r = c
        .exec(&id, &["sh", "-c", "echo -n out; echo err >&2; exit 3"])
        .await;
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"out"[..], &b"err\n"[..], 3)
    );
    let r = c.exec(&id, &["hostname"]).await;
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "walk");
    let r = c.exec(&id, &["cat", "/etc/resolv.conf"]).await;
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    let r = c
        .exec(&id, &["ip", "-o", "-4", "addr", "show", "eth0"])
        .await;
    assert!(String::from_utf8_lossy(&r.stdout).contains(&ip), "{r:?}");
    let r = c
        .exec(&id, &["grep", "Seccomp:", "/proc/self/status"])
        .await;
    assert!(
        String::from_utf8_lossy(&r.stdout).contains('2'),
        "the default seccomp profile is on: {r:?}"
    );

    // Stats from the cgroup.
    let stats =
        c.rt.container_stats(ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert!(stats.memory.unwrap().working_set_bytes.unwrap().value > 0);
    assert!(stats.cpu.unwrap().usage_core_nano_seconds.is_some());

    // Listing with filters.
    let list =
        c.rt.list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pod.clone(),
                label_selector: [("role".to_string(), "main".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(list.len(), 1);

    // Stop: sleep ignores nothing, SIGTERM ends it.
    c.rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 5,
    })
    .await
    .unwrap();
    let s = c.status(&id).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert_eq!((s.exit_code, s.reason.as_str()), (143, "Error"));
    assert!(s.finished_at >= s.started_at);

    c.rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let e =
        c.rt.container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(!d.root().join("containers").join(&id).exists());
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.container_id, id);
        assert_eq!(e.pod_sandbox_status.unwrap().id, pod);
        seen.push(e.container_event_type);
    }
    use ContainerEventType::*;
    assert_eq!(
        seen,
        [
            ContainerCreatedEvent,
            ContainerStartedEvent,
            ContainerStoppedEvent,
            ContainerDeletedEvent
        ]
        .map(|t| t as i32)
    );
    c.remove_pod(&pod).await;
    assert!(
        std::fs::read_dir(d.state().join("netns"))
            .map(|r| r.count())
            .unwrap_or(0)
            == 0,
        "netns removed"
    );
    assert!(
        std::fs::read_dir(d.root().join("pods"))
            .unwrap()
            .next()
            .is_none(),
        "pod dir removed"
    );
}

/// The gRPC code of a call's result; an error must carry a message.
fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => {
            assert!(!s.message().is_empty());
            s.code()
        }
    }
}

/// Polls until `f` is true.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..150 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn pods_reach_each_other_and_a_host_port_answers() {
    let d = Berthd::with_network();
    let mut c = client(&d).await;
    c.pull(BUSYBOX).await;
    c.pull(HTTPD).await;
    let logs = d.dir.path().join("logs");
    // Distinct per test process, so parallel runs of other suites do not clash.
    let host_port = 18000 + (std::process::id() % 1000) as i32;
    let mut web_cfg = pod_config("web", &logs, "");
    web_cfg.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 80,
        host_port,
        host_ip: String::new(),
    }];
    let web = c.run_pod(web_cfg.clone()).await;
    let httpd = c
        .create(&web, &web_cfg, container_config("httpd", HTTPD, &[]))
        .await
        .unwrap();
    c.start(&httpd).await;
    let web_ip =
        c.rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: web.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip;

    let client_cfg = pod_config("client", &logs, "");
    let other = c.run_pod(client_cfg.clone()).await;
    let sh = c
        .create(
            &other,
            &client_cfg,
            container_config("sh", BUSYBOX, &["sleep", "1000"]),
        )
        .await
        .unwrap();
    c.start(&sh).await;
    let url = format!("http://{web_ip}/index.html");
    eventually("the web pod to answer the other pod", async || {
        let r = c.exec(&sh, &["wget", "-q", "-O", "-", &url]).await;
        r.exit_code == 0 && String::from_utf8_lossy(&r.stdout) == "hello from berth httpd\n"
    })
    .await;

    // The host port, through the portmap plugin, on the host's loopback.
    eventually("the host port to answer", async || {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", host_port as u16)).await
        else {
            return false;
        };
        let _ = s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await;
        let mut body = String::new();
        let _ = s.read_to_string(&mut body).await;
        body.contains("hello from berth httpd")
    })
    .await;
    c.remove_pod(&web).await;
    c.remove_pod(&other).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", host_port as u16))
            .await
            .is_err(),
        "the host port is closed once the pod is gone"
    );
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let d = Berthd::with_network();
    let mut c = client(&d).await;
    c.pull(BUSYBOX).await;
    let pc = pod_config("oom", &d.dir.path().join("logs"), "");
    let pod = c.run_pod(pc.clone()).await;
    let mut cfg = container_config("hog", BUSYBOX, &["tail", "/dev/zero"]);
    cfg.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = c.create(&pod, &pc, cfg).await.unwrap();
    c.start(&id).await;
    let s = c.wait_exited(&id).await;
    assert_eq!(
        (s.exit_code, s.reason.as_str()),
        (137, "OOMKilled"),
        "{s:?}"
    );
    c.remove_pod(&pod).await;
}

/// kubelet sends a zero hugepage limit per page size the kernel has, for every
/// container: where the host has no hugetlb controller (this one's is not
/// mounted) the container must run all the same, as with containerd.
#[tokio::test]
async fn hugepage_limits_kubelet_always_sends_do_not_fail_a_container() {
    let d = Berthd::with_network();
    let mut c = client(&d).await;
    c.pull(BUSYBOX).await;
    let pc = pod_config("huge", &d.dir.path().join("logs"), "");
    let pod = c.run_pod(pc.clone()).await;
    let mut cfg = container_config("huge", BUSYBOX, &["true"]);
    cfg.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            hugepage_limits: ["2MB", "1GB"]
                .map(|size| HugepageLimit {
                    page_size: size.into(),
                    limit: 0,
                })
                .to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = c.create(&pod, &pc, cfg).await.unwrap();
    c.start(&id).await;
    let s = c.wait_exited(&id).await;
    assert_eq!(s.exit_code, 0, "{s:?}");
    c.remove_pod(&pod).await;
}

#[tokio::test]
async fn berthd_killed_and_restarted_loses_nothing() {
    let mut d = Berthd::with_network();
    let mut c = client(&d).await;
    c.pull(BUSYBOX).await;
    let logs = d.dir.path().join("logs");
    let pc = pod_config("durable", &logs, "");
    let pod = c.run_pod(pc.clone()).await;
    let counter = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done";
    let ticker = c
        .create(
            &pod,
            &pc,
            container_config("ticker", BUSYBOX, &["sh", "-c", counter]),
        )
        .await
        .unwrap();
    c.start(&ticker).await;
    let quitter = c
        .create(
            &pod,
            &pc,
            container_config("quitter", BUSYBOX, &["sh", "-c", "sleep 1; exit 7"]),
        )
        .await
        .unwrap();
    c.start(&quitter).await;
    let created = c
        .create(&pod, &pc, container_config("waiting", BUSYBOX, &["true"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    d.kill9();
    // The quitter exits while berthd is down; the ticker keeps logging.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    d.restart();
    let mut c = client(&d).await;

    let s = c.status(&ticker).await;
    assert_eq!(
        s.state,
        ContainerState::ContainerRunning as i32,
        "still running: {s:?}"
    );
    let s = c.status(&quitter).await;
    assert_eq!(
        (s.state, s.exit_code),
        (ContainerState::ContainerExited as i32, 7),
        "the exit while down: {s:?}"
    );
    assert_eq!(
        c.status(&created).await.state,
        ContainerState::ContainerCreated as i32
    );
    // The re-adopted pod's network passed a CNI CHECK.
    for _ in 0..50 {
        if d.log().contains("pod network checked") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.log().contains("pod network checked"), "{}", d.log());
    assert!(!d.log().contains("network check failed"));
    let pods =
        c.rt.list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert_eq!(
        (pods.len(), pods[0].state),
        (1, PodSandboxState::SandboxReady as i32)
    );
    // The re-adopted container can still be created into, started and exec'd.
    c.start(&created).await;
    let r = c.exec(&ticker, &["echo", "alive"]).await;
    assert_eq!(r.stdout, b"alive\n");

    // Stopping the ticker through the restarted berthd: its exit is seen.
    c.rt.stop_container(StopContainerRequest {
        container_id: ticker.clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    assert_eq!(
        c.status(&ticker).await.state,
        ContainerState::ContainerExited as i32
    );
    let lines = log_lines(&logs.join("ticker.log"));
    let numbers: Vec<u64> = lines.iter().map(|l| l.parse().unwrap()).collect();
    assert!(
        numbers.len() >= 20,
        "the ticker logged through the restart: {}",
        numbers.len()
    );
    assert!(
        numbers.iter().enumerate().all(|(i, n)| *n == i as u64),
        "no line missing or duplicated: {numbers:?}"
    );
    c.remove_pod(&pod).await;
    assert!(
        c.rt.list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers
            .is_empty()
    );
}

#[tokio::test]
async fn bad_calls_get_the_right_codes() {
    let d = Berthd::with_network();
    let mut c = client(&d).await;
    c.pull(BUSYBOX).await;
    let logs = d.dir.path().join("logs");
    let missing = "0123456789abcdef".repeat(4);
    assert_eq!(
        code(
            c.rt.container_status(ContainerStatusRequest {
                container_id: missing.clone(),
                verbose: false
            })
            .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            c.rt.start_container(StartContainerRequest {
                container_id: missing.clone()
            })
            .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            c.rt.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: missing.clone(),
                verbose: false
            })
            .await
        ),
        Code::NotFound
    );
    // Repeats of stop and remove are not errors.
    assert_eq!(
        code(
            c.rt.remove_container(RemoveContainerRequest {
                container_id: missing.clone()
            })
            .await
        ),
        Code::Ok
    );
    assert_eq!(
        code(
            c.rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: missing.clone()
            })
            .await
        ),
        Code::Ok
    );
    assert_eq!(
        code(
            c.rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: missing.clone()
            })
            .await
        ),
        Code::Ok
    );
    assert_eq!(
        code(
            c.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(PodSandboxConfig::default()),
                ..Default::default()
            })
            .await
        ),
        Code::InvalidArgument
    );
    let pc = pod_config("errors", &logs, "");
    let pod = c.run_pod(pc.clone()).await;
    assert_eq!(
        code(
            c.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pc.clone()),
                ..Default::default()
            })
            .await
        ),
        Code::AlreadyExists
    );
    let cc = container_config("one", BUSYBOX, &["sleep", "100"]);
    assert_eq!(
        c.create(&missing, &pc, cc.clone())
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let no_image = container_config("x", "registry.berth.test/library/absent:1", &["true"]);
    assert_eq!(
        c.create(&pod, &pc, no_image).await.unwrap_err().code(),
        Code::NotFound
    );
    let mut bad_cap = cc.clone();
    bad_cap.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: vec!["NOT_A_CAP".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        c.create(&pod, &pc, bad_cap).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let id = c.create(&pod, &pc, cc.clone()).await.unwrap();
    assert_eq!(
        c.create(&pod, &pc, cc).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    let exec =
        c.rt.exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["true".into()],
            timeout: 0,
        })
        .await;
    assert_eq!(
        code(exec),
        Code::FailedPrecondition,
        "exec in a container not started"
    );
    c.start(&id).await;
    assert_eq!(
        code(
            c.rt.start_container(StartContainerRequest {
                container_id: id.clone()
            })
            .await
        ),
        Code::FailedPrecondition
    );
    let slow =
        c.rt.exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await;
    assert_eq!(code(slow), Code::DeadlineExceeded);
    assert_eq!(
        code(
            c.rt.stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 0
            })
            .await
        ),
        Code::Ok
    );
    assert_eq!(
        code(
            c.rt.stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 0
            })
            .await
        ),
        Code::Ok
    );
    c.remove_pod(&pod).await;
    assert_eq!(
        code(
            c.rt.container_status(ContainerStatusRequest {
                container_id: id,
                verbose: false
            })
            .await
        ),
        Code::NotFound,
        "removing the pod removed its containers"
    );
}

#[tokio::test]
async fn metrics_count_calls_per_method() {
    let port = 19000 + (std::process::id() % 1000) as u16;
    let d = Berthd::with_config(&format!("metrics_address = \"127.0.0.1:{port}\""));
    let mut c = client(&d).await;
    for _ in 0..3 {
        c.rt.version(VersionRequest::default()).await.unwrap();
    }
    let out = std::process::Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("berth_cri_requests_total{method=\"Version\"} 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "berth_cri_request_duration_seconds_bucket{method=\"Version\",le=\"+Inf\"} 3"
        )
    );
}

#[tokio::test]
async fn removing_an_image_keeps_the_layers_a_running_container_uses() {
    let d = Berthd::with_network();
    let mut c = client(&d).await;
    c.pull(BUSYBOX).await;
    let pc = pod_config("keep", &d.dir.path().join("logs"), "");
    let pod = c.run_pod(pc.clone()).await;
    let id = c
        .create(
            &pod,
            &pc,
            container_config("sleeper", BUSYBOX, &["sleep", "1000"]),
        )
        .await
        .unwrap();
    c.start(&id).await;
    c.img
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let r = c
        .exec(
            &id,
            &["sh", "-c", "cat /bin/busybox >/dev/null && echo intact"],
        )
        .await;
    assert_eq!(
        r.stdout, b"intact\n",
        "the container's rootfs survives: {r:?}"
    );
    c.remove_pod(&pod).await;
}

/// Each RPC of cri-api v0.37 berthd does not implement answers Unimplemented
/// with a message naming the call, what is not supported and what to use.
#[tokio::test]
async fn unimplemented_rpcs_say_what_and_why() {
    let d = Berthd::start();
    let mut c = client(&d).await;
    fn check<T: std::fmt::Debug>(
        r: Result<tonic::Response<T>, tonic::Status>,
        rpc: &str,
        reason: &[&str],
    ) {
        let s = r.unwrap_err();
        assert_eq!(s.code(), Code::Unimplemented, "{rpc}: {s:?}");
        let m = s.message();
        assert!(
            m.starts_with(&format!("berthd does not implement {rpc}: ")),
            "{rpc}: {m}"
        );
        for r in reason {
            assert!(m.contains(r), "{rpc}: {m:?} does not say {r:?}");
        }
    }
    let streaming =
        |unary: &'static str| -> [&'static str; 3] { ["CRIListStreaming", "KEP-5825", unary] };
    check(
        c.rt.stream_pod_sandboxes(StreamPodSandboxesRequest::default())
            .await,
        "StreamPodSandboxes",
        &streaming("call ListPodSandbox"),
    );
    check(
        c.rt.stream_containers(StreamContainersRequest::default())
            .await,
        "StreamContainers",
        &streaming("call ListContainers"),
    );
    check(
        c.rt.stream_container_stats(StreamContainerStatsRequest::default())
            .await,
        "StreamContainerStats",
        &streaming("call ListContainerStats"),
    );
    check(
        c.rt.stream_pod_sandbox_stats(StreamPodSandboxStatsRequest::default())
            .await,
        "StreamPodSandboxStats",
        &streaming("call ListPodSandboxStats"),
    );
    check(
        c.img.stream_images(StreamImagesRequest::default()).await,
        "StreamImages",
        &streaming("call ListImages"),
    );
    let metrics = ["PodAndContainerStatsFromCRI", "cAdvisor"];
    check(
        c.rt.stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest::default())
            .await,
        "StreamPodSandboxMetrics",
        &metrics,
    );
    check(
        c.rt.list_metric_descriptors(ListMetricDescriptorsRequest::default())
            .await,
        "ListMetricDescriptors",
        &metrics,
    );
    check(
        c.rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest::default())
            .await,
        "ListPodSandboxMetrics",
        &metrics,
    );
    check(
        c.rt.checkpoint_pod(CheckpointPodRequest {
            pod_sandbox_id: "p".into(),
            output_path: "/tmp/x".into(),
            container_ids: vec!["c".into()],
            ..Default::default()
        })
        .await,
        "CheckpointPod",
        &["checkpointing a pod", "CRIU"],
    );
    check(
        c.rt.restore_pod(RestorePodRequest {
            checkpoint_path: "/tmp/x".into(),
            ..Default::default()
        })
        .await,
        "RestorePod",
        &["restoring a pod", "CRIU"],
    );
    check(
        c.rt.checkpoint_container(CheckpointContainerRequest::default())
            .await,
        "CheckpointContainer",
        &["checkpointing a container", "CRIU"],
    );
    check(
        c.rt.update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest::default())
            .await,
        "UpdatePodSandboxResources",
        &["pod-level resources", "best effort"],
    );
    // What berthd implements it advertises, and only that.
    let features =
        c.rt.status(StatusRequest::default())
            .await
            .unwrap()
            .into_inner()
            .features
            .unwrap();
    assert!(features.mount_options, "Mount.mount_options is applied");
    assert!(!features.user_namespaces_host_network);
}

/// KeyValue.value is bytes: UTF-8 values reach the
/// container byte for byte; a value that is not UTF-8 cannot be carried by the
/// OCI config and is refused with InvalidArgument naming the variable.
#[tokio::test]
async fn env_values_are_bytes_utf8_passes_other_bytes_are_refused() {
    let d = Berthd::with_network();
    let mut c = client(&d).await;
    c.pull(BUSYBOX).await;
    let logs = d.dir.path().join("logs");
    let pc = pod_config("envbytes", &logs, "");
    let pod = c.run_pod(pc.clone()).await;

    let mut bad = container_config("latin1", BUSYBOX, &["sleep", "100"]);
    bad.envs = vec![
        KeyValue {
            key: "OK".into(),
            value: b"fine".to_vec(),
        },
        KeyValue {
            key: "LATIN1".into(),
            value: b"caf\xe9".to_vec(),
        },
    ];
    let e = c.create(&pod, &pc, bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("config.envs[\"LATIN1\"]") && e.message().contains("not UTF-8"),
        "{}",
        e.message()
    );

    let value = "café ☕ \u{1F600} tab\tend";
    let mut good = container_config("utf8", BUSYBOX, &["sleep", "100"]);
    good.envs = vec![KeyValue {
        key: "GREETING".into(),
        value: value.as_bytes().to_vec(),
    }];
    let id = c.create(&pod, &pc, good).await.unwrap();
    c.start(&id).await;
    let out = c.exec(&id, &["sh", "-c", "printf %s \"$GREETING\""]).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(out.stdout, value.as_bytes());
    c.remove_pod(&pod).await;
}

/// Mount.mount_options (KEP-5855): nodev, noexec and nosuid are applied to the
/// bind mount (the kernel's flags on it, and a script there cannot run); a
/// mount without them keeps exec; an option berth does not apply is refused.
#[tokio::test]
async fn bind_mount_options_are_applied_to_the_bind() {
    let d = Berthd::with_network();
    let mut c = client(&d).await;
    c.pull(BUSYBOX).await;
    let logs = d.dir.path().join("logs");
    let vol = tempfile::tempdir().unwrap();
    let script = vol.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host = vol.path().to_string_lossy().to_string();
    let pc = pod_config("mountopts", &logs, "");
    let pod = c.run_pod(pc.clone()).await;

    let mut cc = container_config("opts", BUSYBOX, &["sleep", "100"]);
    cc.mounts = vec![
        Mount {
            container_path: "/locked".into(),
            host_path: host.clone(),
            mount_options: vec!["noexec".into(), "nodev".into(), "nosuid".into()],
            ..Default::default()
        },
        Mount {
            container_path: "/plain".into(),
            host_path: host.clone(),
            ..Default::default()
        },
    ];
    let id = c.create(&pod, &pc, cc).await.unwrap();
    c.start(&id).await;
    // mountinfo: the fifth field is the mount point, the sixth its options.
    let flags = |out: &[u8], mp: &str| -> Vec<String> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.len() > 5 && f[4] == mp)
            .unwrap_or_else(|| panic!("{mp} not in mountinfo"))[5]
            .split(',')
            .map(String::from)
            .collect()
    };
    let info = c.exec(&id, &["cat", "/proc/self/mountinfo"]).await;
    let locked = flags(&info.stdout, "/locked");
    for f in ["noexec", "nodev", "nosuid"] {
        assert!(locked.contains(&f.to_string()), "/locked: {locked:?}");
    }
    let plain = flags(&info.stdout, "/plain");
    assert!(!plain.contains(&"noexec".to_string()), "/plain: {plain:?}");
    let ran = c.exec(&id, &["/plain/run.sh"]).await;
    assert_eq!(
        (ran.exit_code, ran.stdout.as_slice()),
        (0, &b"ran\n"[..]),
        "{ran:?}"
    );
    let refused = c
        .exec(&id, &["sh", "-c", "/locked/run.sh; echo rc=$?"])
        .await;
    let out = String::from_utf8_lossy(&refused.stdout);
    assert!(out.contains("rc=126"), "noexec: {refused:?}");
    assert!(!out.contains("ran"), "noexec: {refused:?}");

    let mut bad = container_config("badopt", BUSYBOX, &["sleep", "100"]);
    bad.mounts = vec![Mount {
        container_path: "/x".into(),
        host_path: host,
        mount_options: vec!["nosymfollow".into()],
        ..Default::default()
    }];
    let e = c.create(&pod, &pc, bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("config.mounts.mount_options")
            && e.message().contains("\"nosymfollow\" is not supported"),
        "{}",
        e.message()
    );
    c.remove_pod(&pod).await;
}

/// KEP-4960: `ContainerConfig.stop_signal` is the signal StopContainer sends,
/// over the image's StopSignal, and `ContainerStatus.stop_signal` reports the
/// signal in effect (SIGTERM when neither the request nor the image names one).
#[tokio::test]
async fn the_requested_stop_signal_stops_the_container_and_is_reported() {
    let d = Berthd::with_network();
    let mut c = client(&d).await;
    c.pull(BUSYBOX).await;
    let logs = d.dir.path().join("logs");
    let pc = pod_config("stopsig", &logs, "");
    let pod = c.run_pod(pc.clone()).await;

    // Exits 7 on SIGUSR1 only: SIGTERM would end it with 143.
    let script = "trap 'echo got-usr1; exit 7' USR1; trap '' TERM; echo ready; \
                  while true; do sleep 0.1; done";
    let mut config = container_config("usr1", BUSYBOX, &["sh", "-c", script]);
    config.stop_signal = Signal::Sigusr1 as i32;
    let usr1 = c.create(&pod, &pc, config).await.unwrap();
    let plain = c
        .create(
            &pod,
            &pc,
            container_config("plain", BUSYBOX, &["sleep", "1000"]),
        )
        .await
        .unwrap();
    assert_eq!(c.status(&usr1).await.stop_signal, Signal::Sigusr1 as i32);
    assert_eq!(c.status(&plain).await.stop_signal, Signal::Sigterm as i32);

    c.start(&usr1).await;
    let log = logs.join("usr1.log");
    for _ in 0..100 {
        if log_lines(&log).contains(&"ready".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.rt.stop_container(StopContainerRequest {
        container_id: usr1.clone(),
        timeout: 10,
    })
    .await
    .unwrap();
    let s = c.wait_exited(&usr1).await;
    assert_eq!(s.exit_code, 7, "stopped by SIGUSR1, not killed: {s:?}");
    assert!(log_lines(&log).contains(&"got-usr1".to_string()));

    // A value the CRI's enum does not have is refused, naming the field.
    let mut bad = container_config("bad", BUSYBOX, &["true"]);
    bad.stop_signal = 99;
    let e = c.create(&pod, &pc, bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("config.stop_signal 99"), "{e:?}");

    c.remove_pod(&pod).await;
}
