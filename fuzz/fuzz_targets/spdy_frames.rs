//! SPDY/3.1 frames as a client may send them: the parser never panics, never
//! claims more bytes than it was given, and stops at the first error.
#![no_main]
use berth_cri::streaming::spdy::Codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut codec = Codec::new();
    let mut buf = data;
    while let Ok(Some((_, n))) = codec.parse(buf) {
        assert!(n > 0 && n <= buf.len(), "took {n} of {}", buf.len());
        buf = &buf[n..];
    }
});
