//! The VPBX API client against a local HTTP server that behaves as the documented API: it parses
//! the form, checks the key and recomputes the signature, answers in the documented shapes (with
//! the string-versus-number variations seen in practice), redirects recording requests, and can be
//! told to answer the next request to a path with a canned failure. It records every arrival.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::Response;
use axum::Router;
use callbridge_mango::api::{
    ApiError, GroupOperator, Transcript, VpbxClient, VpbxGroup, VpbxUser, MIN_INTERVAL_GROUPS,
    MIN_INTERVAL_USERS,
};
use serde_json::{json, Value};

const KEY: &str = "9ipl5monmwkkyg3adfx2s6frz7b";
const SALT: &str = "salt-Zq81-never-printed";

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    at: Instant,
    raw_body: Vec<u8>,
    form: HashMap<String, String>,
}

/// A response to give instead of the normal behaviour.
struct Canned {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

struct Api {
    key: String,
    salt: String,
    hits: Mutex<Vec<Hit>>,
    canned: Mutex<HashMap<String, VecDeque<Canned>>>,
}

struct Server {
    addr: SocketAddr,
    api: Arc<Api>,
}

impl Server {
    async fn start() -> Server {
        let api = Arc::new(Api {
            key: KEY.to_owned(),
            salt: SALT.to_owned(),
            hits: Mutex::new(Vec::new()),
            canned: Mutex::new(HashMap::new()),
        });
        let app = Router::new().fallback(handle).with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { addr, api }
    }

    fn base_url(&self) -> String {
        format!("http://{}/vpbx/", self.addr)
    }

    fn client(&self) -> VpbxClient {
        self.client_with_salt(SALT)
    }

    fn client_with_salt(&self, salt: &str) -> VpbxClient {
        VpbxClient::with_base_url(&self.base_url(), KEY, salt).unwrap()
    }

    /// The next request to `path` (e.g. `config/users/request`) gets this answer.
    fn answer_next(&self, path: &str, status: u16, body: impl Into<Vec<u8>>) {
        self.answer_next_with(
            path,
            Canned {
                status,
                location: None,
                body: body.into(),
            },
        );
    }

