//! Gossipsub peer scoring (v1.1): how a peer's score rises with useful deliveries and falls
//! with invalid messages and protocol misbehaviour, and where it stops being heard.
//!
//! Tuned for Samizdat's traffic (channels and groups are low-rate, so the "too few mesh
//! deliveries" penalty P3 would punish honest quiet peers and is off), and for its users
//! (many share an IP behind carrier-grade NAT or a censor's proxy, so the IP-colocation
//! penalty P6 is off). Invalid messages (P4) dominate: a peer is graylisted after 3 invalid
//! messages in a short time (score −10 × 3² = −90 < −80), and the penalty decays to nothing
//! in about a minute if it stops.

use std::time::Duration;

use libp2p::gossipsub::{PeerScoreParams, PeerScoreThresholds, TopicScoreParams};

/// Below this score a peer's gossip is ignored entirely (gossipsub's graylist), and the node
/// disconnects it for [`PENALTY_BOX`].
pub const GRAYLIST: f64 = -80.0;
/// How long a graylisted peer is refused after it is disconnected.
pub const PENALTY_BOX: Duration = Duration::from_secs(600);

/// Score parameters shared by all peers.
pub fn peer_params() -> PeerScoreParams {
    PeerScoreParams {
        topic_score_cap: 100.0,
        // P5: offences gossip does not see (bad sync answers, floods of undeliverable
        // messages or mail), as points the node keeps (`node::reputation`), negated.
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: 0.9,
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.01,
        retain_score: Duration::from_secs(3600),
        ..PeerScoreParams::default()
    }
}

/// Score thresholds (gossipsub's defaults, with the graylist above).
pub fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: GRAYLIST,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// Score parameters of every channel and group topic.
pub fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        // P1: time in the mesh, up to +3 after 5 minutes.
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        // P2: first deliveries of valid messages, up to +20.
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        // P3/P3b: off (quiet channels are normal).
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: invalid messages, squared: 3 of them graylist a peer; ×0.9 a second.
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.9,
        ..TopicScoreParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_valid_and_three_invalid_messages_graylist() {
        assert!(peer_params().validate().is_ok());
        assert!(thresholds().validate().is_ok());
        assert!(topic_params().validate().is_ok());
        let p = topic_params();
        let after = |n: f64| p.topic_weight * p.invalid_message_deliveries_weight * n * n;
        assert!(after(2.0) > GRAYLIST, "two mistakes should not graylist");
        assert!(after(3.0) < GRAYLIST);
    }
}
