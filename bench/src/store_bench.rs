//! Store: posts written and read per second through the encrypted sled store, against the same
//! sled operations without encryption and against plain write + fsync of the same bytes.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use libp2p::identity::ed25519;
use samizdat_node::channel::{ChannelId, Post, PostDraft};
use samizdat_node::crypto::DataKey;
use samizdat_node::store::{SledStore, Store};
use samizdat_proto::v1;
use serde_json::{Value, json};
use sled::Transactional;

use crate::harness::round;

const BATCH: usize = 256;

fn posts(n: usize) -> Result<Vec<Post>> {
    let key = ed25519::Keypair::generate();
    let id = ChannelId::from_key(&key.public());
    let mut prev = None;
    let mut out = Vec::with_capacity(n);
    for seq in 1..=n as u64 {
        let p = Post::sign(
            &id,
            &key,
            None,
            seq,
            prev,
            seq,
            PostDraft {
                text: format!("{seq:>8} {}", "x".repeat(190)),
                ..Default::default()
            },
        )?;
        prev = Some(p.id);
        out.push(p);
    }
    Ok(out)
}

pub fn run(quick: bool) -> Result<Value> {
    let n = if quick { 10_000 } else { 100_000 };
    let posts = posts(n)?;
    let bytes: usize = posts.iter().map(|p| p.wire.len()).sum();
    let dir = tempfile::tempdir()?;

    // Samizdat's store: sealed values, keyed-hash keys, a transaction over four trees per
    // batch, one flush per batch (as the group-commit writer does).
    let key = Arc::new(DataKey::generate());
    let store = SledStore::open(&dir.path().join("enc"), key.clone())?;
    let t = Instant::now();
    for chunk in posts.chunks(BATCH) {
        store.insert_posts(chunk)?;
        store.flush()?;
    }
    let enc_write = n as f64 / t.elapsed().as_secs_f64();
    let channel = posts[0].channel;
    let t = Instant::now();
    let mut read = 0;
    let mut after = None;
    loop {
        let page = store.history(&channel, after.as_ref(), 1000)?;
        if page.is_empty() {
            break;
        }
        read += page.len();
        after = page.last().map(|(c, _)| c.clone());
    }
    anyhow::ensure!(read == n, "read {read} of {n}");
    let enc_read = n as f64 / t.elapsed().as_secs_f64();
    drop(store);
    // Opening again rebuilds the in-memory index of the ordered trees from their sealed keys.
    let t = Instant::now();
    let store = SledStore::open(&dir.path().join("enc"), key)?;
    let enc_open = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        store.count(&channel)? == n as u64,
        "reopened store lost posts"
    );
    drop(store);

    // The same sled operations on the same bytes, without encryption or keyed hashes: the
    // same trees, reads and writes per post, in one transaction per batch.
    let db = sled::Config::new().path(dir.path().join("plain")).open()?;
    let trees = (
        db.open_tree("posts")?,
        db.open_tree("chain")?,
        db.open_tree("ids")?,
        db.open_tree("authors")?,
        db.open_tree("expiry")?,
    );
    let t = Instant::now();
    for chunk in posts.chunks(BATCH) {
        (&trees.0, &trees.1, &trees.2, &trees.3, &trees.4)
            .transaction(|(p, c, i, a, _e)| {
                for post in chunk {
                    let author = post.author_key.to_bytes();
                    let mut k = [0u8; 40];
                    k[..16].copy_from_slice(&post.channel.as_bytes()[..16]);
                    k[16..24].copy_from_slice(&post.timestamp_ms.to_be_bytes());
                    k[24..32].copy_from_slice(&author[..8]);
                    k[32..].copy_from_slice(&post.seq.to_be_bytes());
                    let mut ck = [0u8; 40];
                    ck[..32].copy_from_slice(&author);
                    ck[32..].copy_from_slice(&post.seq.to_be_bytes());
                    let ik = &post.id.as_bytes()[..16];
                    if i.get(ik)?.is_some() || c.get(ck)?.is_some() {
                        continue;
                    }
                    p.insert(&k[..], post.wire.as_slice())?;
                    c.insert(&ck[..], &k[..])?;
                    i.insert(ik, &k[..])?;
                    if a.get(&ck[..32])?.is_none() {
                        a.insert(&ck[..32], &author[..])?;
                    }
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        db.flush()?;
    }
    let plain_write = n as f64 / t.elapsed().as_secs_f64();
    // Reading decodes each post as the store does (the signed post, then its body): what is
    // left between the two read figures is decryption.
    let t = Instant::now();
    let mut plain_read = 0;
    for item in trees.0.iter() {
        let (_, v) = item?;
        let sp = <v1::SignedPost as prost::Message>::decode(v.as_ref())?;
        let body = <v1::PostBody as prost::Message>::decode(sp.body.as_slice())?;
        std::hint::black_box(body);
        plain_read += 1;
    }
    anyhow::ensure!(plain_read == n, "plain read {plain_read}");
    let plain_read = n as f64 / t.elapsed().as_secs_f64();
    drop((trees, db));
    // Its baseline: opening the plain store and walking the keys of the same ordered trees.
    let t = Instant::now();
    let db = sled::Config::new().path(dir.path().join("plain")).open()?;
    let mut keys = 0usize;
    for name in ["posts", "chain", "authors", "expiry"] {
        keys += db.open_tree(name)?.iter().keys().count();
    }
    std::hint::black_box(keys);
    let plain_open = t.elapsed().as_secs_f64();
    drop(db);

    // Appending the same bytes to a file, one fsync per batch.
    let path = dir.path().join("log");
    let mut f = std::fs::File::create(&path)?;
    let t = Instant::now();
    for chunk in posts.chunks(BATCH) {
        for p in chunk {
            f.write_all(&p.wire)?;
        }
        f.sync_data()?;
    }
    let file_write = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let back = std::fs::read(&path)?;
    anyhow::ensure!(back.len() == bytes);
    let file_read = n as f64 / t.elapsed().as_secs_f64();

    Ok(json!({
        "posts": n,
        "batch": BATCH,
        "encrypted_posts_per_s": round(enc_write, 0),
        "plain_posts_per_s": round(plain_write, 0),
        "file_fsync_posts_per_s": round(file_write, 0),
        "encrypted_vs_plain": round(enc_write / plain_write, 3),
        "encrypted_read_posts_per_s": round(enc_read, 0),
        "plain_read_posts_per_s": round(plain_read, 0),
        "file_read_posts_per_s": round(file_read, 0),
        "encrypted_read_vs_plain": round(enc_read / plain_read, 3),
        "encrypted_open_ms": round(enc_open * 1000.0, 1),
        "plain_open_walk_ms": round(plain_open * 1000.0, 1),
        "encrypted_open_vs_plain": round(plain_open / enc_open.max(1e-9), 3),
    }))
}
