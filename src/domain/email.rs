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

use unicode_normalization::UnicodeNormalization;

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

/// Checks a local part as an RFC 5322 dot-atom, extended by RFC 6531 to
/// letters and digits of any script, and returns its canonical form.
fn canonical_local_part(local: &str) -> Result<String, EmailError> {
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

/// Converts a domain to lower-case ASCII with UTS #46 in strict mode and
/// checks the rules that UTS #46 leaves to the caller.
///
/// Strict mode already enforces letters, digits and hyphens (STD3 rules), no
/// hyphen at the start or end of a label, labels of 1 to 63 octets, a total of
/// at most 253 octets, valid Punycode in `xn--` labels, and lower case.
fn canonical_domain(domain: &str) -> Result<String, EmailError> {
    if domain.is_empty() {
        return Err(EmailError::EmptyDomain);
    }
    // UTS #46 silently drops some invisible characters, such as U+00AD SOFT
    // HYPHEN, and maps some symbols to dots; refusing them keeps the address as
    // typed equal in meaning to what it looks like.
    if !domain.chars().all(is_domain_char) {
        return Err(EmailError::InvalidDomain);
    }
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| EmailError::InvalidDomain)?;

    let Some((_, top_level)) = ascii.rsplit_once('.') else {
        return Err(EmailError::DomainNeedsDot);
    };
    // An all-numeric top-level domain would make `1.2.3.4` look like a name.
    if top_level.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EmailError::NumericTopLevelDomain);
    }
    Ok(ascii)
}

