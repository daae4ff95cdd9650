//! Activation: the scanner-safe page behind the emailed link, and the
//! `POST` that consumes the link key and activates (or cancels) the
//! registration.

pub mod http;
