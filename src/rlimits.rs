//! `process.rlimits`.

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

pub fn resource(t: PosixRlimitType) -> Resource {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

pub fn apply(limits: &[PosixRlimit]) -> Result<(), String> {
    for (i, rl) in limits.iter().enumerate() {
        let res = resource(rl.typ());
        setrlimit(res, rl.soft(), rl.hard()).map_err(|e| {
            let hint = match getrlimit(res) {
                Ok((_, hard)) if e == nix::errno::Errno::EPERM && rl.hard() > hard => format!(
                    " (the hard limit here is {hard}; raising it needs CAP_SYS_RESOURCE in the initial user namespace, which hutch lacks here)"
                ),
                _ => String::new(),
            };
            format!("process.rlimits[{i}] ({:?} soft {} hard {}): {e}{hint}", rl.typ(), rl.soft(), rl.hard())
        })?;
    }
    Ok(())
}
