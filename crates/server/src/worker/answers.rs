//! Reading the CRM's answers: which answer item is whose, where a call landed; and cutting work
//! into requests of the batch limit.

use super::BATCH;
use callbridge_amocrm::{EntityType, UnknownEntityType};
use serde_json::Value;

/// Where a written call landed, from its saved answer: `None` when it has no entity (it went to
/// unsorted), an error when the CRM named a kind callbridge does not know (the follow-ups are
/// then parked with that reason rather than written onto a guessed kind).
pub(super) fn landed_entity(
    answer: &Value,
) -> Result<Option<(EntityType, u64)>, UnknownEntityType> {
    let (Some(id), Some(name)) = (answer["entity_id"].as_u64(), answer["entity_type"].as_str())
    else {
        return Ok(None);
    };
    Ok(Some((EntityType::from_api(name)?, id)))
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

impl EchoesRequest for callbridge_amocrm::UnsortedCreated {
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
    fn landed_entities_are_read_and_unknown_kinds_are_errors() {
        assert_eq!(
            landed_entity(&json!({"entity_id": 5, "entity_type": "leads"})),
            Ok(Some((EntityType::Leads, 5)))
        );
        assert_eq!(
            landed_entity(&json!({"entity_id": 6, "entity_type": "contact"})),
            Ok(Some((EntityType::Contacts, 6)))
        );
        assert_eq!(landed_entity(&json!({"unsorted_uid": "x"})), Ok(None));
        let err = landed_entity(&json!({"entity_id": 7, "entity_type": "catalog_elements"}))
            .expect_err("an unknown kind is not a contact");
        assert!(err.to_string().contains("catalog_elements"), "{err}");
    }
}
