//! The node's side of the network: the composed behaviour, over the shared network layer
//! (`samizdat-net`), re-exported here so the node names one `net`.

pub mod node_behaviour;

pub use samizdat_net::*;
