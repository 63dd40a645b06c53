//! What an image's config gives a container by default: the process's entrypoint,
//! command, environment, working directory and user, and the stop signal.

use serde_json::Value;

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `config` object of an OCI (or Docker) image config, read leniently:
/// absent or null fields are empty, as containerd and docker read them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: String,
}

impl ImageDefaults {
    /// From the image config blob (the JSON with `config` inside).
    pub fn of_image_config(image: &Value) -> ImageDefaults {
        let c = &image["config"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let string = |v: &Value| v.as_str().unwrap_or_default().to_string();
        ImageDefaults {
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            env: strings(&c["Env"]),
            working_dir: string(&c["WorkingDir"]),
            user: string(&c["User"]),
            stop_signal: string(&c["StopSignal"]),
        }
    }

    /// The process's arguments, as docker and the CRI both define them: an
    /// entrypoint given replaces the image's and drops its Cmd; a command given
    /// replaces the Cmd.
    pub fn args(&self, entrypoint: Option<&[String]>, command: &[String]) -> Vec<String> {
        let cmd: &[String] = match (command.is_empty(), entrypoint.is_some()) {
            (false, _) => command,
            (true, true) => &[],
            (true, false) => &self.cmd,
        };
        entrypoint
            .unwrap_or(&self.entrypoint)
            .iter()
            .chain(cmd)
            .cloned()
            .collect()
    }

    /// The working directory: `asked` when given, else the image's, else `/`.
    pub fn cwd(&self, asked: Option<&str>) -> String {
        asked
            .filter(|w| !w.is_empty())
            .or(Some(self.working_dir.as_str()).filter(|w| !w.is_empty()))
            .unwrap_or("/")
            .to_string()
    }

    /// The stop signal as a number (`SIGQUIT`, `QUIT` or `3`); SIGTERM when none.
    pub fn stop_signal_number(&self) -> i32 {
        signal_number(&self.stop_signal).unwrap_or(libc::SIGTERM)
    }
}

/// Linux's signals by name, the canonical name first where two share a number
/// (`IOT` is `ABRT`, `CLD` is `CHLD`, `POLL` is `IO`).
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The kernel's first and last real-time signals (`SIGRTMIN+3` is 37, as
/// docker and containerd read an image's StopSignal).
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// A signal by name (`SIGQUIT`, `quit`, `SIGRTMIN+3`, `RTMAX-1`) or number.
pub fn signal_number(s: &str) -> Option<i32> {
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if let Ok(n) = name.parse::<i32>() {
        return (1..=RTMAX).contains(&n).then_some(n);
    }
    if let Some(&(_, n)) = SIGNALS.iter().find(|(s, _)| *s == name) {
        return Some(n);
    }
    let rt = |base: &str, sign: i32| -> Option<i32> {
        let rest = name.strip_prefix(base)?;
        let off: i32 = match rest {
            "" => 0,
            _ => rest
                .strip_prefix(if sign > 0 { '+' } else { '-' })?
                .parse()
                .ok()?,
        };
        let n = if sign > 0 { RTMIN + off } else { RTMAX - off };
        (RTMIN..=RTMAX).contains(&n).then_some(n)
    };
    rt("RTMIN", 1).or_else(|| rt("RTMAX", -1))
}

/// A signal's canonical name without `SIG` (`TERM`, `RTMIN+3`, `RTMAX-1`), the
/// inverse of `signal_number`.
pub fn signal_name(n: i32) -> Option<String> {
    if let Some(&(name, _)) = SIGNALS.iter().find(|(_, s)| *s == n) {
        return Some(name.to_string());
    }
    match n {
        RTMIN => Some("RTMIN".into()),
        RTMAX => Some("RTMAX".into()),
        // The CRI names the first 16 from RTMIN up and the rest from RTMAX down.
        _ if (RTMIN + 1..=RTMIN + 15).contains(&n) => Some(format!("RTMIN+{}", n - RTMIN)),
        _ if (RTMIN + 16..RTMAX).contains(&n) => Some(format!("RTMAX-{}", RTMAX - n)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_command_override_as_docker_and_the_cri_do() {
        let img = ImageDefaults::of_image_config(
            &json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["a", "b"], "Env": null}}),
        );
        assert_eq!(img.args(None, &[]), v(&["/ep", "a", "b"]));
        assert_eq!(img.args(None, &v(&["x"])), v(&["/ep", "x"]));
        assert_eq!(img.args(Some(&v(&["/sh"])), &[]), v(&["/sh"]));
        assert_eq!(img.args(Some(&v(&["/sh"])), &v(&["-c"])), v(&["/sh", "-c"]));
        assert!(img.env.is_empty());
        assert_eq!(img.cwd(None), "/");
    }

    #[test]
    fn stop_signals_by_name_or_number() {
        let s = |sig: &str| ImageDefaults {
            stop_signal: sig.into(),
            ..Default::default()
        };
        assert_eq!(s("SIGQUIT").stop_signal_number(), 3);
        assert_eq!(s("9").stop_signal_number(), 9);
        assert_eq!(s("SIGRTMIN+3").stop_signal_number(), 37);
        assert_eq!(s("RTMAX-1").stop_signal_number(), 63);
        assert_eq!(s("SIGIOT").stop_signal_number(), 6);
        // Unknown names and numbers out of range fall back to SIGTERM.
        assert_eq!(s("SIGNOPE").stop_signal_number(), 15);
        assert_eq!(s("99").stop_signal_number(), 15);
        for n in 1..=64 {
            if n == 32 || n == 33 {
                continue; // glibc's own, no name
            }
            let name = signal_name(n).unwrap_or_else(|| panic!("{n} has no name"));
            assert_eq!(signal_number(&name), Some(n), "{name}");
        }
        assert_eq!(s("").stop_signal_number(), 15);
    }
}
