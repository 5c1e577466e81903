//! The NATS edge: the protocol's messages and subjects, the JetStream layout (and the
//! upgrade from older ones), the ledger in KV, the worker registry, the consuming loop, and the one module that publishes.

pub mod consume;
pub mod history;
pub mod layout;
pub mod ledger;
pub mod legacy;
pub mod limits;
pub mod protocol;
pub mod publish;
pub mod registry;
pub mod streams;
pub mod withdraw;
