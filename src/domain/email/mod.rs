//! An e-mail address decides where activation links go and whether an account
//! already exists, so Porter accepts only the plain `name@domain` form that a
//! person types into a sign-up field. The full RFC 5322 grammar also allows
//! display names, quoted strings, comments, IP literals and address lists;
//! each of those is a way to smuggle a second recipient, a header line or a
//! confusing address past a check, and none of them is needed at sign-up, so
//! they are refused with a message that says what to fix.
//!
//! Two spellings of one mailbox must map to one account, so each address also
//! has a canonical form: the domain converted to lower-case ASCII with UTS #46
//! (IDNA), and the local part NFC-normalized and lower-cased. Lower-casing the
//! local part assumes that mailboxes are case-insensitive, which RFC 5321 does
//! not promise but which practically every provider honours; mail should still
//! be delivered to the address as typed.
//!
//! This module holds the address as a whole (its forms and lengths); the
//! rules for each side of the `@` are in `local_part` and `domain`.

mod domain_part;
mod local_part;
#[cfg(test)]
mod tests;

use domain_part::canonical_domain;
use local_part::canonical_local_part;

/// RFC 5321 limits a path to 256 octets including the angle brackets.
const MAX_ADDRESS_LEN: usize = 254;
/// RFC 5321 limits the local part to 64 octets.
const MAX_LOCAL_PART_OCTETS: usize = 64;

/// A validated e-mail address in the form it was typed and in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    as_typed: String,
    canonical: String,
}

/// Why an e-mail address was refused; the messages are meant for an API field
/// error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ADDRESS_LEN} characters long")]
    TooLong,
    #[error("must not contain line breaks or other control characters")]
    ControlCharacter,
    #[error("must be just the address, without a name or angle brackets")]
    DisplayName,
    #[error("must not contain quotation marks")]
    Quoted,
    #[error("must not contain comments in parentheses")]
    Comment,
    #[error("must be a single address like name@example.com")]
    MultipleAddresses,
    #[error("must use a domain name like example.com, not an IP address")]
    IpLiteral,
    #[error("must not contain spaces")]
    Whitespace,
    #[error("must contain an @, like name@example.com")]
    MissingAt,
    #[error("must have a name before the @")]
    EmptyLocalPart,
    #[error("must have at most {MAX_LOCAL_PART_OCTETS} bytes before the @")]
    LocalPartTooLong,
    #[error("must not start or end with a dot or have two dots in a row before the @")]
    LocalPartDots,
    #[error("must not contain {0:?} before the @")]
    InvalidLocalCharacter(char),
    #[error("must have a domain after the @, like example.com")]
    EmptyDomain,
    #[error("must have a valid domain name after the @, like example.com")]
    InvalidDomain,
    #[error("must have a full domain name after the @, like example.com")]
    DomainNeedsDot,
    #[error("must end in a top-level domain made of letters, like .com")]
    NumericTopLevelDomain,
}

impl EmailAddress {
    /// Trims surrounding whitespace from `raw` and checks it against the rules
    /// in the module documentation.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let as_typed = raw.trim();
        if as_typed.is_empty() {
            return Err(EmailError::Empty);
        }
        if as_typed.chars().count() > MAX_ADDRESS_LEN {
            return Err(EmailError::TooLong);
        }
        reject_other_address_forms(as_typed)?;

        let mut parts = as_typed.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(if as_typed.contains('@') {
                EmailError::MultipleAddresses
            } else {
                EmailError::MissingAt
            });
        };

        let canonical = format!(
            "{}@{}",
            canonical_local_part(local)?,
            canonical_domain(domain)?
        );
        // The check on characters above bounds the work; this one bounds what
        // is sent over SMTP, where the domain is Punycode and may be longer.
        if canonical.len() > MAX_ADDRESS_LEN {
            return Err(EmailError::TooLong);
        }
        Ok(Self {
            as_typed: as_typed.to_owned(),
            canonical,
        })
    }

    /// The address an event recorded, taken as recorded, for the reason
    /// [`super::Username::from_record`] gives: an address that today's rules
    /// would refuse is still its account's address, and its canonical form
    /// stays the one its claim holds.
    pub fn from_record(as_typed: &str, canonical: &str) -> Self {
        Self {
            as_typed: as_typed.to_owned(),
            canonical: canonical.to_owned(),
        }
    }

    /// The address as the person typed it, without surrounding whitespace.
    pub fn as_typed(&self) -> &str {
        &self.as_typed
    }

    /// The form that decides whether two addresses are the same mailbox.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

/// Refuses the RFC 5322 constructs that Porter does not accept.
///
/// The checks run in a fixed order so that the message names the most likely
/// intent: `Bob <bob@example.com>` contains a space too, but the fix the person
/// needs is to drop the name.
fn reject_other_address_forms(address: &str) -> Result<(), EmailError> {
    type IsForbidden = fn(char) -> bool;
    let checks: [(IsForbidden, EmailError); 7] = [
        (char::is_control, EmailError::ControlCharacter),
        (|c| matches!(c, '<' | '>'), EmailError::DisplayName),
        (|c| c == '"', EmailError::Quoted),
        (|c| matches!(c, '(' | ')'), EmailError::Comment),
        (|c| matches!(c, ',' | ';'), EmailError::MultipleAddresses),
        (|c| matches!(c, '[' | ']'), EmailError::IpLiteral),
        (char::is_whitespace, EmailError::Whitespace),
    ];
    for (is_forbidden, error) in checks {
        if address.contains(is_forbidden) {
            return Err(error);
        }
    }
    Ok(())
}
