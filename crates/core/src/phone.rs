//! Phone numbers as the CRM matches them.

/// Normalises an external phone number to digits (E.164 without `+`), folding the Russian
/// trunk prefix: `8 916 123-45-67`, `+7 (916) 123-45-67` and `79161234567` are one client.
/// Returns `None` for what is not a client number: SIP addresses, short extensions, empty input.
pub fn normalize(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty()
        || raw.contains('@')
        || raw.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("sip:"))
    {
        return None;
    }
    // One allocation: room for the digits and a country code prepended below.
    let mut digits = String::with_capacity(raw.len() + 1);
    digits.extend(raw.chars().filter(|c| c.is_ascii_digit()));
    // A short number (up to 6 digits) is an extension or a service code, not a client.
    if digits.len() <= 6 {
        return None;
    }
    if digits.len() == 11 && digits.starts_with('8') {
        digits.replace_range(..1, "7");
        return Some(digits);
    }
    if digits.len() == 10 && digits.starts_with('9') {
        // A Russian mobile number dialled without the country code.
        digits.insert(0, '7');
        return Some(digits);
    }
    Some(digits)
}

/// The last ten digits, which amoCRM matches calls on.
pub fn last_ten(normalized: &str) -> &str {
    let n = normalized.len();
    &normalized[n.saturating_sub(10)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_forms_fold_to_one_number() {
        for raw in [
            "79161234567",
            "+7 (916) 123-45-67",
            "8 916 123 45 67",
            "9161234567",
        ] {
            assert_eq!(normalize(raw).as_deref(), Some("79161234567"), "{raw}");
        }
    }

    #[test]
    fn sip_and_short_numbers_are_not_clients() {
        assert_eq!(normalize("sip:user101@vpbx400000001.mangosip.ru"), None);
        assert_eq!(normalize("101"), None);
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("user@host"), None);
    }

    #[test]
    fn sip_prefix_is_case_insensitive_and_char_safe() {
        assert_eq!(normalize("SIP:79161234567"), None);
        assert_eq!(normalize("  Sip:79161234567"), None);
        assert_eq!(normalize("sip"), None);
        assert_eq!(
            normalize("Яsip:79161234567").as_deref(),
            Some("79161234567")
        );
    }

    #[test]
    fn foreign_numbers_keep_their_digits() {
        assert_eq!(
            normalize("+44 20 7946 0958").as_deref(),
            Some("442079460958")
        );
        assert_eq!(last_ten("442079460958"), "2079460958");
    }
}
