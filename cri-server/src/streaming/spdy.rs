//! SPDY/3.1 framing, the server side, as kubelet's clients (spdystream) speak it
//! for exec, attach and port-forward. Only what those need: SYN_STREAM in,
//! SYN_REPLY out, DATA both ways, RST_STREAM, PING echo, GOAWAY; SETTINGS and
//! WINDOW_UPDATE are read and ignored (spdystream does no flow control).
//!
//! Frame layouts (SPDY draft 3, section 2):
//! - control: `1 | version:15 | type:16 | flags:8 | length:24 | data`
//! - data:    `0 | stream-id:31 | flags:8 | length:24 | data`
//!
//! Header blocks are zlib-compressed with one stream per direction for the whole
//! connection, primed with the dictionary of section 2.6.10.1.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::sync::OnceLock;

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;

/// RST_STREAM status codes.
pub const PROTOCOL_ERROR: u32 = 1;
pub const REFUSED_STREAM: u32 = 3;

/// Frames longer than this are refused: no client of ours sends more.
const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        headers: Vec<(String, String)>,
        fin: bool,
    },
    SynReply {
        stream_id: u32,
        headers: Vec<(String, String)>,
        fin: bool,
    },
    Data {
        stream_id: u32,
        data: Vec<u8>,
        fin: bool,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_stream_id: u32,
    },
    /// SETTINGS, WINDOW_UPDATE, HEADERS and anything newer: nothing to do.
    Ignored,
}

/// The header dictionary: the spec's list of header names and values, each
/// prefixed with its length as a 32-bit big-endian number, then common status
/// lines, dates and content types run together.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
            "accept-encoding", "accept-language", "accept-ranges", "age", "allow",
            "authorization", "cache-control", "connection", "content-base", "content-encoding",
            "content-language", "content-length", "content-location", "content-md5",
            "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
            "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
            "last-modified", "location", "max-forwards", "pragma", "proxy-authenticate",
            "proxy-authorization", "range", "referer", "retry-after", "server", "te", "trailer",
            "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
            "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
            "public", "set-cookie", "keep-alive", "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
            "501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
            "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
            "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::new();
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

/// One connection's framing state: the two header compression streams.
pub struct Codec {
    inflate: Decompress,
    deflate: Compress,
    dict_set: bool,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

fn be24(b: &[u8]) -> usize {
    ((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Codec {
    pub fn new() -> Codec {
        let mut deflate = Compress::new(Compression::default(), true);
        // Infallible with the zlib backends that support dictionaries.
        let _ = deflate.set_dictionary(dictionary());
        Codec {
            inflate: Decompress::new(true),
            deflate,
            dict_set: false,
        }
    }

    /// Parses the first frame in `buf`: the frame and the bytes it took, or None
    /// when `buf` holds only part of it.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = be24(&buf[5..8]);
        if len > MAX_FRAME {
            return Err(format!("a SPDY frame of {len} bytes is too long"));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let flags = buf[4];
        let body = &buf[8..8 + len];
        let fin = flags & FLAG_FIN != 0;
        let frame = if buf[0] & 0x80 == 0 {
            Frame::Data {
                stream_id: be32(&buf[0..4]) & 0x7fff_ffff,
                data: body.to_vec(),
                fin,
            }
        } else {
            let version = u16::from_be_bytes([buf[0] & 0x7f, buf[1]]);
            if version != VERSION {
                return Err(format!("SPDY version {version} is not 3"));
            }
            let short = || format!("a SPDY control frame of {len} bytes is too short");
            match u16::from_be_bytes([buf[2], buf[3]]) {
                SYN_STREAM => {
                    if len < 10 {
                        return Err(short());
                    }
                    let headers = self.headers(&body[10..])?;
                    Frame::SynStream {
                        stream_id: be32(body) & 0x7fff_ffff,
                        headers,
                        fin,
                    }
                }
                SYN_REPLY => {
                    if len < 4 {
                        return Err(short());
                    }
                    let headers = self.headers(&body[4..])?;
                    Frame::SynReply {
                        stream_id: be32(body) & 0x7fff_ffff,
                        headers,
                        fin,
                    }
                }
                RST_STREAM if len >= 8 => Frame::RstStream {
                    stream_id: be32(body) & 0x7fff_ffff,
                    status: be32(&body[4..]),
                },
                PING if len >= 4 => Frame::Ping { id: be32(body) },
                GOAWAY if len >= 4 => Frame::GoAway {
                    last_stream_id: be32(body) & 0x7fff_ffff,
                },
                HEADERS if len >= 4 => {
                    // Keep the decompressor in step even though the headers are unused.
                    self.headers(&body[4..])?;
                    Frame::Ignored
                }
                RST_STREAM | PING | GOAWAY | HEADERS => return Err(short()),
                _ => Frame::Ignored,
            }
        };
        Ok(Some((frame, 8 + len)))
    }

    /// Decompresses and decodes a name/value header block.
    fn headers(&mut self, compressed: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut input = compressed;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let before_in = self.inflate.total_in();
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before_in) as usize;
            input = &input[used..];
            match r {
                Ok(Status::Ok) | Ok(Status::BufError)
                    if input.is_empty() && out.capacity() > out.len() =>
                {
                    break;
                }
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() && !self.dict_set => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(|e| format!("SPDY header dictionary: {e}"))?;
                    self.dict_set = true;
                }
                Err(e) => return Err(format!("SPDY header block: {e}")),
            }
        }
        decode_block(&out)
    }

    fn compress(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before = self.deflate.total_in();
            let _ = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.deflate.total_in() - before) as usize..];
            // A sync flush is complete once the output buffer was not filled.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        out
    }

    pub fn syn_reply(&mut self, stream_id: u32, headers: &[(&str, &str)], fin: bool) -> Vec<u8> {
        let block = self.compress(headers);
        let mut body = stream_id.to_be_bytes().to_vec();
        body.extend_from_slice(&block);
        control(SYN_REPLY, if fin { FLAG_FIN } else { 0 }, &body)
    }

    /// A SYN_STREAM, for tests that play the client.
    pub fn syn_stream(&mut self, stream_id: u32, headers: &[(&str, &str)], fin: bool) -> Vec<u8> {
        let block = self.compress(headers);
        let mut body = stream_id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&block);
        control(SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &body)
    }
}

