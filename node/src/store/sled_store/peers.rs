//! Known peers (`peers`) and blocked ones (`blocked`).

use super::{SledStore, first};
use crate::store::{PeerRecord, StoreError};

impl SledStore {
    pub(super) fn put_peer(&self, rec: &PeerRecord) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"peer", &rec.peer_id.to_bytes()));
        self.peers.insert(&k, &rec.encode())
    }

    pub(super) fn peers(&self) -> Result<Vec<PeerRecord>, StoreError> {
        let mut out = Vec::new();
        for (_, plain) in self.peers.all()? {
            out.push(PeerRecord::decode(&plain).ok_or(StoreError::Corrupt("peers"))?);
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.last_seen_ms));
        Ok(out)
    }

    pub(super) fn forget_peers(&self, peers: &[libp2p::PeerId]) -> Result<(), StoreError> {
        for p in peers {
            let k = first::<16>(&self.h(b"peer", &p.to_bytes()));
            self.peers.remove(&k)?;
        }
        Ok(())
    }

    pub(super) fn prune_peers(&self, keep: usize) -> Result<usize, StoreError> {
        let peers = self.peers()?;
        let mut removed = 0usize;
        for p in peers.iter().skip(keep) {
            let k = first::<16>(&self.h(b"peer", &p.peer_id.to_bytes()));
            self.peers.remove(&k)?;
            removed = removed.saturating_add(1);
        }
        Ok(removed)
    }

    pub(super) fn set_blocked(
        &self,
        peer: &libp2p::PeerId,
        blocked: bool,
    ) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"blocked", &peer.to_bytes()));
        if blocked {
            self.blocked.insert(&k, &peer.to_bytes())?;
        } else {
            self.blocked.remove(&k)?;
        }
        self.wrote();
        Ok(())
    }

    pub(super) fn blocked_peers(&self) -> Result<Vec<libp2p::PeerId>, StoreError> {
        self.blocked
            .all()?
            .into_iter()
            .map(|(_, v)| {
                libp2p::PeerId::from_bytes(&v).map_err(|_| StoreError::Corrupt("blocked"))
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {

    use std::sync::Arc;

    use super::super::tests::open;

    use crate::crypto::DataKey;

    use crate::store::PeerRecord;

    #[test]
    fn peers_sorted_and_pruned() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let s = open(dir.path(), &key);
        for i in 0..5u64 {
            s.put_peer(&PeerRecord {
                peer_id: libp2p::PeerId::random(),
                addrs: vec!["/ip4/127.0.0.1/tcp/1".parse().expect("addr")],
                last_seen_ms: i,
            })
            .expect("put");
        }
        let peers = s.peers().expect("peers");
        assert_eq!(
            peers.iter().map(|p| p.last_seen_ms).collect::<Vec<_>>(),
            vec![4, 3, 2, 1, 0]
        );
        assert_eq!(s.prune_peers(2).expect("prune"), 3);
        assert_eq!(s.peers().expect("peers").len(), 2);
        let newest = s.peers().expect("peers")[0].peer_id;
        s.forget_peers(&[newest]).expect("forget");
        let left = s.peers().expect("peers");
        assert_eq!(left.len(), 1);
        assert_ne!(left[0].peer_id, newest);
    }
}
