//! The container process's identity and limits, applied in the child just before
//! exec: rlimits, oom_score_adj, user and groups, capabilities, no_new_privs, and
//! the lookup of the program in the container's PATH.

use crate::error::{Error, Result};
use crate::sys::{self, cstring};
use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, PosixRlimitType, Process};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn set_rlimits(process: &Process) -> Result<()> {
    for r in process.rlimits().as_deref().unwrap_or_default() {
        let resource = match r.typ() {
            PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
            PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
            PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
            PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
            PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
            PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
            PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
            PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
            PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
            PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
            PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
            PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
            PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
            PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
            PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
            PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
        };
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: lim is a valid rlimit.
        sys::check_int(unsafe { libc::setrlimit(resource, &lim) }).map_err(|e| {
            Error::config(
                "process.rlimits",
                format!("{:?} soft {} hard {}: {e}", r.typ(), r.soft(), r.hard()),
            )
        })?;
    }
    Ok(())
}

/// Sets oom_score_adj. Lowering it needs CAP_SYS_RESOURCE; where the runtime lacks
/// it, the value is clamped to the current one (as containerd does) instead of failing.
pub fn set_oom_score_adj(value: i32) -> Result<()> {
    let path = "/proc/self/oom_score_adj";
    match std::fs::write(path, value.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            let current: i32 = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            if value < current {
                Ok(())
            } else {
                Err(Error::config(
                    "process.oomScoreAdj",
                    format!("{value}: {e}"),
                ))
            }
        }
        Err(e) => Err(Error::config(
            "process.oomScoreAdj",
            format!("{value}: {e}"),
        )),
    }
}

fn to_caps(set: &Option<Capabilities>, held: &CapsHashSet) -> CapsHashSet {
    set.iter()
        .flatten()
        .filter_map(|c| Cap::from_str(&format!("CAP_{c}")).ok())
        // What the runtime itself does not hold cannot be given: clamp, as containerd does.
        .filter(|c| held.contains(c))
        .collect()
}

/// The capability sets asked for, clamped to those the runtime holds.
pub struct CapPlan {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl CapPlan {
    pub fn new(process: &Process) -> Result<CapPlan> {
        let held = caps::read(None, CapSet::Bounding).map_err(|e| {
            Error::sys("reading bounding set", std::io::Error::other(e.to_string()))
        })?;
        let empty = CapsHashSet::new();
        Ok(match process.capabilities() {
            Some(c) => CapPlan {
                bounding: to_caps(c.bounding(), &held),
                effective: to_caps(c.effective(), &held),
                permitted: to_caps(c.permitted(), &held),
                inheritable: to_caps(c.inheritable(), &held),
                ambient: to_caps(c.ambient(), &held),
            },
            None => CapPlan {
                bounding: empty.clone(),
                effective: empty.clone(),
                permitted: empty.clone(),
                inheritable: empty.clone(),
                ambient: empty,
            },
        })
    }

    /// Drops what is not in the bounding set; must run while still privileged.
    pub fn drop_bounding(&self) -> Result<()> {
        for c in caps::all() {
            if !self.bounding.contains(&c) {
                // A capability the kernel does not know cannot be dropped, nor needs to be.
                let _ = caps::drop(None, CapSet::Bounding, c);
            }
        }
        Ok(())
    }

