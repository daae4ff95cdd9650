//! What Porter's integration tests and its benchmark share, kept out of the
//! shipped library: an in-process SMTP server ([`smtp`]).
//!
//! One crate serves both so the bench measures with the same server the
//! tests trust; a change to it is made once.

pub mod smtp;
