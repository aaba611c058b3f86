//! The time an input happens at, handed to the components (they read no clock themselves).

use std::time::Instant;

/// The monotonic clock for pacing, the wall clock for what is stored and compared with
/// peers' claims.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Monotonic.
    pub at: Instant,
    /// Milliseconds since the Unix epoch.
    pub ms: u64,
}

impl Now {
    /// The present.
    pub(crate) fn current() -> Self {
        Self {
            at: Instant::now(),
            ms: crate::channel::now_ms(),
        }
    }
}
