//! The ttrpc Task service (containerd.task.v2.Task): one shim serves one container, or a whole
//! pod (the sandbox container and its app containers). Container operations run hutch (see
//! `runtime`); this service keeps the records, the streams and the waiters, and reports events.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::api;
use containerd_shim::monitor::{monitor_subscribe, Subject, Topic};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::{ExitSignal, TtrpcContext, TtrpcResult};

use crate::events::{timestamp, Events};
use crate::process::{Container, Exit, ExitCell, Process, Table};
use crate::runtime::Runtime;
use crate::stdio::{ConsoleSocket, Io, Paths, OUTPUT_GRACE};

fn status(code: Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}

fn not_found(id: &str, exec_id: &str) -> ttrpc::Error {
    if exec_id.is_empty() {
        status(Code::NOT_FOUND, format!("container {id} not found"))
    } else {
        status(Code::NOT_FOUND, format!("process {exec_id} of container {id} not found"))
    }
}

/// A failed hutch command or stream setup: its message, as containerd will show it.
fn failed(message: impl Into<String>) -> ttrpc::Error {
    status(Code::UNKNOWN, message)
}

pub struct TaskService {
    namespace: String,
    table: Arc<Mutex<Table>>,
    events: Events,
    exit: Arc<ExitSignal>,
    /// Names the files an exec's spec and pid go to (exec ids are the client's strings).
    next_file: AtomicU64,
}

impl TaskService {
    pub fn new(namespace: &str, events: Events, exit: Arc<ExitSignal>) -> TaskService {
        let table: Arc<Mutex<Table>> = Arc::default();
        start_exit_handler(table.clone(), events.clone());
        TaskService { namespace: namespace.to_string(), table, events, exit, next_file: AtomicU64::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("table lock")
    }

    /// The runtime, bundle and init pid of container `id`.
    fn container(&self, id: &str) -> TtrpcResult<(Runtime, PathBuf, i32)> {
        let t = self.lock();
        let c = t.containers.get(id).ok_or_else(|| not_found(id, ""))?;
        Ok((c.runtime.clone(), c.bundle.clone(), c.init.pid))
    }

    fn exit_cell(&self, id: &str, exec_id: &str) -> TtrpcResult<Arc<ExitCell>> {
        let t = self.lock();
        let c = t.containers.get(id).ok_or_else(|| not_found(id, ""))?;
        Ok(c.process(exec_id).ok_or_else(|| not_found(id, exec_id))?.exit.clone())
    }

    fn start_init(&self, id: &str) -> TtrpcResult<api::StartResponse> {
        let (runtime, bundle, pid) = self.container(id)?;
        {
            let mut t = self.lock();
            let c = t.containers.get_mut(id).ok_or_else(|| not_found(id, ""))?;
            if c.init.status() != api::Status::CREATED || c.starting {
                return Err(status(Code::FAILED_PRECONDITION, format!("container {id} is not created")));
            }
            c.starting = true;
        }
        let started = runtime.run(&["start", id], None, &bundle.join("log.json"));
        if let Err(e) = started {
            let mut t = self.lock();
            if let Some(c) = t.containers.get_mut(id) {
                c.starting = false;
                if let Some(exit) = c.held_exit.take() {
                    report_exit(&self.table, &self.events, c, "", exit);
                }
            }
            return Err(failed(e));
        }
        let watch = hutch::container::Container::load(&runtime.root, id)
            .ok()
            .map(|c| c.cgroup())
            .and_then(|cg| cg.memory_dir().map(|d| (d, cg.is_v2())))
            .and_then(|(dir, v2)| crate::oom::Watch::start(id, dir, v2, self.events.clone()).ok());
        let mut t = self.lock();
        if let Some(c) = t.containers.get_mut(id) {
            c.init.status = api::Status::RUNNING;
            c.oom = watch;
            c.starting = false;
            self.events.send(TaskStart {
                container_id: id.to_string(),
                pid: pid as u32,
                ..Default::default()
            });
            if let Some(exit) = c.held_exit.take() {
                report_exit(&self.table, &self.events, c, "", exit);
            }
        }
        Ok(api::StartResponse { pid: pid as u32, ..Default::default() })
    }

    fn start_exec(&self, id: &str, exec_id: &str) -> TtrpcResult<api::StartResponse> {
        let (runtime, bundle, _) = self.container(id)?;
        let (spec, paths) = {
            let t = self.lock();
            let c = &t.containers[id];
            if c.init.status() != api::Status::RUNNING {
                return Err(status(Code::FAILED_PRECONDITION, format!("container {id} is not running")));
            }
            let p = c.execs.get(exec_id).ok_or_else(|| not_found(id, exec_id))?;
            let Some(spec) = p.spec.clone() else {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("process {exec_id} was started already"),
                ));
            };
            (spec, p.paths.clone())
        };
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let spec_file = bundle.join(format!("exec-{n}.json"));
        let pid_file = bundle.join(format!("exec-{n}.pid"));
        std::fs::write(&spec_file, spec.to_string())
            .map_err(|e| failed(format!("write {}: {e}", spec_file.display())))?;
        let result = spawn_process(&runtime, &bundle, &paths, &pid_file, |console| {
            let mut args = vec!["exec".to_string(), "--detach".into(), "--process".into()];
            args.push(spec_file.display().to_string());
            args.extend(["--pid-file".to_string(), pid_file.display().to_string()]);
            if let Some(c) = console {
                args.extend(["--console-socket".to_string(), c.display().to_string()]);
            }
            args.push(id.to_string());
            args
        });
        let _ = std::fs::remove_file(&spec_file);
        let _ = std::fs::remove_file(&pid_file);
        let (pid, io, since) = result.map_err(failed)?;
        let mut t = self.lock();
        let early = t.take_unmatched(pid, since);
        let c = t.containers.get_mut(id).ok_or_else(|| not_found(id, ""))?;
        let p = c.execs.get_mut(exec_id).ok_or_else(|| not_found(id, exec_id))?;
        p.pid = pid;
        p.io = io;
        p.spec = None;
        p.status = api::Status::RUNNING;
        self.events.send(TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid: pid as u32,
            ..Default::default()
        });
        if let Some(exit) = early {
            report_exit(&self.table, &self.events, c, exec_id, exit);
        }
        Ok(api::StartResponse { pid: pid as u32, ..Default::default() })
    }
}

