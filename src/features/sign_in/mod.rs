//! Signing in and what a session may do: sessions, `GET /api/me`, password
//! change, signing out; the failed sign-in budgets and the device tokens
//! that keep an owner able to sign in while someone spends them.

pub mod device_tokens;
pub mod http;
