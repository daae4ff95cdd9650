//! Masking personal data for an operator's eyes: an address keeps its
//! domain and a name its first character, so rows stay tellable apart and a
//! provider refusing mail is still visible, while the person is not.
//! `porter events` and `porter deliveries` print through these.

/// `ada.lovelace@example.com` → `a***@example.com`. The domain stays: it
/// is what an operator needs to see a provider refusing mail.
pub fn mask_email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{}@{domain}", mask_name(local)),
        None => mask_name(address),
    }
}

/// `ada` → `a***`: the first character, so rows stay tellable apart.
pub fn mask_name(name: &str) -> String {
    match name.chars().next() {
        Some(first) => format!("{first}***"),
        None => String::new(),
    }
}

/// Masks every `local@domain.tld` inside free text.
pub fn mask_addresses_in(text: &str) -> String {
    let is_local = |c: char| c.is_alphanumeric() || "._%+-'".contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    // `chars[..copied]` is already in `out`.
    let mut copied = 0;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let mut start = i;
            while start > copied && is_local(chars[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < chars.len() && is_domain(chars[end]) {
                end += 1;
            }
            // A full stop after an address ends the sentence, not the domain.
            while end > i + 1 && chars[end - 1] == '.' {
                end -= 1;
            }
            let domain: String = chars[i + 1..end].iter().collect();
            if start < i && domain.contains('.') {
                out.extend(&chars[copied..=start]);
                out.push_str("***@");
                out.push_str(&domain);
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.extend(&chars[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_inside_free_text_are_masked() {
        assert_eq!(
            mask_addresses_in("550 5.1.1 <bob.smith@mail.example.org>: no such user"),
            "550 5.1.1 <b***@mail.example.org>: no such user"
        );
        assert_eq!(mask_addresses_in("a@b"), "a@b", "not an address");
        assert_eq!(mask_addresses_in("to ann@x.org."), "to a***@x.org.");
        assert_eq!(
            mask_addresses_in("x@y.z and é@ü.de"),
            "x***@y.z and é***@ü.de"
        );
    }

    #[test]
    fn masks_keep_one_character() {
        assert_eq!(mask_email("user@example.com"), "u***@example.com");
        assert_eq!(mask_name("user_1"), "u***");
        assert_eq!(mask_name(""), "");
        assert_eq!(mask_email("no-at-sign"), "n***");
    }
}
