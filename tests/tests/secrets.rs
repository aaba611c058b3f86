//! Secrets stay secret: a node logging at trace level (libp2p's logs included) while it
//! creates a channel, posts, writes a direct message and joins a group never writes its keys
//! to the log, in any usual encoding; key files are 0600; the API token changes every start.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use samizdat_node::crypto::Keyring;
use samizdat_node::home::Home;
use samizdat_node::identity::Identity;
use samizdat_node::store::Store;
use samizdat_tests::{BootstrapProc, NodeProc, wait_for};

fn encodings(secret: &[u8]) -> Vec<String> {
    use data_encoding::{BASE32_NOPAD, BASE64, BASE64_NOPAD, BASE64URL_NOPAD, HEXLOWER, HEXUPPER};
    vec![
        HEXLOWER.encode(secret),
        HEXUPPER.encode(secret),
        BASE64.encode(secret),
        BASE64_NOPAD.encode(secret),
        BASE64URL_NOPAD.encode(secret),
        BASE32_NOPAD.encode(secret),
        BASE32_NOPAD.encode(secret).to_ascii_lowercase(),
        format!("{secret:?}"),
    ]
}

fn assert_absent(log: &str, what: &str, secret: &[u8]) {
    let raw = log.as_bytes();
    assert!(
        !raw.windows(secret.len()).any(|w| w == secret),
        "{what} appears raw in the log"
    );
    for e in encodings(secret) {
        // Long enough that a match is not chance (keys are 32 bytes).
        assert!(!log.contains(&e), "{what} appears in the log as {e}");
    }
}

#[test]
fn keys_never_reach_trace_logs_and_key_files_are_private() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut alice = NodeProc::new("alice")?;
    alice.set_env("RUST_LOG", "trace");
    let mut bob = NodeProc::new("bob")?;
    alice.start(&boot.addrs)?;
    bob.start(&boot.addrs)?;
    let token1 = std::fs::read(alice.home().join("api.token"))?;
    let b = bob.peer_id()?;

    // Work that touches every key: channel signing, DMs (MLS), a group, an attachment.
    let ch = alice.json(&["channel", "create", "keys"])?;
    let channel = ch["id"].as_str().context("id")?.to_string();
    alice.post(&channel, "signed with the channel key")?;
    alice.json(&["dm", "send", &b, "hello over MLS"])?;
    let group = alice.json(&["group", "create", "g"])?["id"]
        .as_str()
        .context("group")?
        .to_string();
    wait_for(
        "bob to be added",
        std::time::Duration::from_secs(90),
        || alice.json(&["group", "invite", &group, &b]).ok(),
    )?;
    alice.json(&["group", "post", &group, "to the group"])?;
    let file = alice.home().with_extension("attachment");
    std::fs::write(&file, b"attachment body")?;
    let sent = alice.json(&[
        "dm",
        "send",
        &b,
        "with a file",
        "--file",
        &file.to_string_lossy(),
    ])?;
    let attachment_key = sent["file"]["key"].as_str().context("key")?.to_string();
    alice.stop();

    let log = alice.log();
    assert!(
        log.len() > 50_000,
        "the trace log is too short to mean anything"
    );
    let home = Home::at(alice.home());
    let data_key = Keyring::unlock(&home, None)?;
    let master = std::fs::read(home.master_key_file())?;
    assert_absent(&log, "master.key", &master);
    assert_absent(&log, "the API token", &token1);
    let id = Identity::load(&home, &data_key)?;
    assert_absent(
        &log,
        "the identity's signing key",
        id.signing().secret().as_ref(),
    );
    assert_absent(
        &log,
        "an attachment key",
        &data_encoding::HEXLOWER.decode(attachment_key.as_bytes())?,
    );
    let store = alice.open_store()?;
    for rec in store.channels()? {
        if let Some(k) = rec.secret_key {
            assert_absent(&log, "a channel's secret key", &k);
        }
    }
    drop(store);

    // Files holding keys are readable by the owner only.
    for f in [
        home.master_key_file(),
        home.identity_file(),
        home.keyring_file(),
        home.api_token_file(),
    ] {
        let mode = std::fs::metadata(&f)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", f.display());
    }
    // A new token on every start: the old one no longer opens the API.
    alice.start(&boot.addrs)?;
    let token2 = std::fs::read(alice.home().join("api.token"))?;
    assert_ne!(token1, token2, "the API token was not rotated");
    Ok(())
}
