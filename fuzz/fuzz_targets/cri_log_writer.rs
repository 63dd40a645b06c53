//! The CRI log writer: any output, in any chunks, on both streams, makes records
//! of the CRI format (`<timestamp> <stream> <P|F> <content>`, content at most
//! 16 KiB) from which each stream's output comes back byte for byte.
#![no_main]
use berth_shim::cri_log::{LogWriter, MAX_LINE, Stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.log");
    let mut w = LogWriter::open(Some(path.clone())).unwrap();
    let mut sent: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    // Each chunk: a control byte (stream, and a length up to 127 × 256), then data.
    let mut rest = data;
    while let Some((&ctl, tail)) = rest.split_first() {
        let len = (((ctl & 0x7f) as usize) * 256 + 1).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        let (stream, i) = if ctl & 0x80 == 0 {
            (Stream::Stdout, 0)
        } else {
            (Stream::Stderr, 1)
        };
        w.feed(stream, chunk).unwrap();
        sent[i].extend_from_slice(chunk);
        rest = tail;
    }
    w.finish(Stream::Stdout).unwrap();
    w.finish(Stream::Stderr).unwrap();
    drop(w);
    let log = std::fs::read(&path).unwrap();
    let mut got: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut lines = log.split(|b| *b == b'\n').collect::<Vec<_>>();
    assert_eq!(lines.pop(), Some(&b""[..]), "the log ends with a newline");
    for line in lines {
        let mut f = line.splitn(4, |b| *b == b' ');
        let (ts, stream, tag, content) = (
            f.next().unwrap(),
            f.next().unwrap(),
            f.next().unwrap(),
            f.next().unwrap_or_else(|| panic!("short record {line:?}")),
        );
        assert_eq!(ts.len(), 30, "timestamp {ts:?}");
        assert!(content.len() <= MAX_LINE);
        let i = match stream {
            b"stdout" => 0,
            b"stderr" => 1,
            s => panic!("stream {s:?}"),
        };
        got[i].extend_from_slice(content);
        match tag {
            b"F" => got[i].push(b'\n'),
            b"P" => {}
            t => panic!("tag {t:?}"),
        }
    }
    for i in 0..2 {
        // A last line without a newline is closed by one in the log.
        let mut want = sent[i].clone();
        if !want.is_empty() && !want.ends_with(b"\n") {
            want.push(b'\n');
        }
        assert_eq!(got[i], want, "stream {i}");
    }
});
