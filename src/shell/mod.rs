//! The processes put together: start-up (connecting and building the
//! services once), telemetry, the web process with its route table, the
//! worker with its list of loops and jobs, and the command line. The shell
//! may use every ring; nothing uses the shell.

pub mod cli;
pub mod startup;
pub mod telemetry;
pub mod web;
pub mod worker;
