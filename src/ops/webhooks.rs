//! `porter webhooks list`: the table. What the other subcommands do is
//! `webhooks::manage`, shared with the admin API.

use std::fmt::Write as _;

use crate::webhooks::subscriptions::Listed;

/// The table `porter webhooks list` prints.
pub fn render(listed: &[Listed]) -> String {
    let mut text = format!(
        "{:<36}  {:<8}  {:>9}  {:>8}  {:>9}  {:>8}  URL / EVENTS / LAST ERROR\n",
        "ID", "STATE", "DELIVERED", "LAG EVTS", "LAG SECS", "FAILURES"
    );
    for Listed {
        subscription: s,
        lag_events,
        lag_seconds,
    } in listed
    {
        let _ = writeln!(
            text,
            "{:<36}  {:<8}  {:>9}  {:>8}  {:>9.1}  {:>8}  {}",
            s.id, s.state, s.delivered, lag_events, lag_seconds, s.failed_attempts, s.url
        );
        let types = s
            .event_types
            .as_ref()
            .map_or_else(|| "all event types".to_owned(), |types| types.join(","));
        let _ = writeln!(text, "{:>90}{types}", "");
        if let Some(reason) = &s.state_reason {
            let _ = writeln!(text, "{:>90}{}: {reason}", "", s.state);
        }
        if let Some(error) = &s.last_error {
            let _ = writeln!(text, "{:>90}last error: {error}", "");
        }
    }
    text
}
