//! The `nonewprivs` test program: installed setuid root, it prints the effective
//! uid it runs with (0 unless no_new_privs stopped the setuid from taking effect).

unsafe extern "C" {
    fn geteuid() -> u32;
}

fn main() {
    // SAFETY: geteuid has no arguments and cannot fail.
    println!("Effective uid: {}", unsafe { geteuid() });
}
