//! `--debug` phase timings: where a command spends its time, on stderr.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);

pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Marks the end of a phase started at `*since`, and starts the next one.
pub fn mark(since: &mut Instant, phase: &str) {
    if ENABLED.load(Ordering::Relaxed) {
        let now = Instant::now();
        eprintln!(
            "berth-runtime: {phase}: {:.3} ms",
            (now - *since).as_secs_f64() * 1000.0
        );
        *since = now;
    }
}
