//! What operators and monitoring see of a deployment as a whole: `porter
//! status` and the scrape-time gauges every process's `/metrics` reports.

pub mod gauges;
pub mod status;
