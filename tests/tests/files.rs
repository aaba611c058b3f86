//! Files end to end: a 200 MiB file fetched by two nodes, across a provider restart and past a
//! peer that serves corrupted chunks.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use samizdat_tests::attacker::Attacker;
use samizdat_tests::{BootstrapProc, NodeProc, bin, wait_for};
use sha2::{Digest, Sha256};

const SIZE: usize = 200 * 1024 * 1024;

/// Writes SIZE pseudo-random bytes (xorshift: fast, incompressible enough); returns the hash.
fn make_file(path: &std::path::Path) -> Result<[u8; 32]> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut h = Sha256::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..SIZE / buf.len() {
        for w in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        h.update(&buf);
        f.write_all(&buf)?;
    }
    f.flush()?;
    Ok(h.finalize().into())
}

fn sha256_file(path: &std::path::Path) -> Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

fn status(n: &NodeProc, cid: &str) -> Option<serde_json::Value> {
    n.json(&["file", "status", cid]).ok()
}

fn get(n: &NodeProc, cid: &str, out: &std::path::Path) -> Result<std::process::Child> {
    Ok(Command::new(bin("samizdat"))
        .arg("--home")
        .arg(n.home())
        .args(["file", "get", cid])
        .arg(out)
        .args(["--timeout", "5m"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?)
}

fn finish(mut child: std::process::Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(st) = child.try_wait()? {
            if !st.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    std::io::Read::read_to_string(&mut e, &mut err)?;
                }
                bail!("{what}: file get failed ({st}): {err}");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{what}: file get did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_200_mib_file_arrives_identical_across_a_provider_restart_and_a_corrupting_peer() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("video.bin");
    let hash = make_file(&src)?;

    let boot = BootstrapProc::start()?;
    let mut provider = NodeProc::new("provider")?;
    let mut f1 = NodeProc::new("f1")?;
    let mut f2 = NodeProc::new("f2")?;
    for n in [&mut provider, &mut f1, &mut f2] {
        n.start(&boot.addrs)?;
    }
    let added = provider.json(&["file", "add", src.to_str().context("path")?])?;
    let cid = added["cid"].as_str().context("cid")?.to_string();
    assert_eq!(added["size"], SIZE as u64);

    // f1 fetches; the provider is killed mid-way and comes back.
    let out1 = dir.path().join("out1.bin");
    let child = get(&f1, &cid, &out1)?;
    let partial = wait_for(
        "f1 to receive some chunks",
        Duration::from_secs(120),
        || status(&f1, &cid).filter(|s| s["have"].as_u64().unwrap_or(0) >= 5),
    )?;
    provider.kill();
    assert_eq!(
        partial["complete"], false,
        "too late to interrupt: {partial}"
    );
    std::thread::sleep(Duration::from_secs(1));
    provider.start(&boot.addrs)?;
    finish(child, "f1")?;
    assert_eq!(sha256_file(&out1)?, hash, "f1's copy differs");

    // A peer that serves the right manifest with corrupted chunks joins as a provider.
    let attacker = Attacker::spawn()?;
    attacker.listen()?;
    attacker.join_dht(&boot.addrs[0])?;
    attacker.dial(&provider.addrs()?[0])?;
    let provider_id: libp2p::PeerId = provider.peer_id()?.parse()?;
    let cid_bytes = cid.parse::<samizdat_node::files::Cid>()?.0;
    wait_for(
        "the attacker to announce itself",
        Duration::from_secs(60),
        || attacker.provide_corrupted(provider_id, cid_bytes).ok(),
    )?;
    std::thread::sleep(Duration::from_secs(2));

    let out2 = dir.path().join("out2.bin");
    finish(get(&f2, &cid, &out2)?, "f2")?;
    assert_eq!(sha256_file(&out2)?, hash, "f2's copy differs");
    let st = status(&f2, &cid).context("status")?;
    assert_eq!(st["complete"], true);
    assert!(
        attacker.chunks_served()? >= 1,
        "the corrupting peer was never asked"
    );
    assert!(
        st["rejected_chunks"].as_u64().unwrap_or(0) >= 1,
        "corrupted chunks were not detected: {st}"
    );
    // Nothing of the file is readable in any node's store.
    let marker = std::fs::read(&src)?[1000..1032].to_vec();
    for n in [&provider, &f1, &f2] {
        let hits = samizdat_tests::files_containing(n.home(), &marker);
        assert!(hits.is_empty(), "{}: plaintext chunk in {hits:?}", n.name);
    }
    Ok(())
}

#[test]
fn a_fetch_bounded_by_size_is_dropped_when_the_file_is_larger() -> Result<()> {
    // What a preview or an attachment's automatic fetch does: the size a message claims is only
    // its sender's word, so the node stops once the (verified) manifest says otherwise.
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("big.bin");
    std::fs::write(&src, vec![0x42u8; 3 << 20])?;
    let boot = BootstrapProc::start()?;
    let mut provider = NodeProc::new("provider")?;
    let mut fetcher = NodeProc::new("fetcher")?;
    for n in [&mut provider, &mut fetcher] {
        n.start(&boot.addrs)?;
    }
    let added = provider.json(&["file", "add", src.to_str().context("path")?])?;
    let cid = added["cid"].as_str().context("cid")?.to_string();
    fetcher.api_post(&format!(
        "/v1/files/{cid}/fetch?name=big.bin&max_bytes=1000000"
    ))?;
    wait_for("the fetch to be dropped", Duration::from_secs(60), || {
        fetcher
            .log()
            .contains("file larger than asked for")
            .then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        status(&fetcher, &cid).is_none_or(|s| s["have"].as_u64() == Some(0)),
        "chunks of an over-size file were fetched"
    );
    // Asked for explicitly, the same file arrives.
    let out = dir.path().join("out.bin");
    finish(get(&fetcher, &cid, &out)?, "fetcher")?;
    assert_eq!(std::fs::read(&out)?.len(), 3 << 20);
    Ok(())
}
