//! At-rest encryption: the data key, sealing records, and the keyring that wraps the key.

mod data_key;
mod keyring;

pub use data_key::{DataKey, OpenError};
pub use keyring::{Keyring, KeyringError, Protection};

/// Fills a fresh array with bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // getrandom fails only when the OS has no entropy source at all; a node cannot run safely
    // without one, so this is a startup-time invariant rather than a recoverable error.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut out).expect("the operating system's random number generator failed");
    out
}