/// Runs a hutch command that starts a process (create, exec) with the process's streams, and
/// reads the pid it wrote. Returns the pid, the shim's side of the streams, and when it began
/// (exits kept from before that are someone else's).
fn spawn_process(
    runtime: &Runtime,
    bundle: &Path,
    paths: &Paths,
    pid_file: &Path,
    args: impl FnOnce(Option<&Path>) -> Vec<String>,
) -> Result<(i32, Io, Instant), String> {
    let console = if paths.terminal {
        Some(ConsoleSocket::new().map_err(|e| format!("console socket: {e}"))?)
    } else {
        None
    };
    let (io, child_stdio) = match &console {
        Some(_) => (None, Io::null_stdio().map_err(|e| format!("stdio: {e}"))?),
        None => {
            let (io, s) = Io::pipes(paths).map_err(|e| format!("stdio: {e}"))?;
            (Some(io), s)
        }
    };
    let args = args(console.as_ref().map(|c| c.path.as_path()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let since = Instant::now();
    let outcome = runtime.run(&args, Some(child_stdio), &bundle.join("log.json"));
    if let Err(e) = outcome {
        if let Some(io) = io {
            io.close();
        }
        return Err(e);
    }
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| format!("{}: no pid written", pid_file.display()))?;
    let io = match (console, io) {
        (Some(c), _) => Io::console(paths, c.receive()?).map_err(|e| format!("terminal: {e}"))?,
        (None, Some(io)) => io,
        (None, None) => unreachable!("pipes without a console"),
    };
    Ok((pid, io, since))
}

/// Reports the exit of a process of `c` once its output has drained (see `stdio`), or after
/// OUTPUT_GRACE; the wait runs on a thread of its own, off the table.
fn report_exit(table: &Arc<Mutex<Table>>, events: &Events, c: &mut Container, exec_id: &str, exit: Exit) {
    let Some(p) = c.process_mut(exec_id) else { return };
    p.reaped = true;
    if p.io.output.copied() {
        record_exit(events, c, exec_id, exit);
        return;
    }
    let (output, pid) = (p.io.output.clone(), p.pid);
    let (table, events, id, exec_id) = (table.clone(), events.clone(), c.id.clone(), exec_id.to_string());
    std::thread::Builder::new()
        .name("exit-output".into())
        .spawn(move || {
            output.wait_copied(OUTPUT_GRACE);
            let mut t = table.lock().expect("table lock");
            let Some(c) = t.containers.get_mut(&id) else { return };
            if c.process(&exec_id).is_some_and(|p| p.pid == pid) {
                record_exit(&events, c, &exec_id, exit);
            }
        })
        .expect("thread spawn");
}

/// Marks a process of `c` exited (once) and reports it. The init's exit first reports an OOM
/// that caused it, and ends what its execs left (they share its pid namespace, or should).
fn record_exit(events: &Events, c: &mut Container, exec_id: &str, exit: Exit) {
    if exec_id.is_empty() {
        if let Some(w) = &c.oom {
            w.report();
        }
    }
    let Some(p) = c.process_mut(exec_id) else { return };
    if !p.exit.set(exit) {
        return;
    }
    p.status = api::Status::STOPPED;
    let pid = p.pid;
    events.send(TaskExit {
        container_id: c.id.clone(),
        id: if exec_id.is_empty() { c.id.clone() } else { exec_id.to_string() },
        pid: pid as u32,
        exit_status: exit.status,
        exited_at: MessageField::some(timestamp(exit.at)),
        ..Default::default()
    });
    if exec_id.is_empty() {
        for e in c.execs.values().filter(|e| e.pid > 0 && !e.reaped) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(e.pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Takes every exit the crate's reaper sees and gives it to its process, or keeps it for a
/// process whose pid the shim does not know yet.
fn start_exit_handler(table: Arc<Mutex<Table>>, events: Events) {
    let sub = monitor_subscribe(Topic::All).expect("monitor subscription");
    std::thread::Builder::new()
        .name("exits".into())
        .spawn(move || {
            for ev in sub.rx.iter() {
                let Subject::Pid(pid) = ev.subject else { continue };
                let exit = Exit { status: ev.exit_code as u32, at: SystemTime::now() };
                let mut t = table.lock().expect("table lock");
                let found = t.containers.values().find_map(|c| {
                    if c.init.pid == pid && !c.init.reaped {
                        return Some((c.id.clone(), String::new()));
                    }
                    c.execs
                        .values()
                        .find(|e| e.pid == pid && !e.reaped)
                        .map(|e| (c.id.clone(), e.exec_id.clone()))
                });
                match found {
                    Some((id, exec_id)) => {
                        let c = t.containers.get_mut(&id).expect("found");
                        if exec_id.is_empty() && c.starting {
                            c.init.reaped = true;
                            c.held_exit = Some(exit);
                        } else {
                            report_exit(&table, &events, c, &exec_id, exit);
                        }
                    }
                    None => t.keep_unmatched(pid, exit),
                }
            }
        })
        .expect("thread spawn");
}

/// The runtime options containerd passes (runc's Options: BinaryName, Root), when given.
fn options(
    any: &MessageField<containerd_shim::protos::protobuf::well_known_types::any::Any>,
) -> (String, String) {
    let Some(a) = any.as_ref().filter(|a| a.type_url.ends_with("containerd.runc.v1.Options")) else {
        return Default::default();
    };
    match api::Options::parse_from_bytes(&a.value) {
        Ok(o) => (o.binary_name, o.root),
        Err(_) => Default::default(),
    }
}

fn check_id(field: &str, id: &str) -> TtrpcResult<()> {
    if id.is_empty() {
        return Err(status(Code::INVALID_ARGUMENT, format!("{field} is empty")));
    }
    Ok(())
}

fn umount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    if let Err(e) = containerd_shim::mount::umount_recursive(rootfs.to_str(), 0) {
        log::warn!("unmount {}: {e}", rootfs.display());
    }
}

impl containerd_shim::Task for TaskService {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let id = req.id.as_str();
        check_id("id", id)?;
        if self.lock().containers.contains_key(id) {
            return Err(status(Code::ALREADY_EXISTS, format!("container {id} already exists")));
        }
        let paths = Paths::checked(&req.stdin, &req.stdout, &req.stderr, req.terminal)
            .map_err(|e| status(Code::INVALID_ARGUMENT, e))?;
        let bundle = PathBuf::from(&req.bundle);
        let (binary, root) = options(&req.options);
        let runtime = Runtime::new(&binary, &root, &self.namespace);
        runtime.save(&bundle).map_err(|e| failed(format!("{}: {e}", bundle.display())))?;
        let rootfs = bundle.join("rootfs");
        let mounted = !req.rootfs.is_empty();
        if mounted {
            let _ = std::fs::create_dir(&rootfs);
            for m in &req.rootfs {
                if let Err(e) =
                    containerd_shim::mount::mount_rootfs(Some(&m.type_), Some(&m.source), &m.options, &rootfs)
                {
                    umount_rootfs(&bundle);
                    return Err(failed(format!(
                        "mount {} {} on {}: {e}",
                        m.type_,
                        m.source,
                        rootfs.display()
                    )));
                }
            }
        }
        let pid_file = bundle.join("init.pid");
        let created = spawn_process(&runtime, &bundle, &paths, &pid_file, |console| {
            let mut args = vec!["create".to_string(), "--bundle".into(), req.bundle.clone()];
            args.extend(["--pid-file".to_string(), pid_file.display().to_string()]);
            if let Some(c) = console {
                args.extend(["--console-socket".to_string(), c.display().to_string()]);
            }
            args.push(id.to_string());
            args
        });
        let (pid, io, since) = match created {
            Ok(c) => c,
            Err(e) => {
                if mounted {
                    umount_rootfs(&bundle);
                }
                return Err(failed(e));
            }
        };
        let mut t = self.lock();
        let mut init = Process::new("", paths.clone());
        init.pid = pid;
        init.io = io;
        let early = t.take_unmatched(pid, since);
        let c = t.containers.entry(id.to_string()).or_insert(Container {
            id: id.to_string(),
            bundle,
            runtime,
            init,
            execs: Default::default(),
            mounted_rootfs: mounted,
            oom: None,
            starting: false,
            held_exit: None,
        });
        self.events.send(TaskCreate {
            container_id: id.to_string(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: paths.stdin,
                stdout: paths.stdout,
                stderr: paths.stderr,
                terminal: paths.terminal,
                ..Default::default()
            }),
            pid: pid as u32,
            ..Default::default()
        });
        if let Some(exit) = early {
            report_exit(&self.table, &self.events, c, "", exit);
        }
        Ok(api::CreateTaskResponse { pid: pid as u32, ..Default::default() })
    }

    fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        if req.exec_id.is_empty() {
            self.start_init(&req.id)
        } else {
            self.start_exec(&req.id, &req.exec_id)
        }
    }

    fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        let t = self.lock();
        let c = t.containers.get(&req.id).ok_or_else(|| not_found(&req.id, ""))?;
        let p = c.process(&req.exec_id).ok_or_else(|| not_found(&req.id, &req.exec_id))?;
        let exit = p.exit.get();
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() { c.id.clone() } else { req.exec_id.clone() },
            bundle: c.bundle.display().to_string(),
            pid: p.pid as u32,
            status: p.status().into(),
            stdin: p.paths.stdin.clone(),
            stdout: p.paths.stdout.clone(),
            stderr: p.paths.stderr.clone(),
            terminal: p.paths.terminal,
            exit_status: exit.map(|e| e.status).unwrap_or_default(),
            exited_at: MessageField::from_option(exit.map(|e| timestamp(e.at))),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let (runtime, bundle, pid) = {
            let t = self.lock();
            let c = t.containers.get(&req.id).ok_or_else(|| not_found(&req.id, ""))?;
            let p = c.process(&req.exec_id).ok_or_else(|| not_found(&req.id, &req.exec_id))?;
            if (p.reaped || p.exit.get().is_some()) && !(req.all && req.exec_id.is_empty()) {
                return Err(status(Code::NOT_FOUND, "process already finished"));
            }
            (c.runtime.clone(), c.bundle.clone(), p.pid)
        };
        if req.exec_id.is_empty() {
            let signal = req.signal.to_string();
            let mut args = vec!["kill"];
            if req.all {
                args.push("--all");
            }
            args.extend([req.id.as_str(), signal.as_str()]);
            // With --all after init's end (the CRI does that) there may be nothing left to
            // signal: that is the "already finished" of runc's shim, which clients accept.
            runtime.run(&args, None, &bundle.join("log.json")).map_err(|e| {
                if e.contains("container not running") {
                    status(Code::NOT_FOUND, "process already finished")
                } else {
                    failed(e)
                }
            })?;
        } else {
            let sig = nix::sys::signal::Signal::try_from(req.signal as i32).map_err(|_| {
                status(Code::INVALID_ARGUMENT, format!("signal {} is not a signal", req.signal))
            })?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
                .map_err(|e| failed(format!("signal {sig} to {pid}: {e}")))?;
        }
        Ok(api::Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        check_id("exec_id", &req.exec_id)?;
        let mut spec: serde_json::Value = serde_json::from_slice(&req.spec.value)
            .map_err(|e| status(Code::INVALID_ARGUMENT, format!("spec: not an OCI process: {e}")))?;
        spec["terminal"] = serde_json::Value::Bool(req.terminal);
        let paths = Paths::checked(&req.stdin, &req.stdout, &req.stderr, req.terminal)
            .map_err(|e| status(Code::INVALID_ARGUMENT, e))?;
        let mut t = self.lock();
        let c = t.containers.get_mut(&req.id).ok_or_else(|| not_found(&req.id, ""))?;
        if c.init.status() != api::Status::RUNNING && c.init.status() != api::Status::PAUSED {
            return Err(status(Code::FAILED_PRECONDITION, format!("container {} is not running", req.id)));
        }
        if c.execs.contains_key(&req.exec_id) {
            return Err(status(Code::ALREADY_EXISTS, format!("process {} already exists", req.exec_id)));
        }
        let mut p = Process::new(&req.exec_id, paths);
        p.spec = Some(spec);
        c.execs.insert(req.exec_id.clone(), p);
        self.events.send(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        });
        Ok(api::Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<api::Empty> {
        let t = self.lock();
        let c = t.containers.get(&req.id).ok_or_else(|| not_found(&req.id, ""))?;
        let p = c.process(&req.exec_id).ok_or_else(|| not_found(&req.id, &req.exec_id))?;
        p.io.resize(req.width, req.height).map_err(|e| status(Code::FAILED_PRECONDITION, e))?;
        Ok(api::Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        let t = self.lock();
        let c = t.containers.get(&req.id).ok_or_else(|| not_found(&req.id, ""))?;
        let p = c.process(&req.exec_id).ok_or_else(|| not_found(&req.id, &req.exec_id))?;
        if req.stdin {
            p.io.close_stdin();
        }
        Ok(api::Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let exit = self.exit_cell(&req.id, &req.exec_id)?.wait();
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    fn delete(&self, _ctx: &TtrpcContext, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            let mut t = self.lock();
            let c = t.containers.get_mut(&req.id).ok_or_else(|| not_found(&req.id, ""))?;
            let p = c.execs.get(&req.exec_id).ok_or_else(|| not_found(&req.id, &req.exec_id))?;
            if p.pid > 0 && p.exit.get().is_none() {
                return Err(status(Code::FAILED_PRECONDITION, format!("process {} is running", req.exec_id)));
            }
            let p = c.execs.remove(&req.exec_id).expect("present");
            p.io.close();
            let exit = p.exit.get();
            return Ok(api::DeleteResponse {
                pid: p.pid as u32,
                exit_status: exit.map(|e| e.status).unwrap_or_default(),
                exited_at: MessageField::from_option(exit.map(|e| timestamp(e.at))),
                ..Default::default()
            });
        }
        let (runtime, bundle, pid) = self.container(&req.id)?;
        let cell = self.exit_cell(&req.id, "")?;
        let log = bundle.join("log.json");
        if let Err(e) = runtime.run(&["delete", "--force", &req.id], None, &log) {
            // Gone already (a delete that was interrupted): the rest of the cleanup still runs.
            if hutch::container::Container::load(&runtime.root, &req.id).is_ok() {
                return Err(failed(e));
            }
        }
        // A created container that never started dies at delete: wait for its exit to arrive.
        let exit = match cell.get() {
            Some(e) => e,
            None => {
                let waited = Instant::now();
                loop {
                    if let Some(e) = cell.get() {
                        break e;
                    }
                    if waited.elapsed() > Duration::from_secs(2) {
                        break Exit { status: 137, at: SystemTime::now() };
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        let c = self.lock().containers.remove(&req.id);
        if let Some(c) = c {
            if let Some(w) = &c.oom {
                w.stop();
            }
            c.init.io.close();
            for e in c.execs.values() {
                e.io.close();
            }
            if c.mounted_rootfs {
                umount_rootfs(&bundle);
            }
        }
        self.events.send(TaskDelete {
            container_id: req.id.clone(),
            id: req.id.clone(),
            pid: pid as u32,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        });
        Ok(api::DeleteResponse {
            pid: pid as u32,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let (runtime, bundle, _) = self.container(&req.id)?;
        let out = runtime
            .run(&["ps", "--format", "json", &req.id], None, &bundle.join("log.json"))
            .map_err(failed)?;
        let pids: Vec<u32> = serde_json::from_str(&out).map_err(|e| failed(format!("hutch ps: {e}")))?;
        let processes = pids
            .into_iter()
            .map(|pid| containerd_shim::protos::types::task::ProcessInfo { pid, ..Default::default() })
            .collect();
        Ok(api::PidsResponse { processes, ..Default::default() })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.freeze(&req.id, true)
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        self.freeze(&req.id, false)
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        let (runtime, bundle, _) = self.container(&req.id)?;
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let file = bundle.join(format!("update-{n}.json"));
        std::fs::write(&file, &req.resources.value)
            .map_err(|e| failed(format!("write {}: {e}", file.display())))?;
        let file_arg = file.display().to_string();
        let result =
            runtime.run(&["update", "--resources", &file_arg, &req.id], None, &bundle.join("log.json"));
        let _ = std::fs::remove_file(&file);
        result.map_err(failed)?;
        Ok(api::Empty::new())
    }

    fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        let (runtime, _, _) = self.container(&req.id)?;
        let c =
            hutch::container::Container::load(&runtime.root, &req.id).map_err(|e| failed(e.to_string()))?;
        let any = crate::metrics::any(&c.cgroup()).map_err(failed)?;
        Ok(api::StatsResponse { stats: MessageField::some(any), ..Default::default() })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: api::ConnectRequest) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.lock().containers.get(&req.id).map(|c| c.init.pid as u32).unwrap_or_default();
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        // One shim may serve a whole pod: it goes when its last container has.
        if self.lock().containers.is_empty() {
            self.exit.signal();
        }
        Ok(api::Empty::new())
    }
}

impl TaskService {
    fn freeze(&self, id: &str, pause: bool) -> TtrpcResult<api::Empty> {
        let (runtime, bundle, _) = self.container(id)?;
        runtime
            .run(&[if pause { "pause" } else { "resume" }, id], None, &bundle.join("log.json"))
            .map_err(failed)?;
        if let Some(c) = self.lock().containers.get_mut(id) {
            c.init.status = if pause { api::Status::PAUSED } else { api::Status::RUNNING };
        }
        if pause {
            self.events.send(TaskPaused { container_id: id.to_string(), ..Default::default() });
        } else {
            self.events.send(TaskResumed { container_id: id.to_string(), ..Default::default() });
        }
        Ok(api::Empty::new())
    }
}
