//! The intermediate stage: enters and creates namespaces, then clones init into them.

use nix::sched::CloneFlags;
use nix::unistd::{setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::LinuxNamespaceType;

use super::init;
use super::message::{InitMsg, IntermediateMsg, MainMsg, StageFailure};
use super::spawn::{ChildContext, Job};
use crate::channel::{Receiver, Sender};
use crate::namespaces::{self, clone_flag};

const STAGE: &str = "intermediate";

pub(crate) fn run(
    ctx: ChildContext<'_>,
    rx: Receiver<MainMsg>,
    tx: Sender<IntermediateMsg>,
    init_tx: Sender<InitMsg>,
) -> ! {
    let code = match steps(ctx, &rx, &tx, init_tx) {
        Ok(()) => 0,
        Err(message) => {
            let _ = tx.send(&IntermediateMsg::Failed(StageFailure::new(STAGE, message)));
            1
        }
    };
    // SAFETY: leave without running atexit handlers or destructors shared with main.
    unsafe { libc::_exit(code) }
}

fn steps(
    ctx: ChildContext<'_>,
    rx: &Receiver<MainMsg>,
    tx: &Sender<IntermediateMsg>,
    init_tx: Sender<InitMsg>,
) -> Result<(), String> {
    let expect = |want: MainMsg| -> Result<(), String> {
        match rx.recv() {
            Ok(got) if got == want => Ok(()),
            Ok(got) => Err(format!("expected {want:?} from main, got {got:?}")),
            Err(e) => Err(format!("waiting for {want:?}: {e}")),
        }
    };
    let ask = |msg: IntermediateMsg| tx.send(&msg).map_err(|e| format!("send {msg:?}: {e}"));
    // First of all, into the container's cgroup, so that init and its children are born there.
    if let Some(plan) = &ctx.cgroup {
        plan.join_v1()?;
    }
    expect(MainMsg::Go)?;

    namespaces::join_all(&ctx.joins).map_err(|e| format!("linux.namespaces: join: {e}"))?;
    if matches!(ctx.job, Job::Create { .. } | Job::Zygote { .. }) {
        // A joined user namespace (a Kubernetes pod's, say) holds every capability for us,
        // but as its overflow uid: the mounts' directories could not be made. Its root, as
        // runc's init becomes, can.
        if ctx.joins.iter().any(|j| j.typ == LinuxNamespaceType::User) {
            become_root()?;
        }
        create_namespaces(ctx.config, &ask, &expect)?;
    }

    let pid = clone_parent().map_err(|e| format!("clone init: {e}"))?;
    if pid == 0 {
        drop((ctx.joins, rx, tx));
        if let Some(stdio) = &ctx.stdio {
            init::use_stdio(stdio);
        }
        let cgroup = init::LateCgroup::joined();
        init::run(ctx.config, ctx.job, init_tx, ctx.from_main, cgroup, ctx.seccomp, ctx.preserve_fds);
    }
    ask(IntermediateMsg::InitPid(pid))
}

/// clone3(CLONE_PARENT): init becomes a child of main, not of this short-lived stage.
fn clone_parent() -> std::io::Result<libc::pid_t> {
    // SAFETY: this process is single-threaded, so the child's copy of it is consistent.
    unsafe { super::clone::clone3(libc::CLONE_PARENT as u64, None) }
}

/// For a new container: the user namespace first (main writes its id maps), then the others
/// (main writes the time offsets before init is born into the new time namespace).
fn create_namespaces(
    config: &crate::config::Config,
    ask: &dyn Fn(IntermediateMsg) -> Result<(), String>,
    expect: &dyn Fn(MainMsg) -> Result<(), String>,
) -> Result<(), String> {
    if config.new_namespace(LinuxNamespaceType::User) {
        namespaces::unshare_flags(CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("linux.namespaces: unshare user: {e}"))?;
        ask(IntermediateMsg::NeedIdMaps)?;
        expect(MainMsg::IdMapsWritten)?;
        become_root()?;
    }

    let mut flags = CloneFlags::empty();
    for (typ, path) in config.namespaces() {
        if path.is_none() && typ != LinuxNamespaceType::User {
            flags |= clone_flag(typ);
        }
    }
    namespaces::unshare_flags(flags).map_err(|e| format!("linux.namespaces: unshare {flags:?}: {e}"))?;
    if config.new_namespace(LinuxNamespaceType::Time) {
        ask(IntermediateMsg::NeedTimeOffsets)?;
        expect(MainMsg::TimeOffsetsWritten)?;
    }
    Ok(())
}

/// In a new user namespace whose id maps main has written: become its uid and gid 0, which hold
/// every capability in it.
pub(super) fn become_root() -> Result<(), String> {
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| format!("linux.gidMappings: become gid 0 (is container gid 0 mapped?): {e}"))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| format!("linux.uidMappings: become uid 0 (is container uid 0 mapped?): {e}"))
}

