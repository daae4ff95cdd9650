//! Porter's outgoing email and the small HTML pages behind the activation
//! link.
//!
//! Sign-up is only finished once the owner of an address proves they read
//! it, so Porter has to send two emails (the activation link, and "someone
//! tried to sign up with your address", which keeps the sign-up endpoint from
//! revealing which addresses have accounts) and serve the pages the link
//! leads to. This module keeps that in one place, apart from the HTTP and job
//! code: [`Templates`] renders emails and pages in the person's locale from
//! templates compiled into the binary (an operator may override any of
//! them), [`Mailer`] delivers over SMTP or into `.eml` files and classifies
//! failures so the sending job knows whether to retry, and [`DevMailbox`]
//! keeps what `porter dev` sent for its `/dev/mail` pages.

mod dev_mailbox;
mod templates;
mod transport;

pub use dev_mailbox::{DevMailbox, DevMessage};
pub use templates::{EmailKind, Page, RenderedEmail, TemplateError, Templates};
pub use transport::{MailTransport, Mailer, SendError, TransportError, compose};
