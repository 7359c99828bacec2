//! What the worker asks of a tenant's CRM account, as a trait: [`AmoClient`] answers it over
//! HTTP; the worker's unit tests answer it with a scripted fake, so each delivery decision is
//! tested without a network.

use async_trait::async_trait;
use callbridge_amocrm::{
    AmoClient, CallCardEvent, CallsOutcome, ComplexCreated, Contact, Created, EntityType, Error,
    Lead, NewCall, NewComplexLead, NewContact, NewLead, NewNote, NewTask, NewUnsortedSip, Note,
    NotesFilter, Pipeline, Task, TasksFilter, Unsorted, UnsortedCreated, UnsortedFilter,
};
use std::time::Duration;

/// The CRM calls of the worker, with the meaning [`AmoClient`] gives them: errors are the
/// client's (a 401 is reported after the client's one token refresh; a 429 after its limiter
/// paused the account).
#[async_trait]
pub trait CrmPort: Send + Sync {
    /// Waits until the account's window has room for a request.
    async fn wait_for_place(&self);
    /// How long a request may take before it counts as lost.
    fn timeout(&self) -> Duration;
    async fn add_calls(&self, items: &[NewCall]) -> Result<CallsOutcome, Error>;
    async fn list_notes(
        &self,
        entity: EntityType,
        filter: &NotesFilter,
    ) -> Result<Vec<Note>, Error>;
    async fn create_contacts(&self, items: &[NewContact]) -> Result<Vec<Created>, Error>;
    async fn create_complex_leads(
        &self,
        items: &[NewComplexLead],
    ) -> Result<Vec<ComplexCreated>, Error>;
    async fn create_leads(&self, items: &[NewLead]) -> Result<Vec<Created>, Error>;
    async fn add_unsorted_sip(
        &self,
        items: &[NewUnsortedSip],
    ) -> Result<Vec<UnsortedCreated>, Error>;
    /// Pending unsorted requests of the `sip` category, newest first (accepted and declined
    /// ones are not listed).
    async fn pending_unsorted_sip(&self, filter: &UnsortedFilter) -> Result<Vec<Unsorted>, Error>;
    async fn find_contacts_by_phone(&self, phone: &str) -> Result<Vec<Contact>, Error>;
    async fn pipelines(&self) -> Result<Vec<Pipeline>, Error>;
    async fn contacts_by_ids(&self, ids: &[u64]) -> Result<Vec<Contact>, Error>;
    async fn leads_by_ids(&self, ids: &[u64]) -> Result<Vec<Lead>, Error>;
    async fn list_tasks(&self, filter: &TasksFilter) -> Result<Vec<Task>, Error>;
    async fn create_tasks(&self, items: &[NewTask]) -> Result<Vec<Created>, Error>;
    async fn add_notes(&self, entity: EntityType, items: &[NewNote])
        -> Result<Vec<Created>, Error>;
    async fn show_call_card(&self, events: &[CallCardEvent]) -> Result<(), Error>;
}

#[async_trait]
impl CrmPort for AmoClient {
    async fn wait_for_place(&self) {
        AmoClient::wait_for_place(self).await
    }
    fn timeout(&self) -> Duration {
        AmoClient::timeout(self)
    }
    async fn add_calls(&self, items: &[NewCall]) -> Result<CallsOutcome, Error> {
        AmoClient::add_calls(self, items).await
    }
    async fn list_notes(
        &self,
        entity: EntityType,
        filter: &NotesFilter,
    ) -> Result<Vec<Note>, Error> {
        AmoClient::list_notes(self, entity, filter).await
    }
    async fn create_contacts(&self, items: &[NewContact]) -> Result<Vec<Created>, Error> {
        AmoClient::create_contacts(self, items).await
    }
    async fn create_complex_leads(
        &self,
        items: &[NewComplexLead],
    ) -> Result<Vec<ComplexCreated>, Error> {
        AmoClient::create_complex_leads(self, items).await
    }
    async fn create_leads(&self, items: &[NewLead]) -> Result<Vec<Created>, Error> {
        AmoClient::create_leads(self, items).await
    }
    async fn add_unsorted_sip(
        &self,
        items: &[NewUnsortedSip],
    ) -> Result<Vec<UnsortedCreated>, Error> {
        AmoClient::add_unsorted_sip(self, items).await
    }
    async fn pending_unsorted_sip(&self, filter: &UnsortedFilter) -> Result<Vec<Unsorted>, Error> {
        AmoClient::pending_unsorted_sip(self, filter).await
    }
    async fn find_contacts_by_phone(&self, phone: &str) -> Result<Vec<Contact>, Error> {
        AmoClient::find_contacts_by_phone(self, phone).await
    }
    async fn pipelines(&self) -> Result<Vec<Pipeline>, Error> {
        AmoClient::pipelines(self).await
    }
    async fn contacts_by_ids(&self, ids: &[u64]) -> Result<Vec<Contact>, Error> {
        AmoClient::contacts_by_ids(self, ids).await
    }
    async fn leads_by_ids(&self, ids: &[u64]) -> Result<Vec<Lead>, Error> {
        AmoClient::leads_by_ids(self, ids).await
    }
    async fn list_tasks(&self, filter: &TasksFilter) -> Result<Vec<Task>, Error> {
        AmoClient::list_tasks(self, filter).await
    }
    async fn create_tasks(&self, items: &[NewTask]) -> Result<Vec<Created>, Error> {
        AmoClient::create_tasks(self, items).await
    }
    async fn add_notes(
        &self,
        entity: EntityType,
        items: &[NewNote],
    ) -> Result<Vec<Created>, Error> {
        AmoClient::add_notes(self, entity, items).await
    }
    async fn show_call_card(&self, events: &[CallCardEvent]) -> Result<(), Error> {
        AmoClient::show_call_card(self, events).await
    }
}
