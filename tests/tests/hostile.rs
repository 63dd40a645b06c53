//! Hostile input through the CRI: the socket refuses non-root users; an exec stays
//! in its container's namespaces and cgroup; the RuntimeDefault seccomp profile
//! refuses what containerd's refuses; a symlink planted in a volume cannot carry
//! a mount out of the rootfs; oversized and malformed requests are
//! InvalidArgument and change nothing. (Tar-slip, the runtime binary and host fds
//! are tested in image.rs and runtime.rs.)

use berth_proto::v1::*;
use berth_tests::berthd::Berthd;
use berth_tests::bin;
use berth_tests::census::{Census, CgroupParent};
use berth_tests::cri::{BUSYBOX, Cri, container_config, pod_config};
use std::collections::BTreeSet;
use std::path::Path;

fn text(r: &ExecSyncResponse) -> String {
    String::from_utf8_lossy(&r.stdout).to_string() + &String::from_utf8_lossy(&r.stderr)
}

#[test]
fn the_socket_refuses_a_non_root_user() {
    let d = Berthd::start();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.sock()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");
    // curl as nobody: connect(2) on the socket is refused.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-sS",
            "--unix-socket",
        ])
        .arg(d.sock())
        .arg("http://localhost/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "curl as nobody: {err}");
    assert!(
        err.contains("Permission denied") || err.contains("Couldn't connect"),
        "{err}"
    );
    // As root it connects (and gets an HTTP/2-only server's refusal, not curl's 7).
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "3", "--unix-socket"])
        .arg(d.sock())
        .arg("http://localhost/")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(7), "root could not connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_stays_in_its_containers_namespaces_and_cgroup() {
    let parent = CgroupParent::new("execns");
    let d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    let logs = d.dir.path().join("logs");
    let pc = pod_config("execns", &logs, &parent.0);
    let pod = c.run_pod(&pc).await.unwrap();
    let id = c
        .create(
            &pod,
            &pc,
            &container_config("c", BUSYBOX, &["sleep", "3600"]),
        )
        .await
        .unwrap();
    c.start(&id).await.unwrap();
    let init = d.init_pid(&id);
    let kinds = ["mnt", "pid", "net", "ipc", "uts", "cgroup"];
    let script = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .collect::<Vec<_>>()
        .join("; ")
        + "; cat /proc/self/cgroup; cat /proc/1/cmdline";
    let r = c.exec_sync(&id, &["sh", "-c", &script]).await.unwrap();
    assert_eq!(r.exit_code, 0, "{}", text(&r));
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    let mut lines = out.lines();
    for k in kinds {
        let host_view = std::fs::read_link(format!("/proc/{init}/ns/{k}")).unwrap();
        assert_eq!(
            lines.next().unwrap(),
            host_view.to_string_lossy(),
            "the exec's {k} namespace is not the container's"
        );
    }
    // Its cgroup is the container's (the cgroup namespace shows it as its root).
    let rest: Vec<&str> = lines.collect();
    let init_cg = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    assert!(init_cg.contains(&id), "{init_cg}");
    assert!(rest.iter().any(|l| l.ends_with(":/")), "{rest:?}");
    // Pid 1 is the pod's pause (the pod shares one pid namespace), not the host's init.
    assert!(
        rest.last().unwrap().starts_with("/pause"),
        "pid 1: {rest:?}"
    );
    // Leaving by the host's pid 1 or the init's namespaces is not possible.
    let r = c
        .exec_sync(
            &id,
            &["sh", "-c", "nsenter -t 1 -m -u -n -i -p true; echo rc=$?"],
        )
        .await
        .unwrap();
    assert!(!text(&r).contains("rc=0"), "nsenter worked: {}", text(&r));
    c.remove_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_default_seccomp_refuses_what_containerds_refuses() {
    let parent = CgroupParent::new("seccomp");
    let d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    let logs = d.dir.path().join("logs");
    let pc = pod_config("seccomp", &logs, &parent.0);
    let pod = c.run_pod(&pc).await.unwrap();
    // The probe is a dynamically linked test binary: it gets the host's libc read-only.
    let probe = bin("berth-syscall-probe");
    let mounts = vec![
        Mount {
            container_path: "/probe".into(),
            host_path: probe.to_string_lossy().into(),
            readonly: true,
            ..Default::default()
        },
        Mount {
            container_path: "/lib/x86_64-linux-gnu".into(),
            host_path: "/usr/lib/x86_64-linux-gnu".into(),
            readonly: true,
            ..Default::default()
        },
        Mount {
            container_path: "/lib64".into(),
            host_path: "/usr/lib64".into(),
            readonly: true,
            ..Default::default()
        },
    ];
    let mut results = Vec::new();
    for (name, profile) in [
        (
            "default",
            SecurityProfile {
                profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                ..Default::default()
            },
        ),
        (
            "unconfined",
            SecurityProfile {
                profile_type: security_profile::ProfileType::Unconfined as i32,
                ..Default::default()
            },
        ),
    ] {
        let mut cc = container_config(name, BUSYBOX, &["/probe"]);
        cc.mounts = mounts.clone();
        cc.envs = vec![KeyValue {
            key: "BERTH_PROBE_IN_CONTAINER".into(),
            value: b"1".to_vec(),
        }];
        cc.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                seccomp: Some(profile),
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = c.create(&pod, &pc, &cc).await.unwrap();
        c.start(&id).await.unwrap();
        let mut st = c.container_status(&id).await.unwrap();
        for _ in 0..100 {
            if st.state == ContainerState::ContainerExited as i32 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            st = c.container_status(&id).await.unwrap();
        }
        let log = std::fs::read_to_string(&st.log_path).unwrap_or_default();
        assert_eq!(st.exit_code, 0, "{name}: {st:?} {log}");
        let seen: BTreeSet<String> = log
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3))
            .map(str::to_string)
            .collect();
        results.push((name, seen));
    }
    let (_, default) = &results[0];
    for call in ["ptrace", "keyctl", "mount", "unshare-user"] {
        assert!(
            default.contains(&format!("{call}=EPERM")),
            "RuntimeDefault let {call} through: {default:?}"
        );
    }
    // Without the profile the same calls (but mount, which needs CAP_SYS_ADMIN)
    // go through: it is the profile that refuses them.
    let (_, unconfined) = &results[1];
    for call in ["ptrace", "unshare-user"] {
        assert!(
            unconfined.contains(&format!("{call}=ok")),
            "unconfined {call}: {unconfined:?}"
        );
    }
    assert!(!unconfined.contains("keyctl=EPERM"), "{unconfined:?}");
    c.remove_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_in_a_volume_cannot_carry_a_mount_out() {
    let parent = CgroupParent::new("symswap");
    let d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    let logs = d.dir.path().join("logs");
    let vol = d.dir.path().join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    let secret = d.dir.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("token"), "s3cret").unwrap();
    let target = tempfile::Builder::new()
        .prefix("berth-escape-")
        .tempdir_in("/run")
        .unwrap();
    let pc = pod_config("symswap", &logs, &parent.0);
    let pod = c.run_pod(&pc).await.unwrap();
    // A first container plants a symlink in the shared volume, pointing at a host
    // directory (absolute: on the host it would mean the host's).
    let mut a = container_config("planter", BUSYBOX, &["sh", "-c"]);
    a.args = vec![format!(
        "ln -s {} /vol/evil && sleep 3600",
        target.path().display()
    )];
    a.mounts = vec![Mount {
        container_path: "/vol".into(),
        host_path: vol.to_string_lossy().into(),
        ..Default::default()
    }];
    let id = c.create(&pod, &pc, &a).await.unwrap();
    c.start(&id).await.unwrap();
    for _ in 0..100 {
        if vol.join("evil").symlink_metadata().is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        vol.join("evil").symlink_metadata().is_ok(),
        "the symlink was not planted"
    );
    // A second container mounts the volume, and a secret under /vol/evil/x: the
    // destination resolves inside its own rootfs, never at the host's target.
    let mut b = container_config("victim", BUSYBOX, &["sleep", "3600"]);
    b.mounts = vec![
        Mount {
            container_path: "/vol".into(),
            host_path: vol.to_string_lossy().into(),
            ..Default::default()
        },
        Mount {
            container_path: "/vol/evil/x".into(),
            host_path: secret.to_string_lossy().into(),
            readonly: true,
            ..Default::default()
        },
    ];
    match c.create(&pod, &pc, &b).await {
        Ok(id) => {
            let _ = c.start(&id).await;
        }
        Err(e) => eprintln!("refused: {}", e.message()),
    }
    let mounted_on_host = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(&target.path().to_string_lossy().to_string()));
    assert!(
        !mounted_on_host,
        "a mount landed on the host's {}",
        target.path().display()
    );
    assert_eq!(
        std::fs::read_dir(target.path()).unwrap().count(),
        0,
        "something was made in the host directory"
    );
    c.remove_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_requests_are_invalid_and_change_nothing() {
    let parent = CgroupParent::new("badreq");
    let d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    let logs = d.dir.path().join("logs");
    let good = pod_config("good", &logs, &parent.0);
    let pod = c.run_pod(&good).await.unwrap();
    let before = Census::take(&d, &parent.0);
    let bad_pods: Vec<PodSandboxConfig> = vec![
        {
            let mut p = pod_config(&"n".repeat(100_000), &logs, &parent.0);
            p.hostname = "h".into();
            p
        },
        {
            let mut p = pod_config("dns", &logs, &parent.0);
            p.dns_config = Some(DnsConfig {
                searches: vec!["x\nnameserver 6.6.6.6".into()],
                ..Default::default()
            });
            p
        },
        {
            let mut p = pod_config("labels", &logs, &parent.0);
            p.labels.insert("big".into(), "v".repeat(1 << 20));
            p
        },
        {
            let mut p = pod_config("ports", &logs, &parent.0);
            p.port_mappings = vec![PortMapping {
                host_port: -1,
                container_port: 80,
                ..Default::default()
            }];
            p
        },
        {
            let mut p = pod_config("cg", &logs, &parent.0);
            p.linux.as_mut().unwrap().cgroup_parent = "/../../escape".into();
            p
        },
    ];
    for p in &bad_pods {
        let e = c.run_pod(p).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
    }
    let bad_ctrs: Vec<ContainerConfig> = vec![
        {
            let mut x = container_config("logesc", BUSYBOX, &["true"]);
            x.log_path = "../../../../etc/cron.d/evil".into();
            x
        },
        {
            let mut x = container_config("nul", BUSYBOX, &["true"]);
            x.args = vec!["a\0b".into()];
            x
        },
        {
            let mut x = container_config("huge", BUSYBOX, &["true"]);
            x.args = vec!["x".repeat(4 << 20)];
            x
        },
        {
            let mut x = container_config("rel", BUSYBOX, &["true"]);
            x.mounts = vec![Mount {
                container_path: "relative".into(),
                host_path: "/tmp".into(),
                ..Default::default()
            }];
            x
        },
        container_config("", BUSYBOX, &["true"]),
    ];
    for x in &bad_ctrs {
        let e = c.create(&pod, &good, x).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
    }
    let pods = c.pods().await;
    assert_eq!(pods.len(), 1);
    assert!(c.containers().await.is_empty());
    let after = Census::take(&d, &parent.0);
    assert_eq!(before.owned, after.owned, "something was made");
    assert_eq!(before.veths, after.veths);
    assert!(!Path::new("/etc/cron.d/evil").exists());
    c.remove_all().await;
}
