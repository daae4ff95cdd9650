//! What Porter's integration tests and its benchmark share, kept out of the
//! shipped library: synthetic event histories ([`generate`]), an
//! in-process SMTP server ([`smtp`]) and a webhook receiver ([`webhooks`]).
//!
//! One crate serves both so the bench measures with the same server the
//! tests trust and replays the same history the tests replay; a change to
//! either is made once.

pub mod generate;
pub mod smtp;
pub mod webhooks;
