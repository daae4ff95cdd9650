//! Tests of whole addresses through [`EmailAddress::parse`]: which are
//! accepted and in which canonical form, which are refused with which
//! message, the length limits, and properties over generated addresses.

use proptest::prelude::*;

use super::*;

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
    let atom = "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~\u{C0}-\u{24F}\u{391}-\u{3C9}\u{410}-\u{44F}-]{1,12}";
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
