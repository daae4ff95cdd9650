//! Sign-up: `POST /api/users` records a registration and owes its
//! activation email; the use case is the command runner's
//! (`platform::commands::Commands::sign_up`).

pub mod http;
