//! Creates a queue and a topic with a durable subscription, then lists what the broker has.
//!
//! ```text
//! cargo run -p sluice-client --example admin [BROKER]
//! ```

use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, ErrorCode};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let broker = std::env::args().nth(1).unwrap_or("127.0.0.1:7480".into());
    let client = Client::connect(broker).await?;
    let settings = ChannelSettings {
        partitions: Some(2),
        lease_ms: Some(30_000),
        ..ChannelSettings::default()
    };
    for (name, kind) in [
        ("orders", ChannelKind::Queue),
        ("events", ChannelKind::Topic),
    ] {
        match client.create_channel(name, kind, settings.clone()).await {
            Err(e) if e.code() == Some(ErrorCode::ChannelExists) => println!("{name} exists"),
            other => other?,
        }
    }
    match client
        .create_subscription("events", "audit", true, None)
        .await
    {
        Err(e) if e.code() == Some(ErrorCode::SubscriptionExists) => {}
        other => other?,
    }
    for channel in client.list_channels().await? {
        println!(
            "{:<12} {:<6} {} partitions, {} messages",
            channel.name, channel.kind, channel.partitions, channel.messages
        );
    }
    for sub in client.list_subscriptions("events").await? {
        println!("events/{}: backlog {}", sub.name, sub.backlog);
    }
    Ok(())
}
