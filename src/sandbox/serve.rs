//! `hutch sandbox serve`: warm mode for harnesses that run many short programs.
//!
//! The supervisor (this process) builds the sandbox once, as a container whose init is a
//! zygote (`super::zygote`), and creates one cgroup per concurrency slot. Requests arrive as
//! JSON lines on stdin and on an optional unix socket; each runs in a fresh process tree cloned
//! by the zygote into its slot, and its result (the one-shot result document plus the request's
//! `id`) goes back as one JSON line on the connection it came from. Protocol: docs/sandbox.md.
//!
//! One thread, one poll loop: requests, the zygote's replies, every run's output pipes, error
//! pipe and deadline. Nothing here forks; the zygote does.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use serde::Deserialize;
use serde_json::Value;

use super::capture::Stream;
use super::zygote::{self, Reply};
use super::{conclude, EndedBy, Outcome, Request};
use crate::cgroups::meter::Meter;
use crate::cgroups::Cgroup;
use crate::channel::{channel, Receiver, Sender};
use crate::config::Config;
use crate::container::{self, Container, CreateOptions};
use crate::error::{Error, Result};
use crate::process::Stdio;
use profile_limits::OnOutputLimit;

use super::profile as profile_limits;

/// What `serve` needs: the defaults every request starts from, and the server's shape.
pub struct Options {
    /// Profile, rootfs, limits, environment and network; its `args` are not used.
    pub base: Request,
    /// Runs at once; more requests wait in order.
    pub concurrency: usize,
    /// Also listen on this unix socket.
    pub socket: Option<PathBuf>,
}

/// One request line (docs/sandbox.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    /// Echoed in the result, to match results to requests (they may finish out of order).
    #[serde(default)]
    id: Value,
    args: Vec<String>,
    /// Added to the server's environment.
    #[serde(default)]
    env: Vec<String>,
    cwd: Option<String>,
    /// The program's stdin, as text.
    stdin: Option<String>,
    /// "2s", "500ms"; default: the server's.
    timeout: Option<String>,
    stdout_limit: Option<String>,
    stderr_limit: Option<String>,
}

/// Longest request line accepted.
const MAX_LINE: usize = 16 << 20;

/// Serves until stdin ends (and, with a socket, until SIGINT or SIGTERM), then cleans up:
/// no process, cgroup, mount or state is left.
pub fn serve(opts: &Options) -> Result<()> {
    let mut server = Server::start(opts)?;
    let result = server.run();
    drop(server);
    result
}

struct Slot {
    cgroup: Cgroup,
    /// What a run writes "0" to, to join this slot's cgroup (see `Cgroup::join_plan`).
    join: Vec<(std::path::PathBuf, OwnedFd)>,
    meter: Meter,
    busy: bool,
}

struct Conn {
    input: OwnedFd,
    output: std::fs::File,
    buf: Vec<u8>,
    eof: bool,
    /// Its requests queued or running.
    pending: usize,
    broken: bool,
}

struct Running {
    conn: usize,
    id: Value,
    slot: usize,
    t0: Instant,
    deadline: Option<Instant>,
    on_output_limit: OnOutputLimit,
    streams: [Stream; 2],
    /// The run's setup errors; EOF without text means execve worked.
    errors: Option<OwnedFd>,
    error_text: Vec<u8>,
    pidfd: Option<OwnedFd>,
    exit: Option<(Option<i32>, Option<i32>)>,
    failed: Option<String>,
    ended_by: Option<EndedBy>,
    cpu_time: Option<Duration>,
}

struct Server<'a> {
    opts: &'a Options,
    config: Config,
    id: String,
    to_zygote: Sender<zygote::Request>,
    from_zygote: Receiver<Reply>,
    slots: Vec<Slot>,
    conns: HashMap<usize, Conn>,
    next_conn: usize,
    listener: Option<UnixListener>,
    signals: SignalFd,
    queue: VecDeque<(usize, Result<RunRequest>)>,
    running: HashMap<u64, Running>,
    next_tag: u64,
}

