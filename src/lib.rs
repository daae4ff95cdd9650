//! Porter: account sign-up and email activation, event-sourced.
//!
//! The binary is thin (`main.rs` parses the command line and dispatches);
//! everything here is library code so integration tests can start the real web
//! server and worker in-process. The code lives in four rings, each using only
//! the rings before it (`tests/it/layers.rs` holds the rule; ARCHITECTURE.md
//! draws the map):
//!
//! - [`domain`]: pure values, events and the account aggregate;
//! - [`platform`]: how Porter talks to Postgres, Redis, SMTP and HTTP;
//! - [`features`]: one folder per capability, its use case and adapters;
//! - [`shell`]: the processes put together: start-up, the route table, the
//!   worker's loops, the command line.

pub mod domain;
pub mod features;
pub mod platform;
pub mod shell;
