//! What a long-running peer asks of the operating system.

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
///
/// Every connection, listener and store file is a descriptor, and desktop systems start
/// processes with a soft limit of 1,024: a node with a few hundred peers (or a bootstrap peer
/// with thousands) would otherwise fail to accept connections long before its own limits.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}
