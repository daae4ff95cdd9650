//! Operator tasks behind `porter events`, `deliveries`, `status`,
//! `accounts`, `api-keys` and `webhooks`.
//! (`porter replay` is the read models' own `projection::replay`.)
//!
//! Each module does its work through library functions that tests call
//! directly and renders plain text for the terminal separately, so what an
//! operator sees is tested as text and what it does is tested against the
//! real Postgres and Redis.

pub mod admin_tables;
pub mod deliveries;
pub mod event_log;
pub mod status;
pub mod template_tools;
pub mod webhook_table;

#[cfg(test)]
pub(crate) mod test_support {
    /// Text from the API or a receiver that tries to drive the operator's
    /// terminal: clear the screen, set the title, ring, go back to the
    /// line's start, a C1 CSI, a right-to-left override.
    pub(crate) const HOSTILE: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}\rfake\u{9b}31m\u{202e}txt";

    /// Fails unless `text` holds only printable characters and line ends,
    /// with what [`HOSTILE`] held shown escaped.
    pub(crate) fn assert_printable(text: &str) {
        let controls: Vec<char> = text
            .chars()
            .filter(|&c| (c.is_control() && c != '\n') || c == '\u{202e}')
            .collect();
        assert!(controls.is_empty(), "{controls:?} in {text:?}");
        assert!(text.contains("\\u{1b}[2J"), "shown escaped: {text:?}");
    }
}