fn decode_block(b: &[u8]) -> Result<Vec<(String, String)>, String> {
    let bad = || "a malformed SPDY header block".to_string();
    let mut pos = 0;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = b.get(pos..pos + n).ok_or_else(bad)?;
        pos += n;
        Ok(s)
    };
    let count = be32(take(4)?) as usize;
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = be32(take(4)?) as usize;
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = be32(take(4)?) as usize;
        let value = String::from_utf8_lossy(take(n)?).to_string();
        out.push((name, value));
    }
    Ok(out)
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&(0x8000u16 | VERSION).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(body);
    f
}

pub fn data(stream_id: u32, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    f.push(if fin { FLAG_FIN } else { 0 });
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

pub fn rst_stream(stream_id: u32, status: u32) -> Vec<u8> {
    let mut body = stream_id.to_be_bytes().to_vec();
    body.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &body)
}

pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

pub fn go_away(last_stream_id: u32) -> Vec<u8> {
    let mut body = last_stream_id.to_be_bytes().to_vec();
    body.extend_from_slice(&0u32.to_be_bytes());
    control(GOAWAY, 0, &body)
}

/// The value of header `name` (names are lower case on the wire).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What a client did on a SPDY connection.
#[derive(Debug)]
pub enum Event {
    /// A new stream, already replied to.
    Open {
        id: u32,
        headers: Vec<(String, String)>,
    },
    Data {
        id: u32,
        data: Vec<u8>,
    },
    /// The client finished its half of the stream.
    Fin {
        id: u32,
    },
    Reset {
        id: u32,
    },
}

