//! The `samizdat` command line: flag parsing and one function per command. Everything except
//! `init`, `run` and `demo` is a client of the running daemon's API.

mod output;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;
use tokio_util::sync::CancellationToken;

use crate::api::{
    AdminRequest, ApiClient, CreateChannelRequest, DialRequest, FollowRequest, HistoryPage,
    PostRequest,
};
use crate::home::Home;
use crate::node::NodeOptions;
use crate::node::views::{ChannelView, NodeInfo, PeerView, PostView};
use output::Output;

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
    Init,
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
    /// Start a bootstrap peer and a few nodes on loopback and show a channel working.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Listen address (repeatable); replaces `listen` from config.toml.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Bootstrap peer (repeatable), added to `bootstrap` from config.toml.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Local API address (default from config.toml: 127.0.0.1:7420; use 127.0.0.1:0 for any).
    #[arg(long, value_name = "ADDR")]
    api: Option<SocketAddr>,
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

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Create a channel owned by this node.
    Create {
        /// Its name.
        name: String,
        /// A description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Follow a channel by invite link or id.
    Follow {
        /// `samizdat://channel/...` or a channel id.
        target: String,
    },
    /// Stop following a channel.
    Unfollow {
        /// Channel id.
        id: String,
    },
    /// Post to a channel this node owns or administers.
    Post {
        /// Channel id.
        id: String,
        /// The text.
        text: String,
        /// Delete the post everywhere after this long (e.g. 30s, 10m, 1d).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<humantime::Duration>,
    },
    /// Show a channel's history, oldest first.
    History {
        /// Channel id.
        id: String,
        /// Show at most this many posts (the most recent ones).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// List channels owned or followed.
    List,
    /// Show one channel and its invite link.
    Show {
        /// Channel id.
        id: String,
    },
    /// Manage the channel's admins.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Let another node post to this channel.
    Add {
        /// Channel id.
        id: String,
        /// The admin's peer id.
        peer_id: String,
    },
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
        Command::Init => {
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
        Command::Run(args) => run(&cli, &home, args).await,
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
        Command::Channel(cmd) => channel(&home, &out, cmd).await,
    }
}

fn client(home: &Home) -> Result<ApiClient> {
    Ok(ApiClient::from_home(home)?)
}

async fn run(cli: &Cli, home: &Home, args: &RunArgs) -> Result<()> {
    let shutdown = CancellationToken::new();
    let opts = NodeOptions {
        passphrase: passphrase(cli)?,
        listen: args.listen.clone(),
        bootstrap: args.bootstrap.clone(),
        init_if_missing: true,
    };
    let daemon = crate::daemon::Daemon::start(home, opts, args.api, shutdown.clone()).await?;
    let info = daemon.node.info().clone();
    println!("samizdat node {}", info.peer_id);
    for a in &info.addrs {
        println!("listening on {a}");
    }
    println!("api on http://{}", daemon.api_addr);
    tracing::info!(peer_id = %info.peer_id, api = %daemon.api_addr, home = %home.path().display(), "node running");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::daemon::termination_signal().await;
        tracing::info!("stopping");
        stop.cancel();
    });
    daemon.stopped().await;
    Ok(())
}

async fn channel(home: &Home, out: &Output, cmd: &ChannelCommand) -> Result<()> {
    let api = client(home)?;
    match cmd {
        ChannelCommand::Create { name, description } => {
            let ch: ChannelView = api
                .post(
                    "/v1/channels",
                    &CreateChannelRequest {
                        name: name.clone(),
                        description: description.clone(),
                    },
                )
                .await?;
            out.value(&ch, || output::channel_created(&ch))
        }
        ChannelCommand::Follow { target } => {
            let ch: ChannelView = api
                .post(
                    "/v1/channels/follow",
                    &FollowRequest {
                        target: target.clone(),
                    },
                )
                .await?;
            out.value(&ch, || output::channel(&ch))
        }
        ChannelCommand::Unfollow { id } => {
            let v: serde_json::Value = api
                .delete(&format!("/v1/channels/{}", path_id(id)?))
                .await?;
            out.value(&v, || format!("no longer following {id}"))
        }
        ChannelCommand::Post {
            id,
            text,
            expires_in,
        } => {
            let req = PostRequest {
                text: text.clone(),
                expires_in_ms: expires_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            let p: PostView = api
                .post(&format!("/v1/channels/{}/posts", path_id(id)?), &req)
                .await?;
            out.value(&p, || format!("posted {} (seq {})", p.id, p.seq))
        }
        ChannelCommand::History { id, limit } => {
            let posts = history(&api, &path_id(id)?).await?;
            let posts = match limit {
                Some(n) if posts.len() > *n => posts[posts.len() - n..].to_vec(),
                _ => posts,
            };
            out.value(&posts, || output::history(&posts))
        }
        ChannelCommand::List => {
            let list: Vec<ChannelView> = api.get("/v1/channels").await?;
            out.value(&list, || output::channels(&list))
        }
        ChannelCommand::Show { id } => {
            let ch: ChannelView = api.get(&format!("/v1/channels/{}", path_id(id)?)).await?;
            out.value(&ch, || output::channel(&ch))
        }
        ChannelCommand::Admin(AdminCommand::Add { id, peer_id }) => {
            let v: serde_json::Value = api
                .post(
                    &format!("/v1/channels/{}/admins", path_id(id)?),
                    &AdminRequest {
                        peer_id: peer_id.clone(),
                    },
                )
                .await?;
            out.value(&v, || format!("{peer_id} may now post to {id}"))
        }
    }
}

/// Validates a channel id locally, so that a typo gets a clear message before any request.
fn path_id(id: &str) -> Result<String> {
    let parsed: crate::channel::ChannelId =
        id.parse().map_err(|e| anyhow::anyhow!("{e}: {id:?}"))?;
    Ok(parsed.to_string())
}

/// Every page of a channel's history.
async fn history(api: &ApiClient, id: &str) -> Result<Vec<PostView>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(c) => format!("/v1/channels/{id}/posts?after={c}"),
            None => format!("/v1/channels/{id}/posts"),
        };
        let page: HistoryPage = api.get(&path).await?;
        all.extend(page.posts);
        match page.next {
            Some(c) => after = Some(c),
            None => return Ok(all),
        }
    }
}
