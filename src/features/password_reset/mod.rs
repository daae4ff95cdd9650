//! Password reset: the page behind the emailed link and the `POST` that
//! consumes the reset key and sets the new password.

pub mod http;