    pub fn apply(&self) -> Result<()> {
        let err = |what: &str, e: caps::errors::CapsError| {
            Error::sys(
                format!("setting {what} capabilities"),
                std::io::Error::other(e.to_string()),
            )
        };
        caps::set(
            None,
            CapSet::Effective,
            &self
                .effective
                .intersection(&self.permitted)
                .copied()
                .collect(),
        )
        .or_else(|_| caps::set(None, CapSet::Effective, &self.effective))
        .map_err(|e| err("effective", e))?;
        caps::set(None, CapSet::Permitted, &self.permitted).map_err(|e| err("permitted", e))?;
        caps::set(None, CapSet::Effective, &self.effective).map_err(|e| err("effective", e))?;
        caps::set(None, CapSet::Inheritable, &self.inheritable)
            .map_err(|e| err("inheritable", e))?;
        caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient", e))?;
        for c in &self.ambient {
            // Ambient needs the cap in permitted and inheritable; skip what cannot be raised.
            let _ = caps::raise(None, CapSet::Ambient, *c);
        }
        Ok(())
    }
}

/// Switches to the process's user: groups, gid, uid. Capabilities survive the
/// switch (PR_SET_KEEPCAPS) so that `CapPlan::apply` can set them afterwards.
pub fn set_user(process: &Process, setgroups_allowed: bool) -> Result<()> {
    let u = process.user();
    if setgroups_allowed {
        let groups: Vec<libc::gid_t> = u.additional_gids().clone().unwrap_or_default();
        // SAFETY: groups is a valid slice.
        sys::check_int(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }).map_err(|e| {
            Error::config("process.user.additionalGids", format!("{groups:?}: {e}"))
        })?;
    }
    // SAFETY: plain integer arguments.
    unsafe {
        sys::check_int(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))
            .map_err(|e| Error::sys("PR_SET_KEEPCAPS", e))?;
        sys::check_int(libc::setresgid(u.gid(), u.gid(), u.gid()))
            .map_err(|e| Error::config("process.user.gid", format!("{}: {e}", u.gid())))?;
        sys::check_int(libc::setresuid(u.uid(), u.uid(), u.uid()))
            .map_err(|e| Error::config("process.user.uid", format!("{}: {e}", u.uid())))?;
        sys::check_int(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))
            .map_err(|e| Error::sys("PR_SET_KEEPCAPS", e))?;
    }
    if let Some(mask) = u.umask() {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    } else {
        unsafe { libc::umask(0o022) };
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: plain integer arguments.
    sys::check_int(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
        .map(drop)
        .map_err(|e| Error::sys("PR_SET_NO_NEW_PRIVS", e))
}

/// The environment for exec, with HOME added from the container's /etc/passwd when
/// the config does not set it.
pub fn environment(process: &Process) -> Vec<CString> {
    let env = process.env().clone().unwrap_or_default();
    let mut out: Vec<CString> = env.iter().map(cstring).collect();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(process.user().uid()).unwrap_or_else(|| "/".to_string());
        out.push(cstring(format!("HOME={home}")));
    }
    out
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok()? == uid).then(|| f[5].to_string())
    })
}

/// Finds the program in the container's PATH, as execvp would, but up front so a
/// missing binary fails `create` with its name.
pub fn find_program(process: &Process) -> Result<PathBuf> {
    let args = process.args().as_deref().unwrap_or_default();
    let prog = &args[0];
    if prog.contains('/') {
        let p = Path::new(prog);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            process.cwd().join(p)
        };
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(Error::Init(format!(
                "exec: {prog:?}: no such executable file"
            )))
        };
    }
    let env = process.env().as_deref().unwrap_or_default();
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(prog);
        if is_executable(&cand) {
            return Ok(cand);
        }
    }
    Err(Error::Init(format!(
        "exec: {prog:?}: executable file not found in $PATH"
    )))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// ioPriority: ioprio_set(IOPRIO_WHO_PROCESS, self, class << 13 | level).
pub fn set_io_priority(process: &Process) -> Result<()> {
    use oci_spec::runtime::IOPriorityClass as C;
    let Some(io) = process.io_priority() else {
        return Ok(());
    };
    let class = match io.class() {
        C::IoprioClassRt => 1,
        C::IoprioClassBe => 2,
        C::IoprioClassIdle => 3,
    };
    let prio = (class << 13) | (io.priority() & 0xff);
    // SAFETY: plain integer syscall arguments.
    sys::check(unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) })
        .map(drop)
        .map_err(|e| Error::config("process.ioPriority", e.to_string()))
}

#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// scheduler: sched_setattr on this process.
pub fn set_scheduler(process: &Process) -> Result<()> {
    use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    let Some(s) = process.scheduler() else {
        return Ok(());
    };
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().as_deref().unwrap_or_default() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: a sized sched_attr for this process.
    sys::check(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) })
        .map(drop)
        .map_err(|e| Error::config("process.scheduler", e.to_string()))
}

/// Parses a CPU list (`0-3,7`) into a cpu_set_t.
pub fn parse_cpu_list(list: &str) -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    let mut any = false;
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let n = part.parse::<usize>().ok()?;
                (n, n)
            }
        };
        if a > b || b >= max {
            return None;
        }
        for cpu in a..=b {
            // SAFETY: cpu < the set's capacity.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        any = true;
    }
    any.then_some(set)
}

