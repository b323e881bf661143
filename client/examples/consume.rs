//! Consumes from a channel and acknowledges each message; stops after five idle seconds.
//!
//! ```text
//! cargo run -p sluice-client --example consume [BROKER] [CHANNEL] [SUBSCRIPTION]
//! ```

use std::time::Duration;

use futures::StreamExt;
use sluice_client::Client;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let broker = args.next().unwrap_or("127.0.0.1:7480".into());
    let channel = args.next().unwrap_or("orders".into());
    let client = Client::connect(broker).await?;
    let mut builder = client.consumer(channel).prefetch(500);
    if let Some(subscription) = args.next() {
        builder = builder.subscription(subscription);
    }
    let mut consumer = builder.subscribe().await?;
    println!("attached to {}", consumer.subscription());
    let mut count = 0u64;
    while let Ok(Some(delivery)) =
        tokio::time::timeout(Duration::from_secs(5), consumer.next()).await
    {
        let delivery = delivery?;
        if delivery.delivery_count() > 1 {
            println!("redelivered {}:{}", delivery.partition(), delivery.offset());
        }
        if delivery.payload().starts_with(b"slow") {
            delivery.extend(Duration::from_secs(60)).await?;
        }
        delivery.ack().await?;
        count += 1;
    }
    consumer.close().await?;
    println!("consumed {count}");
    Ok(())
}
