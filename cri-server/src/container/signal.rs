//! A container's stop signal in the CRI's terms (KEP-4960): the `Signal` enum
//! of `ContainerConfig.stop_signal` and `ContainerStatus.stop_signal`, and the
//! signal numbers berth sends.

use berth_bundle::image::{signal_name, signal_number};
use berth_proto::v1 as cri;

/// The number of the signal a request asks for; None for RUNTIME_DEFAULT (the
/// image's StopSignal, else SIGTERM, decides).
pub fn from_cri(value: i32) -> Result<Option<i32>, String> {
    let signal = cri::Signal::try_from(value)
        .map_err(|_| format!("config.stop_signal {value} is not one of the CRI's signals"))?;
    if signal == cri::Signal::RuntimeDefault {
        return Ok(None);
    }
    // SIGNAL_SIGRTMINPLUS3 is SIGRTMIN+3, SIGNAL_SIGRTMAXMINUS1 is SIGRTMAX-1.
    let name = signal
        .as_str_name()
        .trim_start_matches("SIGNAL_")
        .replace("PLUS", "+")
        .replace("MINUS", "-");
    signal_number(&name)
        .map(Some)
        .ok_or_else(|| format!("config.stop_signal {name} is not a signal of this host"))
}

/// The CRI's value for signal number `n` (RUNTIME_DEFAULT for one it cannot name).
pub fn to_cri(n: i32) -> i32 {
    signal_name(n)
        .and_then(|name| {
            let name = name.replace('+', "PLUS").replace('-', "MINUS");
            cri::Signal::from_str_name(&format!("SIGNAL_SIG{name}"))
        })
        .map_or(0, |s| s as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cri_signal_has_a_number_and_comes_back() {
        assert_eq!(from_cri(0), Ok(None));
        for v in 1..=65 {
            let n = from_cri(v).unwrap().unwrap_or_else(|| panic!("{v}"));
            let back = to_cri(n);
            // Aliases come back as the canonical name: IOT as ABRT, CLD as
            // CHLD, POLL as IO.
            assert_eq!(
                from_cri(back).unwrap(),
                Some(n),
                "{v} is signal {n}, named {back}"
            );
        }
        assert_eq!(from_cri(cri::Signal::Sigterm as i32), Ok(Some(15)));
        assert_eq!(from_cri(cri::Signal::Sigrtminplus3 as i32), Ok(Some(37)));
        assert_eq!(from_cri(cri::Signal::Sigrtmaxminus1 as i32), Ok(Some(63)));
        assert_eq!(to_cri(15), cri::Signal::Sigterm as i32);
        assert_eq!(to_cri(6), cri::Signal::Sigabrt as i32);
        assert!(from_cri(66).unwrap_err().contains("config.stop_signal 66"));
    }
}
