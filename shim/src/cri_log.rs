//! The CRI container log format that kubelet and `crictl logs` read:
//! `<RFC3339Nano timestamp> <stream> <P|F> <content>\n`.

use std::io::{self, Write};

/// Which of the container's output streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // Used by the log writer the shim issue adds.
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

/// Formats a UTC time as RFC 3339 with nanoseconds, e.g. `2016-10-06T00:17:09.669794202Z`.
#[allow(dead_code)]
pub fn format_timestamp(secs: i64, nanos: u32, out: &mut [u8; 30]) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let mut w = &mut out[..];
    // Writing into a fixed 30-byte buffer cannot fail for years 0..=9999.
    let _ = write!(
        w,
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{nanos:09}Z"
    );
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes one log record. `partial` marks a line split at the buffer limit (`P`);
/// a complete line is tagged `F`. `content` must not contain the newline.
#[allow(dead_code)]
pub fn write_record(
    out: &mut impl Write,
    timestamp: &[u8; 30],
    stream: Stream,
    partial: bool,
    content: &[u8],
) -> io::Result<()> {
    out.write_all(timestamp)?;
    out.write_all(b" ")?;
    out.write_all(stream.name())?;
    out.write_all(if partial { b" P " } else { b" F " })?;
    out.write_all(content)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_matches_rfc3339_nano() {
        let mut buf = [0u8; 30];
        format_timestamp(1_475_713_029, 669_794_202, &mut buf);
        assert_eq!(&buf, b"2016-10-06T00:17:09.669794202Z");
        format_timestamp(0, 0, &mut buf);
        assert_eq!(&buf, b"1970-01-01T00:00:00.000000000Z");
        // A leap day.
        format_timestamp(951_782_400, 1, &mut buf);
        assert_eq!(&buf, b"2000-02-29T00:00:00.000000001Z");
    }

    #[test]
    fn records_are_tagged_full_or_partial() {
        let mut ts = [0u8; 30];
        format_timestamp(1_475_713_029, 669_794_202, &mut ts);
        let mut out = Vec::new();
        write_record(&mut out, &ts, Stream::Stdout, false, b"hello").unwrap();
        write_record(&mut out, &ts, Stream::Stderr, true, b"part").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2016-10-06T00:17:09.669794202Z stdout F hello\n\
             2016-10-06T00:17:09.669794202Z stderr P part\n"
        );
    }
}
