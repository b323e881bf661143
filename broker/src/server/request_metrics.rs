//! The request latency histogram, one series per opcode, with handles registered once.
//!
//! Measured on the connection from a decoded request until the dispatcher returns: the answer
//! itself for requests handled inline (admin, credit, subscribe, detach), admission into the
//! partition's queue for publish, ack, nack and extend, whose durable answer follows later
//! (`sluice_append_duration_seconds` covers a publish's wait for the log).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Histogram;
use sluice_protocol::request::opcode;

/// Opcodes below this get their own `opcode` label; the rest share `other`.
const OPCODES: usize = 64;

/// Records that a request with opcode `op` took `took`.
pub fn observe(op: u16, took: Duration) {
    latency(op).record(took.as_secs_f64());
}

/// The histogram of `op`, registered on first use (after the recorder is installed).
fn latency(op: u16) -> &'static Histogram {
    static BY_OPCODE: OnceLock<Vec<Histogram>> = OnceLock::new();
    let table = BY_OPCODE.get_or_init(|| {
        (0..OPCODES as u16)
            .map(|op| metrics::histogram!("sluice_request_duration_seconds", "opcode" => name(op)))
            .collect()
    });
    &table[usize::from(op).min(OPCODES - 1)]
}

/// The `opcode` label of an opcode.
fn name(op: u16) -> &'static str {
    match op {
        opcode::HANDSHAKE => "handshake",
        opcode::METADATA => "metadata",
        opcode::CREATE_CHANNEL => "create_channel",
        opcode::DELETE_CHANNEL => "delete_channel",
        opcode::LIST_CHANNELS => "list_channels",
        opcode::DESCRIBE_CHANNEL => "describe_channel",
        opcode::PURGE => "purge",
        opcode::REDRIVE => "redrive",
        opcode::CREATE_SUBSCRIPTION => "create_subscription",
        opcode::DELETE_SUBSCRIPTION => "delete_subscription",
        opcode::LIST_SUBSCRIPTIONS => "list_subscriptions",
        opcode::PUBLISH => "publish",
        opcode::INIT_PRODUCER => "init_producer",
        opcode::SUBSCRIBE => "subscribe",
        opcode::DETACH => "detach",
        opcode::CREDIT => "credit",
        opcode::ACK => "ack",
        opcode::NACK => "nack",
        opcode::EXTEND => "extend",
        opcode::REJECT => "reject",
        _ => "other",
    }
}
