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
    AddContactRequest, AdminRequest, ApiClient, CreateChannelRequest, CreateGroupRequest,
    DialRequest, DmRequest, FollowRequest, HistoryPage, InviteRequest, PostRequest,
};
use crate::dm::DmView;
use crate::files::DownloadStatus;
use crate::group::{GroupMessageView, GroupView};
use crate::home::Home;
use crate::node::FileAdded;
use crate::node::NodeOptions;
use crate::node::views::{
    ChannelView, ContactCardView, ContactView, NodeInfo, PeerView, PostView, SyncStatus,
};
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
    /// Contacts: your card, adding others by their link.
    #[command(subcommand)]
    Contact(ContactCommand),
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
enum RequestsCommand {
    /// Pending requests: `[{"peer_id","kind","received_at","preview"}]`, oldest first.
    List,
    /// Accept a peer's requests: its messages show, its invitations are joined, and it is
    /// known from now on.
    Accept {
        /// Its peer id.
        peer_id: String,
    },
    /// Decline a peer's requests: they are dropped (a later message asks again).
    Decline {
        /// Its peer id.
        peer_id: String,
    },
    /// Decline a peer's requests and block it.
    Block {
        /// Its peer id.
        peer_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ContactCommand {
    /// Show this node's contact card: `{"link", "peer_id"}`.
    Card {
        /// Print the link as a QR code too.
        #[arg(long)]
        qr: bool,
    },
    /// Add a contact from its `samizdat://contact/...` link (its signatures are checked).
    Add {
        /// The link.
        link: String,
        /// A name for the contact.
        #[arg(long)]
        name: Option<String>,
    },
    /// List contacts, oldest first.
    List,
}

#[derive(Debug, Subcommand)]
enum DmCommand {
    /// Send a message: `{"id"}`. Delivered when the peer is online, else held for it.
    Send {
        /// The peer's id.
        peer_id: String,
        /// The text.
        text: String,
        /// Delete it on both sides after this long (e.g. 30s, 1h, 7d).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<humantime::Duration>,
        /// Attach a file (not supported in direct messages yet).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// The conversation with a peer, oldest first.
    History {
        /// The peer's id.
        peer_id: String,
    },
    /// Conversations, the most recently active first: `[{"peer","name","last","count"}]`
    /// (message requests are under `samizdat requests`).
    List,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Create a group owned by this node: `{"id"}`.
    Create {
        /// Its name (only members see it).
        name: String,
    },
    /// Invite a peer (owner only); returns once it is added.
    Invite {
        /// The group's id.
        group_id: String,
        /// The peer's id.
        peer_id: String,
    },
    /// Remove a member (owner only): it cannot read anything posted afterwards.
    Remove {
        /// The group's id.
        group_id: String,
        /// The member's peer id.
        peer_id: String,
    },
    /// Post a message: `{"id"}`.
    Post {
        /// The group's id.
        group_id: String,
        /// The text.
        text: String,
        /// Delete it at every member after this long (e.g. 30s, 1h, 7d).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<humantime::Duration>,
        /// Attach a file (not supported in groups yet).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// The group's messages held here, oldest first.
    History {
        /// The group's id.
        group_id: String,
    },
    /// Groups this node created or joined.
    List,
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
        /// Put this node's own addresses in the invite link: whoever gets the link learns
        /// where this node is. By default the link names bootstrap peers and relays only.
        #[arg(long)]
        include_my_address: bool,
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
        /// Attach this file (it is added to the node first).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Show how far history sync has come: `{"complete", "have", "known"}`.
    SyncStatus {
        /// Channel id.
        id: String,
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
        /// Put this node's own addresses in the invite link shown (see `create`).
        #[arg(long)]
        include_my_address: bool,
    },
    /// Manage the channel's admins.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
enum FileCommand {
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

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Let another node post to this channel (its certificate lasts 7 days and is renewed
    /// while this node is online).
    Add {
        /// Channel id.
        id: String,
        /// The admin's peer id.
        peer_id: String,
    },
    /// Revoke an admin: its posts so far stay, anything it posts later is refused everywhere
    /// (and removed where it already arrived).
    Remove {
        /// Channel id.
        id: String,
        /// The admin's peer id.
        peer_id: String,
    },
    /// The channel's admins: `[{"peer_id","expires_at","revoked","last_seq"}]`.
    List {
        /// Channel id.
        id: String,
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
        Command::Ui { print } => ui(&home, &out, *print).await,
        Command::Channel(cmd) => channel(&home, &out, cmd).await,
        Command::Contact(cmd) => contact(&home, &out, cmd).await,
        Command::Dm(cmd) => dm(&home, &out, cmd).await,
        Command::Group(cmd) => group(&home, &out, cmd).await,
        Command::Requests(cmd) => requests(&home, &out, cmd).await,
        Command::File(cmd) => file(&home, &out, cmd).await,
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

async fn run(cli: &Cli, home: &Home, args: &RunArgs) -> Result<()> {
    let shutdown = CancellationToken::new();
    let opts = NodeOptions {
        passphrase: passphrase(cli)?,
        listen: args.listen.clone(),
        bootstrap: args.bootstrap.clone(),
        init_if_missing: true,
        mdns: None,
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

async fn ui(home: &Home, out: &Output, print_only: bool) -> Result<()> {
    let api = client(home)?;
    let login: serde_json::Value = api.post("/v1/ui/login", &serde_json::json!({})).await?;
    let url = login
        .get("url")
        .and_then(|u| u.as_str())
        .context("the node answered no login link")?
        .to_string();
    if print_only {
        println!("{url}");
        return Ok(());
    }
    let desktop = std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
        || cfg!(target_os = "macos");
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    // The browser gets a 0600 file that forwards to the link, not the link itself: a command
    // line is readable by every local user (/proc/*/cmdline), who could spend the token first.
    let forward = home.path().join("ui-login.html");
    let html = format!(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url={u}\">\
         <title>Samizdat</title><a href=\"{u}\">Open Samizdat</a>",
        u = url.replace('&', "&amp;").replace('"', "&quot;")
    );
    let opened = desktop
        && crate::home::write_private(&forward, html.as_bytes()).is_ok()
        && std::process::Command::new(opener)
            .arg(&forward)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !out.json {
        if opened {
            println!("Opened the web UI in your browser. The link works once, for 5 minutes:");
        } else {
            println!("Open this link in a browser on this machine (it works once, for 5 minutes):");
        }
    }
    out.value(&serde_json::json!({ "url": url, "opened": opened }), || {
        url.clone()
    })
}

async fn contact(home: &Home, out: &Output, cmd: &ContactCommand) -> Result<()> {
    let api = client(home)?;
    match cmd {
        ContactCommand::Card { qr } => {
            let card: ContactCardView = api.get("/v1/contacts/card").await?;
            if *qr {
                // The QR code goes to stderr with --json, so stdout stays one JSON value.
                let code = output::qr(&card.link)?;
                if out.json {
                    eprintln!("{code}");
                } else {
                    println!("{code}");
                }
            }
            out.value(&card, || format!("{}\n{}", card.peer_id, card.link))
        }
        ContactCommand::Add { link, name } => {
            let c: ContactView = api
                .post(
                    "/v1/contacts",
                    &AddContactRequest {
                        link: link.clone(),
                        name: name.clone(),
                    },
                )
                .await?;
            out.value(&c, || format!("added contact {} {}", c.peer_id, c.name))
        }
        ContactCommand::List => {
            let list: Vec<ContactView> = api.get("/v1/contacts").await?;
            out.value(&list, || output::contacts(&list))
        }
    }
}

async fn dm(home: &Home, out: &Output, cmd: &DmCommand) -> Result<()> {
    match cmd {
        DmCommand::Send {
            peer_id,
            text,
            expires_in,
            file,
        } => {
            let peer = path_peer(peer_id)?;
            let api = client(home)?;
            let req = message_request(&api, text, expires_in.as_ref(), file.as_deref()).await?;
            let m: DmView = api.post(&format!("/v1/dm/{peer}"), &req).await?;
            out.value(&m, || format!("sent {}", m.id))
        }
        DmCommand::History { peer_id } => {
            let peer = path_peer(peer_id)?;
            let list: Vec<DmView> = client(home)?.get(&format!("/v1/dm/{peer}")).await?;
            out.value(&list, || output::dm_history(&list))
        }
        DmCommand::List => {
            let list: Vec<crate::dm::DmConversationView> = client(home)?.get("/v1/dm").await?;
            out.value(&list, || {
                if list.is_empty() {
                    return "no conversations".to_string();
                }
                list.iter()
                    .map(|c| {
                        format!(
                            "{} {} ({} messages)",
                            c.peer,
                            c.name.as_deref().unwrap_or(""),
                            c.count
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

async fn group(home: &Home, out: &Output, cmd: &GroupCommand) -> Result<()> {
    let api = client(home)?;
    let gid = |s: &str| -> Result<String> {
        crate::group::parse_group_id(s)
            .map(|g| crate::group::group_hex(&g))
            .map_err(|_| anyhow::anyhow!("not a group id: {s}"))
    };
    match cmd {
        GroupCommand::Create { name } => {
            let g: GroupView = api
                .post("/v1/groups", &CreateGroupRequest { name: name.clone() })
                .await?;
            out.value(&g, || format!("created group {} ({})", g.name, g.id))
        }
        GroupCommand::Invite { group_id, peer_id } => {
            let (id, peer) = (gid(group_id)?, path_peer(peer_id)?);
            let g: GroupView = api
                .post(
                    &format!("/v1/groups/{id}/members"),
                    &InviteRequest {
                        peer_id: peer.to_string(),
                    },
                )
                .await?;
            out.value(&g, || {
                format!("{peer} added to {} ({} members)", g.name, g.members.len())
            })
        }
        GroupCommand::Remove { group_id, peer_id } => {
            let (id, peer) = (gid(group_id)?, path_peer(peer_id)?);
            let g: GroupView = api
                .delete(&format!("/v1/groups/{id}/members/{peer}"))
                .await?;
            out.value(&g, || {
                format!(
                    "{peer} removed from {} ({} members)",
                    g.name,
                    g.members.len()
                )
            })
        }
        GroupCommand::Post {
            group_id,
            text,
            expires_in,
            file,
        } => {
            let id = gid(group_id)?;
            let req = message_request(&api, text, expires_in.as_ref(), file.as_deref()).await?;
            let m: GroupMessageView = api.post(&format!("/v1/groups/{id}/messages"), &req).await?;
            out.value(&m, || format!("posted {}", m.id))
        }
        GroupCommand::History { group_id } => {
            let id = gid(group_id)?;
            let list: Vec<GroupMessageView> = api.get(&format!("/v1/groups/{id}/messages")).await?;
            out.value(&list, || output::group_history(&list))
        }
        GroupCommand::List => {
            let list: Vec<GroupView> = api.get("/v1/groups").await?;
            out.value(&list, || output::groups(&list))
        }
    }
}

/// A peer id checked before it goes into a URL path.
fn path_peer(s: &str) -> Result<libp2p::PeerId> {
    s.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("not a peer id: {s}"))
}

async fn channel(home: &Home, out: &Output, cmd: &ChannelCommand) -> Result<()> {
    let api = client(home)?;
    match cmd {
        ChannelCommand::Create {
            name,
            description,
            include_my_address,
        } => {
            let ch: ChannelView = api
                .post(
                    "/v1/channels",
                    &CreateChannelRequest {
                        name: name.clone(),
                        description: description.clone(),
                        include_my_address: *include_my_address,
                    },
                )
                .await?;
            warn_about_link(&ch);
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
            file,
        } => {
            let id = path_id(id)?;
            let file = match file {
                Some(p) => Some(add_file(&api, p).await?.cid),
                None => None,
            };
            let req = PostRequest {
                text: text.clone(),
                expires_in_ms: expires_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                file,
            };
            let p: PostView = api.post(&format!("/v1/channels/{id}/posts"), &req).await?;
            out.value(&p, || format!("posted {} (seq {})", p.id, p.seq))
        }
        ChannelCommand::History { id, limit } => {
            let id = path_id(id)?;
            let posts = history(&api, &id).await?;
            if !out.json {
                let sync: SyncStatus = api.get(&format!("/v1/channels/{id}/sync")).await?;
                if !sync.complete {
                    eprintln!(
                        "note: history sync still running ({} of {} known posts here)",
                        sync.have, sync.known
                    );
                }
            }
            let posts = match limit {
                Some(n) if posts.len() > *n => posts[posts.len() - n..].to_vec(),
                _ => posts,
            };
            out.value(&posts, || output::history(&posts))
        }
        ChannelCommand::SyncStatus { id } => {
            let st: SyncStatus = api
                .get(&format!("/v1/channels/{}/sync", path_id(id)?))
                .await?;
            out.value(&st, || {
                format!(
                    "{}: {} of {} known posts held{}",
                    if st.complete {
                        "complete"
                    } else {
                        "incomplete"
                    },
                    st.have,
                    st.known,
                    if st.syncing { ", syncing now" } else { "" }
                )
            })
        }
        ChannelCommand::List => {
            let list: Vec<ChannelView> = api.get("/v1/channels").await?;
            out.value(&list, || output::channels(&list))
        }
        ChannelCommand::Show {
            id,
            include_my_address,
        } => {
            let path = format!(
                "/v1/channels/{}{}",
                path_id(id)?,
                if *include_my_address {
                    "?include_my_address=true"
                } else {
                    ""
                }
            );
            let ch: ChannelView = api.get(&path).await?;
            warn_about_link(&ch);
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
        ChannelCommand::Admin(AdminCommand::Remove { id, peer_id }) => {
            let v: serde_json::Value = api
                .delete(&format!("/v1/channels/{}/admins/{peer_id}", path_id(id)?))
                .await?;
            out.value(&v, || {
                format!(
                    "{peer_id} revoked: its posts up to seq {} stay, later ones are refused",
                    v["last_seq"].as_u64().unwrap_or(0)
                )
            })
        }
        ChannelCommand::Admin(AdminCommand::List { id }) => {
            let v: Vec<crate::node::views::AdminView> = api
                .get(&format!("/v1/channels/{}/admins", path_id(id)?))
                .await?;
            out.value(&v, || {
                if v.is_empty() {
                    return "no admins".to_string();
                }
                v.iter()
                    .map(|a| {
                        if a.revoked {
                            format!(
                                "{} revoked (posts up to seq {})",
                                a.peer_id,
                                a.last_seq.unwrap_or(0)
                            )
                        } else {
                            format!(
                                "{} certificate expires {}",
                                a.peer_id,
                                a.expires_at.map_or("never".to_string(), |t| t.to_string())
                            )
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

async fn requests(home: &Home, out: &Output, cmd: &RequestsCommand) -> Result<()> {
    let api = client(home)?;
    let (peer, action) = match cmd {
        RequestsCommand::List => {
            let list: Vec<crate::node::views::RequestView> = api.get("/v1/requests").await?;
            return out.value(&list, || {
                if list.is_empty() {
                    return "no message requests".to_string();
                }
                list.iter()
                    .map(|r| format!("{} {} {}: {}", r.received_at, r.kind, r.peer_id, r.preview))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        RequestsCommand::Accept { peer_id } => (peer_id, "accept"),
        RequestsCommand::Decline { peer_id } => (peer_id, "decline"),
        RequestsCommand::Block { peer_id } => (peer_id, "block"),
    };
    let _: libp2p::PeerId = peer
        .parse()
        .map_err(|_| anyhow::anyhow!("not a peer id: {peer:?}"))?;
    let v: serde_json::Value = api
        .post(
            &format!("/v1/requests/{peer}/{action}"),
            &serde_json::json!({}),
        )
        .await?;
    out.value(&v, || {
        format!(
            "{action}ed {} request(s) from {peer}",
            v["requests"].as_u64().unwrap_or(0)
        )
    })
}

/// Says on stderr what an invite link gives away or lacks (stdout stays the link or JSON).
fn warn_about_link(ch: &ChannelView) {
    if let Some(w) = &ch.link_warning {
        eprintln!("warning: {w}");
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

async fn add_file(api: &ApiClient, path: &std::path::Path) -> Result<FileAdded> {
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

/// The body of a direct or group message: text, expiry, and the file (uploaded encrypted).
async fn message_request(
    api: &ApiClient,
    text: &str,
    expires_in: Option<&humantime::Duration>,
    file: Option<&std::path::Path>,
) -> Result<DmRequest> {
    let attachment = match file {
        Some(p) => Some(attach(api, p).await?),
        None => None,
    };
    Ok(DmRequest {
        text: text.to_string(),
        expires_in_ms: expires_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        file: None,
        attachment,
    })
}

/// Adds a file as a private attachment (encrypted under a new key) and describes it.
async fn attach(api: &ApiClient, path: &std::path::Path) -> Result<crate::dm::AttachmentView> {
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
    let added: FileAdded = api
        .upload(
            &format!("/v1/files?name={}&private=true", url_escape(&name)),
            f,
        )
        .await?;
    Ok(crate::dm::AttachmentView {
        cid: added.cid,
        key: added
            .key
            .context("the node did not encrypt the attachment")?,
        name: added.name,
        size: added.size,
        mime: added.mime,
    })
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn file(home: &Home, out: &Output, cmd: &FileCommand) -> Result<()> {
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
