//! Device access control on cgroup v2: an eBPF program of type CGROUP_DEVICE,
//! attached to the container's cgroup, answers each open/mknod of a device node.
//!
//! The rules are the same list v1 writes to devices.allow/deny. v1 applies them in
//! order, so the last rule that matches a request decides; the program checks them
//! from last to first and returns at the first match, denying when none matches.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One eBPF instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const MOV64_X: u8 = 0xbf; // dst = src
const MOV64_K: u8 = 0xb7; // dst = imm
const RSH64_K: u8 = 0x77; // dst >>= imm
const AND64_K: u8 = 0x57; // dst &= imm
const JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JEQ_K: u8 = 0x15; // if dst == imm: pc += off
const EXIT: u8 = 0x95;

// bpf_cgroup_dev_ctx: access_type = type | access << 16, then major, minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |a, c| {
        a | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

/// The program for `rules`: r2 = type, r3 = requested access, r4 = major, r5 = minor.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV64_X, 3, 2, 0, 0),
        insn(RSH64_K, 3, 0, 0, 16),
        insn(AND64_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // Each check jumps past the rest of its block ("next") on a mismatch.
        let mut checks: Vec<(Insn, bool)> = Vec::new();
        match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => {}
            LinuxDeviceType::B => checks.push((insn(JNE_K, 2, 0, 0, DEV_BLOCK), true)),
            // Fifos are not device nodes; a `p` rule can never match one.
            LinuxDeviceType::P => continue,
            LinuxDeviceType::C | LinuxDeviceType::U => {
                checks.push((insn(JNE_K, 2, 0, 0, DEV_CHAR), true))
            }
        }
        let acc = access_bits(
            rule.access()
                .as_deref()
                .filter(|a| !a.is_empty())
                .unwrap_or("rwm"),
        );
        if acc != ACC_READ | ACC_WRITE | ACC_MKNOD {
            checks.push((insn(MOV64_X, 6, 3, 0, 0), false));
            if rule.allow() {
                // Allowed only if every requested bit is granted.
                checks.push((insn(AND64_K, 6, 0, 0, !acc & 7), false));
                checks.push((insn(JNE_K, 6, 0, 0, 0), true));
            } else {
                // Denied if any requested bit is denied.
                checks.push((insn(AND64_K, 6, 0, 0, acc), false));
                checks.push((insn(JEQ_K, 6, 0, 0, 0), true));
            }
        }
        if let Some(m) = rule.major().filter(|m| *m >= 0) {
            checks.push((insn(JNE_K, 4, 0, 0, m as i32), true));
        }
        if let Some(m) = rule.minor().filter(|m| *m >= 0) {
            checks.push((insn(JNE_K, 5, 0, 0, m as i32), true));
        }
        let unconditional = checks.is_empty();
        let len = checks.len() + 2;
        for (i, (mut ins, jumps_to_next)) in checks.into_iter().enumerate() {
            if jumps_to_next {
                ins.off = (len - i - 1) as i16;
            }
            prog.push(ins);
        }
        prog.push(insn(MOV64_K, 0, 0, 0, i32::from(rule.allow())));
        prog.push(insn(EXIT, 0, 0, 0, 0));
        if unconditional {
            // This rule matches everything: earlier rules can never be reached, and
            // the verifier refuses unreachable instructions.
            return prog;
        }
    }
    prog.push(insn(MOV64_K, 0, 0, 0, 0));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<libc::c_long> {
    // SAFETY: the bpf syscall with a zero-padded attr union of sufficient size.
    crate::sys::check(unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) })
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`.
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    let prog = program(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 4096];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[24..28].copy_from_slice(&1u32.to_ne_bytes()); // log_level
    attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
    attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
    let fd = bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let msg = String::from_utf8_lossy(&log)
            .trim_end_matches('\0')
            .trim()
            .to_string();
        Error::cgroup(dir, format!("loading the device eBPF program: {e} {msg}"))
    })?;
    // SAFETY: BPF_PROG_LOAD returned a new fd that we own.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = crate::sys::open(dir, libc::O_DIRECTORY | libc::O_RDONLY)
        .map_err(|e| Error::cgroup(dir, e.to_string()))?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cg.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog_fd.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    bpf(BPF_PROG_ATTACH, &mut attr)
        .map_err(|e| Error::cgroup(dir, format!("attaching the device eBPF program: {e}")))?;
    // The attachment holds the program; our fd can go.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    }

    /// A tiny interpreter for the instructions `program` emits, to check decisions
    /// without the kernel.
    fn run(prog: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let ctx = [(typ | (access << 16)) as i64, major as i64, minor as i64];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = ctx[(i.off / 4) as usize],
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as i64,
                RSH64_K => r[dst] >>= i.imm,
                AND64_K => r[dst] &= i.imm as i64,
                JNE_K if r[dst] != i.imm as i64 => pc = (pc as i64 + i.off as i64) as usize,
                JEQ_K if r[dst] == i.imm as i64 => pc = (pc as i64 + i.off as i64) as usize,
                JNE_K | JEQ_K => {}
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn last_matching_rule_decides() {
        let rules = [
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::C, Some(136), None, "rw"),
            rule(true, LinuxDeviceType::C, Some(1), Some(5), "r"),
            rule(false, LinuxDeviceType::C, Some(1), Some(3), "w"),
        ];
        let p = program(&rules);
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "null readable");
        assert_eq!(
            run(&p, DEV_CHAR, rw, 1, 3),
            0,
            "null write denied by the last rule"
        );
        assert_eq!(run(&p, DEV_CHAR, rw, 136, 7), 1, "any pts");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_MKNOD, 136, 7),
            0,
            "pts mknod not granted"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(run(&p, DEV_CHAR, rw, 1, 5), 0, "zero is read-only");
        assert_eq!(
            run(&p, DEV_BLOCK, ACC_READ, 1, 3),
            0,
            "a block device 1:3 is not /dev/null"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 10, 200), 0, "default deny");
    }

    #[test]
    fn empty_rules_deny_everything() {
        assert_eq!(run(&program(&[]), DEV_CHAR, ACC_READ, 1, 3), 0);
    }

    /// The kernel enforces the program: a process in the cgroup may open /dev/null
    /// but not /dev/zero. Needs root and a cgroup2 mount (unified, or hybrid's).
    #[test]
    fn kernel_enforces_the_program() {
        let base = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .map(Path::new)
            .find(|p| super::super::is_unified(p))
            .expect("a cgroup2 mount");
        struct Dir(std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let dir = Dir(base.join(format!("berth-bpf-test-{}", std::process::id())));
        std::fs::create_dir(&dir.0).unwrap();
        let rules = [
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        ];
        attach(&dir.0, &rules).unwrap();
        let procs = crate::sys::cstring(dir.0.join("cgroup.procs"));
        // SAFETY: the child only makes raw syscalls and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                let joined = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                let null_ok = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) >= 0;
                let zero_denied = libc::open(c"/dev/zero".as_ptr(), libc::O_RDONLY) < 0
                    && *libc::__errno_location() == libc::EPERM;
                libc::_exit(
                    i32::from(joined) | i32::from(null_ok) << 1 | i32::from(zero_denied) << 2,
                );
            }
        }
        let status = crate::sys::waitpid(pid).unwrap();
        assert_eq!(
            libc::WEXITSTATUS(status),
            7,
            "joined, /dev/null allowed, /dev/zero denied"
        );
    }
}
