//! The shim's command line. Hand-parsed: the shim is tiny and runs per container.
//!
//! `berth-shim --id ID --bundle DIR --state-dir DIR [--runtime PATH]
//!   [--runtime-root DIR] [--log-path FILE] [--raw-output] [--attach-first] [--exit-command PATH [--exit-command-arg A]...] [--stdin] [--stdin-once] [--terminal]
//!   [--exec-process FILE]`

use std::path::PathBuf;

#[derive(Debug, Default)]
pub struct Options {
    pub id: String,
    pub bundle: PathBuf,
    /// Holds `pid`, `shim.pid`, `exit`, `control.sock`, `attach.sock`.
    pub state_dir: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: Option<PathBuf>,
    pub log_path: Option<PathBuf>,
    /// Write stdout and stderr unframed to `<state-dir>/stdout` and `stderr`.
    pub raw_output: bool,
    /// Read no output until the first attach client is connected (an exec whose
    /// output a streaming client must see from the first byte).
    pub attach_first: bool,
    /// Keep a stdin for the container, fed through the attach socket.
    pub stdin: bool,
    /// Close the container's stdin when the first attach client leaves.
    pub stdin_once: bool,
    pub terminal: bool,
    /// Run this process.json in the running container `id` (an exec) instead of
    /// creating the container.
    pub exec_process: Option<PathBuf>,
    /// Run once the exit is recorded (as conmon's --exit-command): `berth run
    /// -d --rm` removes its container this way, with no daemon.
    pub exit_command: Option<PathBuf>,
    pub exit_command_args: Vec<String>,
}

pub fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        runtime: PathBuf::from("berth-runtime"),
        ..Default::default()
    };
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--id" => o.id = value("--id")?,
            "--bundle" => o.bundle = value("--bundle")?.into(),
            "--state-dir" => o.state_dir = value("--state-dir")?.into(),
            "--runtime" => o.runtime = value("--runtime")?.into(),
            "--runtime-root" => o.runtime_root = Some(value("--runtime-root")?.into()),
            "--log-path" => o.log_path = Some(value("--log-path")?.into()),
            "--exec-process" => o.exec_process = Some(value("--exec-process")?.into()),
            "--exit-command" => o.exit_command = Some(value("--exit-command")?.into()),
            "--exit-command-arg" => o.exit_command_args.push(value("--exit-command-arg")?),
            "--raw-output" => o.raw_output = true,
            "--attach-first" => o.attach_first = true,
            "--stdin" => o.stdin = true,
            "--stdin-once" => o.stdin_once = true,
            "--terminal" => o.terminal = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.id.is_empty() || o.state_dir.as_os_str().is_empty() {
        return Err("--id and --state-dir are required".into());
    }
    if o.exec_process.is_none() && o.bundle.as_os_str().is_empty() {
        return Err("--bundle is required to create a container".into());
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Options, String> {
        parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_and_checks() {
        let o = p(&[
            "--id",
            "c1",
            "--bundle",
            "/b",
            "--state-dir",
            "/s",
            "--stdin",
            "--terminal",
        ])
        .unwrap();
        assert_eq!(o.id, "c1");
        assert!(o.stdin && o.terminal && !o.stdin_once);
        assert!(p(&["--id", "c1"]).is_err());
        assert!(p(&["--bogus"]).is_err());
        assert!(
            p(&[
                "--id",
                "c1",
                "--state-dir",
                "/s",
                "--exec-process",
                "/p.json"
            ])
            .is_ok()
        );
    }
}
