//! The CRI container log format that kubelet and `crictl logs` read:
//! `<RFC3339Nano timestamp> <stream> <P|F> <content>\n`. A line longer than the
//! buffer (16 KiB) is split into `P` (partial) records ending with an `F` one; a
//! last line without a newline is written as `F` when the stream ends.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// The longest content of one record, as conmon and containerd split lines.
pub const MAX_LINE: usize = 16 * 1024;

/// Which of the container's output streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Now, formatted.
pub fn now(out: &mut [u8; 30]) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    format_timestamp(ts.tv_sec, ts.tv_nsec as u32, out);
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

/// Writes one record into `out` (cleared first): one write(2) per record.
fn record(out: &mut Vec<u8>, stream: Stream, partial: bool, content: &[u8]) {
    let mut ts = [0u8; 30];
    now(&mut ts);
    out.clear();
    out.extend_from_slice(&ts);
    out.push(b' ');
    out.extend_from_slice(stream.name());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// A container's log file, fed with the raw output of both streams. The buffers
/// are allocated once; the copy path allocates nothing.
pub struct LogWriter {
    path: Option<PathBuf>,
    file: Option<File>,
    /// Raw mode: each stream's bytes as they came, to its own file (ExecSync
    /// needs the exact output, which the line format cannot give back).
    raw: Option<[File; 2]>,
    pending: [Vec<u8>; 2],
    scratch: Vec<u8>,
}

impl LogWriter {
    /// `path` None: output is still framed (for attach) but not written.
    pub fn open(path: Option<PathBuf>) -> io::Result<LogWriter> {
        let file = path.as_ref().map(|p| open_log(p)).transpose()?;
        Ok(LogWriter {
            path,
            file,
            raw: None,
            pending: [Vec::with_capacity(MAX_LINE), Vec::with_capacity(MAX_LINE)],
            scratch: Vec::with_capacity(MAX_LINE + 64),
        })
    }

    /// Raw mode: stdout and stderr bytes go unchanged to `dir/stdout` and `dir/stderr`.
    pub fn raw(dir: &std::path::Path) -> io::Result<LogWriter> {
        let mut w = LogWriter::open(None)?;
        w.raw = Some([
            open_log(&dir.join("stdout"))?,
            open_log(&dir.join("stderr"))?,
        ]);
        Ok(w)
    }

    fn emit(&mut self, stream: Stream, partial: bool, idx: usize, extra: &[u8]) -> io::Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let mut content = std::mem::take(&mut self.pending[idx]);
        content.extend_from_slice(extra);
        record(&mut self.scratch, stream, partial, &content);
        content.clear();
        self.pending[idx] = content;
        f.write_all(&self.scratch)
    }

    /// Adds output of `stream`; complete lines become `F` records, a line reaching
    /// MAX_LINE without a newline becomes a `P` record.
    pub fn feed(&mut self, stream: Stream, mut data: &[u8]) -> io::Result<()> {
        let idx = stream as usize;
        if let Some(files) = &mut self.raw {
            return files[idx].write_all(data);
        }
        while !data.is_empty() {
            let room = MAX_LINE - self.pending[idx].len();
            match data.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => {
                    self.emit(stream, false, idx, &data[..i])?;
                    data = &data[i + 1..];
                }
                None if data.len() >= room => {
                    self.emit(stream, true, idx, &data[..room])?;
                    data = &data[room..];
                }
                None => {
                    self.pending[idx].extend_from_slice(data);
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// The stream ended: a last line without a newline is written as `F`.
    pub fn finish(&mut self, stream: Stream) -> io::Result<()> {
        let idx = stream as usize;
        if self.pending[idx].is_empty() {
            return Ok(());
        }
        self.emit(stream, false, idx, &[])
    }

    /// Reopens the file at its path (after kubelet renamed it for rotation). Lines
    /// not yet complete stay buffered and go to the new file.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some(p) = &self.path {
            self.file = Some(open_log(p)?);
        }
        Ok(())
    }
}

fn open_log(p: &std::path::Path) -> io::Result<File> {
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(p)
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
        format_timestamp(951_782_400, 1, &mut buf);
        assert_eq!(&buf, b"2000-02-29T00:00:00.000000001Z");
    }

    fn records(path: &std::path::Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut p = l.splitn(4, ' ');
                let ts = p.next().unwrap();
                assert_eq!(ts.len(), 30, "{ts}");
                assert!(ts.ends_with('Z'));
                (
                    p.next().unwrap().to_string(),
                    p.next().unwrap().to_string(),
                    p.next().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_partials_and_the_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(Some(path.clone())).unwrap();
        w.feed(Stream::Stdout, b"one\ntw").unwrap();
        w.feed(Stream::Stderr, b"err\n").unwrap();
        w.feed(Stream::Stdout, b"o\n").unwrap();
        let long = vec![b'a'; MAX_LINE * 2 + 10];
        w.feed(Stream::Stdout, &long).unwrap();
        w.feed(Stream::Stdout, b"\nlast").unwrap();
        w.finish(Stream::Stdout).unwrap();
        w.finish(Stream::Stderr).unwrap();
        let r = records(&path);
        let got: Vec<(&str, &str, usize)> = r
            .iter()
            .map(|(s, t, c)| (s.as_str(), t.as_str(), c.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("stdout", "F", 3),
                ("stderr", "F", 3),
                ("stdout", "F", 3),
                ("stdout", "P", MAX_LINE),
                ("stdout", "P", MAX_LINE),
                ("stdout", "F", 10),
                ("stdout", "F", 4)
            ]
        );
        assert_eq!(r[2].2, "two");
        assert_eq!(r[6].2, "last");
    }

    #[test]
    fn reopen_keeps_the_pending_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(Some(path.clone())).unwrap();
        w.feed(Stream::Stdout, b"a\nhal").unwrap();
        std::fs::rename(&path, dir.path().join("c.log.1")).unwrap();
        w.reopen().unwrap();
        w.feed(Stream::Stdout, b"f\n").unwrap();
        assert_eq!(records(&dir.path().join("c.log.1"))[0].2, "a");
        assert_eq!(records(&path)[0].2, "half");
    }
}
