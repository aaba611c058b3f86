//! `samizdat-netem`: latency and loss in user space, for kernels without the netem qdisc.
//! Packets sent to NFQUEUE `--queue` (by an iptables rule of the test harness) are held for
//! `--delay-ms` and then passed, or dropped with probability `--loss`.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use nfq::{Queue, Verdict};

/// Delays and drops packets from an NFQUEUE.
#[derive(Debug, Parser)]
struct Args {
    /// NFQUEUE number to serve.
    #[arg(long)]
    queue: u16,
    /// One-way delay added to every packet.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Fraction of packets dropped (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut q = Queue::open().context("opening netfilter queue")?;
    q.bind(args.queue).context("binding queue")?;
    q.set_queue_max_len(args.queue, 65_535)?;
    q.set_nonblocking(true);
    let delay = Duration::from_millis(args.delay_ms);
    let mut held = VecDeque::new();
    let mut x: u64 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    loop {
        let mut got = false;
        loop {
            match q.recv() {
                Ok(mut msg) => {
                    got = true;
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let r = (x >> 11) as f64 / (1u64 << 53) as f64;
                    if r < args.loss {
                        msg.set_verdict(Verdict::Drop);
                        q.verdict(msg)?;
                    } else {
                        held.push_back((Instant::now() + delay, msg));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("receiving from the queue"),
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, mut msg)) = held.pop_front() {
                msg.set_verdict(Verdict::Accept);
                q.verdict(msg)?;
            }
        }
        if !got {
            let wait = held
                .front()
                .map(|(t, _)| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(5))
                .min(Duration::from_millis(5));
            std::thread::sleep(wait.max(Duration::from_micros(200)));
        }
    }
}
