//! Terminals for foreground `run` and `exec` without `--console-socket`: the init
//! sends the pty master over an internal socket pair, and the runtime copies
//! between its own stdio and the master until the process exits.

use crate::error::{Error, Result};
use crate::sys;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A connected stream pair: one end goes to the init as its console socket.
pub fn console_pair() -> Result<(OwnedFd, OwnedFd)> {
    let (a, b) =
        std::os::unix::net::UnixStream::pair().map_err(|e| Error::sys("console socketpair", e))?;
    Ok((OwnedFd::from(a), OwnedFd::from(b)))
}

/// Receives one fd sent with SCM_RIGHTS.
pub fn recv_fd(sock: &OwnedFd) -> Result<OwnedFd> {
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg points at live buffers sized above.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    sys::check(n as libc::c_long).map_err(|e| Error::sys("receiving the terminal", e))?;
    // SAFETY: the control buffer was filled by recvmsg.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(Error::Init("the container sent no terminal".into()));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Puts a terminal in raw mode and restores it when dropped.
struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: i32) -> Option<RawMode> {
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr/tcsetattr on a valid fd with a valid termios.
        unsafe {
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes read in `enter`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// Set by SIGWINCH: this terminal changed size; the proxy passes it on.
static RESIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    RESIZED.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn copy_winsize(from: i32, to: i32) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: ioctls with a valid winsize.
    unsafe {
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Copies stdin to the master and the master to stdout until `pid` exits; returns
/// its wait status. A stdin that is not a terminal ends with an EOT (Ctrl-D).
pub fn proxy(master: OwnedFd, pid: i32) -> Result<i32> {
    let m = master.as_raw_fd();
    // SAFETY: isatty on fd 0.
    let interactive = unsafe { libc::isatty(0) } == 1;
    let _raw = if interactive { RawMode::enter(0) } else { None };
    if interactive {
        copy_winsize(0, m);
        // SAFETY: installing a handler that only stores to an atomic.
        unsafe { libc::signal(libc::SIGWINCH, on_winch as *const () as libc::sighandler_t) };
    }
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: m,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
        if RESIZED.swap(false, std::sync::atomic::Ordering::Relaxed) {
            copy_winsize(0, m);
        }
        if n > 0 && fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            // SAFETY: reading into a valid buffer.
            let r = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                break; // EIO: every slave fd is closed, the process is gone.
            }
            write_all(1, &buf[..r as usize]);
        }
        if n > 0 && fds[1].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
            // SAFETY: reading into a valid buffer.
            let r = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                stdin_open = false;
                if !interactive {
                    write_all(m, b"\x04");
                }
            } else {
                write_all(m, &buf[..r as usize]);
            }
        }
        let mut status = 0;
        // SAFETY: non-blocking wait for our own child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            drain(m, &mut buf);
            return Ok(status);
        }
    }
    sys::waitpid(pid).map_err(|e| Error::sys("waiting for the container", e))
}

fn drain(m: i32, buf: &mut [u8]) {
    loop {
        let mut p = libc::pollfd {
            fd: m,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, then a read into a valid buffer.
        if unsafe { libc::poll(&mut p, 1, 0) } <= 0 {
            return;
        }
        let r = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            return;
        }
        write_all(1, &buf[..r as usize]);
    }
}

fn write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing from a valid buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
}
