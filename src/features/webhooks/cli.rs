//! `porter webhooks list`: the table. What the other subcommands do is
//! `webhooks::manage`, shared with the admin API.

use std::fmt::Write as _;

use crate::{domain::text::printable, features::webhooks::subscriptions::Listed};

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
            s.id,
            s.state,
            s.delivered,
            lag_events,
            lag_seconds,
            s.failed_attempts,
            printable(&s.url)
        );
        let types = s
            .event_types
            .as_ref()
            .map_or_else(|| "all event types".to_owned(), |types| types.join(","));
        let _ = writeln!(text, "{:>90}{}", "", printable(&types));
        if let Some(reason) = &s.state_reason {
            let _ = writeln!(text, "{:>90}{}: {}", "", s.state, printable(reason));
        }
        if let Some(error) = &s.last_error {
            let _ = writeln!(text, "{:>90}last error: {}", "", printable(error));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::text::test_support::{HOSTILE, assert_printable},
        features::webhooks::subscriptions::Subscription,
    };

    #[test]
    fn urls_reasons_and_errors_show_control_characters_escaped() {
        let listed = Listed {
            subscription: Subscription {
                id: uuid::Uuid::nil(),
                url: format!("https://hooks.example/{HOSTILE}"),
                event_types: Some(vec![HOSTILE.into()]),
                state: "paused".into(),
                state_reason: Some(HOSTILE.into()),
                created_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid"),
                delivered: 0,
                last_delivered_at: None,
                failing_since: None,
                failed_attempts: 1,
                last_error: Some(HOSTILE.into()),
                lease_owner: Some(HOSTILE.into()),
                previous_secret_until: None,
            },
            lag_events: 0,
            lag_seconds: 0.0,
        };
        let text = render(&[listed]);
        assert_printable(&text);
        assert_eq!(text.lines().count(), 5, "{text}");
    }
}
