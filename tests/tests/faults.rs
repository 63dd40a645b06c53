//! Faults: berthd aborted at every crash point of the calls that change state
//! (`BERTH_CRASH_AT`, debug builds only), then restarted. After each: what berthd
//! lists exists, nothing exists that it does not list, nothing that ran before the
//! call is lost, the call (or kubelet's next step) succeeds when retried, and once
//! everything is removed no mount, network namespace, veth, CNI IP, cgroup, shim
//! or file is left.
//!
//! Also: a shim killed with SIGKILL, the runtime killed in the middle of a
//! create, and calls whose client gives up midway.

use berth_proto::v1::{ContainerState, PodSandboxState};
use berth_tests::berthd::Berthd;
use berth_tests::bin;
use berth_tests::census::{Census, CgroupParent};
use berth_tests::cri::{BUSYBOX, Cri, container_config, pod_config};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const LAYERS: &str = "registry.berth.test/library/layers:latest";

fn crash_points() -> Vec<(String, String)> {
    let out = std::process::Command::new(bin("berthd"))
        .arg("crash-points")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berthd has no crash points (a release build?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect()
}

/// What berthd lists matches what exists on the host, both ways, within 2 s: a
/// container that exits on its own (the stop signal sent just before a crash)
/// ends its shim a moment before berthd's watch records the exit, and a list
/// taken in between is not a fault.
async fn check_consistent(d: &Berthd, c: &mut Cri, parent: &str) -> Result<(), String> {
    let mut result = consistent_now(d, c, parent).await;
    for _ in 0..20 {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        result = consistent_now(d, c, parent).await;
    }
    result
}

async fn consistent_now(d: &Berthd, c: &mut Cri, parent: &str) -> Result<(), String> {
    let pods = c.pods().await;
    let ctrs = c.containers().await;
    let listed: BTreeSet<String> = pods
        .iter()
        .map(|p| p.id.clone())
        .chain(ctrs.iter().map(|c| c.id.clone()))
        .collect();
    let census = Census::take(d, parent);
    let strays = census.strays(&listed);
    if !strays.is_empty() {
        return Err(format!("exists but not listed: {strays:?}"));
    }
    let mut missing = Vec::new();
    for p in &pods {
        let need: &[(&str, usize)] = if p.state == PodSandboxState::SandboxReady as i32 {
            &[("shim", 1), ("netns", 1), ("cni-ip", 1), ("pod-dir", 1)]
        } else {
            &[("shim", 0), ("pod-dir", 1)]
        };
        for (kind, n) in need {
            if census.has(kind, &p.id) != *n {
                missing.push(format!("pod {} ({}): {kind} ×{n}", p.id, p.state));
            }
        }
        if p.state == PodSandboxState::SandboxReady as i32 && census.has("cgroup", &p.id) == 0 {
            missing.push(format!("ready pod {}: no cgroup", p.id));
        }
    }
    for ct in &ctrs {
        let live = ct.state == ContainerState::ContainerRunning as i32
            || ct.state == ContainerState::ContainerCreated as i32;
        let need: &[(&str, usize)] = if live {
            &[("shim", 1), ("container-dir", 1)]
        } else {
            &[("shim", 0), ("container-dir", 1)]
        };
        for (kind, n) in need {
            if census.has(kind, &ct.id) != *n {
                missing.push(format!("container {} ({}): {kind} ×{n}", ct.id, ct.state));
            }
        }
        if live && census.has("mount", &ct.id) == 0 {
            missing.push(format!("live container {}: no rootfs mount", ct.id));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("listed but missing: {missing:?}"))
    }
}

async fn state_of(c: &mut Cri, id: &str) -> Option<i32> {
    c.containers()
        .await
        .into_iter()
        .find(|x| x.id == id)
        .map(|x| x.state)
}

/// One crash point: set up, crash, restart, check, retry, clean, check for leaks.
async fn walk(d: &mut Berthd, point: &str, call: &str, parent: &str) -> Result<(), String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |s: tonic::Status| format!("{what}: {}", s.message())
    };
    let logs = d.dir.path().join("logs");
    d.restart_env(&[("BERTH_CRASH_AT", point)]);
    let mut c = Cri::connect(d).await;
    let pc = pod_config("p", &logs, parent);
    let cc = container_config("c", BUSYBOX, &["sleep", "3600"]);
    let needs_pod = !matches!(call, "RunPodSandbox" | "PullImage");
    let needs_ctr = !matches!(call, "RunPodSandbox" | "PullImage" | "CreateContainer");
    let mut pod = String::new();
    let mut ctr = String::new();
    if needs_pod {
        pod = c.run_pod(&pc).await.map_err(e("setup: run pod"))?;
    }
    if needs_ctr {
        ctr = c.create(&pod, &pc, &cc).await.map_err(e("setup: create"))?;
        if call != "StartContainer" {
            c.start(&ctr).await.map_err(e("setup: start"))?;
        }
    }
    if call == "PullImage" {
        c.remove_image(LAYERS)
            .await
            .map_err(e("setup: remove image"))?;
    }
    let result = match call {
        "RunPodSandbox" => c.run_pod(&pc).await.map(|_| ()),
        "CreateContainer" => c.create(&pod, &pc, &cc).await.map(|_| ()),
        "StartContainer" => c.start(&ctr).await,
        "StopContainer" => {
            c.stop(&ctr, if point == "stop:signal" { 30 } else { 0 })
                .await
        }
        "RemoveContainer" => c.remove(&ctr).await,
        "StopPodSandbox" => c.stop_pod(&pod).await,
        "RemovePodSandbox" => c.remove_pod(&pod).await,
        "PullImage" => c.pull(LAYERS).await.map(|_| ()),
        other => return Err(format!("no scenario for {other}")),
    };
    if result.is_ok() {
        return Err("the call succeeded: the crash point was never reached".into());
    }
    use std::os::unix::process::ExitStatusExt;
    match d.wait_exit(Duration::from_secs(10)) {
        Some(st) if st.signal() == Some(libc::SIGABRT) => {}
        other => return Err(format!("berthd did not abort at the point: {other:?}")),
    }
    d.restart();
    let mut c = Cri::connect(d).await;
    check_consistent(d, &mut c, parent)
        .await
        .map_err(|m| format!("after the restart: {m}"))?;

    // Nothing that ran before the call is lost.
    if needs_pod && !matches!(call, "StopPodSandbox" | "RemovePodSandbox") {
        let ready = c
            .pods()
            .await
            .iter()
            .any(|p| p.id == pod && p.state == PodSandboxState::SandboxReady as i32);
        if !ready {
            return Err(format!(
                "pod {pod} was ready before the call and is not after"
            ));
        }
    }
    if needs_ctr
        && !matches!(
            call,
            "StartContainer"
                | "StopContainer"
                | "RemoveContainer"
                | "StopPodSandbox"
                | "RemovePodSandbox"
        )
        && state_of(&mut c, &ctr).await != Some(ContainerState::ContainerRunning as i32)
    {
        return Err(format!(
            "container {ctr} was running before the call and is not after"
        ));
    }

    // The retry (or, where the call took effect, kubelet's next step) succeeds.
    let running = ContainerState::ContainerRunning as i32;
    match call {
        "RunPodSandbox" => {
            let pods = c.pods().await;
            if !pods
                .iter()
                .any(|p| p.metadata.as_ref().is_some_and(|m| m.name == "p"))
            {
                c.run_pod(&pc).await.map_err(e("retry: run pod"))?;
            }
            let pods = c.pods().await;
            if pods.len() != 1 || pods[0].state != PodSandboxState::SandboxReady as i32 {
                return Err(format!("after the retry: {pods:?}"));
            }
        }
        "CreateContainer" => {
            let listed = c.containers().await;
            let id = match listed.first() {
                Some(x) => x.id.clone(),
                None => c.create(&pod, &pc, &cc).await.map_err(e("retry: create"))?,
            };
            c.start(&id)
                .await
                .map_err(e("retry: start the created container"))?;
        }
        "StartContainer" => {
            if state_of(&mut c, &ctr).await != Some(running) {
                c.start(&ctr).await.map_err(e("retry: start"))?;
            }
            if state_of(&mut c, &ctr).await != Some(running) {
                return Err("not running after the retry".into());
            }
        }
        "StopContainer" => {
            c.stop(&ctr, 0).await.map_err(e("retry: stop"))?;
            if state_of(&mut c, &ctr).await != Some(ContainerState::ContainerExited as i32) {
                return Err("not exited after the retry".into());
            }
        }
        "RemoveContainer" => {
            c.remove(&ctr).await.map_err(e("retry: remove"))?;
            if state_of(&mut c, &ctr).await.is_some() {
                return Err("still listed after the retry".into());
            }
        }
        "StopPodSandbox" => {
            c.stop_pod(&pod).await.map_err(e("retry: stop pod"))?;
            let census = Census::take(d, parent);
            if census.has("netns", &pod) + census.has("cni-ip", &pod) + census.has("shim", &pod) > 0
            {
                return Err(format!(
                    "stopped pod still holds its network or pause: {census:?}"
                ));
            }
        }
        "RemovePodSandbox" => {
            c.remove_pod(&pod).await.map_err(e("retry: remove pod"))?;
            if !c.pods().await.is_empty() || !c.containers().await.is_empty() {
                return Err("still listed after the retry".into());
            }
        }
        "PullImage" => {
            c.pull(LAYERS).await.map_err(e("retry: pull"))?;
            let pod = c
                .run_pod(&pc)
                .await
                .map_err(e("run a pod for the pulled image"))?;
            let lc = container_config("l", LAYERS, &["sleep", "3600"]);
            let id = c
                .create(&pod, &pc, &lc)
                .await
                .map_err(e("create from the pulled image"))?;
            c.start(&id)
                .await
                .map_err(e("start from the pulled image"))?;
        }
        _ => unreachable!(),
    }
    check_consistent(d, &mut c, parent)
        .await
        .map_err(|m| format!("after the retry: {m}"))?;
    c.remove_all().await;
    let left = Census::take(d, parent);
    if left.things() > 0 {
        return Err(format!("left after removing everything: {left:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_is_survived() {
    let mut points = crash_points();
    let all = points.len();
    // BERTH_CRASH_POINTS=a,b walks only the points that start with a or b.
    if let Ok(only) = std::env::var("BERTH_CRASH_POINTS") {
        points.retain(|(p, _)| only.split(',').any(|o| p.starts_with(o)));
    }
    let calls: BTreeSet<&str> = points.iter().map(|(_, c)| c.as_str()).collect();
    for call in [
        "RunPodSandbox",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "StopPodSandbox",
        "RemovePodSandbox",
        "PullImage",
    ] {
        assert!(
            calls.contains(call) || points.len() < all,
            "no crash point in {call}"
        );
    }
    let parent = CgroupParent::new("faults");
    let mut d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    c.pull(LAYERS).await.unwrap();
    let mut failures = Vec::new();
    for (point, call) in &points {
        let started = std::time::Instant::now();
        match walk(&mut d, point, call, &parent.0).await {
            Ok(()) => eprintln!("{point:22} {call:17} survived ({:?})", started.elapsed()),
            Err(m) => {
                eprintln!("{point:22} {call:17} FAILED: {m}");
                failures.push(format!("{point}: {m}"));
                // Start the next point from a clean slate.
                d.restart();
                Cri::connect(&d).await.remove_all().await;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} crash points failed:\n{}\n--- berthd log (tail) ---\n{}",
        failures.len(),
        points.len(),
        failures.join("\n"),
        d.log()
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn alive(pid: u32) -> bool {
    // A zombie has exited: it counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_killed_with_sigkill_ends_its_container_with_a_reason() {
    let parent = CgroupParent::new("shimkill");
    let d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    let logs = d.dir.path().join("logs");
    let pc = pod_config("shimkill", &logs, &parent.0);
    let pod = c.run_pod(&pc).await.unwrap();
    let cc = container_config("victim", BUSYBOX, &["sleep", "3600"]);
    let id = c.create(&pod, &pc, &cc).await.unwrap();
    c.start(&id).await.unwrap();
    let shim_pid: i32 = std::fs::read_to_string(d.state().join("shims").join(&id).join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let init = d.init_pid(&id);
    assert!(alive(init));
    // SAFETY: killing the shim this test's berthd started.
    unsafe { libc::kill(shim_pid, libc::SIGKILL) };
    let c2 = c.clone();
    let id2 = id.clone();
    until("the container to be reported ended", move || {
        let (mut c, id) = (c2.clone(), id2.clone());
        async move {
            c.container_status(&id).await.unwrap().state == ContainerState::ContainerExited as i32
        }
    })
    .await;
    let st = c.container_status(&id).await.unwrap();
    assert_eq!(st.reason, "ShimGone", "{st:?}");
    assert_eq!(st.exit_code, 137);
    assert!(st.message.contains("shim"), "{}", st.message);
    assert!(!alive(init), "the unmonitored container still runs");
    // The pod is untouched and a new container runs in it.
    let cc = container_config("next", BUSYBOX, &["sleep", "3600"]);
    let next = c.create(&pod, &pc, &cc).await.unwrap();
    c.start(&next).await.unwrap();
    c.remove_all().await;
    let left = Census::take(&d, &parent.0);
    assert_eq!(left.things(), 0, "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_killed_mid_create_leaves_nothing_half_made() {
    let parent = CgroupParent::new("rtkill");
    let mut d = Berthd::with_network();
    // A runtime whose `create` is SIGKILLed after a delay read from a file.
    let delay = d.dir.path().join("kill-after");
    let wrapper = d.dir.path().join("runtime-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" create \"*) exec timeout -s KILL \"$(cat {})\" {} \"$@\";; esac\nexec {} \"$@\"\n",
            delay.display(),
            bin("berth-runtime").display(),
            bin("berth-runtime").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = d.dir.path().join("berth.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        &format!("runtime = \"{}\"", bin("berth-runtime").display()),
        &format!("runtime = \"{}\"", wrapper.display()),
    );
    std::fs::write(&config, text).unwrap();
    std::fs::write(&delay, "10").unwrap();
    d.restart();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    let logs = d.dir.path().join("logs");
    let pc = pod_config("rtkill", &logs, &parent.0);
    let pod = c.run_pod(&pc).await.unwrap();
    let mut failed = 0;
    // Under CPU load (two busy loops beside the runtime), so that the kills land
    // in every window of create, the one after the state dir is claimed too.
    let _load = Burners::start(2);
    let delays = [
        0.001, 0.002, 0.003, 0.004, 0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04,
        0.05, 0.06, 0.08, 0.1, 0.13,
    ];
    for (i, ms) in delays.iter().enumerate() {
        std::fs::write(&delay, ms.to_string()).unwrap();
        let cc = container_config(&format!("c{i}"), BUSYBOX, &["sleep", "3600"]);
        match c.create(&pod, &pc, &cc).await {
            Ok(id) => {
                // The runtime finished in time: a whole container.
                std::fs::write(&delay, "10").unwrap();
                c.start(&id).await.unwrap();
                c.remove(&id).await.unwrap();
            }
            Err(s) => {
                failed += 1;
                assert!(!s.message().is_empty());
                eprintln!("killed after {ms} s: {:?} {}", s.code(), s.message());
            }
        }
        let pods = c.pods().await;
        let listed: BTreeSet<String> = pods.iter().map(|p| p.id.clone()).collect();
        assert!(c.containers().await.is_empty());
        let census = Census::take(&d, &parent.0);
        let strays = census.strays(&listed);
        assert!(
            strays.is_empty(),
            "half-made after a kill at {ms} s: {strays:?}"
        );
    }
    assert!(
        failed > 0,
        "no create was killed in time: the delays are too long"
    );
    std::fs::write(&delay, "10").unwrap();
    let cc = container_config("whole", BUSYBOX, &["sleep", "3600"]);
    let id = c.create(&pod, &pc, &cc).await.unwrap();
    c.start(&id).await.unwrap();
    c.remove_all().await;
    let left = Census::take(&d, &parent.0);
    assert_eq!(left.things(), 0, "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_a_pull_is_a_clear_error_and_the_store_stays_whole() {
    let parent = CgroupParent::new("diskfull");
    let d = Berthd::with_small_root(48);
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    let used = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs into a zeroed struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        (st.f_blocks - st.f_bfree) * st.f_frsize
    };
    let before = used(&d.root());
    let big = "registry.berth.test/library/bench-big:latest";
    let err = c.pull(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    let msg = err.message().to_lowercase();
    assert!(
        msg.contains("no space left") || msg.contains("space free"),
        "{msg}"
    );
    // Nothing of the failed pull stays: not listed, no partial files.
    let images: Vec<String> = c
        .images()
        .await
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .collect();
    assert_eq!(images, vec![BUSYBOX.to_string()]);
    let ingest = std::fs::read_dir(d.root().join("content/ingest"))
        .unwrap()
        .count();
    assert_eq!(ingest, 0, "partial blobs left in ingest/");
    let tmp: Vec<_> = std::fs::read_dir(d.root().join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(tmp.is_empty(), "partial snapshots left: {tmp:?}");
    let after = used(&d.root());
    assert!(
        after <= before + (1 << 20),
        "the failed pull left {} bytes behind",
        after - before
    );
    // What was there still works.
    let logs = d.dir.path().join("logs");
    let pc = pod_config("diskfull", &logs, &parent.0);
    let pod = c.run_pod(&pc).await.unwrap();
    let cc = container_config("still", BUSYBOX, &["sleep", "3600"]);
    let id = c.create(&pod, &pc, &cc).await.unwrap();
    c.start(&id).await.unwrap();
    c.pull(BUSYBOX).await.unwrap();
    c.remove_all().await;
}

/// Busy loops that burn CPU until dropped, whatever the test's outcome.
struct Burners(Vec<std::process::Child>);

impl Burners {
    fn start(n: usize) -> Burners {
        Burners(
            (0..n)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("sh")
                })
                .collect(),
        )
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// kubelet gives up on a call (its deadline, or a restart) while berthd works on
/// it: the call runs to its end anyway, so kubelet's retry finds a whole pod or
/// container, never a name reserved by one that stays `Creating` for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_whose_client_gives_up_run_to_their_end() {
    let parent = CgroupParent::new("abandon");
    let d = Berthd::with_network();
    let mut c = Cri::connect(&d).await;
    c.pull(BUSYBOX).await.unwrap();
    let logs = d.dir.path().join("logs");
    let pc = pod_config("abandon", &logs, &parent.0);
    let mut req = tonic::Request::new(berth_proto::v1::RunPodSandboxRequest {
        config: Some(pc.clone()),
        ..Default::default()
    });
    req.set_timeout(Duration::from_millis(1));
    let e = c.rt.run_pod_sandbox(req).await.unwrap_err();
    assert!(
        matches!(
            e.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{e:?}"
    );
    let c2 = c.clone();
    until("the abandoned RunPodSandbox to finish", move || {
        let mut c = c2.clone();
        async move {
            c.pods()
                .await
                .iter()
                .any(|p| p.state == PodSandboxState::SandboxReady as i32)
        }
    })
    .await;
    let pod = c.pods().await[0].id.clone();
    let cc = container_config("late", BUSYBOX, &["sleep", "3600"]);
    let mut req = tonic::Request::new(berth_proto::v1::CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(cc.clone()),
        sandbox_config: Some(pc.clone()),
    });
    req.set_timeout(Duration::from_millis(1));
    assert!(c.rt.create_container(req).await.is_err());
    let c2 = c.clone();
    until("the abandoned CreateContainer to finish", move || {
        let mut c = c2.clone();
        async move {
            c.containers()
                .await
                .iter()
                .any(|k| k.state == ContainerState::ContainerCreated as i32)
        }
    })
    .await;
    // What was made is whole: it starts, and goes without a trace.
    let id = c.containers().await[0].id.clone();
    c.start(&id).await.unwrap();
    c.remove_all().await;
    let left = Census::take(&d, &parent.0);
    assert_eq!(left.things(), 0, "{left:?}");
}
