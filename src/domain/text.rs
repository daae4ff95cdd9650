//! Free text that ends up in an operator's terminal (`porter accounts
//! show`, `porter webhooks list`, `porter status`): what may not be in it,
//! and how it is shown when it is there anyway.
//!
//! A terminal obeys what it prints. ESC starts sequences that clear the
//! screen, recolour, set the window title or answer back; CR and BEL
//! rewrite or interrupt what was shown; a bidirectional override reorders
//! the rest of the line. So free text the API takes is refused at the edge
//! when it holds one ([`has_terminal_control`]), and text that came from
//! elsewhere (a receiver's error, an older event) is shown escaped
//! ([`printable`]).

use std::{borrow::Cow, fmt::Write as _};

/// Whether `c` would drive a terminal or reorder a line rather than show as
/// itself: the C0 and C1 controls and DEL (line breaks too: one value, one
/// line), the line and paragraph separators, and the bidirectional marks,
/// embeddings, overrides and isolates.
pub fn is_terminal_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `text` holds a character [`is_terminal_control`] refuses.
pub fn has_terminal_control(text: &str) -> bool {
    text.contains(is_terminal_control)
}

/// `text` with every [`is_terminal_control`] character written as its
/// `\u{…}` escape, the rest as it is: what every operator table prints of
/// a value it did not make itself.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !has_terminal_control(text) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_terminal_control(c) {
            let _ = write!(shown, "{}", c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_everything_else_is_kept() {
        assert_eq!(
            printable("\u{1b}[2Jbell\u{7}\r\nend\u{9b}1m\u{7f}"),
            "\\u{1b}[2Jbell\\u{7}\\u{d}\\u{a}end\\u{9b}1m\\u{7f}"
        );
        assert_eq!(printable("\u{202e}fdp.exe"), "\\u{202e}fdp.exe");
        let plain = "Zoë's chargeback — 42 € 🙂 \\ \"quoted\"";
        assert!(matches!(printable(plain), Cow::Borrowed(_)));
        assert_eq!(printable(plain), plain);
        assert!(!has_terminal_control(plain));
        assert!(has_terminal_control("a\tb"));
    }
}

#[cfg(test)]
pub mod test_support {
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
