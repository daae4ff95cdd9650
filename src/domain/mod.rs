//! Porter's domain: values parsed at the edge and the account aggregate.
//!
//! Raw input becomes a newtype with a private field (`EmailAddress`,
//! `Username`, `Password`, `ActivationKey`) before anything else sees it, so
//! the rest of the code cannot forget a check. Nothing here does I/O.

pub mod account;
mod activation_key;
mod email;
pub mod events;
mod locale;
mod password;
pub mod snapshot;
pub mod text;
mod username;

pub use account::{
    Account, AccountCommand, AccountStatus, AddressClaim, DomainError, EmailPlan, Registration,
    RetryNotNeeded, RetryPlan, SignInRefused, decide,
};
pub use activation_key::{ActivationKey, ActivationKeyError};
pub use email::{EmailAddress, EmailError};
pub use events::{AccountEvent, DecodeError, EncodeError, EncodedEvent, PasswordHash};
pub use locale::{Locale, LocaleError};
pub use password::{Password, PasswordError};
pub use username::{Username, UsernameError};
