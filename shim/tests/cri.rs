//! A pod on hutch through containerd's CRI, driven as a kubelet drives it (a CRI v1 client
//! over the unix socket): the runtime handler `hutch` maps to io.containerd.hutch.v2.

mod common;

use std::path::Path;

use common::{Containerd, BUSYBOX};
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::{Channel, Endpoint};

const CGROUP_PARENT: &str = "/shimcri";

fn ns_of(pid: &str, kind: &str) -> String {
    let link = format!("/proc/{pid}/ns/{kind}");
    std::fs::read_link(&link).unwrap_or_else(|e| panic!("{link}: {e}")).display().to_string()
}

/// The host pid of each task in containerd's k8s.io namespace, by container id.
fn task_pids(c: &Containerd) -> Vec<(String, i32)> {
    let out = c.ctr_in("k8s.io", &["task", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(1)?.parse().ok()?))
        })
        .collect()
}

#[test]
fn pod_with_an_app_container_through_the_cri() {
    let c = Containerd::start("shimcri");
    for tar in ["busybox.tar", "pause.tar"] {
        let path = common::images().join(tar).display().to_string();
        let out = c.ctr_in("k8s.io", &["images", "import", &path]);
        assert!(out.status.success(), "import {tar}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let logs = c.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let channel: Channel =
            Endpoint::from_shared(format!("unix://{}", c.socket.display())).unwrap().connect().await.unwrap();
        let mut cri = RuntimeServiceClient::new(channel);
        let pod_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "pod".into(),
                uid: "pod-uid-1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "hutchpod".into(),
            log_directory: logs.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: CGROUP_PARENT.into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        ipc: NamespaceMode::Pod as i32,
                        pid: NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = cri
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config.clone()),
                runtime_handler: "hutch".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log()))
            .into_inner()
            .pod_sandbox_id;
        let app = cri
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata { name: "app".into(), attempt: 0 }),
                    image: Some(ImageSpec { image: BUSYBOX.into(), ..Default::default() }),
                    command: vec!["sleep".into(), "1000".into()],
                    log_path: "app.log".into(),
                    ..Default::default()
                }),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", c.log()))
            .into_inner()
            .container_id;
        cri.start_container(StartContainerRequest { container_id: app.clone() }).await.unwrap();

        // ExecSync: output and exit code, inside the pod (its hostname).
        let r = cri
            .exec_sync(ExecSyncRequest {
                container_id: app.clone(),
                cmd: vec!["sh".into(), "-c".into(), "hostname; echo oops >&2; exit 4".into()],
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(String::from_utf8_lossy(&r.stdout), "hutchpod\n");
        assert_eq!(String::from_utf8_lossy(&r.stderr), "oops\n");
        assert_eq!(r.exit_code, 4);

        // The app container joined the sandbox's network and IPC namespaces (a pod network of
        // its own, not the host's), and both run under one shim.
        let pids = task_pids(&c);
        let pid = |id: &str| pids.iter().find(|(t, _)| t == id).map(|(_, p)| *p).unwrap();
        let (sandbox_pid, app_pid) = (pid(&pod).to_string(), pid(&app).to_string());
        let (sandbox_pid, app_pid) = (sandbox_pid.as_str(), app_pid.as_str());
        for kind in ["net", "ipc", "uts"] {
            assert_eq!(ns_of(sandbox_pid, kind), ns_of(app_pid, kind), "{kind} namespace");
            assert_ne!(ns_of(sandbox_pid, kind), ns_of("self", kind), "{kind} namespace is the host's");
        }
        // The container's own namespace options default to POD for pid: it joins the sandbox's.
        assert_eq!(ns_of(sandbox_pid, "pid"), ns_of(app_pid, "pid"), "pid namespace");
        assert_eq!(c.shims().len(), 1, "one shim serves the pod");
        let cgroup = std::fs::read_to_string(format!("/proc/{app_pid}/cgroup")).unwrap();
        assert!(cgroup.contains(&format!("{CGROUP_PARENT}/{app}")), "{cgroup}");

        // ContainerStats: the cgroup's CPU and memory.
        let stats = cri
            .container_stats(ContainerStatsRequest { container_id: app.clone() })
            .await
            .unwrap()
            .into_inner()
            .stats
            .expect("stats");
        let cpu = stats.cpu.and_then(|c| c.usage_core_nano_seconds).map(|v| v.value).unwrap_or(0);
        let memory = stats.memory.and_then(|m| m.working_set_bytes).map(|v| v.value).unwrap_or(0);
        assert!(cpu > 0, "cpu usage {cpu}");
        assert!(memory > 0, "memory working set {memory}");

        // UpdateContainerResources reaches the cgroup (through the shim's Update and hutch update).
        cri.update_container_resources(UpdateContainerResourcesRequest {
            container_id: app.clone(),
            linux: Some(LinuxContainerResources { memory_limit_in_bytes: 96 << 20, ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}"));
        let limit = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory{CGROUP_PARENT}/{app}/memory.limit_in_bytes"
        ))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup{CGROUP_PARENT}/{app}/memory.max")))
        .unwrap();
        assert_eq!(limit.trim(), (96u64 << 20).to_string());

        cri.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
        let status = cri
            .container_status(ContainerStatusRequest { container_id: app.clone(), verbose: false })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(status.state, ContainerState::ContainerExited as i32);
        assert_eq!(status.exit_code, 137, "stopped with SIGKILL");
        cri.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
        let left = cri.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.unwrap().into_inner();
        assert!(left.items.is_empty());
    });

    c.wait_for("the pod's shim to exit", || c.shims().is_empty());
    let state = c.run.join("hutch/k8s.io");
    let left: Vec<_> = std::fs::read_dir(&state).into_iter().flatten().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "hutch state left: {left:?}");
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = h.path().join(CGROUP_PARENT.trim_start_matches('/'));
        let children: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .collect();
        assert!(children.is_empty(), "cgroups left in {}", dir.display());
        let _ = std::fs::remove_dir(&dir);
    }
    assert!(c.mounts().iter().all(|m| !Path::new(m).starts_with(&c.run)), "mounts left: {:?}", c.mounts());
}
