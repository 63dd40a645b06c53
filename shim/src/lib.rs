//! The parts of berth-shim that stand on their own: the CRI log format (used by
//! the binary, and by the fuzz target of the log writer).

pub mod cri_log;
