//! Issue 16: the client and the sandbox agree on unsorted requests as amoCRM defines them now:
//! the caller in `metadata.phone` read back in any form, a call note on a pending request's
//! lead, and a pipeline with unsorted off.

use callbridge_amocrm::{
    AccountConfig, AmoClient, AuthConfig, CallNoteParams, EntityType, MemoryTokenStore, NewNote,
    NewUnsortedSip, NoteType, NotesFilter,
};
use callbridge_amocrm_sandbox::{Sandbox, SandboxConfig, Seed};
use std::sync::Arc;

async fn sandbox(unsorted_on: bool) -> Sandbox {
    let seed: Seed = serde_json::from_value(serde_json::json!({
        "account": {"is_unsorted_on": unsorted_on},
    }))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    callbridge_amocrm_sandbox::start(
        listener,
        SandboxConfig {
            seed,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn client(sandbox: &Sandbox) -> AmoClient {
    let config = AccountConfig::new(
        sandbox.base_url(),
        AuthConfig::LongLived {
            token: sandbox.long_lived_token(),
        },
    );
    AmoClient::new(config, Arc::new(MemoryTokenStore::new())).unwrap()
}

fn request(uniq: &str, phone: &str) -> NewUnsortedSip {
    NewUnsortedSip {
        source_uid: "callbridge".into(),
        source_name: "callbridge".into(),
        uniq: uniq.into(),
        phone: phone.into(),
        call_responsible: Some(1001),
        called_at: 1_718_000_000,
        duration: 12,
        link: None,
        service_code: "callbridge".into(),
        contact_name: format!("Client {phone}"),
        lead_name: format!("Incoming call from {phone}"),
        responsible_user_id: None,
        request_id: Some(uniq.into()),
    }
}

#[tokio::test]
async fn a_pending_request_is_found_by_its_caller_and_takes_a_call_note_on_its_lead() {
    let sandbox = sandbox(true).await;
    let client = client(&sandbox);
    let pipelines = client.pipelines().await.unwrap();
    assert_eq!(pipelines[0].is_unsorted_on, Some(true));
    let made = client
        .add_unsorted_sip(&[request("acme/e1/0/call", "+7 916 123-00-21")])
        .await
        .unwrap();
    let lead = made[0].lead_id.unwrap();
    let pending = client.unsorted().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].uniq.as_deref(), Some("acme/e1/0/call"));
    assert!(callbridge_amocrm::same_phone_number(
        pending[0].phone.as_deref().unwrap(),
        "79161230021"
    ));
    // The second call of the number: a note on the pending request's lead, found again by uniq.
    let note = NewNote {
        entity_id: lead,
        note_type: NoteType::CallIn {
            params: CallNoteParams {
                uniq: "acme/e2/0/call".into(),
                duration: 30,
                source: "callbridge".into(),
                phone: "79161230021".into(),
                link: None,
                call_status: Some(4),
                call_result: Some("Incoming call, answered by Ivan (106), 30 s [P1]".into()),
                call_responsible: Some(1001),
            },
        },
        responsible_user_id: Some(1001),
        created_by: Some(1001),
        request_id: Some("acme/e2/0/call".into()),
    };
    client.add_notes(EntityType::Leads, &[note]).await.unwrap();
    let notes = client
        .list_notes(
            EntityType::Leads,
            &NotesFilter {
                note_types: vec!["call_in".into()],
                ..NotesFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].entity_id, lead);
    assert_eq!(notes[0].params["uniq"], "acme/e2/0/call");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_pipeline_with_unsorted_off_says_so_and_refuses_requests() {
    let sandbox = sandbox(false).await;
    let client = client(&sandbox);
    let pipelines = client.pipelines().await.unwrap();
    assert_eq!(pipelines[0].is_unsorted_on, Some(false));
    let err = client
        .add_unsorted_sip(&[request("acme/e1/0/call", "+79161230021")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("turned off"), "{err}");
    sandbox.shutdown().await;
}
