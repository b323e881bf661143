//! Publishes messages to a channel: a few one by one with `send`, then a burst that the producer
//! batches by itself, then one explicit batch with `send_batch`.
//!
//! ```text
//! cargo run -p sluice-client --example produce [BROKER] [CHANNEL]
//! ```

use std::time::Duration;

use futures::future::try_join_all;
use sluice_client::{Client, Message};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let broker = args.next().unwrap_or("127.0.0.1:7480".into());
    let channel = args.next().unwrap_or("orders".into());
    let client = Client::connect(broker).await?;
    let producer = client
        .producer(channel)
        .linger(Duration::from_millis(2))
        .max_batch_messages(500)
        .build()
        .await?;

    for i in 0..3 {
        let message = Message::new(format!("order {i}"))
            .key(format!("customer-{}", i % 2))
            .header("content-type", "text/plain");
        let outcome = producer.send(message).await?;
        println!("stored {}:{}", outcome.partition(), outcome.offset());
    }

    let burst = (0..10_000).map(|i| producer.send(Message::new(format!("burst {i}"))));
    let outcomes = try_join_all(burst).await?;
    println!("burst of {} stored", outcomes.len());

    let batch = (0..100)
        .map(|i| Message::new(format!("batch {i}")).into())
        .collect();
    let outcomes = producer.send_batch(batch).await?;
    println!("batch stored from offset {}", outcomes[0].offset());
    Ok(())
}
