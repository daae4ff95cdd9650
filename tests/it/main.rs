//! Porter's integration tests: one binary that drives the real app against
//! real Postgres, Redis and SMTP.

mod activation;
mod admin;
mod bad_input;
mod browser;
mod budgets;
mod concurrency;
mod config;
mod delivery;
mod dev_mail;
mod edge;
mod emailed_pages;
mod faults;
mod helpers;
mod layers;
mod locales;
mod openapi;
mod operators;
mod ordering;
mod password_reset;
mod privileges;
mod public_events;
mod queue;
mod rate_limits;
mod registrations;
mod relay;
mod security;
mod services;
mod sessions;
mod sign_in;
mod streams;
mod webhooks;
