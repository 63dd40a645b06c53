//! The exit file: `<state-dir>/exit`, JSON, written atomically (temporary file,
//! fsync, rename), so whoever watches the directory sees it whole or not at all.

use std::io::Write;
use std::path::Path;

pub fn write(state_dir: &Path, pid: i32, status: i32, oom_killed: bool) -> std::io::Result<()> {
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    };
    let signal = if libc::WIFSIGNALED(status) {
        libc::WTERMSIG(status)
    } else {
        0
    };
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let mut ts = [0u8; 30];
    crate::cri_log::format_timestamp(now.tv_sec, now.tv_nsec as u32, &mut ts);
    let ns = now.tv_sec * 1_000_000_000 + now.tv_nsec;
    let ts = std::str::from_utf8(&ts).unwrap_or_default();
    let json = format!(
        "{{\"pid\":{pid},\"exit_code\":{code},\"signal\":{signal},\"oom_killed\":{oom_killed},\"finished_at\":\"{ts}\",\"finished_at_ns\":{ns}}}\n"
    );
    let tmp = state_dir.join("exit.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(json.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, state_dir.join("exit"))
}
