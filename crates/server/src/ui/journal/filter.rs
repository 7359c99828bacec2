//! The journal's search and filters as the page's form posts them (a GET query, so a search can
//! be bookmarked and sent to a colleague), read into the store's filter. A value the page cannot
//! use is named in a line above the list and left out of the search; the rest still applies.

use super::super::i18n::Catalogue;
use callbridge_core::phone::search_digits;
use callbridge_core::policy::parse_civil_date;
use callbridge_store::{DeliveryFilter, JournalFilter};

/// The query string of `/t/{tenant}/journal`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct JournalQuery {
    /// The client's number, as typed: `8 (916) 123-45-67`, `+7 916…`, or a part of it.
    #[serde(default)]
    pub q: String,
    /// First and last day, `YYYY-MM-DD`, in the tenant's local time.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    /// An employee's extension.
    #[serde(default)]
    pub employee: String,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub delivery: String,
    #[serde(default)]
    pub page: String,
}

/// The search's fields, in the order a query string lists them.
const FIELDS: [&str; 7] = [
    "q",
    "from",
    "to",
    "employee",
    "direction",
    "outcome",
    "delivery",
];

impl JournalQuery {
    /// The value of a field, as the form shows it back.
    pub fn value(&self, field: &str) -> &str {
        match field {
            "q" => &self.q,
            "from" => &self.from,
            "to" => &self.to,
            "employee" => &self.employee,
            "direction" => &self.direction,
            "outcome" => &self.outcome,
            "delivery" => &self.delivery,
            _ => "",
        }
    }

    /// The page asked for, from 1.
    pub fn page(&self) -> i64 {
        self.page
            .trim()
            .parse::<i64>()
            .unwrap_or(1)
            .clamp(1, 1_000_000)
    }

    /// The same search on another page, as a query string.
    pub fn with_page(&self, page: i64) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for field in FIELDS {
            let value = self.value(field);
            if !value.is_empty() {
                out.append_pair(field, value);
            }
        }
        out.append_pair("page", &page.to_string());
        out.finish()
    }

    /// Whether any search or filter is set.
    pub fn is_filtered(&self) -> bool {
        FIELDS.iter().any(|f| !self.value(f).trim().is_empty())
    }

    /// The store's filter, and what could not be used (in the page's words).
    pub fn filter(&self, t: &Catalogue, utc_offset_minutes: i32) -> (JournalFilter, Vec<String>) {
        let mut problems = Vec::new();
        let mut filter = JournalFilter::default();
        if !self.q.trim().is_empty() {
            match search_digits(&self.q) {
                Ok(digits) => filter.phone_digits = Some(digits),
                Err(_) => problems.push(t.fmt("journal.bad-number", &[("value", self.q.trim())])),
            }
        }
        let offset_ms = i64::from(utc_offset_minutes) * 60_000;
        let mut day = |text: &str, field: &str| -> Option<i64> {
            if text.trim().is_empty() {
                return None;
            }
            let days = parse_civil_date(text.trim());
            if days.is_none() {
                problems.push(t.fmt(
                    "journal.bad-date",
                    &[("field", t.get(field)), ("value", text.trim())],
                ));
            }
            days
        };
        let from = day(&self.from, "journal.filter.from");
        let to = day(&self.to, "journal.filter.to");
        // Local midnight to local midnight: the tenant's day, not UTC's.
        filter.from_ms = from.map(|d| d * 86_400_000 - offset_ms);
        filter.to_ms = to.map(|d| (d + 1) * 86_400_000 - offset_ms - 1);
        if !self.employee.trim().is_empty() {
            filter.extension = Some(self.employee.trim().to_string());
        }
        let mut choice = |value: &str, allowed: &[&str], field: &str| -> Option<String> {
            let value = value.trim();
            if value.is_empty() {
                None
            } else if allowed.contains(&value) {
                Some(value.to_string())
            } else {
                problems.push(t.fmt(
                    "journal.bad-choice",
                    &[("field", t.get(field)), ("value", value)],
                ));
                None
            }
        };
        filter.direction = choice(
            &self.direction,
            &["inbound", "outbound", "internal"],
            "journal.filter.direction",
        );
        filter.outcome = choice(
            &self.outcome,
            &["answered", "missed"],
            "journal.filter.outcome",
        );
        filter.delivery = choice(
            &self.delivery,
            &["parked", "pending", "delivered", "nothing_to_deliver"],
            "journal.filter.delivery",
        )
        .and_then(|d| DeliveryFilter::from_name(&d));
        (filter, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_value_is_named_and_the_rest_still_filters() {
        let t = super::super::super::i18n::Lang::En.catalogue();
        let query = JournalQuery {
            q: "8 (916) 123-45-67".into(),
            from: "2025-02-30".into(),
            to: "2025-11-24".into(),
            direction: "sideways".into(),
            outcome: "missed".into(),
            ..JournalQuery::default()
        };
        let (filter, problems) = query.filter(t, 180);
        assert_eq!(filter.phone_digits.as_deref(), Some("9161234567"));
        assert_eq!(filter.from_ms, None);
        // The local day ends at 21:00 UTC for UTC+3.
        assert_eq!(filter.to_ms, Some(1_764_018_000_000 - 1));
        assert_eq!(filter.direction, None);
        assert_eq!(filter.outcome.as_deref(), Some("missed"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("2025-02-30"), "{problems:?}");
        assert!(problems[1].contains("sideways"), "{problems:?}");
        assert_eq!(
            query.with_page(3),
            "q=8+%28916%29+123-45-67&from=2025-02-30&to=2025-11-24&direction=sideways&outcome=missed&page=3"
        );
    }
}