/// The clone flags that start init straight from main, without this stage, when nothing needs
/// it: no namespace to join by path (setns must come before the new namespaces) and no time
/// offsets (they must be written before the first process enters the namespace, and a child
/// cloned with CLONE_NEWTIME is that process). The cgroup namespace is not among them: init
/// unshares it once it has joined its cgroup, so that the namespace is rooted there. spawn
/// clones with the user, pid and time flags among these; init unshares the others itself.
/// Saves a fork, an exit and three messages on every create.
pub(crate) fn direct_flags(
    config: &crate::config::Config,
    joins: &[crate::namespaces::Join],
) -> Option<CloneFlags> {
    let offsets = config.spec.linux().as_ref().and_then(|l| l.time_offsets().as_ref());
    if !joins.is_empty() || offsets.is_some_and(|o| !o.is_empty()) {
        return None;
    }
    let mut flags = CloneFlags::empty();
    for (typ, path) in config.namespaces() {
        if path.is_none() && typ != LinuxNamespaceType::Cgroup {
            flags |= clone_flag(typ);
        }
    }
    Some(flags)
}

/// The start of init when main cloned it directly (see `direct_flags`): what the intermediate
/// would have done for it, then the init order. It makes its other namespaces while main
/// writes its id maps, and joins its cgroup once main has made it (`init::LateCgroup`), or
/// joined it already through the inherited plan, or was born in it.
pub(crate) fn run_direct(ctx: ChildContext<'_>, init_tx: Sender<InitMsg>) -> ! {
    let prepared = (|| {
        if let Some(plan) = &ctx.cgroup {
            plan.join_v1()?;
        }
        namespaces::unshare_flags(ctx.unshare)
            .map_err(|e| format!("linux.namespaces: unshare {:?}: {e}", ctx.unshare))?;
        if ctx.config.new_namespace(LinuxNamespaceType::User) {
            match ctx.from_main.recv() {
                Ok(MainMsg::IdMapsWritten) => {}
                Ok(got) => return Err(format!("expected IdMapsWritten from main, got {got:?}")),
                Err(e) => return Err(format!("waiting for IdMapsWritten: {e}")),
            }
            become_root()?;
        }
        Ok(())
    })();
    if let Err(message) = prepared {
        let _ = init_tx.send(&InitMsg::Failed(StageFailure::new(init::STAGE, message)));
        // SAFETY: leave without running atexit handlers or destructors shared with main.
        unsafe { libc::_exit(1) }
    }
    if let Some(stdio) = &ctx.stdio {
        init::use_stdio(stdio);
    }
    let cgroup =
        init::LateCgroup::pending(ctx.config.new_namespace(LinuxNamespaceType::Cgroup), ctx.placement);
    init::run(ctx.config, ctx.job, init_tx, ctx.from_main, cgroup, ctx.seccomp, ctx.preserve_fds);
}
