//! The part after the `@`: an internationalized domain name, checked and
//! converted to lower-case ASCII (Punycode) with UTS #46.

use super::EmailError;

/// Converts a domain to lower-case ASCII with UTS #46 in strict mode and
/// checks the rules that UTS #46 leaves to the caller.
///
/// Strict mode already enforces letters, digits and hyphens (STD3 rules), no
/// hyphen at the start or end of a label, labels of 1 to 63 octets, a total of
/// at most 253 octets, valid Punycode in `xn--` labels, and lower case.
pub(super) fn canonical_domain(domain: &str) -> Result<String, EmailError> {
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
}
