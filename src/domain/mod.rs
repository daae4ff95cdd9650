//! Porter's domain: values parsed at the edge and the account aggregate.
//!
//! Raw input becomes a newtype with a private field (`EmailAddress`,
//! `Username`, `Password`, `LinkKey`) before anything else sees it, so
//! the rest of the code cannot forget a check. Nothing here does I/O.

pub mod account;
mod email;
pub mod events;
mod link_key;
mod locale;
pub mod masking;
mod password;
pub mod snapshot;
pub mod text;
mod username;

pub use account::{
    Account, AccountCommand, AccountStatus, AddressClaim, DomainError, EmailPlan, Registration,
    RetryNotNeeded, RetryPlan, SignInRefused, decide,
};
pub use email::{EmailAddress, EmailError};
pub use events::{AccountEvent, DecodeError, EncodeError, EncodedEvent, PasswordHash};
pub use link_key::{LinkKey, LinkKeyError};
pub use locale::{Locale, LocaleError};
pub use password::{Password, PasswordError};
pub use username::{Username, UsernameError};
