//! How Porter talks to the world, for every capability alike: configuration,
//! the event store, the command runner over it, Redis (the email queue and
//! the only file that knows apalis-redis's layout, link keys, sessions, rate
//! limits), mail (transport and templates), the HTTP toolkit, password
//! hashing, metrics, the retry policy, and the services built once from all
//! of them.
//!
//! Platform code uses the domain and other platform modules, never a
//! feature or the shell.

pub mod commands;
pub mod config;
pub mod connections;
pub mod hashing;
pub mod http;
pub mod link_keys;
pub mod mail;
pub mod metrics;
pub mod queue;
pub mod rate_limit;
pub mod retry;
pub mod services;
pub mod sessions;
pub mod store;
