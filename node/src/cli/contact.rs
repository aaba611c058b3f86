//! `samizdat contact`: this node's card, adding others by their link.

use anyhow::Result;
use clap::Subcommand;

use super::client;
use super::output::{self, Output};
use crate::api::AddContactRequest;
use crate::home::Home;
use crate::node::views::{ContactCardView, ContactView};

#[derive(Debug, Subcommand)]
pub(super) enum ContactCommand {
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

pub(super) async fn contact(home: &Home, out: &Output, cmd: &ContactCommand) -> Result<()> {
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
