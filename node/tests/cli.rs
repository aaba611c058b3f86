//! The `samizdat` binary's offline behaviour: init, help, and errors without a daemon.

use std::process::Command;

fn samizdat(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_samizdat"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("SAMIZDAT_PASSPHRASE")
        .output()
        .expect("run samizdat")
}

#[test]
fn init_creates_private_keys_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tmp");
    let home = dir.path().join("h");
    let out = samizdat(&home, &["init", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(first["created"], true);
    for f in ["identity.key", "keyring.json", "master.key"] {
        let meta = std::fs::metadata(home.join(f)).expect(f);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
        }
        let _ = meta;
    }
    let config = std::fs::read_to_string(home.join("config.toml")).expect("config");
    assert!(config.contains("listen"));
    // A second init changes nothing and reports the same identity.
    let out = samizdat(&home, &["init", "--json"]);
    assert!(out.status.success());
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(second["created"], false);
    assert_eq!(first["peer_id"], second["peer_id"]);
}

#[test]
fn commands_without_a_daemon_fail_clearly() {
    let dir = tempfile::tempdir().expect("tmp");
    let home = dir.path().join("h");
    let out = samizdat(&home, &["id", "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("samizdat init"));
    assert!(samizdat(&home, &["init"]).status.success());
    let out = samizdat(&home, &["channel", "list", "--json"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no samizdat daemon is running"));
}

#[test]
fn api_must_stay_on_loopback() {
    let dir = tempfile::tempdir().expect("tmp");
    let home = dir.path().join("h");
    let out = samizdat(
        &home,
        &[
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "0.0.0.0:0",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
