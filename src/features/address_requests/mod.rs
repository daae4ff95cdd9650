//! Address requests (resend an activation email, request a password
//! reset): the web process answers the same whatever the address, and the
//! worker's job decides what the address is owed.

pub mod http;
pub mod job;