fn is_domain_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '-' || c == '.'
    } else {
        c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_canonicalizes_valid_addresses() {
        // Each case is (input, expected canonical form, why).
        let cases = [
            ("bob@example.com", "bob@example.com", "plain address"),
            (
                "Bob@Example.COM",
                "bob@example.com",
                "both parts are lower-cased",
            ),
            (
                "  bob@example.com\t\n",
                "bob@example.com",
                "surrounding whitespace is trimmed",
            ),
            (
                "first.last+tag@mail.example.co.uk",
                "first.last+tag@mail.example.co.uk",
                "dots, plus and several labels",
            ),
            (
                "!#$%&'*+-/=?^_`{|}~@example.com",
                "!#$%&'*+-/=?^_`{|}~@example.com",
                "every atext symbol",
            ),
            (
                "user@bücher.de",
                "user@xn--bcher-kva.de",
                "IDN domain becomes Punycode",
            ),
            (
                "user@BÜCHER.DE",
                "user@xn--bcher-kva.de",
                "IDN domain is case-folded first",
            ),
            (
                "user@XN--BCHER-KVA.DE",
                "user@xn--bcher-kva.de",
                "Punycode in upper case",
            ),
            (
                "user@例え.テスト",
                "user@xn--r8jz45g.xn--zckzah",
                "Japanese domain and top-level domain",
            ),
            (
                "JÖRG@example.com",
                "jörg@example.com",
                "non-ASCII local part is lower-cased",
            ),
            (
                "jo\u{301}se@example.com",
                "jóse@example.com",
                "local part is NFC-normalized",
            ),
            (
                "Петя@пример.рф",
                "петя@xn--e1afmkfd.xn--p1ai",
                "Cyrillic address",
            ),
            (
                "\u{928}\u{92E}\u{938}\u{94D}\u{924}\u{947}@example.in",
                "\u{928}\u{92E}\u{938}\u{94D}\u{924}\u{947}@example.in",
                "Devanagari needs combining marks",
            ),
            ("a@b.co", "a@b.co", "shortest realistic address"),
            (
                "user@123.example.com",
                "user@123.example.com",
                "numeric labels other than the last",
            ),
            (
                "user@example.xn--p1ai",
                "user@example.xn--p1ai",
                "Punycode top-level domain",
            ),
            (
                "user@a-b.example.com",
                "user@a-b.example.com",
                "hyphen inside a label",
            ),
        ];
        for (input, canonical, why) in cases {
            let address = EmailAddress::parse(input)
                .unwrap_or_else(|error| panic!("{input:?} ({why}) was refused: {error}"));
            assert_eq!(address.canonical(), canonical, "{input:?} ({why})");
            assert_eq!(address.as_typed(), input.trim(), "{input:?} ({why})");
        }
    }

    #[test]
    fn refuses_invalid_addresses() {
        use EmailError::*;
        let long_label = "a".repeat(64);
        let max_label = "a".repeat(63);
        let cases: Vec<(String, EmailError, &str)> = vec![
            ("".into(), Empty, "empty"),
            ("   ".into(), Empty, "only whitespace"),
            ("Bob <bob@example.com>".into(), DisplayName, "display name"),
            ("<bob@example.com>".into(), DisplayName, "angle brackets"),
            ("\"bob\"@example.com".into(), Quoted, "quoted local part"),
            (
                "\"bob smith\"@example.com".into(),
                Quoted,
                "quoted local part with a space",
            ),
            ("bob(comment)@example.com".into(), Comment, "comment"),
            (
                "bob@example.com, eve@example.com".into(),
                MultipleAddresses,
                "comma list",
            ),
            (
                "bob@example.com;eve@example.com".into(),
                MultipleAddresses,
                "semicolon list",
            ),
            (
                "bob@eve@example.com".into(),
                MultipleAddresses,
                "two at signs",
            ),
            ("bob@[192.0.2.1]".into(), IpLiteral, "IPv4 literal"),
            ("bob@[IPv6:2001:db8::1]".into(), IpLiteral, "IPv6 literal"),
            ("bob smith@example.com".into(), Whitespace, "inner space"),
            ("bob@exa mple.com".into(), Whitespace, "space in the domain"),
            ("bob\u{A0}@example.com".into(), Whitespace, "no-break space"),
            (
                "bob@example.com\r\nBcc: eve@example.com".into(),
                ControlCharacter,
                "header injection",
            ),
            ("bob\n@example.com".into(), ControlCharacter, "line feed"),
            ("bob\u{0}@example.com".into(), ControlCharacter, "NUL"),
            ("bob\u{7F}@example.com".into(), ControlCharacter, "DEL"),
            (
                "bob\u{85}@example.com".into(),
                ControlCharacter,
                "C1 next-line control",
            ),
            ("bob.example.com".into(), MissingAt, "no at sign"),
            ("@example.com".into(), EmptyLocalPart, "no local part"),
            ("bob@".into(), EmptyDomain, "no domain"),
            (
                format!("{}@example.com", "a".repeat(65)),
                LocalPartTooLong,
                "65-byte local part",
            ),
            (
                format!("{}@example.com", "é".repeat(33)),
                LocalPartTooLong,
                "33 two-byte characters",
            ),
            (".bob@example.com".into(), LocalPartDots, "leading dot"),
            ("bob.@example.com".into(), LocalPartDots, "trailing dot"),
            ("bob..smith@example.com".into(), LocalPartDots, "double dot"),
            (
                "bob\\smith@example.com".into(),
                InvalidLocalCharacter('\\'),
                "backslash",
            ),
            (
                "bob:smith@example.com".into(),
                InvalidLocalCharacter(':'),
                "colon",
            ),
            (
                "bob\u{20AC}@example.com".into(),
                InvalidLocalCharacter('\u{20AC}'),
                "currency symbol",
            ),
            (
                "bob\u{1F600}@example.com".into(),
                InvalidLocalCharacter('\u{1F600}'),
                "emoji",
            ),
            (
                "bob\u{202E}@example.com".into(),
                InvalidLocalCharacter('\u{202E}'),
                "right-to-left override",
            ),
            (
                "bob\u{200B}@example.com".into(),
                InvalidLocalCharacter('\u{200B}'),
                "zero-width space",
            ),
            ("bob@localhost".into(), DomainNeedsDot, "single label"),
            ("bob@com".into(), DomainNeedsDot, "bare top-level domain"),
            (
                "bob@192.0.2.1".into(),
                NumericTopLevelDomain,
                "dotted IPv4 address",
            ),
            (
                "bob@example.123".into(),
                NumericTopLevelDomain,
                "numeric top-level domain",
            ),
            ("bob@example..com".into(), InvalidDomain, "empty label"),
            (
                "bob@.example.com".into(),
                InvalidDomain,
                "leading dot in the domain",
            ),
            (
                "bob@example.com.".into(),
                InvalidDomain,
                "trailing root dot",
            ),
            (
                "bob@-example.com".into(),
                InvalidDomain,
                "label starts with a hyphen",
            ),
            (
                "bob@example-.com".into(),
                InvalidDomain,
                "label ends with a hyphen",
            ),
            (
                "bob@ab--cd.example.com".into(),
                InvalidDomain,
                "hyphens in the third and fourth position",
            ),
            ("bob@exa_mple.com".into(), InvalidDomain, "underscore"),
            ("bob@exa!mple.com".into(), InvalidDomain, "symbol"),
            ("bob@xn--zz.com".into(), InvalidDomain, "invalid Punycode"),
            (
                "bob@exa\u{AD}mple.com".into(),
                InvalidDomain,
                "soft hyphen that UTS 46 would drop",
            ),
            (
                "bob@example\u{3002}com".into(),
                InvalidDomain,
                "ideographic full stop",
            ),
            ("bob@\u{2603}.com".into(), InvalidDomain, "snowman"),
            (
                format!("bob@{long_label}.com"),
                InvalidDomain,
                "64-octet label",
            ),
            (
                format!("{}@example.com", "a".repeat(243)),
                TooLong,
                "255 characters",
            ),
            (
                format!("{}@{max_label}.{max_label}.{max_label}.com", "a".repeat(59)),
                TooLong,
                "255 characters with a long domain",
            ),
        ];
        for (input, expected, why) in cases {
            assert_eq!(
                EmailAddress::parse(&input),
                Err(expected),
                "{input:?} ({why})"
            );
        }
    }

    #[test]
    fn accepts_addresses_at_the_length_limits() {
        let max_label = "a".repeat(63);
        let cases = [
            format!("{}@example.com", "a".repeat(64)),
            format!(
                "b@{max_label}.{max_label}.{max_label}.{}.com",
                "a".repeat(56)
            ),
            format!("{}@{max_label}.{max_label}.{max_label}.com", "a".repeat(58)),
        ];
        for input in cases {
            let address = EmailAddress::parse(&input)
                .unwrap_or_else(|error| panic!("{input:?} was refused: {error}"));
            assert!(address.canonical().len() <= MAX_ADDRESS_LEN);
        }
    }

    #[test]
    fn limits_the_punycode_form_not_only_the_typed_form() {
        let max_label = "a".repeat(63);
        let input = format!(
            "aaaaaaaa@{}ä.{max_label}.{max_label}.{max_label}",
            "a".repeat(52)
        );
        assert_eq!(input.chars().count(), MAX_ADDRESS_LEN);
        assert_eq!(EmailAddress::parse(&input), Err(EmailError::TooLong));
    }

    #[test]
    fn limits_the_domain_to_253_octets() {
        // A whole address is limited to 254 octets, so only the domain check
        // itself can show where its own limit lies.
        let max_label = "a".repeat(63);
        let at_limit = format!("{max_label}.{max_label}.{max_label}.{}.com", "a".repeat(57));
        assert_eq!(at_limit.len(), 253);
        assert_eq!(canonical_domain(&at_limit), Ok(at_limit.clone()));
        let over_limit = format!("a{at_limit}");
        assert_eq!(
            canonical_domain(&over_limit),
            Err(EmailError::InvalidDomain)
        );
    }

    #[test]
    fn refuses_huge_input_cheaply() {
        let huge = format!("{}@example.com", "a".repeat(10_000_000));
        assert_eq!(EmailAddress::parse(&huge), Err(EmailError::TooLong));
    }

    #[test]
    fn error_messages_read_as_field_errors() {
        assert_eq!(
            EmailError::MultipleAddresses.to_string(),
            "must be a single address like name@example.com"
        );
        assert_eq!(
            EmailError::InvalidLocalCharacter('\u{202E}').to_string(),
            "must not contain '\\u{202e}' before the @"
        );
        for input in [
            "",
            "a b@c.de",
            "a@b",
            "a@[1.2.3.4]",
            "a..b@c.de",
            "a\u{2603}@c.de",
        ] {
            let message = EmailAddress::parse(input).unwrap_err().to_string();
            assert!(message.starts_with(char::is_lowercase), "{message}");
        }
    }

    fn local_part() -> impl Strategy<Value = String> {
        let atom =
            "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~\u{C0}-\u{24F}\u{391}-\u{3C9}\u{410}-\u{44F}-]{1,12}";
        prop::collection::vec(atom, 1..4).prop_map(|atoms| atoms.join("."))
    }

    fn domain() -> impl Strategy<Value = String> {
        let label =
            "[a-zA-Z0-9\u{E0}-\u{FF}]([a-zA-Z0-9\u{E0}-\u{FF}-]{0,10}[a-zA-Z0-9\u{E0}-\u{FF}])?";
        let top_level = "[a-zA-Z][a-zA-Z0-9]{1,5}";
        (prop::collection::vec(label, 1..4), top_level)
            .prop_map(|(labels, top_level)| format!("{}.{top_level}", labels.join(".")))
    }

    proptest! {
        #[test]
        fn canonical_form_reparses_to_itself(local in local_part(), domain in domain()) {
            let input = format!("{local}@{domain}");
            if let Ok(address) = EmailAddress::parse(&input) {
                let again = EmailAddress::parse(address.canonical()).unwrap();
                prop_assert_eq!(again.canonical(), address.canonical());
                prop_assert_eq!(again.as_typed(), address.canonical());
            }
        }

        #[test]
        fn plain_ascii_addresses_are_accepted_and_lower_cased(
            local in "[a-zA-Z0-9_+-]{1,20}(\\.[a-zA-Z0-9_+-]{1,20}){0,2}",
            domain in "([a-zA-Z0-9]{1,20}\\.){1,3}[a-zA-Z]{2,8}",
        ) {
            let input = format!("{local}@{domain}");
            let address = EmailAddress::parse(&input).unwrap();
            prop_assert_eq!(address.canonical(), input.to_ascii_lowercase());
        }

        #[test]
        fn parsing_never_panics_and_canonical_forms_are_stable(text in any::<String>()) {
            if let Ok(address) = EmailAddress::parse(&text) {
                let again = EmailAddress::parse(address.canonical()).unwrap();
                prop_assert_eq!(again.canonical(), address.canonical());
            }
        }

        #[test]
        fn anything_with_a_control_character_is_refused(
            local in local_part(),
            domain in domain(),
            control in "[\u{0}-\u{8}\u{B}\u{C}\u{E}-\u{1F}\u{7F}-\u{9F}]",
            position in 0usize..3,
        ) {
            let input = match position {
                0 => format!("{local}{control}@{domain}"),
                1 => format!("{local}@{control}{domain}"),
                _ => format!("{local}@{domain}{control}x"),
            };
            prop_assert_eq!(EmailAddress::parse(&input), Err(EmailError::ControlCharacter));
        }
    }
}
