//! Operator tasks behind `porter events`, `deliveries`, `status`,
//! `accounts`, `api-keys` and `webhooks`.
//! (`porter replay` is the read models' own `projection::replay`.)
//!
//! Each module does its work through library functions that tests call
//! directly and renders plain text for the terminal separately, so what an
//! operator sees is tested as text and what it does is tested against the
//! real Postgres and Redis.

pub mod accounts;
pub mod deliveries;
pub mod events;
pub mod status;
pub mod templates;
pub mod webhooks;
