//! The NATS edge: the messages and subjects of the protocol, the JetStream layout, the
//! ledger in KV, and the one place that publishes.

pub mod ledger;
pub mod protocol;
pub mod streams;
