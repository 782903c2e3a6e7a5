//! The shim's actions as containerd runs them: `start` (spawn the serving shim, or join the
//! pod's), `delete` (clean up after a shim that died) and serving the Task service.

use std::path::Path;
use std::sync::Arc;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, DeleteResponse, ExitSignal, Flags, StartOpts};

use crate::events::Events;
use crate::runtime::Runtime;
use crate::task::TaskService;

/// The CRI names a pod's sandbox in every container of it: the pod shares one shim.
const GROUP_ANNOTATIONS: [&str; 2] = ["io.kubernetes.cri.sandbox-id", "io.containerd.runc.v2.group"];

pub struct Service {
    id: String,
    namespace: String,
    socket: String,
    exit: Arc<ExitSignal>,
}

impl containerd_shim::Shim for Service {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        // Runs in every action: no output, no threads.
        Service {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            socket: args.socket.clone(),
            exit: Arc::default(),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, containerd_shim::Error> {
        // The working directory is the bundle.
        let grouping = group(Path::new("config.json")).unwrap_or_else(|| opts.id.clone());
        let (pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        // Moves the server into the runtime options' shim cgroup and below containerd's OOM
        // score, as the runc shims do.
        if let Err(e) = containerd_shim::cgroup::set_cgroup_and_oom_score(pid) {
            log::warn!("shim cgroup and oom score: {e}");
        }
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> Result<DeleteResponse, containerd_shim::Error> {
        // After a shim died: the bundle is the working directory.
        let bundle = std::env::current_dir().map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
        let runtime = Runtime::load(&bundle).unwrap_or_else(|| Runtime::new("", "", &self.namespace));
        if let Err(e) = runtime.run(&["delete", "--force", &self.id], None, &bundle.join("log.json")) {
            log::warn!("{e}");
        }
        let _ = containerd_shim::mount::umount_recursive(bundle.join("rootfs").to_str(), 0);
        let pid = std::fs::read_to_string(bundle.join("init.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or_default();
        let mut resp = DeleteResponse::new();
        resp.set_pid(pid);
        resp.set_exit_status(137);
        resp.set_exited_at(containerd_shim::util::timestamp()?);
        Ok(resp)
    }

    fn wait(&mut self) {
        self.exit.wait();
        // The crate removes the socket it finds in the bundle's `address`, but containerd may
        // have removed the bundle by now.
        if let Some(path) = self.socket.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
        }
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let events = Events::start(publisher, self.namespace.clone());
        TaskService::new(&self.namespace, events, self.exit.clone())
    }
}

/// The shim group of the container whose config.json is `config`: its pod's sandbox id.
fn group(config: &Path) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(config).ok()?).ok()?;
    GROUP_ANNOTATIONS.iter().find_map(|k| v["annotations"][k].as_str().map(str::to_string))
}
