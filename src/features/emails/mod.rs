//! Every email Porter owes: the email job that issues link keys, renders and
//! sends; the outbox relay that re-pushes requests whose job never reached
//! Redis; housekeeping of finished jobs and dead letters; the operator's
//! view of deliveries and their retry; template preview; and the dev
//! mailbox's pages.

pub mod deliveries;
pub mod dev_mail;
pub mod housekeeping;
pub mod job;
pub mod preview;
pub mod relay;
