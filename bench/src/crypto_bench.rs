//! Crypto: post signing and verification against raw ed25519 on the same bytes, and at-rest
//! sealing against raw ChaCha20-Poly1305 on the same sizes (the physical floor).

use std::time::{Duration, Instant};

use anyhow::Result;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use libp2p::identity::ed25519;
use samizdat_node::channel::{ChannelId, Post, PostDraft, PostId};
use samizdat_node::crypto::DataKey;
use serde_json::{Value, json};

use crate::harness::round;

/// Runs `f` repeatedly for about `budget`; returns operations per second.
pub fn rate(budget: Duration, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

pub fn run(quick: bool) -> Result<Value> {
    let budget = Duration::from_millis(if quick { 200 } else { 1500 });
    let key = ed25519::Keypair::generate();
    let id = ChannelId::from_key(&key.public());
    let draft = |n: u64| PostDraft {
        text: format!("{n:>8} {}", "x".repeat(190)),
        ..Default::default()
    };
    let sample = Post::sign(&id, &key, None, 2, Some(PostId([1; 32])), 1, draft(0))?;
    let body_len = sample.wire.len() - 64 - 4; // what ed25519 signs, roughly: the body

    let sign = rate(budget, |n| {
        let _ = Post::sign(&id, &key, None, 2, Some(PostId([1; 32])), 1, draft(n));
    });
    let verify = rate(budget, |_| {
        let _ = Post::verify(&sample.wire, Some(&id), u64::MAX / 2);
    });
    let msg = vec![7u8; body_len];
    let sig = key.sign(&msg);
    let raw_sign = rate(budget, |_| {
        let _ = key.sign(&msg);
    });
    let public = key.public();
    let raw_verify = rate(budget, |_| {
        let _ = public.verify(&msg, &sig);
    });

    let dk = DataKey::generate();
    let record = vec![9u8; sample.wire.len() + 8];
    let sealed = dk.seal(b"posts", &record);
    let seal = rate(budget, |_| {
        let _ = dk.seal(b"posts", &record);
    });
    let open = rate(budget, |_| {
        let _ = dk.open(b"posts", &sealed);
    });
    let raw = ChaCha20Poly1305::new(&Key::from([3u8; 32]));
    let nonce = Nonce::from([0u8; 12]);
    let ct = raw
        .encrypt(&nonce, record.as_slice())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let raw_seal = rate(budget, |_| {
        let _ = raw.encrypt(&nonce, record.as_slice());
    });
    let raw_open = rate(budget, |_| {
        let _ = raw.decrypt(&nonce, ct.as_slice());
    });

    Ok(json!({
        "post_bytes": sample.wire.len(),
        "post_sign_per_s": round(sign, 0),
        "raw_ed25519_sign_per_s": round(raw_sign, 0),
        "post_verify_per_s": round(verify, 0),
        "raw_ed25519_verify_per_s": round(raw_verify, 0),
        "verify_vs_raw": round(verify / raw_verify, 3),
        "sign_vs_raw": round(sign / raw_sign, 3),
        "seal_per_s": round(seal, 0),
        "raw_chacha20poly1305_seal_per_s": round(raw_seal, 0),
        "open_per_s": round(open, 0),
        "raw_chacha20poly1305_open_per_s": round(raw_open, 0),
        "seal_vs_raw": round(seal / raw_seal, 3),
        "open_vs_raw": round(open / raw_open, 3),
    }))
}
