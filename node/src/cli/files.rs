//! `samizdat file`: add, fetch, inspect files.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::client;
use super::output::{self, Output};
use crate::api::ApiClient;
use crate::files::DownloadStatus;
use crate::home::Home;
use crate::node::FileAdded;

#[derive(Debug, Subcommand)]
pub(super) enum FileCommand {
    /// Add a file: chunk it, store it encrypted, announce it. Prints its content id.
    Add {
        /// The file.
        path: PathBuf,
    },
    /// Fetch a file from the peers that have it and write it to OUT_PATH.
    Get {
        /// Its content id.
        cid: String,
        /// Where to write it.
        out_path: PathBuf,
        /// Give up after this long.
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        timeout: humantime::Duration,
        /// Decrypt a private attachment with this key (from the message that carried it).
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
    },
    /// Show a file's download status.
    Status {
        /// Its content id.
        cid: String,
    },
}

pub(super) async fn file(home: &Home, out: &Output, cmd: &FileCommand) -> Result<()> {
    let api = client(home)?;
    match cmd {
        FileCommand::Add { path } => {
            let added = add_file(&api, path).await?;
            out.value(&added, || {
                format!("added {} ({} bytes): {}", added.name, added.size, added.cid)
            })
        }
        FileCommand::Status { cid } => {
            let st: DownloadStatus = api.get(&format!("/v1/files/{}", cid_arg(cid)?)).await?;
            out.value(&st, || output::file_status(&st))
        }
        FileCommand::Get {
            cid,
            out_path,
            timeout,
            key,
        } => {
            let cid = cid_arg(cid)?;
            if let Some(k) = key {
                crate::files::sealed::parse_key(k)?;
            }
            let st = fetch(&api, &cid, (*timeout).into()).await?;
            let size = st.size.unwrap_or(0);
            let size = if key.is_some() {
                crate::files::sealed::plain_size(size)
            } else {
                size
            };
            let written = write_file(&api, &cid, out_path, size, key.as_deref()).await?;
            out.value(
                &serde_json::json!({"cid": cid, "path": out_path, "size": written}),
                || {
                    format!(
                        "{} ({written} bytes) verified and written",
                        out_path.display()
                    )
                },
            )
        }
    }
}

pub(super) async fn add_file(api: &ApiClient, path: &std::path::Path) -> Result<FileAdded> {
    let f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    if !f.metadata().await?.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let query = url_escape(&name);
    Ok(api.upload(&format!("/v1/files?name={query}"), f).await?)
}

pub(super) fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn cid_arg(cid: &str) -> Result<String> {
    let c: crate::files::Cid = cid.parse().map_err(|e| anyhow::anyhow!("{e}: {cid:?}"))?;
    Ok(c.to_string())
}

/// Asks the daemon to fetch the file and shows progress on stderr until it is complete.
async fn fetch(api: &ApiClient, cid: &str, timeout: std::time::Duration) -> Result<DownloadStatus> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut st: DownloadStatus = api
        .request::<(), _>(
            reqwest::Method::POST,
            &format!("/v1/files/{cid}/fetch"),
            None,
        )
        .await?;
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    while !st.complete {
        if tokio::time::Instant::now() > deadline {
            bar.abandon();
            bail!(
                "gave up after {}: {} of {} chunks from {} providers",
                humantime::format_duration(timeout),
                st.have,
                st.chunks.map_or("?".into(), |c| c.to_string()),
                st.providers
            );
        }
        if let Some(size) = st.size {
            bar.set_length(size);
            bar.set_position(st.bytes);
        }
        bar.set_message(if st.providers == 0 {
            "looking for providers".to_string()
        } else {
            format!("{} providers", st.providers)
        });
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        st = api.get(&format!("/v1/files/{cid}")).await?;
    }
    bar.finish_and_clear();
    Ok(st)
}

/// Streams the verified file out of the daemon into `path` (via a temporary file).
async fn write_file(
    api: &ApiClient,
    cid: &str,
    path: &std::path::Path,
    size: u64,
    key: Option<&str>,
) -> Result<u64> {
    use tokio::io::AsyncWriteExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.part",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let written = match api
        .download_with_key(&format!("/v1/files/{cid}/content"), key, &mut f)
        .await
    {
        Ok(n) => n,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
    };
    f.flush().await?;
    f.sync_all().await?;
    drop(f);
    if written != size {
        let _ = tokio::fs::remove_file(&tmp).await;
        bail!("file is incomplete: {written} of {size} bytes");
    }
    tokio::fs::rename(&tmp, path)
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(written)
}