impl<'a> Server<'a> {
    fn start(opts: &'a Options) -> Result<Server<'a>> {
        let base = &opts.base;
        let mut spec = super::spec(base)?;
        let seccomp = super::seccomp(base, &mut spec)?;
        let bundle = base.rootfs.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
        let config = Config::from_spec(spec, bundle, base.profile_file.clone())?;
        let id = format!("serve-{}", std::process::id());
        // SIGINT and SIGTERM end the server through the poll loop, so cleanup runs.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block().map_err(|e| Error::Sys { context: "block signals".into(), source: e })?;
        let signals =
            SignalFd::new(&mask).map_err(|e| Error::Sys { context: "signalfd".into(), source: e })?;
        let sys = |what: &'static str| move |e: nix::Error| Error::Sys { context: what.into(), source: e };
        let (to_zygote, requests) = channel::<zygote::Request>().map_err(sys("socketpair"))?;
        let (replies, from_zygote) = channel::<Reply>().map_err(sys("socketpair"))?;
        let null = || -> Result<OwnedFd> {
            std::fs::File::open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|e| Error::Io { context: "/dev/null".into(), source: e })
        };
        // The zygote must not touch the protocol streams; its errors still reach our stderr.
        let stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::Io { context: "dup stderr".into(), source: e })?;
        let stdio = Stdio { stdin: null()?, stdout: null()?, stderr };
        let create = CreateOptions { root: base.root.clone(), id: id.clone(), seccomp, ..Default::default() };
        container::create_zygote(&create, &config, stdio, requests, replies)?;
        let mut server = Server {
            opts,
            config,
            id,
            to_zygote,
            from_zygote,
            slots: Vec::new(),
            conns: HashMap::new(),
            next_conn: 0,
            listener: None,
            signals,
            queue: VecDeque::new(),
            running: HashMap::new(),
            next_tag: 0,
        };
        // From here on, Drop cleans up whatever fails.
        server.make_slots()?;
        if let Some(path) = &opts.socket {
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path)
                .map_err(|e| Error::Io { context: format!("--socket {}", path.display()), source: e })?;
            l.set_nonblocking(true).map_err(|e| Error::Io { context: "listener".into(), source: e })?;
            server.listener = Some(l);
        }
        let input = std::io::stdin().as_fd().try_clone_to_owned();
        let output = std::io::stdout().as_fd().try_clone_to_owned();
        if let (Ok(input), Ok(output)) = (input, output) {
            server.add_conn(input, output);
        }
        Ok(server)
    }

    fn make_slots(&mut self) -> Result<()> {
        let linux = self.config.spec.linux().as_ref();
        let resources = Cgroup::resources_with_devices(
            linux.and_then(|l| l.resources().as_ref()),
            linux.and_then(|l| l.devices().as_deref()).unwrap_or_default(),
        );
        for i in 0..self.opts.concurrency.max(1) {
            let cgroup = Cgroup::create(
                &format!("hutch/{}-{i}", self.id),
                Some(&resources),
                &self.config.file,
                Some(&super::controllers()),
            )?;
            let join = cgroup.join_plan()?.into_join_files()?;
            let meter = Meter::new(&cgroup);
            self.slots.push(Slot { cgroup, join, meter, busy: false });
        }
        Ok(())
    }

    fn add_conn(&mut self, input: OwnedFd, output: OwnedFd) {
        let _ = nix::fcntl::fcntl(&input, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        self.conns.insert(
            self.next_conn,
            Conn {
                input,
                output: std::fs::File::from(output),
                buf: Vec::new(),
                eof: false,
                pending: 0,
                broken: false,
            },
        );
        self.next_conn += 1;
    }

    fn run(&mut self) -> Result<()> {
        loop {
            self.dispatch();
            self.drop_finished_conns();
            if self.listener.is_none() && self.conns.is_empty() && self.running.is_empty() {
                return Ok(());
            }
            self.wait_and_handle()?;
        }
    }

    /// One poll round and everything it woke.
    fn wait_and_handle(&mut self) -> Result<()> {
        #[derive(Clone, Copy)]
        enum Src {
            Signal,
            Listener,
            Conn(usize),
            Zygote,
            Out(u64, usize),
            Errors(u64),
        }
        let mut srcs = vec![Src::Signal, Src::Zygote];
        let mut fds = vec![
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.from_zygote.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(l) = &self.listener {
            srcs.push(Src::Listener);
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        for (&k, c) in self.conns.iter().filter(|(_, c)| !c.eof) {
            srcs.push(Src::Conn(k));
            fds.push(PollFd::new(c.input.as_fd(), PollFlags::POLLIN));
        }
        for (&tag, r) in &self.running {
            for (i, s) in r.streams.iter().enumerate().filter(|(_, s)| s.open) {
                srcs.push(Src::Out(tag, i));
                fds.push(PollFd::new(s.fd.as_fd(), PollFlags::POLLIN));
            }
            if let Some(e) = &r.errors {
                srcs.push(Src::Errors(tag));
                fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            }
        }
        let now = Instant::now();
        let next_deadline = self
            .running
            .values()
            .filter(|r| r.ended_by.is_none() && r.exit.is_none())
            .flat_map(|r| [r.deadline, r.cpu_time.map(|_| now + super::CPU_CHECK)])
            .flatten()
            .min();
        let timeout = match next_deadline {
            Some(d) => {
                PollTimeout::try_from(d.saturating_duration_since(now).as_millis().clamp(1, 60_000) as i32)
                    .unwrap_or(PollTimeout::NONE)
            }
            None => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => return Ok(()),
            Err(e) => return Err(Error::Sys { context: "poll".into(), source: e }),
            Ok(_) => {}
        }
        let woke: Vec<Src> =
            srcs.iter().zip(fds.iter()).filter(|(_, f)| f.any().unwrap_or(false)).map(|(s, _)| *s).collect();
        drop(fds);
        for src in woke {
            match src {
                Src::Signal => {
                    let sig = self.signals.read_signal().ok().flatten().map(|s| s.ssi_signo);
                    return Err(Error::Usage(format!("stopped by signal {}", sig.unwrap_or(0))));
                }
                Src::Listener => self.accept(),
                Src::Conn(k) => self.read_conn(k),
                Src::Zygote => self.handle_zygote_reply()?,
                Src::Out(tag, i) => {
                    let Some(r) = self.running.get_mut(&tag) else { continue };
                    if r.streams[i].read_some() && r.on_output_limit == OnOutputLimit::Kill {
                        end(r, EndedBy::Output);
                    }
                }
                Src::Errors(tag) => {
                    let Some(r) = self.running.get_mut(&tag) else { continue };
                    let mut buf = [0u8; 4096];
                    match r.errors.as_ref().map(|fd| nix::unistd::read(fd.as_fd(), &mut buf)) {
                        Some(Ok(0)) | Some(Err(_)) | None => r.errors = None,
                        Some(Ok(n)) => r
                            .error_text
                            .extend_from_slice(&buf[..n.min(65536 - r.error_text.len().min(65536))]),
                    }
                }
            }
        }
        let now = Instant::now();
        for r in self.running.values_mut() {
            if r.ended_by.is_none() && r.exit.is_none() {
                if r.deadline.is_some_and(|d| d <= now) {
                    end(r, EndedBy::WallTime);
                } else if r
                    .cpu_time
                    .is_some_and(|c| self.slots[r.slot].meter.read().cpu_ns() >= c.as_nanos() as u64)
                {
                    end(r, EndedBy::CpuTime);
                }
            }
        }
        self.complete();
        Ok(())
    }

    fn accept(&mut self) {
        let mut accepted = Vec::new();
        if let Some(l) = &self.listener {
            while let Ok((stream, _)) = l.accept() {
                // A client that stops reading its results is dropped rather than stalling the rest.
                let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
                if let Ok(out) = stream.try_clone() {
                    accepted.push((OwnedFd::from(stream), OwnedFd::from(out)));
                }
            }
        }
        for (input, output) in accepted {
            self.add_conn(input, output);
        }
    }

    fn read_conn(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(&k) else { return };
        let mut buf = [0u8; 64 * 1024];
        loop {
            match nix::unistd::read(c.input.as_fd(), &mut buf) {
                Ok(0) => {
                    c.eof = true;
                    break;
                }
                Ok(n) => c.buf.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(_) => {
                    c.eof = true;
                    break;
                }
            }
        }
        let mut lines = Vec::new();
        while let Some(nl) = c.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = c.buf.drain(..=nl).collect();
            lines.push(line);
        }
        if c.eof && !c.buf.is_empty() {
            lines.push(std::mem::take(&mut c.buf));
        }
        if c.buf.len() > MAX_LINE {
            c.buf.clear();
            lines.push(b"(a request line longer than 16 MiB)".to_vec());
        }
        for line in lines {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            c.pending += 1;
            self.queue.push_back((k, parse_request(&line)));
        }
    }

    /// Starts queued requests on free slots; a request that cannot start is answered at once.
    fn dispatch(&mut self) {
        while !self.queue.is_empty() {
            let Some(slot) = self.slots.iter().position(|s| !s.busy) else { return };
            let (conn, req) = self.queue.pop_front().expect("not empty");
            let req = match req {
                Ok(r) => r,
                Err(e) => {
                    let outcome = Outcome::setup_error_in("request", &e);
                    self.respond(conn, &Value::Null, &outcome);
                    continue;
                }
            };
            let id = req.id.clone();
            if let Err(e) = self.launch(conn, slot, req) {
                let outcome = Outcome::setup_error_in("request", &e);
                self.respond(conn, &id, &outcome);
            }
        }
    }

    fn launch(&mut self, conn: usize, slot: usize, req: RunRequest) -> Result<()> {
        let base = &self.opts.base;
        let field = |name: &str, e: String| Error::Usage(format!("{name}: {e}"));
        let timeout = match &req.timeout {
            Some(t) => {
                Some(humantime::parse_duration(t).map_err(|e| field("timeout", format!("{t:?}: {e}")))?)
            }
            None => base.timeout,
        };
        let limit = |v: &Option<String>, name: &str, default: u64| match v {
            Some(s) => profile_limits::parse_bytes(s).map_err(|e| field(name, e)),
            None => Ok(default),
        };
        let stdout_limit = limit(&req.stdout_limit, "stdout_limit", base.stdout_limit)?;
        let stderr_limit = limit(&req.stderr_limit, "stderr_limit", base.stderr_limit)?;
        if req.args.is_empty() {
            return Err(field("args", "empty: name the program to run".into()));
        }
        let mut process = self.config.process().clone();
        process.set_args(Some(req.args));
        let mut env = process.env().clone().unwrap_or_default();
        env.extend(req.env);
        process.set_env(Some(env));
        if let Some(cwd) = req.cwd {
            if !cwd.starts_with('/') {
                return Err(field("cwd", format!("{cwd:?} is not absolute")));
            }
            process.set_cwd(cwd.into());
        }
        let stdin = stdin_of(req.stdin.as_deref())?;
        let (out_r, out_w) = super::pipe()?;
        let (err_r, err_w) = super::pipe()?;
        let (errors_r, errors_w) = super::pipe()?;
        let s = &mut self.slots[slot];
        s.meter.reset();
        // A run ends with its pid namespace; a slot still holding processes is swept first.
        if !s.cgroup.procs().is_empty() {
            let _ = s.cgroup.signal_all(Signal::SIGKILL);
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        let mut fds = vec![stdin.as_fd(), out_w.as_fd(), err_w.as_fd(), errors_w.as_fd()];
        fds.extend(s.join.iter().map(|(_, f)| f.as_fd()));
        let cgroup_files = s.join.iter().map(|(p, _)| p.display().to_string()).collect();
        let msg = zygote::Request::Run { tag, slot, process: Box::new(process), cgroup_files };
        self.to_zygote
            .send_with_fds(&msg, &fds)
            .map_err(|e| Error::Stage { stage: "zygote".into(), message: format!("send a run: {e}") })?;
        s.busy = true;
        let t0 = Instant::now();
        self.running.insert(
            tag,
            Running {
                conn,
                id: req.id,
                slot,
                t0,
                deadline: timeout.map(|t| t0 + t),
                on_output_limit: base.on_output_limit,
                streams: [Stream::new(out_r, stdout_limit, None), Stream::new(err_r, stderr_limit, None)],
                errors: Some(errors_r),
                error_text: Vec::new(),
                pidfd: None,
                exit: None,
                failed: None,
                ended_by: None,
                cpu_time: base.cpu_time,
            },
        );
        Ok(())
    }

    fn handle_zygote_reply(&mut self) -> Result<()> {
        let (reply, mut fds) = self.from_zygote.recv_with_fds().map_err(|e| Error::Stage {
            stage: "zygote".into(),
            message: format!("the sandbox's zygote is gone: {e}"),
        })?;
        match reply {
            Reply::Started { tag } => {
                if let Some(r) = self.running.get_mut(&tag) {
                    r.pidfd = fds.pop();
                    if r.ended_by.is_some() {
                        if let Some(fd) = &r.pidfd {
                            super::kill_run(fd);
                        }
                    }
                }
            }
            Reply::Exited { tag, code, signal } => {
                if let Some(r) = self.running.get_mut(&tag) {
                    r.exit = Some((code, signal));
                    r.pidfd = None;
                }
            }
            Reply::Failed { tag, message } => {
                if let Some(r) = self.running.get_mut(&tag) {
                    r.failed = Some(message);
                    r.exit = Some((None, None));
                    r.errors = None;
                }
            }
        }
        Ok(())
    }

    /// Answers every run whose program ended and whose pipes are drained.
    fn complete(&mut self) {
        let done: Vec<u64> = self
            .running
            .iter()
            .filter(|(_, r)| {
                r.exit.is_some()
                    && r.errors.is_none()
                    && (r.failed.is_some() || r.streams.iter().all(|s| !s.open))
            })
            .map(|(&t, _)| t)
            .collect();
        for tag in done {
            let r = self.running.remove(&tag).expect("listed");
            let slot = &mut self.slots[r.slot];
            slot.busy = false;
            let usage = slot.meter.read();
            let outcome = if let Some(message) = r.failed {
                Outcome::setup_error_in("zygote", &Error::Usage(message))
            } else if !r.error_text.is_empty() {
                let cause = String::from_utf8_lossy(&r.error_text).into_owned();
                Outcome::setup_error_in("init", &Error::Usage(cause))
            } else {
                let [out, err] = r.streams;
                conclude(r.ended_by, r.exit.unwrap_or((None, None)), usage, r.t0.elapsed(), out, err)
            };
            self.respond(r.conn, &r.id, &outcome);
        }
    }

    fn respond(&mut self, conn: usize, id: &Value, outcome: &Outcome) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.pending = c.pending.saturating_sub(1);
        if c.broken {
            return;
        }
        let mut v = serde_json::to_value(outcome).expect("outcome serializes");
        v.as_object_mut().expect("an object").insert("id".into(), id.clone());
        let mut line = serde_json::to_vec(&v).expect("value serializes");
        line.push(b'\n');
        if (&c.output).write_all(&line).is_err() {
            c.broken = true;
        }
    }

    fn drop_finished_conns(&mut self) {
        self.conns.retain(|_, c| !(c.eof && c.pending == 0));
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        // The zygote is pid 1 of every run's outer pid namespace: killing it ends them all.
        if let Ok(c) = Container::load(&self.opts.base.root, &self.id) {
            if let Err(e) = c.delete(true) {
                log::warn!("serve: delete the zygote: {e}");
            }
        }
        for s in self.slots.drain(..) {
            if let Err(e) = s.cgroup.destroy(Duration::from_secs(10)) {
                log::warn!("serve: {e}");
            }
        }
        if let Some(p) = &self.opts.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Ends a run for `why`, unless something else ended it first.
fn end(r: &mut Running, why: EndedBy) {
    if r.ended_by.is_none() {
        r.ended_by = Some(why);
        // Without its pidfd yet, the run is killed when the zygote reports it started.
        if let Some(fd) = &r.pidfd {
            super::kill_run(fd);
        }
    }
}

fn parse_request(line: &[u8]) -> Result<RunRequest> {
    let mut de = serde_json::Deserializer::from_slice(line);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        Error::Usage(format!(
            "request {}: {}",
            if path == "." { "line".into() } else { path },
            e.into_inner()
        ))
    })
}

/// A memfd holding `text`, at offset 0, or /dev/null.
fn stdin_of(text: Option<&str>) -> Result<OwnedFd> {
    let Some(text) = text else {
        return std::fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| Error::Io { context: "/dev/null".into(), source: e });
    };
    let fd = nix::sys::memfd::memfd_create(c"stdin", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| Error::Sys { context: "memfd_create".into(), source: e })?;
    let mut f = std::fs::File::from(fd);
    f.write_all(text.as_bytes()).map_err(|e| Error::Io { context: "stdin".into(), source: e })?;
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::Io { context: "stdin".into(), source: e })?;
    Ok(OwnedFd::from(f))
}
