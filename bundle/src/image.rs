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

/// A signal by name (`SIGQUIT`, `quit`) or number.
pub fn signal_number(s: &str) -> Option<i32> {
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "WINCH" => libc::SIGWINCH,
        "STOP" => libc::SIGSTOP,
        "PWR" => libc::SIGPWR,
        _ => return None,
    })
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
        assert_eq!(s("").stop_signal_number(), 15);
    }
}
