//! Whether two phone numbers, as people type them into a CRM, are the same number.
//!
//! amoCRM's full-text `query` finds a contact by any field (name, e-mail, a note), and its own
//! phone lookup for calls compares the **last 10 digits**. So a contact the search returns is
//! the caller only if one of its PHONE values is the same number, written in any of the forms
//! the CRM stores as typed: `+7 916 123-45-67`, `8 (916) 123 45 67`, `79161234567`,
//! `9161234567`. The rule here is amoCRM's: only digits count; numbers of 10 digits or more
//! match on their last 10 (the Russian trunk `8` and the country code `7` fall away); shorter
//! ones (extensions, short service numbers) must be equal digit for digit.

/// Digits that decide a number's identity: the last 10, or all of them when there are fewer.
fn significant_digits(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let start = digits.len().saturating_sub(10);
    digits[start..].iter().collect()
}

/// True when `a` and `b` are the same phone number, however each is written (see the module
/// docs). A text without digits is no number and matches nothing.
pub fn same_phone_number(a: &str, b: &str) -> bool {
    let a = significant_digits(a);
    !a.is_empty() && a == significant_digits(b)
}

#[cfg(test)]
mod tests {
    use super::same_phone_number;

    #[test]
    fn every_written_form_of_one_number_matches() {
        let forms = [
            "+79161234567",
            "+7 916 123 45 67",
            "+7 (916) 123-45-67",
            "8 (916) 123-45-67",
            "89161234567",
            "79161234567",
            "9161234567",
            "8-916-123-45-67",
            " +7(916)1234567 ",
        ];
        for a in forms {
            for b in forms {
                assert!(same_phone_number(a, b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn different_numbers_and_non_numbers_do_not_match() {
        assert!(!same_phone_number("+79161234567", "+79161234568"));
        assert!(!same_phone_number("+79161234567", "1234567"));
        assert!(!same_phone_number("105", "1105"));
        assert!(same_phone_number("105", "1-05"));
        assert!(!same_phone_number("", ""));
        assert!(!same_phone_number("Ivan", "Ivan"));
    }
}