/// Sends frames on a SPDY connection.
#[derive(Clone)]
pub struct Out(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

impl Out {
    /// Data on a stream, split into frames of at most 32 KiB.
    pub fn data(&self, id: u32, payload: &[u8], fin: bool) {
        if payload.is_empty() {
            let _ = self.0.send(data(id, &[], fin));
            return;
        }
        let chunks: Vec<&[u8]> = payload.chunks(32 << 10).collect();
        for (i, c) in chunks.iter().enumerate() {
            let _ = self.0.send(data(id, c, fin && i == chunks.len() - 1));
        }
    }

    pub fn reset(&self, id: u32, status: u32) {
        let _ = self.0.send(rst_stream(id, status));
    }

    pub fn go_away(&self, last: u32) {
        let _ = self.0.send(go_away(last));
    }
}

/// Runs the server side of a SPDY connection over `pipe`: every SYN_STREAM is
/// answered with a SYN_REPLY, pings are echoed, and the rest comes out as
/// events. The event channel closes when the client goes away.
pub fn session(pipe: super::Pipe) -> (tokio::sync::mpsc::Receiver<Event>, Out) {
    let super::Pipe { mut rx, tx } = pipe;
    let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(256);
    let out = Out(tx.clone());
    tokio::spawn(async move {
        let mut codec = Codec::new();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = rx.recv().await {
            buf.extend_from_slice(&chunk);
            let mut used = 0;
            loop {
                let frame = match codec.parse(&buf[used..]) {
                    Ok(Some((f, n))) => {
                        used += n;
                        f
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("SPDY: {e}");
                        let _ = tx.send(go_away(0));
                        return;
                    }
                };
                let event = match frame {
                    Frame::SynStream {
                        stream_id,
                        headers,
                        fin,
                    } => {
                        let _ = tx.send(codec.syn_reply(stream_id, &[], false));
                        let open = Event::Open {
                            id: stream_id,
                            headers,
                        };
                        if ev_tx.send(open).await.is_err() {
                            return;
                        }
                        if !fin {
                            continue;
                        }
                        Event::Fin { id: stream_id }
                    }
                    Frame::Data {
                        stream_id,
                        data,
                        fin,
                    } => {
                        if !data.is_empty()
                            && ev_tx
                                .send(Event::Data {
                                    id: stream_id,
                                    data,
                                })
                                .await
                                .is_err()
                        {
                            return;
                        }
                        if !fin {
                            continue;
                        }
                        Event::Fin { id: stream_id }
                    }
                    Frame::RstStream { stream_id, .. } => Event::Reset { id: stream_id },
                    Frame::Ping { id } => {
                        let _ = tx.send(ping(id));
                        continue;
                    }
                    Frame::GoAway { .. } => return,
                    Frame::SynReply { .. } | Frame::Ignored => continue,
                };
                if ev_tx.send(event).await.is_err() {
                    return;
                }
            }
            buf.drain(..used);
        }
    });
    (ev_rx, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_specs() {
        // Its size and Adler-32 (the DICTID a zlib stream primed with it carries)
        // as SPDY/3 implementations have them.
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for &x in d {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn frames_round_trip_through_both_compression_streams() {
        let (mut client, mut server) = (Codec::new(), Codec::new());
        let syn = client.syn_stream(1, &[("streamtype", "stdout"), ("requestid", "0")], false);
        let syn2 = client.syn_stream(3, &[("streamtype", "error")], true);
        let mut wire = syn.clone();
        wire.extend_from_slice(&syn2);
        wire.extend_from_slice(&data(1, b"hello", true));
        let (f, n) = server.parse(&wire).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::SynStream {
                stream_id: 1,
                headers: vec![
                    ("streamtype".into(), "stdout".into()),
                    ("requestid".into(), "0".into())
                ],
                fin: false
            }
        );
        // The second block depends on the first: one zlib stream per direction.
        let (f, m) = server.parse(&wire[n..]).unwrap().unwrap();
        assert!(matches!(
            f,
            Frame::SynStream {
                stream_id: 3,
                fin: true,
                ..
            }
        ));
        let (f, _) = server.parse(&wire[n + m..]).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::Data {
                stream_id: 1,
                data: b"hello".to_vec(),
                fin: true
            }
        );
        let reply = server.syn_reply(1, &[("x", "y")], false);
        assert_eq!(
            client.parse(&reply).unwrap().unwrap().0,
            Frame::SynReply {
                stream_id: 1,
                headers: vec![("x".into(), "y".into())],
                fin: false
            }
        );
        assert!(
            server.parse(&wire[..5]).unwrap().is_none(),
            "a partial frame waits"
        );
    }

    #[test]
    fn control_frames_have_the_specs_layout() {
        assert_eq!(ping(7), [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
        assert_eq!(
            rst_stream(5, REFUSED_STREAM),
            [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 3]
        );
        assert_eq!(data(1, b"ab", true), [0, 0, 0, 1, 1, 0, 0, 2, b'a', b'b']);
        let mut c = Codec::new();
        assert!(
            c.parse(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]).is_err(),
            "SPDY/2 is refused"
        );
    }
}
