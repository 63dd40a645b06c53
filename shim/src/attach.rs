//! The attach socket (`<state-dir>/attach.sock`, SOCK_SEQPACKET so each message
//! keeps its boundary). Every message starts with a type byte:
//! shim to client: 1 stdout, 2 stderr, then the bytes;
//! client to shim: 0 stdin data, 3 resize (u16 rows, u16 cols, big endian),
//! 4 close stdin.

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const RESIZE: u8 = 3;
pub const CLOSE_STDIN: u8 = 4;

/// The largest message: one type byte and up to 32 KiB of data.
pub const MAX_MESSAGE: usize = 32 * 1024 + 1;
