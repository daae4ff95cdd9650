//! Porter: account sign-up and email activation, event-sourced.
//!
//! The binary is thin (`main.rs` parses the command line and dispatches);
//! everything here is library code so integration tests can start the real web
//! server and worker in-process. See `ARCHITECTURE.md` for the map.

pub mod account_admin;
pub mod api_keys;
pub mod cli;
pub mod commands;
pub mod config;
pub mod connections;
pub mod device_tokens;
pub mod domain;
pub mod gauges;
pub mod hashing;
pub mod http_server;
pub mod link_keys;
pub mod mail;
pub mod metrics;
pub mod ops;
pub mod projection;
pub mod public_events;
pub mod queue;
pub mod rate_limit;
pub mod sessions;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod webhooks;
pub mod worker;
