//! Run inside a container by the seccomp test: tries what the RuntimeDefault
//! profile must refuse and prints one `name=result` per line, result `ok` or the
//! errno's name: unshare of a user namespace, keyctl, ptrace of another process
//! (a child it forks), and a tmpfs mount.

fn result(rc: libc::c_long) -> String {
    if rc >= 0 {
        return "ok".into();
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        Some(e) => format!("errno{e}"),
        None => "unknown".into(),
    }
}

fn main() {
    // It mounts and unshares: never on a host by mistake.
    if std::env::var_os("BERTH_PROBE_IN_CONTAINER").is_none() {
        eprintln!("berth-syscall-probe runs only inside a test container");
        std::process::exit(2);
    }
    let _ = std::fs::create_dir_all("/probe-mnt");
    // SAFETY: each call is a plain syscall on this process or its own child.
    unsafe {
        let child = libc::fork();
        if child == 0 {
            libc::pause();
            libc::_exit(0);
        }
        let rc = libc::ptrace(libc::PTRACE_ATTACH, child, 0, 0);
        println!("ptrace={}", result(rc));
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);

        // KEYCTL_GET_KEYRING_ID of the session keyring, not creating it.
        let rc = libc::syscall(libc::SYS_keyctl, 0, -3, 0);
        println!("keyctl={}", result(rc));

        let rc = libc::mount(
            c"none".as_ptr(),
            c"/probe-mnt".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        );
        println!("mount={}", result(rc as libc::c_long));

        let rc = libc::unshare(libc::CLONE_NEWUSER);
        println!("unshare-user={}", result(rc as libc::c_long));
    }
}