    fn answer_next_with(&self, path: &str, canned: Canned) {
        self.api
            .canned
            .lock()
            .unwrap()
            .entry(format!("/vpbx/{path}"))
            .or_default()
            .push_back(canned);
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        let path = format!("/vpbx/{path}");
        self.api
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }
}

fn respond(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn handle(State(api): State<Arc<Api>>, uri: Uri, body: Bytes) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    api.hits.lock().unwrap().push(Hit {
        path: path.clone(),
        at,
        raw_body: body.to_vec(),
        form: form.clone(),
    });

    let canned = api
        .canned
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    if let Some(c) = canned {
        let mut response = Response::builder().status(c.status);
        if let Some(location) = c.location {
            response = response.header(header::LOCATION, location);
        }
        return response.body(Body::from(c.body)).unwrap();
    }

    let (Some(key), Some(sign), Some(json)) =
        (form.get("vpbx_api_key"), form.get("sign"), form.get("json"))
    else {
        return respond(420, json!({"code": 3103}));
    };
    if *key != api.key {
        return respond(401, json!({"code": 3105}));
    }
    if !callbridge_mango::verify(&api.key, json, &api.salt, sign) {
        return respond(401, json!({"code": 3102}));
    }
    let Ok(request) = serde_json::from_str::<Value>(json) else {
        return respond(420, json!({"code": 3104}));
    };

    match path.as_str() {
        "/vpbx/config/users/request" => users(&request),
        "/vpbx/groups" => groups(&request),
        "/vpbx/queries/recording/post" => recording(&request),
        "/vpbx/queries/recording_transcripts" => transcripts(&request),
        _ => respond(404, json!({"code": 3100})),
    }
}

fn users(request: &Value) -> Response {
    let ext: Vec<&str> = request["ext_fields"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut users = vec![
        json!({
            "general": {"name": "Иван Петров", "email": "ivan@example.com", "department": "IT",
                        "position": "lead developer", "user_id": 300049012},
            "telephony": {"extension": "101", "outgoingline": "749512345678", "numbers": [
                {"number": "74952223311", "protocol": "tel", "order": "1", "wait_sec": "5", "status": "on"},
                {"number": "sip:ivan@apidomain.mangosip.ru", "protocol": "sip", "order": "0", "wait_sec": "12", "status": "on"}
            ]},
            "groups": [10048964, "10051250"]
        }),
        // Ids and extension in the other representation, an empty e-mail.
        json!({
            "general": {"name": "Ольга", "email": "", "user_id": "300049013"},
            "telephony": {"extension": 102, "numbers": []},
            "groups": []
        }),
        // Almost nothing.
        json!({"general": {"name": "Без телефона"}}),
    ];
    for user in &mut users {
        if !ext.contains(&"general.user_id") {
            if let Some(general) = user["general"].as_object_mut() {
                general.remove("user_id");
            }
        }
        if !ext.contains(&"groups") {
            if let Some(u) = user.as_object_mut() {
                u.remove("groups");
            }
        }
    }
    respond(200, json!({"users": users}))
}

fn groups(request: &Value) -> Response {
    let show_users = matches!(&request["show_users"], Value::Number(n) if n.as_i64() == Some(1))
        || request["show_users"] == json!("1");
    let mut groups = vec![
        json!({"id": 10051250, "name": "Продажи", "description": "Отдел продаж", "extension": "41",
        "dial_alg_group": 1, "dial_alg_users": 1, "auto_redirect": 1, "auto_dial": 18979,
        "line_id": 300029114, "use_dynamic_ivr": 1, "use_dynamic_seq_num": 1, "melody_id": null,
        "operators": [
            {"id": 300049012, "name": "Иван Петров", "extension": "101", "priority": 1, "order": 1},
            {"id": "300049013", "name": "Ольга", "extension": 102, "priority": "2", "order": null}
        ]}),
        json!({"id": "10048964", "name": "Поддержка", "extension": 42, "dial_alg_group": "2",
               "operators": []}),
    ];
    if !show_users {
        for g in &mut groups {
            g.as_object_mut().unwrap().remove("operators");
        }
    }
    respond(200, json!({"result": 1000, "groups": groups}))
}

fn recording(request: &Value) -> Response {
    let (Some(id), Some("play" | "download")) =
        (request["recording_id"].as_str(), request["action"].as_str())
    else {
        return respond(420, json!({"code": 3104}));
    };
    Response::builder()
        .status(302)
        .header(
            header::LOCATION,
            format!("http://127.0.0.1:9/files/{id}.mp3?once=1"),
        )
        .body(Body::empty())
        .unwrap()
}

fn transcripts(request: &Value) -> Response {
    // The id list is a JSON array encoded into a string.
    let Some(Ok(ids)) = request["recording_id"]
        .as_str()
        .map(serde_json::from_str::<Vec<String>>)
    else {
        return respond(420, json!({"code": 3104}));
    };
    if ids.len() > 500 {
        return respond(420, json!({"code": 3100}));
    }
    let data: Vec<Value> = ids
        .iter()
        .filter(|id| !id.starts_with("none"))
        .map(|id| {
            json!({"recording_id": id, "names": {"client": "Клиент", "operator": "Иван"},
                   "phrases": [["operator", format!("здравствуйте, {id}")], ["client", "спасибо до свидания"]]})
        })
        .collect();
    respond(200, json!({"result": 1000, "data": data}))
}

// ---- tests ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn users_are_parsed_with_string_and_number_variations() {
    let server = Server::start().await;
    let users = server.client().users().await.unwrap();
    assert_eq!(
        users,
        vec![
            VpbxUser {
                user_id: Some(300049012),
                name: "Иван Петров".into(),
                email: Some("ivan@example.com".into()),
                extension: Some("101".into()),
                groups: vec![10048964, 10051250],
                // Sorted by the `order` field.
                numbers: vec![
                    "sip:ivan@apidomain.mangosip.ru".into(),
                    "74952223311".into()
                ],
            },
            VpbxUser {
                user_id: Some(300049013),
                name: "Ольга".into(),
                email: None,
                extension: Some("102".into()),
                groups: vec![],
                numbers: vec![],
            },
            VpbxUser {
                user_id: None,
                name: "Без телефона".into(),
                email: None,
                extension: None,
                groups: vec![],
                numbers: vec![],
            },
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_are_parsed_with_operators() {
    let server = Server::start().await;
    let groups = server.client().groups().await.unwrap();
    assert_eq!(
        groups,
        vec![
            VpbxGroup {
                id: 10051250,
                name: "Продажи".into(),
                extension: Some("41".into()),
                dial_alg_group: Some(1),
                operators: vec![
                    GroupOperator {
                        id: Some(300049012),
                        name: "Иван Петров".into(),
                        extension: Some("101".into()),
                        priority: Some(1),
                        order: Some(1),
                    },
                    GroupOperator {
                        id: Some(300049013),
                        name: "Ольга".into(),
                        extension: Some("102".into()),
                        priority: Some(2),
                        order: None,
                    },
                ],
            },
            VpbxGroup {
                id: 10048964,
                name: "Поддержка".into(),
                extension: Some("42".into()),
                dial_alg_group: Some(2),
                operators: vec![],
            },
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_signed_over_the_exact_json_sent() {
    let server = Server::start().await;
    let client = server.client();
    client.users().await.unwrap();
    client.groups().await.unwrap();
    client.recording_link("MToxMDA1").await.unwrap();
    client
        .recording_transcripts(&["MToxMDA1".into()])
        .await
        .unwrap();

    let expected = [
        (
            "config/users/request",
            json!({"ext_fields": ["general.user_id", "groups"]}),
        ),
        ("groups", json!({"show_users": 1})),
        (
            "queries/recording/post",
            json!({"recording_id": "MToxMDA1", "action": "play"}),
        ),
        (
            "queries/recording_transcripts",
            json!({"recording_id": "[\"MToxMDA1\"]"}),
        ),
    ];
    for (path, request) in expected {
        let hits = server.hits(path);
        assert_eq!(hits.len(), 1, "{path}");
        let form = &hits[0].form;
        let mut fields: Vec<&str> = form.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["json", "sign", "vpbx_api_key"], "{path}");
        assert_eq!(form["vpbx_api_key"], KEY);
        let sent = &form["json"];
        // Compact JSON, no artificial whitespace, with the documented content.
        assert!(
            !sent.contains(' ') && !sent.contains('\n'),
            "{path}: {sent}"
        );
        assert_eq!(
            serde_json::from_str::<Value>(sent).unwrap(),
            request,
            "{path}"
        );
        // The signature is lower-case sha256(key + json + salt) over the text as received.
        assert_eq!(
            form["sign"],
            callbridge_mango::sign(KEY, sent, SALT),
            "{path}"
        );
        assert!(form["sign"]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        // The salt itself never travels.
        let raw = String::from_utf8_lossy(&hits[0].raw_body);
        assert!(!raw.contains(SALT), "{path}: salt in the body");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_salt_is_reported_as_a_signature_mismatch() {
    let server = Server::start().await;
    let err = server
        .client_with_salt("not-the-salt")
        .users()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::BadCredentials {
                status: 401,
                code: 3102,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(3102));
    let text = err.to_string();
    assert!(text.contains("signature mismatch"), "{text}");
    assert!(text.contains("vpbx_api_salt"), "{text}");
    assert!(!text.contains("not-the-salt") && !format!("{err:?}").contains("not-the-salt"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_is_reported_as_bad_credentials() {
    let server = Server::start().await;
    let client = VpbxClient::with_base_url(&server.base_url(), "other-key", SALT).unwrap();
    let err = client.groups().await.unwrap_err();
    assert!(
        matches!(err, ApiError::BadCredentials { code: 3105, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("vpbx_api_key"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_420_maps_to_http_with_mango_code() {
    let server = Server::start().await;
    server.answer_next("config/users/request", 420, r#"{"code":3104}"#);
    let err = server.client().users().await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Http {
                status: 420,
                code: Some(3104),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(3104));
    assert!(err.to_string().contains("3104"), "{err}");

    // A code given as a string, or under `result`, is read too; a body without one gives None.
    server.answer_next("groups", 420, r#"{"result":"3100","message":"bad params"}"#);
    let err = server.client().groups().await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Http { status: 420, code: Some(3100), message: Some(m), .. } if m == "bad params"),
        "{err:?}"
    );
    server.answer_next("groups", 500, "<html>Internal error</html>");
    let err = server.client().groups().await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Http {
                status: 500,
                code: None,
                message: None,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_429_maps_to_rate_limited() {
    let server = Server::start().await;
    server.answer_next(
        "groups",
        429,
        r#"{"name":"Service Unavailable","message":"Rate limit exceeded.","code":0,"status":429}"#,
    );
    let err = server.client().groups().await.unwrap_err();
    assert!(
        matches!(&err, ApiError::RateLimited { code: Some(0), message: Some(m), .. } if m == "Rate limit exceeded."),
        "{err:?}"
    );
    // 429 wins even when the body is empty.
    server.answer_next("config/users/request", 429, "");
    let err = server.client().users().await.unwrap_err();
    assert!(
        matches!(err, ApiError::RateLimited { code: None, .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_401_without_a_credentials_code_maps_to_blocked() {
    let server = Server::start().await;
    server.answer_next("groups", 401, "");
    let err = server.client().groups().await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Blocked {
                code: None,
                message: None,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_other_than_1000_is_a_refusal() {
    let server = Server::start().await;
    server.answer_next("groups", 200, r#"{"result":3100,"groups":[]}"#);
    let err = server.client().groups().await.unwrap_err();
    assert!(
        matches!(err, ApiError::Refused { code: 3100, .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_answers_give_malformed_and_never_panic() {
    let server = Server::start().await;
    let deep = "[".repeat(100_000);
    let users_cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "empty body"),
        (b"not json".to_vec(), "not JSON"),
        (b"{\"users\":[{\"general\":".to_vec(), "not JSON"),
        (vec![0xff, 0xfe, b'{', 0x80, b'}'], "not JSON"),
        (deep.into_bytes(), "not JSON"),
        (b"[]".to_vec(), "expected a JSON object"),
        (b"{}".to_vec(), "users: missing"),
        (b"{\"users\":5}".to_vec(), "users: expected an array"),
        (b"{\"users\":[1]}".to_vec(), "users[0]: expected an object"),
        (
            br#"{"users":[{"general":{"user_id":"abc"}}]}"#.to_vec(),
            "users[0].general.user_id",
        ),
        (
            br#"{"users":[{"general":{"user_id":1.5}}]}"#.to_vec(),
            "users[0].general.user_id",
        ),
        (
            br#"{"users":[{},{"general":"x"}]}"#.to_vec(),
            "users[1].general: expected an object",
        ),
        (
            br#"{"users":[{"telephony":{"numbers":[{"number":{}}]}}]}"#.to_vec(),
            "users[0].telephony.numbers[0].number",
        ),
        (
            br#"{"users":[{"groups":[true]}]}"#.to_vec(),
            "users[0].groups[0]",
        ),
        (
            br#"{"users":[{"telephony":{"extension":[101]}}]}"#.to_vec(),
            "users[0].telephony.extension",
        ),
        (
            br#"{"result":"ok","users":[]}"#.to_vec(),
            "result: expected an integer",
        ),
    ];
    for (body, what) in users_cases {
        server.answer_next("config/users/request", 200, body.clone());
        // A fresh client each time: the limiter is per client and the server does not mind.
        let err = server.client().users().await.unwrap_err();
        match &err {
            ApiError::Malformed {
                endpoint,
                what: got,
            } => {
                assert_eq!(*endpoint, "config/users/request");
                assert!(
                    got.contains(what),
                    "{what:?} not in {got:?} for {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(80)])
                );
            }
            other => panic!("expected Malformed for {what:?}, got {other:?}"),
        }
    }

    let groups_cases: Vec<(&str, &str)> = vec![
        (r#"{"result":1000}"#, "groups: missing"),
        (r#"{"groups":[{"name":"x"}]}"#, "groups[0].id: missing"),
        (r#"{"groups":[{"id":"x1"}]}"#, "groups[0].id"),
        (
            r#"{"groups":[{"id":1,"operators":[5]}]}"#,
            "groups[0].operators[0]: expected an object",
        ),
        (
            r#"{"groups":[{"id":1,"operators":{"id":2}}]}"#,
            "groups[0].operators: expected an array",
        ),
        (
            r#"{"groups":[{"id":1,"operators":[{"priority":"high"}]}]}"#,
            "groups[0].operators[0].priority",
        ),
    ];
    for (body, what) in groups_cases {
        server.answer_next("groups", 200, body);
        let err = server.client().groups().await.unwrap_err();
        assert!(
            matches!(&err, ApiError::Malformed { what: got, .. } if got.contains(what)),
            "{body}: {err:?}"
        );
    }

    let transcript_cases: Vec<(&str, &str)> = vec![
        (r#"{"result":1000}"#, "data: missing"),
        (
            r#"{"data":[{"phrases":[]}]}"#,
            "data[0].recording_id: missing",
        ),
        (
            r#"{"data":[{"recording_id":"r","phrases":[["operator"]]}]}"#,
            "data[0].phrases[0]: expected [speaker, text]",
        ),
        (
            r#"{"data":[{"recording_id":"r","phrases":[["operator",{"t":1}]]}]}"#,
            "data[0].phrases[0][1]",
        ),
    ];
    for (body, what) in transcript_cases {
        server.answer_next("queries/recording_transcripts", 200, body);
        let err = server
            .client()
            .recording_transcripts(&["r".into()])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ApiError::Malformed { what: got, .. } if got.contains(what)),
            "{body}: {err:?}"
        );
    }

    // The recording link must be a redirect with a Location.
    server.answer_next("queries/recording/post", 302, "");
    let err = server.client().recording_link("r").await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Malformed { what, .. } if what.contains("without a Location")),
        "{err:?}"
    );
    server.answer_next("queries/recording/post", 200, "{}");
    let err = server.client().recording_link("r").await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Malformed { what, .. } if what.contains("expected a redirect")),
        "{err:?}"
    );
    // ... unless the 200 carries a failing result, which is reported as such.
    server.answer_next("queries/recording/post", 200, r#"{"result":3320}"#);
    let err = server.client().recording_link("r").await.unwrap_err();
    assert!(
        matches!(err, ApiError::Refused { code: 3320, .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn back_to_back_users_calls_are_spaced_by_the_documented_limit() {
    let server = Server::start().await;
    let client = server.client();
    client.users().await.unwrap();
    client.users().await.unwrap();
    let hits = server.hits("config/users/request");
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at.duration_since(hits[0].at);
    assert!(
        gap >= MIN_INTERVAL_USERS && MIN_INTERVAL_USERS >= Duration::from_secs(2),
        "gap {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_calls_from_clones_share_the_limit() {
    let server = Server::start().await;
    let client = server.client();
    // Three tasks, each with its own clone, all at once.
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.groups().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().len(), 2);
    }
    let mut arrivals: Vec<Instant> = server.hits("groups").iter().map(|h| h.at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 3);
    for pair in arrivals.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap >= MIN_INTERVAL_GROUPS, "gap {gap:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recording_link_returns_the_redirect_without_following_it() {
    let server = Server::start().await;
    let client = server.client();
    let link = client.recording_link("MToxMDA1").await.unwrap();
    assert_eq!(link, "http://127.0.0.1:9/files/MToxMDA1.mp3?once=1");
    // Only the API request arrived; nothing followed the redirect.
    assert_eq!(server.api.hits.lock().unwrap().len(), 1);

    // A relative Location is resolved against the API URL.
    server.answer_next_with(
        "queries/recording/post",
        Canned {
            status: 302,
            location: Some("/files/abc.mp3".into()),
            body: Vec::new(),
        },
    );
    let link = client.recording_link("abc").await.unwrap();
    assert_eq!(link, format!("http://{}/files/abc.mp3", server.addr));
}

#[tokio::test(flavor = "multi_thread")]
async fn transcripts_send_ids_as_a_json_string_and_parse_phrases() {
    let server = Server::start().await;
    let ids: Vec<String> = vec![
        "MToxMDA1".into(),
        "with \"quotes\"".into(),
        "none-yet".into(),
    ];
    let transcripts = server.client().recording_transcripts(&ids).await.unwrap();
    let phrases = |id: &str| {
        vec![
            ("operator".to_string(), format!("здравствуйте, {id}")),
            ("client".to_string(), "спасибо до свидания".to_string()),
        ]
    };
    assert_eq!(
        transcripts,
        vec![
            Transcript {
                recording_id: "MToxMDA1".into(),
                phrases: phrases("MToxMDA1"),
            },
            Transcript {
                recording_id: "with \"quotes\"".into(),
                phrases: phrases("with \"quotes\""),
            },
        ]
    );
    let sent: Value =
        serde_json::from_str(&server.hits("queries/recording_transcripts")[0].form["json"])
            .unwrap();
    let inner = sent["recording_id"]
        .as_str()
        .expect("recording_id is a string");
    assert_eq!(serde_json::from_str::<Vec<String>>(inner).unwrap(), ids);

    // No ids: no request.
    let none = server.client().recording_transcripts(&[]).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(server.hits("queries/recording_transcripts").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn more_than_500_transcript_ids_are_split_into_batches() {
    let server = Server::start().await;
    let ids: Vec<String> = (0..501).map(|i| format!("rec{i}")).collect();
    let transcripts = server.client().recording_transcripts(&ids).await.unwrap();
    assert_eq!(transcripts.len(), 501);
    assert_eq!(transcripts[500].recording_id, "rec500");
    let hits = server.hits("queries/recording_transcripts");
    assert_eq!(hits.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = VpbxClient::with_base_url(&format!("http://{addr}/vpbx"), KEY, SALT).unwrap();
    let err = client.groups().await.unwrap_err();
    assert!(matches!(err, ApiError::Transport { .. }), "{err:?}");
}

#[test]
fn debug_output_does_not_contain_the_salt() {
    let client = VpbxClient::new(KEY, SALT).unwrap();
    let debug = format!("{client:?}");
    assert!(!debug.contains(SALT), "{debug}");
    assert!(!debug.contains("salt"), "{debug}");
    assert!(debug.contains("9ipl…"), "{debug}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(
        debug.contains("https://app.mango-office.ru/vpbx/"),
        "{debug}"
    );
    let pretty = format!("{client:#?}");
    assert!(!pretty.contains(SALT));
}

#[test]
fn bad_base_urls_are_configuration_errors() {
    for url in ["", "not a url", "ftp://example.com/vpbx/", "mailto:x@y"] {
        let err = VpbxClient::with_base_url(url, KEY, SALT).unwrap_err();
        assert!(matches!(err, ApiError::Config(_)), "{url}: {err:?}");
    }
    let client = VpbxClient::with_base_url("http://127.0.0.1:1/vpbx", KEY, SALT).unwrap();
    assert_eq!(client.base_url(), "http://127.0.0.1:1/vpbx/");
}
