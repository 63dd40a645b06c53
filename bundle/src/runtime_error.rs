//! What an OCI runtime said when it failed on a bundle: runc's format, which
//! berth-runtime writes too.

/// The `msg` of the runtime's last JSON error record (`--log-format json`), else
/// its stderr as it is.
pub fn message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v.get("msg")?.as_str().map(String::from)
        })
        .unwrap_or_else(|| text.trim().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_json_record_wins_over_other_lines() {
        let out = b"warning: something\n{\"level\":\"error\",\"msg\":\"container \\\"x\\\" does not exist\",\"time\":\"t\"}\n";
        assert_eq!(super::message(out), "container \"x\" does not exist");
        assert_eq!(super::message(b" plain failure \n"), "plain failure");
    }
}
