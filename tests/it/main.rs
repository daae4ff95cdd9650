//! Porter's integration tests: one binary that drives the real app against
//! real Postgres, Redis and SMTP.

mod activation;
mod bad_input;
mod browser;
mod concurrency;
mod delivery;
mod emailed_pages;
mod faults;
mod helpers;
mod layers;
mod openapi;
mod operators;
mod ordering;
mod password_reset;
mod queue;
mod relay;
mod security;
mod services;
mod sign_in;