/// process.execCPUAffinity: `initial` for the runtime process before the move
/// into the container's cgroup (its children inherit it), `final` for the
/// process itself after the move, just before exec. Empty or absent: unchanged.
pub fn set_cpu_affinity(field: &str, list: Option<&str>) -> Result<()> {
    let Some(list) = list.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    let set = parse_cpu_list(list).ok_or_else(|| {
        Error::config(
            format!("process.execCPUAffinity.{field}"),
            format!("{list:?} is not a CPU list such as 0-3,7"),
        )
    })?;
    // SAFETY: a valid cpu_set_t of the size given, for this process.
    sys::check_int(unsafe {
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    })
    .map(drop)
    .map_err(|e| {
        Error::config(
            format!("process.execCPUAffinity.{field}"),
            format!("{list}: {e}"),
        )
    })
}

pub fn initial_cpu_affinity(process: &Process) -> Result<()> {
    set_cpu_affinity(
        "initial",
        process
            .exec_cpu_affinity()
            .as_ref()
            .and_then(|a| a.initial().as_deref()),
    )
}

pub fn final_cpu_affinity(process: &Process) -> Result<()> {
    set_cpu_affinity(
        "final",
        process
            .exec_cpu_affinity()
            .as_ref()
            .and_then(|a| a.cpu_affinity_final().as_deref()),
    )
}

/// linux.memoryPolicy: set_mempolicy(2) for the process, inherited by what it
/// execs. Nodes beyond what the kernel allows, nodes with MPOL_DEFAULT or
/// MPOL_LOCAL, or flags the mode cannot take fail with the kernel's reason.
pub fn set_memory_policy(mp: Option<&oci_spec::runtime::LinuxMemoryPolicy>) -> Result<()> {
    use oci_spec::runtime::{MemoryPolicyFlagType as F, MemoryPolicyModeType as M};
    let Some(mp) = mp else { return Ok(()) };
    const MAX_NODES: usize = 1024;
    let bad = |msg: String| Error::config("linux.memoryPolicy", msg);
    let mut mode: libc::c_int = match mp.mode() {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    };
    for f in mp.flags().as_deref().unwrap_or_default() {
        mode |= match f {
            F::MpolFNumaBalancing => 1 << 13,
            F::MpolFRelativeNodes => 1 << 14,
            F::MpolFStaticNodes => 1 << 15,
        };
    }
    let mut mask = [0u64; MAX_NODES / 64];
    let nodes = mp.nodes().as_deref().unwrap_or("").trim();
    for part in nodes.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n < MAX_NODES)
                .ok_or_else(|| {
                    bad(format!(
                        "nodes {nodes:?}: {s:?} is not a node number below {MAX_NODES}"
                    ))
                })
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b {
            return Err(bad(format!("nodes {nodes:?}: range {part} is backwards")));
        }
        for n in a..=b {
            mask[n / 64] |= 1 << (n % 64);
        }
    }
    let any = mask.iter().any(|w| *w != 0);
    let ptr = if any { mask.as_ptr() } else { std::ptr::null() };
    // SAFETY: a nodemask of MAX_NODES bits (or NULL) for this thread.
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, MAX_NODES + 1) };
    sys::check(r).map(drop).map_err(|e| {
        bad(format!(
            "set_mempolicy({:?}, nodes {nodes:?}): {e}",
            mp.mode()
        ))
    })
}

/// linux.personality: LINUX or LINUX32.
pub fn set_personality(p: Option<&oci_spec::runtime::LinuxPersonality>) -> Result<()> {
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    let Some(p) = p else { return Ok(()) };
    let persona = match p.domain() {
        D::PerLinux => 0x0000,
        D::PerLinux32 => 0x0008,
    };
    // SAFETY: plain integer argument.
    sys::check_int(unsafe { libc::personality(persona) })
        .map(drop)
        .map_err(|e| Error::config("linux.personality", e.to_string()))
}

/// AppArmor profile and SELinux label for the next exec, where the host enables
/// them; on a host without them a request is a no-op, as the CRI expects.
pub fn set_security_labels(process: &Process) -> Result<()> {
    if let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
        && std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y")
    {
        let attr = if Path::new("/proc/self/attr/apparmor/exec").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        std::fs::write(attr, format!("exec {profile}"))
            .map_err(|e| Error::config("process.apparmorProfile", format!("{profile}: {e}")))?;
    }
    if let Some(label) = process.selinux_label().as_deref().filter(|l| !l.is_empty())
        && Path::new("/sys/fs/selinux/enforce").exists()
    {
        std::fs::write("/proc/self/attr/exec", label)
            .map_err(|e| Error::config("process.selinuxLabel", format!("{label}: {e}")))?;
    }
    Ok(())
}
