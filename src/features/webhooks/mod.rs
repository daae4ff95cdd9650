//! Webhooks: public events pushed to the application's receivers, signed
//! as the Standard Webhooks specification says, in log order per
//! subscription, at least once, never skipped.
//!
//! This module holds the parts the worker's deliverer
//! (`deliverer`) and the operator's `porter webhooks` share: the
//! subscriptions and their leases ([`subscriptions`]), the signature
//! ([`signature`]), which URLs may receive ([`destination`]), one
//! delivery attempt ([`sender`]), and what operators and the admin API may
//! ask of a subscription ([`manage`]).

pub mod cli;
pub mod deliverer;
pub mod destination;
pub mod http;
pub mod manage;
pub mod sender;
pub mod signature;
pub mod subscriptions;

pub use sender::{DeliveryError, Outcome, Sender};
pub use signature::Secret;
