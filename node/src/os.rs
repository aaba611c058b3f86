//! What a long-running peer asks of the operating system (shared with the bootstrap peer).

pub use samizdat_net::os::raise_open_files_limit;
