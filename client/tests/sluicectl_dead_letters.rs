//! End to end: the `sluicectl` flags of dead letters, invalid messages, expiry and
//! deduplication, with the real binary against a broker running in this test process.
//!
//! Every wait is on a condition (a consumer that takes exactly the expected messages), bounded
//! by [`common::PATIENCE`]; a message TTL runs out when a test advances the broker's clock.

mod common;

use std::time::Duration;

use common::Broker;
use serde_json::Value;

impl Broker {
    /// Runs a command (split on whitespace) that must succeed silently on stderr.
    async fn ok(&self, command: &str) -> String {
        self.ok_args(&command.split_whitespace().collect::<Vec<_>>())
            .await
    }

    /// Runs a command given as arguments that must succeed silently on stderr.
    async fn ok_args(&self, args: &[&str]) -> String {
        let run = self.run(args, None).await;
        assert_eq!(run.code, Some(0), "sluicectl {args:?} failed: {run:?}");
        assert_eq!(
            run.stderr, "",
            "sluicectl {args:?} wrote to stderr: {run:?}"
        );
        run.stdout
    }

    /// Takes exactly one message of `channel` as JSON (waiting for it), acking it.
    async fn take_one(&self, channel: &str) -> Value {
        let stdout = self
            .ok(&format!("--json consume {channel} --count 1"))
            .await;
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{stdout:?}: {e}"))
    }

    /// Asserts that `channel` hands out nothing within `quiet`.
    async fn assert_empty(&self, channel: &str, quiet: &str) {
        let stdout = self
            .ok(&format!("consume {channel} --timeout {quiet}"))
            .await;
        assert_eq!(stdout, "", "{channel} should be empty");
    }
}

