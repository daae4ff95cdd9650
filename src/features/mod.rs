//! One folder per capability. Each holds its use case, shared by the HTTP
//! handlers (`http`), the operator's commands (`cli`) and the worker's jobs
//! (`job`) that sit beside it, so a capability is read in one place.
//!
//! A feature uses the platform, the domain and another feature's use case
//! (never its adapters), without cycles; `tests/it/layers.rs` holds the rule.

pub mod accounts;
pub mod activation;
pub mod address_requests;
pub mod admin;
pub mod emails;
pub mod operations;
pub mod password_reset;
pub mod public_events;
pub mod sign_in;
pub mod sign_up;
pub mod webhooks;
