//! End to end: the real `sluicectl` binary against a broker running in this test process.
//!
//! Each test starts its own broker on an ephemeral port, runs `sluicectl --broker ADDR ...` as a
//! child process and asserts on its standard output, standard error and exit status exactly as
//! the command-line contract states them. Nothing sleeps for a fixed time: every wait is on a
//! condition, bounded by [`PATIENCE`].

mod common;

use std::time::Duration;

use common::{sluicectl, Broker, Run, PATIENCE};
use serde_json::Value;

impl Broker {
    /// Runs `sluicectl --broker ADDR COMMAND...` (split on whitespace), stdin empty.
    async fn ctl(&self, command: &str) -> Run {
        self.ctl_args(&words(command)).await
    }

    /// Runs `sluicectl --broker ADDR args...`, for arguments that contain spaces.
    async fn ctl_args(&self, args: &[&str]) -> Run {
        self.run(args, None).await
    }

    /// Runs `sluicectl --broker ADDR COMMAND...` with `input` on standard input.
    async fn ctl_stdin(&self, command: &str, input: &str) -> Run {
        self.run(&words(command), Some(input)).await
    }

    /// Runs a command that must succeed with nothing on standard error; returns its output.
    async fn ok(&self, command: &str) -> String {
        self.ctl(command).await.ok()
    }

    /// Runs a `--json` command that must succeed and print exactly one JSON document.
    async fn json(&self, command: &str) -> Value {
        let stdout = self.ok(&format!("--json {command}")).await;
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{stdout:?} is not JSON: {e}"))
    }

    /// The subscription `name` of `channel`, as `subscription list --json` reports it.
    async fn subscription(&self, channel: &str, name: &str) -> Value {
        let list = self.json(&format!("subscription list {channel}")).await;
        let subs = list.as_array().expect("a JSON array");
        subs.iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no subscription {name} in {list}"))
            .clone()
    }

