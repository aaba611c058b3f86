//! Contacts end to end: real `samizdat` processes exchange cards as links.

use anyhow::{Context, Result};
use samizdat_tests::{BootstrapProc, NodeProc, files_containing};

#[test]
fn a_card_added_by_link_is_listed_and_kept_across_a_restart_and_tampering_is_refused() -> Result<()>
{
    let boot = BootstrapProc::start()?;
    let mut alice = NodeProc::new("alice")?;
    let mut bob = NodeProc::new("bob")?;
    alice.start(&boot.addrs)?;
    bob.start(&boot.addrs)?;

    let card = alice.json(&["contact", "card"])?;
    let link = card["link"].as_str().context("link")?.to_string();
    assert!(link.starts_with("samizdat://contact/"), "{link}");
    assert_eq!(card["peer_id"], alice.peer_id()?);

    // The QR code is printed too, and --json keeps stdout a single JSON value.
    let qr = alice.cli(&["contact", "card", "--qr", "--json"])?;
    assert!(qr.status.success());
    let v: serde_json::Value = serde_json::from_slice(&qr.stdout)?;
    assert_eq!(v["link"], card["link"]);
    assert!(String::from_utf8_lossy(&qr.stderr).contains('█'));

    // A tampered card: one character of the payload changed.
    let mut bad = link.clone().into_bytes();
    let i = bad.len() - 20;
    bad[i] = if bad[i] == b'a' { b'b' } else { b'a' };
    let bad = String::from_utf8(bad)?;
    let out = bob.cli(&["contact", "add", &bad, "--json"])?;
    assert!(!out.status.success(), "a tampered card was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("contact"),
        "error should say what is wrong: {err}"
    );
    assert_eq!(bob.json(&["contact", "list"])?, serde_json::json!([]));

    // Garbage and one's own card are clear errors too.
    assert!(
        !bob.cli(&["contact", "add", "samizdat://contact/zzzz"])?
            .status
            .success()
    );
    let own = bob.json(&["contact", "card"])?;
    let out = bob.cli(&["contact", "add", own["link"].as_str().context("link")?])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("own contact card"));

    let added = bob.json(&["contact", "add", &link, "--name", "Alice"])?;
    assert_eq!(added["peer_id"], alice.peer_id()?);
    assert_eq!(added["name"], "Alice");

    // Kept (encrypted) across a restart.
    bob.stop();
    bob.start(&boot.addrs)?;
    let list = bob.json(&["contact", "list"])?;
    let list = list.as_array().context("list")?;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["peer_id"], alice.peer_id()?);
    assert_eq!(list[0]["name"], "Alice");
    bob.stop();
    assert!(
        files_containing(bob.home(), b"Alice").is_empty(),
        "the contact's name is readable on disk"
    );
    Ok(())
}
