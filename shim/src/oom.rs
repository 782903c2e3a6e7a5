//! TaskOOM events: a thread per running container wakes on the kernel's OOM notification
//! (hutch's OomWatcher) and reports each new OOM kill once. The exit handler reports too,
//! before TaskExit, so that an OOM that ended the container is known when its exit is.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_shim::protos::events::task::TaskOOM;
use hutch::oom::OomWatcher;

use crate::events::Events;

pub struct Watch {
    id: String,
    dir: PathBuf,
    v2: bool,
    /// OOM kills reported so far (the kernel's count when watching began, at first).
    reported: Mutex<u64>,
    stop: AtomicBool,
    events: Events,
}

impl Watch {
    /// Starts watching the cgroup of container `id` whose memory files are in `dir`.
    pub fn start(id: &str, dir: PathBuf, v2: bool, events: Events) -> std::io::Result<Arc<Watch>> {
        let mut watcher = OomWatcher::new(dir.clone(), v2)?;
        let w = Arc::new(Watch {
            id: id.to_string(),
            reported: Mutex::new(hutch::oom::kills(&dir, v2)),
            dir,
            v2,
            stop: AtomicBool::new(false),
            events,
        });
        let me = w.clone();
        std::thread::Builder::new().name("oom".into()).spawn(move || {
            while !me.stop.load(Ordering::Relaxed) {
                watcher.wait(Duration::from_secs(1));
                me.report();
            }
        })?;
        Ok(w)
    }

    /// Publishes TaskOOM if the kernel has counted OOM kills not reported yet.
    pub fn report(&self) {
        let total = hutch::oom::kills(&self.dir, self.v2);
        let mut reported = self.reported.lock().expect("oom lock");
        if total > *reported {
            *reported = total;
            self.events.send(TaskOOM { container_id: self.id.clone(), ..Default::default() });
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
