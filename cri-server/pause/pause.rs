//! berth's built-in pause: the process that holds a pod's namespaces. It sleeps
//! until SIGTERM or SIGINT, and reaps the orphans it inherits as a pid
//! namespace's init. Built by berthd's build script as a static executable and
//! embedded in berthd, so a pod needs no pause image pulled. No std: libc's
//! start-up and four calls keep it a few kilobytes.

#![no_std]
#![no_main]

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
const SIGCHLD: i32 = 17;
const WNOHANG: i32 = 1;

#[link(name = "c")]
unsafe extern "C" {
    fn signal(sig: i32, handler: extern "C" fn(i32)) -> usize;
    fn pause() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn _exit(code: i32) -> !;
}

extern "C" fn stop(_: i32) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { _exit(0) }
}

extern "C" fn reap(_: i32) {
    let mut status = 0;
    // SAFETY: waitpid is async-signal-safe; reaps every exited child.
    while unsafe { waitpid(-1, &mut status, WNOHANG) } > 0 {}
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: leaving at once is all a pause can do.
    unsafe { _exit(2) }
}

#[unsafe(no_mangle)]
extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    // SAFETY: installing handlers that only call async-signal-safe functions.
    unsafe {
        signal(SIGINT, stop);
        signal(SIGTERM, stop);
        signal(SIGCHLD, reap);
        loop {
            pause();
        }
    }
}
