//! `sluicectl`: administer, publish to and consume from a Sluice broker.
//!
//! Output is a human-readable table or line by default and JSON with `--json`. Any failure is one
//! line on standard error and a non-zero exit status.

mod consume;
mod output;
mod publish;
mod settings;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;
use sluice_client::types::ChannelKind;
use sluice_client::Client;

use output::Out;
use settings::SettingsArgs;

/// Administer, publish to and consume from a Sluice broker.
#[derive(Debug, Parser)]
#[command(name = "sluicectl", version)]
struct Cli {
    /// Broker address.
    #[arg(
        long,
        global = true,
        env = "SLUICE_BROKER",
        default_value = "127.0.0.1:7480"
    )]
    broker: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, purge and delete channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Create, list and delete subscriptions.
    #[command(subcommand)]
    Subscription(SubscriptionCommand),
    /// Publish one message, or one per line of standard input.
    Publish(publish::PublishArgs),
    /// Consume messages and print their payloads.
    Consume(consume::ConsumeArgs),
    /// Summarise the broker: channels, partitions, messages, bytes, backlog, consumers.
    Stats,
    /// Publish dead letters back to the channel they came from (or to `--to`).
    Redrive(RedriveArgs),
}

#[derive(Debug, clap::Args)]
struct RedriveArgs {
    /// The dead-letter channel to drain.
    dlq: String,
    /// Publish to this channel instead of each dead letter's source.
    #[arg(long, value_name = "CHANNEL")]
    to: Option<String>,
    /// At most this many dead letters (default: all).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Create a channel.
    Create {
        /// Channel name.
        name: String,
        /// `queue` (point-to-point) or `topic` (publish-subscribe).
        #[arg(long)]
        kind: ChannelKind,
        /// Partitions, lease, dead letters, expiry, contract, dedupe, retention and storage.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
    /// List channels.
    List,
    /// Show a channel's partitions and subscriptions.
    Describe {
        /// Channel name.
        name: String,
    },
    /// Delete a channel and its data.
    Delete {
        /// Channel name.
        name: String,
    },
    /// Drop all stored messages of a channel, or one subscription's backlog.
    Purge {
        /// Channel name.
        name: String,
        /// Only this subscription's backlog.
        #[arg(long)]
        subscription: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SubscriptionCommand {
    /// Create a subscription on a topic.
    Create {
        /// Channel name.
        channel: String,
        /// Subscription name.
        name: String,
        /// Keep the cursor across disconnects and restarts.
        #[arg(long)]
        durable: bool,
        /// Lease of this subscription's deliveries, e.g. `30s`.
        #[arg(long, value_parser = humantime::parse_duration)]
        lease: Option<Duration>,
    },
    /// List a channel's subscriptions.
    List {
        /// Channel name.
        channel: String,
    },
    /// Delete a subscription.
    Delete {
        /// Channel name.
        channel: String,
        /// Subscription name.
        name: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Whether the reader of our output went away (`sluicectl consume | head`): not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Out::new(cli.json);
    let client = Client::connect(cli.broker.clone()).await?;
    match cli.command {
        Command::Channel(command) => channel(&client, &out, command).await,
        Command::Subscription(command) => subscription(&client, &out, command).await,
        Command::Publish(args) => publish::run(&client, &out, args).await,
        Command::Consume(args) => consume::run(&client, &out, args).await,
        Command::Stats => stats::run(&client, &out).await,
        Command::Redrive(args) => redrive(&client, &out, args).await,
    }
}

async fn channel(client: &Client, out: &Out, command: ChannelCommand) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Create {
            name,
            kind,
            settings,
        } => {
            client
                .create_channel(&name, kind, (*settings).settings())
                .await?;
            out.done(&format!("created {kind} {name}"))
        }
        ChannelCommand::List => out.channels(&client.list_channels().await?),
        ChannelCommand::Describe { name } => {
            out.description(&client.describe_channel(&name).await?)
        }
        ChannelCommand::Delete { name } => {
            client.delete_channel(&name).await?;
            out.done(&format!("deleted {name}"))
        }
        ChannelCommand::Purge { name, subscription } => {
            client.purge(&name, subscription.as_deref()).await?;
            out.done(&format!("purged {name}"))
        }
    }
}

async fn redrive(client: &Client, out: &Out, args: RedriveArgs) -> anyhow::Result<()> {
    let n = client
        .redrive(&args.dlq, args.to.as_deref(), args.count)
        .await?;
    if out.json {
        return out.json_line(&json!({ "redriven": n }));
    }
    println!("redriven {n}");
    Ok(())
}

async fn subscription(
    client: &Client,
    out: &Out,
    command: SubscriptionCommand,
) -> anyhow::Result<()> {
    match command {
        SubscriptionCommand::Create {
            channel,
            name,
            durable,
            lease,
        } => {
            client
                .create_subscription(&channel, &name, durable, lease)
                .await?;
            let kind = if durable { "durable" } else { "in-memory" };
            out.done(&format!("created {kind} subscription {channel}/{name}"))
        }
        SubscriptionCommand::List { channel } => {
            out.subscriptions(&client.list_subscriptions(&channel).await?)
        }
        SubscriptionCommand::Delete { channel, name } => {
            client.delete_subscription(&channel, &name).await?;
            out.done(&format!("deleted subscription {channel}/{name}"))
        }
    }
}
