//! The form Mango posts every webhook in (`application/x-www-form-urlencoded`): the account's
//! API key, the signature and the event's JSON text. Read apart from the HTTP handler so that it
//! can be tested and fuzzed on its own.

/// The three fields of a webhook's form; any other field is ignored, and of a field given twice
/// the last one counts (as a form decoder into a map would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WebhookForm {
    pub vpbx_api_key: Option<String>,
    pub sign: Option<String>,
    pub json: Option<String>,
}

impl WebhookForm {
    /// Decodes a form body. Never fails: bytes that are not UTF-8 after percent-decoding are
    /// replaced (U+FFFD), so a bad key or signature then simply does not match.
    pub fn read(body: &[u8]) -> Self {
        let mut form = WebhookForm::default();
        for (name, value) in form_urlencoded::parse(body) {
            let slot = match name.as_ref() {
                "vpbx_api_key" => &mut form.vpbx_api_key,
                "sign" => &mut form.sign,
                "json" => &mut form.json,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        form
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_fields_and_ignores_the_rest() {
        let form = WebhookForm::read(b"vpbx_api_key=k&sign=abc&json=%7B%22a%22%3A1%7D&other=x");
        assert_eq!(form.vpbx_api_key.as_deref(), Some("k"));
        assert_eq!(form.sign.as_deref(), Some("abc"));
        assert_eq!(form.json.as_deref(), Some("{\"a\":1}"));
    }

    #[test]
    fn a_missing_field_is_none_and_a_repeated_one_keeps_the_last() {
        let form = WebhookForm::read(b"sign=1&sign=2");
        assert_eq!(form.vpbx_api_key, None);
        assert_eq!(form.json, None);
        assert_eq!(form.sign.as_deref(), Some("2"));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_not_refused() {
        let form = WebhookForm::read(b"json=%FF%FE&vpbx_api_key=\xff");
        assert_eq!(form.json.as_deref(), Some("\u{fffd}\u{fffd}"));
        assert_eq!(form.vpbx_api_key.as_deref(), Some("\u{fffd}"));
    }
}
