//! Reading the CRM's answers: which answer item is whose, where a call landed; and cutting work
//! into requests of the batch limit.

use super::BATCH;
use callbridge_amocrm::EntityType;
use serde_json::Value;

/// amoCRM's `entity_type` of a call answer, as the plural the notes and tasks paths take.
pub(super) fn plural(entity_type: &str) -> &'static str {
    match entity_type.trim_end_matches('s') {
        "lead" => "leads",
        "company" | "companie" => "companies",
        "customer" => "customers",
        _ => "contacts",
    }
}

pub(super) fn landed_entity(answer: &Value) -> Option<(EntityType, u64)> {
    let id = answer["entity_id"].as_u64()?;
    let kind = match answer["entity_type"].as_str()? {
        "leads" => EntityType::Leads,
        "companies" => EntityType::Companies,
        "customers" => EntityType::Customers,
        _ => EntityType::Contacts,
    };
    Some((kind, id))
}

/// The CRM's answer for the item sent `i`-th under `request_id`: matched by the request id it
/// echoes, else by position (amoCRM answers in the order of the request).
pub(super) fn answer_for<'a, T: EchoesRequest>(
    created: &'a [T],
    request_id: &str,
    i: usize,
) -> Option<&'a T> {
    created
        .iter()
        .find(|c| c.request_id() == Some(request_id))
        .or_else(|| created.get(i))
}

/// An answer item that may echo the `request_id` it was created under.
pub(super) trait EchoesRequest {
    fn request_id(&self) -> Option<&str>;
}

impl EchoesRequest for callbridge_amocrm::Created {
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

impl EchoesRequest for callbridge_amocrm::ComplexCreated {
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

/// Splits work into requests of at most [`BATCH`] items.
pub(super) fn chunks_of<T>(mut items: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(BATCH));
        out.push(items);
        items = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entity_types_map_to_plural_paths() {
        assert_eq!(plural("lead"), "leads");
        assert_eq!(plural("leads"), "leads");
        assert_eq!(plural("contact"), "contacts");
        assert_eq!(
            landed_entity(&json!({"entity_id": 5, "entity_type": "leads"})),
            Some((EntityType::Leads, 5))
        );
        assert_eq!(landed_entity(&json!({"unsorted_uid": "x"})), None);
    }
}