    /// Polls the subscription until `condition` holds; fails the test after [`PATIENCE`].
    async fn wait_for_subscription(
        &self,
        channel: &str,
        name: &str,
        what: &str,
        condition: impl Fn(&Value) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let sub = self.subscription(channel, name).await;
            if condition(&sub) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {sub}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A command line split into arguments.
fn words(command: &str) -> Vec<&str> {
    command.split_whitespace().collect()
}

/// Parses every line of `stdout` as one JSON object.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// An address nothing listens on: a port bound and released again.
fn unreachable_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_create_list_describe_and_delete_print_what_they_did() {
    let broker = Broker::start().await;

    let created = broker
        .ok("channel create orders --kind queue --partitions 3")
        .await;
    assert_eq!(created, "created queue orders\n");
    let created = broker.ok("channel create events --kind topic").await;
    assert_eq!(created, "created topic events\n");

    let listed = broker.ok("channel list").await;
    let mut lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.remove(0), "NAME    KIND   PARTITIONS  MESSAGES");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "events  topic  1           0",
            "orders  queue  3           0"
        ]
    );

    let described = broker.ok("channel describe orders").await;
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines[0], "channel  orders");
    assert_eq!(lines[1], "kind     queue");
    assert!(lines[2].starts_with("lease    "), "{described}");
    assert!(
        lines[4].starts_with("PARTITION  FIRST  NEXT  COMMITTED"),
        "{described}"
    );
    for (partition, line) in lines[5..8].iter().enumerate() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cells[..4],
            [&*partition.to_string(), "0", "0", "0"],
            "{described}"
        );
    }
    assert!(lines[9].starts_with("SUBSCRIPTION"), "{described}");

    assert_eq!(broker.ok("channel delete orders").await, "deleted orders\n");
    let listed = broker.ok("channel list").await;
    assert_eq!(
        listed,
        "NAME    KIND   PARTITIONS  MESSAGES\nevents  topic  1           0\n"
    );
    broker.ctl("channel describe orders").await.failed();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_commands_with_json_print_parseable_json() {
    let broker = Broker::start().await;

    let created = broker
        .json("channel create orders --kind queue --partitions 2 --lease 45s")
        .await;
    assert_eq!(created, serde_json::json!({ "ok": true }));

    let listed = broker.json("channel list").await;
    assert_eq!(
        listed,
        serde_json::json!([{ "name": "orders", "kind": "queue", "partitions": 2, "messages": 0 }])
    );

    broker.ok("publish orders --key k hello").await;
    let described = broker.json("channel describe orders").await;
    assert_eq!(described["name"], "orders");
    assert_eq!(described["kind"], "queue");
    assert_eq!(described["lease_ms"], 45_000);
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2);
    let stored: u64 = partitions
        .iter()
        .map(|p| p["next_offset"].as_u64().unwrap() - p["first_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 1);
    assert_eq!(
        described["subscriptions"].as_array().unwrap().len(),
        1,
        "a queue has one"
    );

    let listed = broker.json("channel list").await;
    assert_eq!(listed[0]["messages"], 1);

    assert_eq!(
        broker.json("channel delete orders").await,
        serde_json::json!({ "ok": true })
    );
    assert_eq!(broker.json("channel list").await, serde_json::json!([]));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_subscriptions_are_created_and_listed() {
    let broker = Broker::start().await;
    broker.ok("channel create events --kind topic").await;

    let created = broker
        .ok("subscription create events audit --durable")
        .await;
    assert_eq!(created, "created durable subscription events/audit\n");
    let created = broker
        .json("subscription create events billing --durable")
        .await;
    assert_eq!(created, serde_json::json!({ "ok": true }));
    broker.ok("publish events one").await;

    let listed = broker.ok("subscription list events").await;
    let mut lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines.remove(0),
        "SUBSCRIPTION  DURABLE  BACKLOG  IN FLIGHT  CONSUMERS  OLDEST UNACKED"
    );
    lines.sort_unstable();
    assert_eq!(lines.len(), 2, "{listed}");
    for (line, name) in lines.iter().zip(["audit", "billing"]) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[..5], [name, "yes", "1", "0", "0"], "{listed}");
    }

    let listed = broker.json("subscription list events").await;
    let mut names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["audit", "billing"]);
    let audit = broker.subscription("events", "audit").await;
    assert_eq!(audit["durable"], true);
    assert_eq!(audit["backlog"], 1);
    assert_eq!(audit["in_flight"], 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_prints_the_partition_and_offset_it_stored_at() {
    let broker = Broker::start().await;
    broker.ok("channel create orders --kind queue").await;

    assert_eq!(broker.ok("publish orders first").await, "stored 0:0\n");
    assert_eq!(broker.ok("publish orders second").await, "stored 0:1\n");
    let json = broker.json("publish orders third").await;
    assert_eq!(
        json,
        serde_json::json!({ "outcome": "stored", "partition": 0, "offset": 2 })
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_without_payload_stores_one_message_per_stdin_line_in_order() {
    let broker = Broker::start().await;
    broker.ok("channel create orders --kind queue").await;

    let stdout = broker
        .ctl_stdin("publish orders", "alpha\nbeta\r\n\ngamma")
        .await
        .ok();
    assert_eq!(stdout, "stored 0:0\nstored 0:1\nstored 0:2\nstored 0:3\n");

    let lines: String = (0..500).map(|i| format!("m{i}\n")).collect();
    let stdout = broker.ctl_stdin("--json publish orders", &lines).await.ok();
    let outcomes = json_lines(&stdout);
    assert_eq!(outcomes.len(), 500);
    for (i, outcome) in outcomes.iter().enumerate() {
        let expected = serde_json::json!({ "outcome": "stored", "partition": 0, "offset": i + 4 });
        assert_eq!(*outcome, expected);
    }

    let consumed = broker.ok("consume orders --count 4 --timeout 10s").await;
    assert_eq!(
        consumed, "alpha\nbeta\n\ngamma\n",
        "CR stripped, empty line kept"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_takes_exactly_count_and_leaves_the_rest_for_the_next_consumer() {
    let broker = Broker::start().await;
    broker.ok("channel create orders --kind queue").await;
    broker
        .ctl_stdin("publish orders", "m0\nm1\nm2\nm3\nm4\n")
        .await
        .ok();

    let first = broker.ok("consume orders --count 2 --timeout 10s").await;
    assert_eq!(first, "m0\nm1\n");
    let sub = broker.subscription("orders", "orders").await;
    assert_eq!(
        (&sub["backlog"], &sub["in_flight"]),
        (&3.into(), &0.into()),
        "{sub}"
    );

    let second = broker.ok("consume orders --count 10 --timeout 1s").await;
    assert_eq!(second, "m2\nm3\nm4\n");

    let third = broker.ok("consume orders --count 10 --timeout 200ms").await;
    assert_eq!(third, "", "acked messages never come back");
    let sub = broker.subscription("orders", "orders").await;
    assert_eq!(
        (&sub["backlog"], &sub["in_flight"]),
        (&0.into(), &0.into()),
        "{sub}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_exits_after_the_timeout_when_nothing_arrives() {
    let broker = Broker::start().await;
    broker.ok("channel create orders --kind queue").await;

    let started = std::time::Instant::now();
    let stdout = broker.ok("consume orders --timeout 300ms").await;
    assert_eq!(stdout, "");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited the timeout"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_prints_messages_published_while_it_waits() {
    let broker = Broker::start().await;
    broker.ok("channel create orders --kind queue").await;

    let addr = broker.addr.clone();
    let consume = tokio::spawn(async move {
        sluicectl(
            &addr,
            &["consume", "orders", "--count", "2", "--timeout", "15s"],
            None,
        )
        .await
    });
    broker
        .wait_for_subscription("orders", "orders", "the consumer to attach", |s| {
            s["consumers"] == 1
        })
        .await;
    broker.ok("publish orders late-1").await;
    broker.ok("publish orders late-2").await;
    let run = consume.await.unwrap();
    assert_eq!(run.ok(), "late-1\nlate-2\n");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_with_json_prints_one_object_per_message_with_its_metadata() {
    let broker = Broker::start().await;
    broker.ok("channel create orders --kind queue").await;
    let id = "00112233-4455-6677-8899-aabbccddeeff";
    let args = [
        "publish",
        "orders",
        "--key",
        "customer-7",
        "--header",
        "source=web",
        "--header",
        "trace=a=b",
        "--id",
        id,
        "payload one",
    ];
    assert_eq!(broker.ctl_args(&args).await.ok(), "stored 0:0\n");
    broker
        .ctl_args(&["publish", "orders", "payload two"])
        .await
        .ok();

    let stdout = broker
        .ok("--json consume orders --count 2 --timeout 10s")
        .await;
    let messages = json_lines(&stdout);
    assert_eq!(messages.len(), 2, "{stdout}");
    let first = &messages[0];
    assert_eq!(first["payload"], "payload one");
    assert_eq!(first["partition"], 0);
    assert_eq!(first["offset"], 0);
    assert_eq!(first["id"], "00112233445566778899aabbccddeeff");
    assert_eq!(first["key"], "customer-7");
    assert_eq!(
        first["headers"],
        serde_json::json!({ "source": "web", "trace": "a=b" })
    );
    assert_eq!(first["delivery_count"], 1);
    assert_eq!(messages[1]["payload"], "payload two");
    assert_eq!(messages[1]["offset"], 1);
    assert_eq!(messages[1]["key"], Value::Null);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_with_nack_or_no_ack_leaves_the_messages_for_redelivery() {
    let broker = Broker::start().await;
    broker.ok("channel create orders --kind queue").await;
    broker.ctl_stdin("publish orders", "a\nb\n").await.ok();

    let once = "consume orders --count 2 --timeout 10s";
    assert_eq!(broker.ok(&format!("{once} --nack")).await, "a\nb\n");
    assert_eq!(broker.ok(&format!("{once} --no-ack")).await, "a\nb\n");

    let stdout = broker.ok(&format!("--json {once}")).await;
    let messages = json_lines(&stdout);
    let payloads: Vec<&Value> = messages.iter().map(|m| &m["payload"]).collect();
    assert_eq!(payloads, ["a", "b"]);
    for message in &messages {
        assert_eq!(message["delivery_count"], 3, "{message}");
    }
    let sub = broker.subscription("orders", "orders").await;
    assert_eq!(sub["backlog"], 0, "{sub}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_durable_subscription_of_a_topic_gets_every_message() {
    let broker = Broker::start().await;
    broker.ok("channel create events --kind topic").await;
    for name in ["audit", "billing"] {
        broker
            .ok(&format!("subscription create events {name} --durable"))
            .await;
    }
    broker
        .ctl_stdin("publish events", "e1\ne2\ne3\n")
        .await
        .ok();

    for name in ["audit", "billing"] {
        let args = format!("consume events --subscription {name} --count 3 --timeout 10s");
        assert_eq!(
            broker.ok(&args).await,
            "e1\ne2\ne3\n",
            "subscription {name}"
        );
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channels_are_one_error_line_and_a_failure_status() {
    let broker = Broker::start().await;

    let commands = [
        "channel describe nope",
        "channel delete nope",
        "subscription list nope",
        "subscription create nope s --durable",
        "publish nope hello",
        "consume nope --count 1 --timeout 1s",
        "--json publish nope hello",
    ];
    for command in commands {
        let line = broker.ctl(command).await.failed();
        assert!(line.contains("nope"), "{command}: {line}");
    }
    let line = broker.ctl_stdin("publish nope", "a\nb\n").await.failed();
    assert!(line.contains("nope"), "{line}");

    broker.ok("channel create orders --kind queue").await;
    let line = broker
        .ctl("channel create orders --kind queue")
        .await
        .failed();
    assert!(line.contains("orders"), "{line}");
    let args = "consume orders --subscription nope --timeout 1s";
    broker.ctl(args).await.failed();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_one_error_line_and_a_failure_status() {
    let addr = unreachable_addr();
    let commands = [
        "channel list",
        "publish orders hello",
        "consume orders --timeout 1s",
        "--json channel list",
    ];
    for command in commands {
        let line = sluicectl(&addr, &words(command), None).await.failed();
        assert!(line.contains(&addr), "{command}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_never_takes_more_deliveries_than_its_count() {
    let broker = Broker::start().await;
    broker.ok("channel create orders --kind queue").await;
    broker
        .ctl_stdin("publish orders", "m0\nm1\nm2\nm3\nm4\n")
        .await
        .ok();

    let args = "consume orders --count 2 --no-ack --timeout 10s";
    assert_eq!(broker.ok(args).await, "m0\nm1\n");

    let args = "--json consume orders --count 5 --timeout 10s";
    let messages = json_lines(&broker.ok(args).await);
    // Redeliveries may interleave with first deliveries (the returns of the first consumer are
    // applied when durable), so compare without order.
    let mut counts: Vec<(&str, u64)> = messages
        .iter()
        .map(|m| {
            (
                m["payload"].as_str().unwrap(),
                m["delivery_count"].as_u64().unwrap(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [("m0", 2), ("m1", 2), ("m2", 1), ("m3", 1), ("m4", 1)]
    );
    broker.stop().await;
}

/// The partition of a `stored <partition>:<offset>` line.
fn stored_partition(stdout: &str) -> u32 {
    let rest = stdout.strip_prefix("stored ").expect("a stored line");
    let (partition, _) = rest.split_once(':').expect("partition:offset");
    partition.parse().expect("a partition number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_picks_the_partition_and_keyless_publishes_spread_over_partitions() {
    let broker = Broker::start().await;
    let create = "channel create orders --kind queue --partitions 3";
    broker.ok(create).await;

    let keyed = sluice_protocol::types::partition_for_key(b"customer-7", 3);
    for _ in 0..3 {
        let stdout = broker.ok("publish orders --key customer-7 x").await;
        assert_eq!(stored_partition(&stdout), keyed, "{stdout}");
    }

    // Each run is a new producer; if they all started at the same partition, every keyless
    // message would land there. Twenty runs all on one partition by chance: 3^-19.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(stored_partition(&broker.ok("publish orders y").await));
    }
    assert!(
        seen.len() > 1,
        "every keyless publish went to partition {seen:?}"
    );
    assert!(seen.iter().all(|p| *p < 3), "{seen:?}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_and_bad_arguments_fail_with_a_non_zero_status() {
    let broker = Broker::start().await;
    broker.ok("channel create orders --kind queue").await;

    let line = broker
        .ctl("subscription create orders extra --durable")
        .await
        .failed();
    assert!(line.contains("queue"), "{line}");
    broker
        .ctl_args(&["channel", "create", "bad name!", "--kind", "queue"])
        .await
        .failed();
    broker
        .ctl("channel create none --kind queue --partitions 0")
        .await
        .failed();

    // Usage errors are clap's: status 2, the reason on stderr, nothing on stdout.
    let run = broker.ctl("channel create other --kind stream").await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stdout, "");
    assert!(run.stderr.starts_with("error: "), "{run:?}");
    assert!(run.stderr.contains("expected queue or topic"), "{run:?}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_sums_channels_partitions_messages_and_backlog_over_the_broker() {
    let broker = Broker::start().await;
    let empty = broker.json("stats").await;
    assert_eq!(
        (&empty["channels"], &empty["messages"]),
        (&0.into(), &0.into())
    );
    assert_eq!(empty["per_channel"], serde_json::json!([]));

    broker
        .ok("channel create orders --kind queue --partitions 1")
        .await;
    broker
        .ok("channel create events --kind topic --partitions 2")
        .await;
    broker
        .ok("subscription create events audit --durable")
        .await;
    broker.ctl_stdin("publish orders", "a\nb\nc\n").await.ok();
    broker.ctl_stdin("publish events", "x\ny\n").await.ok();
    broker.ok("consume orders --count 1 --timeout 10s").await;

    let stats = broker.json("stats").await;
    let expect = [
        ("channels", 2),
        ("partitions", 3),
        ("messages", 5),
        ("subscriptions", 2),
        ("backlog", 2 + 2),
        ("in_flight", 0),
        ("consumers", 0),
    ];
    for (field, want) in expect {
        assert_eq!(stats[field], want, "{field} in {stats}");
    }
    assert!(stats["bytes"].as_u64().unwrap() > 0, "{stats}");
    let per_channel = stats["per_channel"].as_array().expect("an array");
    let orders = per_channel
        .iter()
        .find(|c| c["name"] == "orders")
        .unwrap_or_else(|| panic!("no orders in {stats}"));
    assert_eq!(
        (
            &orders["name"],
            &orders["kind"],
            &orders["messages"],
            &orders["backlog"]
        ),
        (&"orders".into(), &"queue".into(), &3.into(), &2.into()),
        "{stats}"
    );

    let human = broker.ok("stats").await;
    assert!(human.starts_with("channels        2\n"), "{human}");
    assert!(human.contains("\nbacklog         4\n"), "{human}");
    let row = human
        .lines()
        .find(|l| l.starts_with("events "))
        .unwrap_or_else(|| panic!("no row for events in {human}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..4], ["events", "topic", "2", "2"], "{row}");
    broker.stop().await;
}

/// `--no-ack` holds every message it shows, so its window must cover `--count`: 300 messages
/// come out, where a window of 256 stopped at 256 and waited for the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_no_ack_shows_as_many_as_its_count() {
    let broker = Broker::start().await;
    broker.ok("channel create dead --kind queue").await;
    let lines: String = (0..300).map(|i| format!("m{i}\n")).collect();
    broker.ctl_stdin("publish dead", &lines).await.ok();
    let shown = broker
        .ok("consume dead --count 300 --no-ack --timeout 10s")
        .await;
    assert_eq!(shown, lines);
    // Without a count it shows its default window and exits, rather than wait for credit that
    // held messages never give back; past the most it can hold, it refuses.
    let shown = broker.ok("consume dead --no-ack").await;
    assert_eq!(shown.lines().count(), 256, "{shown}");
    let refused = broker
        .ctl("consume dead --no-ack --count 10001")
        .await
        .failed();
    assert!(refused.contains("at most 10000"), "{refused}");
    broker.stop().await;
}
