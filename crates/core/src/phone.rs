//! Phone numbers as the CRM matches them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A client's phone number, normalised by [`normalize`]: digits only, E.164 without `+`, the
/// Russian trunk prefix folded. Made only by [`Phone::parse`] (stored values are parsed again
/// when read), so two `Phone`s of one client are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    /// The client number in `raw`; `None` for what is not one (see [`normalize`]).
    pub fn parse(raw: &str) -> Option<Phone> {
        normalize(raw).map(Phone)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last ten digits, which amoCRM matches calls and contacts on: two numbers with the
    /// same last ten digits are one client to the CRM.
    pub fn last_ten(&self) -> &str {
        let n = self.0.len();
        &self.0[n.saturating_sub(10)..]
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Phone> for String {
    fn from(phone: Phone) -> String {
        phone.0
    }
}

/// Why a stored string is not a [`Phone`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a client phone number: {0:?}")]
pub struct NotAPhone(String);

impl TryFrom<String> for Phone {
    type Error = NotAPhone;

    fn try_from(raw: String) -> Result<Phone, NotAPhone> {
        Phone::parse(&raw).ok_or(NotAPhone(raw))
    }
}

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

/// Why what a person typed into a number search is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneSearchError {
    #[error("{typed:?} has no digits")]
    NoDigits { typed: String },
    #[error("{typed:?}: {found:?} is not part of a phone number (digits, spaces, + ( ) - . only)")]
    NotANumber { typed: String, found: char },
}

/// The digits to search the client numbers by, from what a person typed: `+7 (916) 123-45-67`,
/// `8 916 123 45 67` and `9161234567` all give `9161234567` (ten or more digits: the last ten,
/// which the CRM matches a client on). Fewer digits are a piece of a number to find anywhere
/// in it (`1234`); a leading `+7`, or an `8` or `7` standing apart (`8 (916`, `7-916`), is the
/// Russian country prefix and is dropped, while `8916` stays as typed (it may be a piece from
/// the middle).
pub fn search_digits(typed: &str) -> Result<String, PhoneSearchError> {
    let text = typed.trim();
    if let Some(found) = text
        .chars()
        .find(|c| !(c.is_ascii_digit() || c.is_whitespace() || "+()-.".contains(*c)))
    {
        return Err(PhoneSearchError::NotANumber {
            typed: typed.to_string(),
            found,
        });
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Err(PhoneSearchError::NoDigits {
            typed: typed.to_string(),
        });
    }
    if digits.len() >= 10 {
        return Ok(digits[digits.len() - 10..].to_string());
    }
    let after_prefix = text.strip_prefix("+7").or_else(|| {
        text.strip_prefix(['8', '7'])
            .filter(|rest| rest.starts_with(|c: char| !c.is_ascii_digit()))
    });
    Ok(match after_prefix {
        Some(rest) if rest.chars().any(|c| c.is_ascii_digit()) => {
            rest.chars().filter(char::is_ascii_digit).collect()
        }
        _ => digits,
    })
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
        let phone = Phone::parse("+44 20 7946 0958").unwrap();
        assert_eq!(phone.last_ten(), "2079460958");
    }

    #[test]
    fn one_client_is_one_phone_and_stored_phones_are_parsed_again() {
        let a = Phone::parse("8 (916) 123-45-67").unwrap();
        let b = Phone::parse("+7 916 1234567").unwrap();
        assert_eq!(a, b);
        assert_eq!((a.as_str(), a.last_ten()), ("79161234567", "9161234567"));
        assert_eq!(serde_json::to_value(&a).unwrap(), "79161234567");
        let read: Phone = serde_json::from_value("89161234567".into()).unwrap();
        assert_eq!(read, a);
        assert!(serde_json::from_value::<Phone>("101".into()).is_err());
        assert_eq!(Phone::parse("sip:101@pbx"), None);
    }

    #[test]
    fn what_a_person_types_becomes_the_digits_to_search_by() {
        for typed in [
            "+7 (916) 123-45-67",
            "8 (916) 123-45-67",
            "8 916 123 45 67",
            "79161234567",
            "89161234567",
            "9161234567",
            " 916.123.45.67 ",
        ] {
            assert_eq!(search_digits(typed).as_deref(), Ok("9161234567"), "{typed}");
        }
        assert_eq!(search_digits("1234").as_deref(), Ok("1234"));
        assert_eq!(search_digits("+7 916").as_deref(), Ok("916"));
        assert_eq!(search_digits("8 (916) 12").as_deref(), Ok("91612"));
        assert_eq!(search_digits("7-916").as_deref(), Ok("916"));
        // Without a separator an 8 may be a piece from the middle of a number.
        assert_eq!(search_digits("8916").as_deref(), Ok("8916"));
        // A foreign number: its last ten digits, as the CRM matches it.
        assert_eq!(
            search_digits("+44 20 7946 0958").as_deref(),
            Ok("2079460958")
        );
        // A prefix alone is still what was typed.
        assert_eq!(search_digits("+7").as_deref(), Ok("7"));
        assert_eq!(
            search_digits(" - "),
            Err(PhoneSearchError::NoDigits {
                typed: " - ".into()
            })
        );
        let err = search_digits("916 abc").unwrap_err();
        assert_eq!(
            err,
            PhoneSearchError::NotANumber {
                typed: "916 abc".into(),
                found: 'a'
            }
        );
        assert!(err.to_string().contains("\"916 abc\""), "{err}");
    }
}
