//! The `samizdat` command line: flag parsing and one function per command. Everything except
//! `init`, `run` and `demo` is a client of the running daemon's API.

mod admin;
mod channel;
mod contact;
mod device;
mod dm;
mod files;
mod group;
mod output;
mod requests;
mod run;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;

use crate::api::{ApiClient, DialRequest};
use crate::home::Home;
use crate::node::views::{NodeInfo, PeerView};
use channel::ChannelCommand;
use contact::ContactCommand;
use device::DeviceCommand;
use dm::DmCommand;
use files::FileCommand;
use group::GroupCommand;
use output::Output;
use requests::RequestsCommand;
use run::RunArgs;

/// Samizdat: a peer-to-peer messenger with no server to block.
#[derive(Debug, Parser)]
#[command(name = "samizdat", version, about, long_about = None)]
pub struct Cli {
    /// The node's home directory (default: $SAMIZDAT_HOME, else the platform data directory).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Print one JSON value on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Read the passphrase from this file (else from $SAMIZDAT_PASSPHRASE).
    #[arg(long, global = true, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the identity, keys and store in the home directory.
    Init {
        /// Join an account as a new device: the link `samizdat device link` printed on one of
        /// its devices. Linking completes when this node runs while that device runs.
        #[arg(long, value_name = "LINK")]
        link: Option<String>,
        /// This device's name in the account (default: the machine's name).
        #[arg(long, value_name = "NAME", requires = "link")]
        name: Option<String>,
    },
    /// Run the node in the foreground (Ctrl-C stops it).
    Run(RunArgs),
    /// Show this node's peer id and addresses.
    Id,
    /// List connected peers.
    Peers,
    /// Connect to a peer by multiaddr.
    Dial {
        /// Multiaddr, ideally ending in /p2p/<peer id>.
        addr: Multiaddr,
    },
    /// Public broadcast channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Contacts: your card, adding others by their link.
    #[command(subcommand)]
    Contact(ContactCommand),
    /// This account's devices: link a new one, list them, revoke a lost one.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Direct messages: end-to-end encrypted (MLS) conversations with one peer.
    #[command(subcommand)]
    Dm(DmCommand),
    /// Private groups: end-to-end encrypted (MLS); the owner invites and removes members.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Message requests: direct messages and group invitations from peers you do not know
    /// wait here (nothing of them is shown or fetched) until you accept them.
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Files: add, fetch, inspect.
    #[command(subcommand)]
    File(FileCommand),
    /// Block a peer: close its connections and refuse new ones (persists across restarts).
    Block {
        /// Its peer id.
        peer_id: String,
    },
    /// Unblock a peer.
    Unblock {
        /// Its peer id.
        peer_id: String,
    },
    /// Start a bootstrap peer and a few nodes on loopback and show a channel working.
    Demo(DemoArgs),
    /// Open the web UI: prints a one-time login link (and opens it where a desktop is present).
    Ui {
        /// Only print the link (as the last line of stdout); do not open a browser.
        #[arg(long)]
        print: bool,
    },
}

/// Options of `samizdat demo`.
#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Nodes besides the bootstrap peer.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=20))]
    pub nodes: u16,
    /// Posts the channel owner makes.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub posts: u16,
}

/// Entry point of the `samizdat` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = !matches!(cli.command, Command::Run(_));
    init_logging(if quiet { "warn" } else { "info" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn passphrase(cli: &Cli) -> Result<Option<String>> {
    if let Some(f) = &cli.passphrase_file {
        let p = std::fs::read_to_string(f)
            .with_context(|| format!("reading passphrase file {}", f.display()))?;
        let p = p.trim_end_matches(['\n', '\r']).to_string();
        if p.is_empty() {
            bail!("passphrase file {} is empty", f.display());
        }
        return Ok(Some(p));
    }
    Ok(std::env::var("SAMIZDAT_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty()))
}

async fn dispatch(cli: Cli) -> Result<()> {
    let home = Home::resolve(cli.home.clone())?;
    let out = Output { json: cli.json };
    match &cli.command {
        Command::Init {
            link: Some(link),
            name,
        } => {
            let (r, code) = crate::node::init_linked(
                &home,
                passphrase(&cli)?.as_deref(),
                link,
                name.as_deref(),
            )?;
            out.value(
                &serde_json::json!({"peer_id": r.peer_id.to_string(), "home": home.path(), "created": true, "code": code}),
                || format!(
                    "initialized: {} (peer id {})\ncode: {code} (compare it with the linking device's)\nlinking completes when `samizdat run` starts here",
                    home.path().display(),
                    r.peer_id
                ),
            )
        }
        Command::Init { link: None, .. } => {
            let r = crate::node::init(&home, passphrase(&cli)?.as_deref())?;
            let state = if r.already {
                "already initialized"
            } else {
                "initialized"
            };
            out.value(
                &serde_json::json!({"peer_id": r.peer_id.to_string(), "home": home.path(), "created": !r.already}),
                || format!("{state}: {} (peer id {})", home.path().display(), r.peer_id),
            )
        }
        Command::Run(args) => run::run(&cli, &home, args).await,
        Command::Demo(args) => crate::demo::run(args.clone(), out.json).await,
        Command::Id => {
            let info: NodeInfo = client(&home)?.get("/v1/node").await?;
            out.value(&info, || output::node_info(&info))
        }
        Command::Peers => {
            let peers: Vec<PeerView> = client(&home)?.get("/v1/peers").await?;
            out.value(&peers, || output::peers(&peers))
        }
        Command::Dial { addr } => {
            let _: serde_json::Value = client(&home)?
                .post(
                    "/v1/dial",
                    &DialRequest {
                        addr: addr.to_string(),
                    },
                )
                .await?;
            out.value(&serde_json::json!({}), || format!("dialing {addr}"))
        }
        Command::Ui { print } => ui::ui(&home, &out, *print).await,
        Command::Channel(cmd) => channel::channel(&home, &out, cmd).await,
        Command::Contact(cmd) => contact::contact(&home, &out, cmd).await,
        Command::Dm(cmd) => dm::dm(&home, &out, cmd).await,
        Command::Device(cmd) => device::device(&home, &out, cmd).await,
        Command::Group(cmd) => group::group(&home, &out, cmd).await,
        Command::Requests(cmd) => requests::requests(&home, &out, cmd).await,
        Command::File(cmd) => files::file(&home, &out, cmd).await,
        Command::Block { peer_id } | Command::Unblock { peer_id } => {
            let block = matches!(cli.command, Command::Block { .. });
            let path = format!("/v1/peers/{peer_id}/block");
            let api = client(&home)?;
            let v: serde_json::Value = if block {
                api.post(&path, &serde_json::json!({})).await?
            } else {
                api.delete(&path).await?
            };
            out.value(&v, || {
                format!("{} {peer_id}", if block { "blocked" } else { "unblocked" })
            })
        }
    }
}

fn client(home: &Home) -> Result<ApiClient> {
    Ok(ApiClient::from_home(home)?)
}

/// A peer id checked before it goes into a URL path.
fn path_peer(s: &str) -> Result<libp2p::PeerId> {
    s.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("not a peer id: {s}"))
}
