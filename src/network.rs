//! The container's network namespace from inside: bringing its loopback interface up.
//!
//! A new network namespace has only `lo`, and it is down. A sandbox that asks for `loopback`
//! networking gets it up (127.0.0.1 and ::1 inside its own namespace, nothing of the host's).

/// The annotation that asks for `lo` up in a new network namespace ("up").
pub const LOOPBACK_ANNOTATION: &str = "io.github.hutch.network.loopback";

/// Sets IFF_UP on `lo` in the calling process's network namespace.
pub fn loopback_up() -> Result<(), String> {
    // SAFETY: a plain socket call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("loopback: socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a new descriptor nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    use std::os::fd::AsRawFd;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(format!("loopback: get flags of lo: {}", std::io::Error::last_os_error()));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(format!("loopback: set lo up: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Whether `config` asks for `lo` up.
pub fn wants_loopback(spec: &oci_spec::runtime::Spec) -> bool {
    spec.annotations().as_ref().and_then(|a| a.get(LOOPBACK_ANNOTATION)).is_some_and(|v| v == "up")
}
