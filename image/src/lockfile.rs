//! Advisory file locks (`flock`) that berthd and the `berth` CLI share: one on the
//! image records, one that keeps garbage collection out of running pulls.

use crate::error::{ImageError, Result};
use std::os::fd::AsRawFd;
use std::path::Path;

/// A held flock, released on drop.
pub struct Lock(std::fs::File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own open file.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Locks `path` (created if missing), shared or exclusive. With `wait` false,
/// returns None at once when another holder is in the way.
pub fn lock(path: &Path, exclusive: bool, wait: bool) -> Result<Option<Lock>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| ImageError::io("opening", path, e))?;
    let mut op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    if !wait {
        op |= libc::LOCK_NB;
    }
    // SAFETY: flock on a file we just opened.
    if unsafe { libc::flock(f.as_raw_fd(), op) } == -1 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        return Err(ImageError::io("locking", path, e));
    }
    Ok(Some(Lock(f)))
}
