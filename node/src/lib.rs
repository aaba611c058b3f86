//! Samizdat node: identity, encrypted store, libp2p networking, public channels, the local API
//! and the CLI. See `../shared/DESIGN.md` for the architecture and `PROTOCOL.md` for the wire.

pub mod account;
pub mod api;
pub mod channel;
pub mod cli;
pub mod config;
pub mod contact;
pub mod crypto;
pub mod daemon;
pub mod demo;
pub mod dm;
pub mod files;
pub mod group;
pub mod home;
pub mod identity;
pub mod link;
pub mod mls;
pub mod net;
pub mod node;
pub mod os;
#[cfg(test)]
mod proptests;
pub mod store;
pub mod sync;
