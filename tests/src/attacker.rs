//! A hostile peer for tests: a plain libp2p swarm that joins channel topics and publishes
//! whatever bytes a test gives it (forged, replayed, oversized), and records what it receives.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

enum Cmd {
    Dial(Multiaddr, oneshot::Sender<Result<()>>),
    Subscribe(String, oneshot::Sender<Result<()>>),
    Publish(String, Vec<u8>, oneshot::Sender<Result<()>>),
    TopicPeers(String, oneshot::Sender<usize>),
    Connected(oneshot::Sender<usize>),
    Received(oneshot::Sender<Vec<Vec<u8>>>),
}

/// Handle to the hostile peer (its swarm runs on its own thread).
pub struct Attacker {
    tx: mpsc::UnboundedSender<Cmd>,
    /// Its PeerId.
    pub peer_id: PeerId,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Attacker {
    /// Starts the peer (TCP + noise + yamux + gossipsub with a 1 MiB frame limit).
    pub fn spawn() -> Result<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let swarm = libp2p::SwarmBuilder::with_new_identity()
                    .with_tokio()
                    .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
                    .map_err(|e| anyhow!("{e}"))
                    .and_then(|b| {
                        b.with_behaviour(|key| {
                            let cfg = gossipsub::ConfigBuilder::default()
                                .max_transmit_size(1024 * 1024)
                                .heartbeat_interval(Duration::from_millis(500))
                                .build()
                                .map_err(|e| e.to_string())?;
                            gossipsub::Behaviour::<gossipsub::IdentityTransform, gossipsub::AllowAllSubscriptionFilter>::new(
                                gossipsub::MessageAuthenticity::Signed(key.clone()),
                                cfg,
                            )
                            .map_err(|e| e.into())
                        })
                        .map_err(|e| anyhow!("{e}"))
                    })
                    .map(|b| {
                        b.with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
                            .build()
                    });
                let mut swarm = match swarm {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(*swarm.local_peer_id()));
                let mut received = Vec::new();
                loop {
                    tokio::select! {
                        cmd = rx.recv() => match cmd {
                            None => break,
                            Some(Cmd::Dial(a, r)) => { let _ = r.send(swarm.dial(a).map_err(|e| anyhow!("{e}"))); }
                            Some(Cmd::Subscribe(t, r)) => {
                                let _ = r.send(swarm.behaviour_mut().subscribe(&IdentTopic::new(t)).map(|_| ()).map_err(|e| anyhow!("{e:?}")));
                            }
                            Some(Cmd::Publish(t, data, r)) => {
                                let _ = r.send(swarm.behaviour_mut().publish(IdentTopic::new(t), data).map(|_| ()).map_err(|e| anyhow!("{e:?}")));
                            }
                            Some(Cmd::TopicPeers(t, r)) => {
                                let h = IdentTopic::new(t).hash();
                                let n = swarm.behaviour().all_peers().filter(|(_, ts)| ts.contains(&&h)).count();
                                let _ = r.send(n);
                            }
                            Some(Cmd::Connected(r)) => { let _ = r.send(swarm.connected_peers().count()); }
                            Some(Cmd::Received(r)) => { let _ = r.send(received.clone()); }
                        },
                        ev = swarm.select_next_some() => {
                            if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = ev {
                                received.push(message.data);
                            }
                        }
                    }
                }
            });
        });
        let peer_id = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("attacker did not start")??;
        Ok(Self {
            tx,
            peer_id,
            thread: Some(thread),
        })
    }

    fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| anyhow!("attacker stopped"))?;
        rx.blocking_recv().map_err(|_| anyhow!("attacker stopped"))
    }

    /// Dials an address.
    pub fn dial(&self, addr: &str) -> Result<()> {
        let a: Multiaddr = addr.parse()?;
        self.call(|r| Cmd::Dial(a, r))?
    }

    /// Joins a topic.
    pub fn subscribe(&self, topic: &str) -> Result<()> {
        self.call(|r| Cmd::Subscribe(topic.to_string(), r))?
    }

    /// Publishes raw bytes on a topic.
    pub fn publish(&self, topic: &str, data: Vec<u8>) -> Result<()> {
        self.call(|r| Cmd::Publish(topic.to_string(), data, r))?
    }

    /// Peers it knows on a topic.
    pub fn topic_peers(&self, topic: &str) -> Result<usize> {
        self.call(|r| Cmd::TopicPeers(topic.to_string(), r))
    }

    /// Peers it is connected to.
    pub fn connected(&self) -> Result<usize> {
        self.call(Cmd::Connected)
    }

    /// Every message it has received.
    pub fn received(&self) -> Result<Vec<Vec<u8>>> {
        self.call(Cmd::Received)
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        // Closing the command channel ends the swarm loop.
        let (tx, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