fn header<'a>(message: &'a Value, name: &str) -> &'a str {
    message["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no header {name} in {message}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_create_takes_the_contract_and_dead_letter_flags_and_describe_prints_them() {
    let broker = Broker::start().await;
    let create = "channel create orders --kind queue --max-deliveries 3 --dead-letter orders.dlq \
                  --expired-to-dead-letter --max-age 1h --invalid-channel orders.invalid \
                  --payload-format json --max-payload 64KiB --content-type application/json \
                  --content-type text/json --required-header tenant --dedupe-window 5m";
    assert_eq!(broker.ok(create).await, "created queue orders\n");
    let described = broker.ok("channel describe orders").await;
    for line in [
        "max deliveries          3",
        "dead letter             orders.dlq",
        "expired to dead letter  yes",
        "max age                 1h",
        "invalid channel         orders.invalid",
        "payload format          json",
        "max payload             65536 bytes",
        "content types           application/json, text/json",
        "required headers        tenant",
        "dedupe window           5m",
    ] {
        assert!(
            described.lines().any(|l| l == line),
            "{line:?} missing from\n{described}"
        );
    }
    let json: Value = serde_json::from_str(&broker.ok("--json channel describe orders").await)
        .expect("describe prints JSON");
    assert_eq!(json["settings"]["max_deliveries"], 3);
    assert_eq!(json["settings"]["payload_format"], "json");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_reject_dead_letters_each_message_with_its_reason() {
    let broker = Broker::start().await;
    broker
        .ok("channel create orders --kind queue --dead-letter orders.dlq")
        .await;
    broker.ok("channel create orders.dlq --kind queue").await;
    broker.ok("publish orders one").await;
    broker.ok("publish orders two").await;
    let args = ["consume", "orders", "--count", "1", "--reject", "bad total"];
    assert_eq!(broker.ok_args(&args).await, "one\n");
    broker.ok("consume orders --count 1 --reject").await;

    let first = broker.take_one("orders.dlq").await;
    let second = broker.take_one("orders.dlq").await;
    let mut dead = [first, second];
    dead.sort_by_key(|m| m["payload"].as_str().map(str::to_owned));
    assert_eq!(dead[0]["payload"], "one");
    assert_eq!(header(&dead[0], "sluice-death-reason"), "rejected");
    assert_eq!(header(&dead[0], "sluice-death-error"), "bad total");
    assert_eq!(header(&dead[0], "sluice-death-channel"), "orders");
    assert_eq!(
        header(&dead[1], "sluice-death-error"),
        "rejected by sluicectl"
    );
    broker.assert_empty("orders", "300ms").await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_reject_invalid_moves_each_message_to_the_invalid_channel() {
    let broker = Broker::start().await;
    broker
        .ok("channel create orders --kind queue --invalid-channel orders.invalid")
        .await;
    broker
        .ok("channel create orders.invalid --kind queue")
        .await;
    broker.ok("publish orders not-an-order").await;
    let args = [
        "consume",
        "orders",
        "--count",
        "1",
        "--reject-invalid",
        "no customer",
    ];
    assert_eq!(broker.ok_args(&args).await, "not-an-order\n");
    let invalid = broker.take_one("orders.invalid").await;
    assert_eq!(invalid["payload"], "not-an-order");
    assert_eq!(header(&invalid, "sluice-invalid-reason"), "no customer");
    assert_eq!(header(&invalid, "sluice-invalid-channel"), "orders");
    broker.assert_empty("orders", "300ms").await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_prints_invalid_with_the_channel_it_was_routed_to() {
    let broker = Broker::start().await;
    broker
        .ok("channel create orders --kind queue --payload-format json --invalid-channel bad")
        .await;
    broker.ok("channel create bad --kind queue").await;
    let run = broker
        .run(&["publish", "orders"], Some("{\"total\": 1}\nnot json\n"))
        .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(lines[0].starts_with("stored 0:"), "{run:?}");
    assert!(
        lines[1].starts_with("invalid ") && lines[1].ends_with(" -> bad"),
        "{run:?}"
    );
    let json = broker
        .run(&["--json", "publish", "orders", "[1"], None)
        .await;
    let outcome: Value = serde_json::from_str(json.stdout.trim()).expect("one JSON line");
    assert_eq!(outcome["outcome"], "invalid");
    assert_eq!(outcome["routed_to"], "bad");
    assert_eq!(broker.take_one("orders").await["payload"], "{\"total\": 1}");
    broker.assert_empty("orders", "300ms").await;
    let routed = broker.take_one("bad").await;
    assert!(
        routed["headers"]["sluice-invalid-reason"].is_string(),
        "{routed}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_without_an_invalid_channel_refuses_the_message_and_fails() {
    let broker = Broker::start().await;
    broker
        .ok("channel create orders --kind queue --required-header tenant")
        .await;
    let run = broker.run(&["publish", "orders", "anonymous"], None).await;
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("refused "), "{run:?}");
    let stderr: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(stderr.len(), 1, "{run:?}");
    assert!(stderr[0].starts_with("error: ") && stderr[0].contains("InvalidMessage"));
    let args = ["publish", "orders", "--header", "tenant=7", "signed"];
    assert!(broker.ok_args(&args).await.starts_with("stored "));
    assert_eq!(broker.take_one("orders").await["payload"], "signed");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_prints_duplicate_for_an_id_seen_within_the_dedupe_window() {
    let broker = Broker::start().await;
    broker
        .ok("channel create orders --kind queue --dedupe-window 5m")
        .await;
    let first = broker.ok("publish orders --id order-17 hello").await;
    assert_eq!(first, "stored 0:0\n");
    let again = broker.ok("publish orders --id order-17 hello").await;
    assert_eq!(again, "duplicate 0:0\n");
    let json = broker.ok("--json publish orders --id order-17 hello").await;
    let outcome: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(
        outcome,
        serde_json::json!({ "outcome": "duplicate", "partition": 0, "offset": 0 })
    );
    broker.take_one("orders").await;
    broker.assert_empty("orders", "300ms").await;
    // A dedupe key stands for the id: a retry under a new id is still the same message.
    let keyed = broker
        .ok("publish orders --id try-1 --dedupe-key order-18 hello")
        .await;
    assert_eq!(keyed, "stored 0:1\n");
    let retry = broker
        .ok("publish orders --id try-2 --dedupe-key order-18 hello")
        .await;
    assert_eq!(retry, "duplicate 0:1\n");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_ttl_expires_the_message_so_it_is_never_delivered() {
    let broker = Broker::start().await;
    broker.ok("channel create orders --kind queue").await;
    broker.ok("publish orders --ttl 10s brief").await;
    broker.ok("publish orders --ttl 1h lasting").await;
    broker.clock.advance(Duration::from_secs(10));
    assert_eq!(broker.take_one("orders").await["payload"], "lasting");
    broker.assert_empty("orders", "300ms").await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_is_dead_lettered_with_expired_to_dead_letter() {
    let broker = Broker::start().await;
    broker
        .ok("channel create orders --kind queue --dead-letter orders.dlq --expired-to-dead-letter")
        .await;
    broker.ok("channel create orders.dlq --kind queue").await;
    broker.ok("publish orders --ttl 10s brief").await;
    broker.ok("publish orders --ttl 1h lasting").await;
    broker.clock.advance(Duration::from_secs(10));
    assert_eq!(broker.take_one("orders").await["payload"], "lasting");
    broker.assert_empty("orders", "300ms").await;
    let dead = broker.take_one("orders.dlq").await;
    assert_eq!(dead["payload"], "brief");
    assert_eq!(header(&dead, "sluice-death-reason"), "expired");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_publishes_dead_letters_back_without_their_death_headers() {
    let broker = Broker::start().await;
    broker
        .ok("channel create orders --kind queue --dead-letter orders.dlq")
        .await;
    broker.ok("channel create orders.dlq --kind queue").await;
    broker.ok("channel create retry --kind queue").await;
    for payload in ["a", "b", "c"] {
        broker.ok(&format!("publish orders {payload}")).await;
    }
    broker.ok("consume orders --count 3 --reject").await;
    // Wait until all three are dead letters: a consumer that takes them without acking.
    broker.ok("consume orders.dlq --count 3 --no-ack").await;

    assert_eq!(
        broker.ok("redrive orders.dlq --count 1").await,
        "redriven 1\n"
    );
    let back = broker.take_one("orders").await;
    assert!(
        back["headers"].get("sluice-death-reason").is_none(),
        "{back}"
    );
    let json = broker.ok("--json redrive orders.dlq --to retry").await;
    assert_eq!(json.trim(), r#"{"redriven":2}"#);
    broker.ok("consume retry --count 2").await;
    broker.assert_empty("orders.dlq", "300ms").await;
    broker.stop().await;
}
