//! Typed one-way channels between the process stages.
//!
//! A channel is a SOCK_SEQPACKET socketpair: the kernel keeps message boundaries, so one `send`
//! is one `recv`, and file descriptors travel beside a message with SCM_RIGHTS. Each end is used
//! in one direction only; a conversation uses two channels. A packet socket delivers a message
//! whole or not at all, so a stage that dies mid-way leaves a clean EOF, never half a message.
//! Messages are JSON: small, and easy to read in a debug log.

use std::io::{IoSlice, IoSliceMut};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Large enough for any message the stages exchange; a longer one is an error, not a truncation.
const MAX_MESSAGE: usize = 64 * 1024;
const MAX_FDS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the other side closed the channel")]
    Closed,
    #[error("channel i/o: {0}")]
    Sys(#[from] nix::Error),
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
}

pub struct Sender<T> {
    fd: OwnedFd,
    _msg: PhantomData<fn(T)>,
}

pub struct Receiver<T> {
    fd: OwnedFd,
    _msg: PhantomData<fn() -> T>,
}

/// A new channel. Both ends are close-on-exec: they cross fork, never exec.
pub fn channel<T>() -> nix::Result<(Sender<T>, Receiver<T>)> {
    let (tx, rx) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    Ok((Sender { fd: tx, _msg: PhantomData }, Receiver { fd: rx, _msg: PhantomData }))
}

impl<T: Serialize> Sender<T> {
    pub fn send(&self, msg: &T) -> Result<(), ChannelError> {
        self.send_with_fds(msg, &[])
    }

    pub fn send_with_fds(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> Result<(), ChannelError> {
        let bytes = serde_json::to_vec(msg).map_err(|e| ChannelError::Decode(e.to_string()))?;
        if bytes.len() > MAX_MESSAGE {
            return Err(ChannelError::TooLarge(bytes.len()));
        }
        let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let cmsgs = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsgs };
        let iov = [IoSlice::new(&bytes)];
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
        Ok(())
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    pub fn recv(&self) -> Result<T, ChannelError> {
        Ok(self.recv_with_fds()?.0)
    }

    /// Receives one message and the descriptors that came with it (owned, close-on-exec).
    pub fn recv_with_fds(&self) -> Result<(T, Vec<OwnedFd>), ChannelError> {
        // The buffer fits the waiting message: zeroing MAX_MESSAGE bytes for every message
        // would fault in 16 fresh pages in each stage, a visible part of a container's start.
        let mut buf = vec![0u8; self.next_len()?.clamp(1, MAX_MESSAGE)];
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (len, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for c in msg.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: the kernel just installed these descriptors for us.
                            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                        }
                    }
                    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                        return Err(ChannelError::TooLarge(msg.bytes));
                    }
                    break (msg.bytes, fds);
                }
            }
        };
        if len == 0 {
            return Err(ChannelError::Closed);
        }
        let msg = decode(&buf[..len])?;
        Ok((msg, fds))
    }
}

impl<T> Receiver<T> {
    /// The length of the next message, once one is there (0 at EOF). MSG_TRUNC makes the
    /// kernel report a packet's whole length even into an empty buffer.
    fn next_len(&self) -> Result<usize, ChannelError> {
        loop {
            // SAFETY: a zero-length peek writes nothing to the (null) buffer.
            let n = unsafe {
                libc::recv(self.fd.as_raw_fd(), std::ptr::null_mut(), 0, libc::MSG_PEEK | libc::MSG_TRUNC)
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            match nix::Error::last() {
                nix::Error::EINTR => continue,
                e => return Err(e.into()),
            }
        }
    }
}

/// Decodes one message (public so that a fuzz target can exercise exactly this path).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ChannelError> {
    serde_json::from_slice(bytes).map_err(|e| ChannelError::Decode(e.to_string()))
}

impl<T> AsFd for Sender<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<T> AsFd for Receiver<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Msg {
        Hello(u32),
        Bye { why: String },
    }

    #[test]
    fn keeps_message_boundaries_and_order() {
        let (tx, rx) = channel::<Msg>().unwrap();
        tx.send(&Msg::Hello(7)).unwrap();
        tx.send(&Msg::Bye { why: "done".into() }).unwrap();
        assert_eq!(rx.recv().unwrap(), Msg::Hello(7));
        assert_eq!(rx.recv().unwrap(), Msg::Bye { why: "done".into() });
    }

    #[test]
    fn passes_descriptors() {
        let (tx, rx) = channel::<Msg>().unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        tx.send_with_fds(&Msg::Hello(1), &[file.as_fd()]).unwrap();
        let (msg, fds) = rx.recv_with_fds().unwrap();
        assert_eq!(msg, Msg::Hello(1));
        assert_eq!(fds.len(), 1);
        assert_ne!(fds[0].as_raw_fd(), file.as_raw_fd());
    }

    #[test]
    fn messages_of_any_size_arrive_whole() {
        let (tx, rx) = channel::<Msg>().unwrap();
        let long = "x".repeat(40_000);
        tx.send(&Msg::Bye { why: long.clone() }).unwrap();
        tx.send(&Msg::Hello(2)).unwrap();
        assert_eq!(rx.recv().unwrap(), Msg::Bye { why: long });
        assert_eq!(rx.recv().unwrap(), Msg::Hello(2));
    }

    #[test]
    fn closed_sender_is_eof() {
        let (tx, rx) = channel::<Msg>().unwrap();
        drop(tx);
        assert!(matches!(rx.recv(), Err(ChannelError::Closed)));
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(decode::<Msg>(b"{\"Nope\":1}"), Err(ChannelError::Decode(_))));
    }
}
