//! The part before the `@`: which characters a mailbox name may hold and
//! its canonical (NFC, lower-cased) form.

use unicode_normalization::UnicodeNormalization;

use super::{EmailError, MAX_LOCAL_PART_OCTETS};

/// Checks a local part as an RFC 5322 dot-atom, extended by RFC 6531 to
/// letters and digits of any script, and returns its canonical form.
pub(super) fn canonical_local_part(local: &str) -> Result<String, EmailError> {
    if local.is_empty() {
        return Err(EmailError::EmptyLocalPart);
    }
    if local.len() > MAX_LOCAL_PART_OCTETS {
        return Err(EmailError::LocalPartTooLong);
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(EmailError::LocalPartDots);
    }
    if let Some(c) = local.chars().find(|&c| !is_local_part_char(c)) {
        return Err(EmailError::InvalidLocalCharacter(c));
    }

    let nfc: String = local.nfc().collect();
    let canonical: String = nfc.to_lowercase().nfc().collect();
    // Lower-casing can lengthen a string (U+0130 becomes two code points), and
    // the canonical form must itself be a valid address.
    if canonical.len() > MAX_LOCAL_PART_OCTETS {
        return Err(EmailError::LocalPartTooLong);
    }
    Ok(canonical)
}

/// Accepts RFC 5322 `atext` plus non-ASCII letters, digits and the combining
/// marks that some scripts need to spell names; dots are checked separately.
/// Non-ASCII symbols, spaces and format characters such as bidirectional
/// overrides stay out because no mailbox name needs them.
fn is_local_part_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '.' || "!#$%&'*+-/=?^_`{|}~".contains(c)
    } else {
        c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c)
    }
}
