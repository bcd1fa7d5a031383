//! Policy, above records: what a run may do here and now, decided once as a value that every
//! front end renders. It may import the foundation, hashing, database access and records.
//!
//! - `plan.rs`: the plan: what a run would do and why (public `plan`);
//! - `confirm.rs`: confirmation before migrating, acting on the plan's decision.

pub(crate) mod confirm;
pub mod plan;
