//! The roles: planner, worker, collector and the CLI's client. Each reads alone: a role
//! never imports another; what two roles share lives below them.

pub mod client;
pub mod collector;
pub mod planner;
pub mod worker;
