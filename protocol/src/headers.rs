//! Names of the headers the broker reads or writes. Applications' own headers are theirs; these
//! are the ones Sluice gives a meaning to.
//!
//! ```text
//! dead letter gains                      invalid message gains
//!   sluice-death-reason  max-deliveries    sluice-invalid-reason   the broken rule
//!                        | rejected        sluice-invalid-channel  the channel it was for
//!                        | expired
//!   sluice-death-channel, -subscription, -partition, -offset   where it died
//!   sluice-death-count                     deliveries it had
//!   sluice-death-first-time, -last-time    first and last death, ms since the Unix epoch
//!   sluice-death-error                     the consumer's reject reason, if any
//! ```

/// MIME type of the payload; checked against a channel's `content_types`.
pub const CONTENT_TYPE: &str = "content-type";

/// Why the message was dead-lettered: one of the `DEATH_REASON_*` values.
pub const DEATH_REASON: &str = "sluice-death-reason";
/// Channel the dead letter came from.
pub const DEATH_CHANNEL: &str = "sluice-death-channel";
/// Subscription the dead letter came from.
pub const DEATH_SUBSCRIPTION: &str = "sluice-death-subscription";
/// Partition of the source channel it was stored in.
pub const DEATH_PARTITION: &str = "sluice-death-partition";
/// Offset in that partition.
pub const DEATH_OFFSET: &str = "sluice-death-offset";
/// Delivery count when it died.
pub const DEATH_COUNT: &str = "sluice-death-count";
/// Time it was first dead-lettered, ms since the Unix epoch.
pub const DEATH_FIRST_TIME: &str = "sluice-death-first-time";
/// Time it was last dead-lettered, ms since the Unix epoch.
pub const DEATH_LAST_TIME: &str = "sluice-death-last-time";
/// The reason a consumer gave when it rejected the message.
pub const DEATH_ERROR: &str = "sluice-death-error";

/// Which contract rule the message broke.
pub const INVALID_REASON: &str = "sluice-invalid-reason";
/// The channel whose contract it broke.
pub const INVALID_CHANNEL: &str = "sluice-invalid-channel";

/// `sluice-death-reason` value: delivered more than `max_deliveries` times.
pub const DEATH_REASON_MAX_DELIVERIES: &str = "max-deliveries";
/// `sluice-death-reason` value: a consumer rejected it.
pub const DEATH_REASON_REJECTED: &str = "rejected";
/// `sluice-death-reason` value: its TTL or the channel's `max_age` ran out.
pub const DEATH_REASON_EXPIRED: &str = "expired";

/// Every header name Sluice writes on dead letters; redrive strips these.
pub const DEATH_HEADERS: [&str; 9] = [
    DEATH_REASON,
    DEATH_CHANNEL,
    DEATH_SUBSCRIPTION,
    DEATH_PARTITION,
    DEATH_OFFSET,
    DEATH_COUNT,
    DEATH_FIRST_TIME,
    DEATH_LAST_TIME,
    DEATH_ERROR,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn death_headers_share_the_prefix_and_are_distinct() {
        for (i, name) in DEATH_HEADERS.iter().enumerate() {
            assert!(name.starts_with("sluice-death-"));
            assert!(!DEATH_HEADERS[i + 1..].contains(name));
        }
    }
}
