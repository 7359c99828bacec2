//! The emulator's VPBX API against callbridge's own client (`callbridge_mango::api::VpbxClient`)
//! and against raw signed requests, over loopback HTTP.

use callbridge_core::PbxEvent;
use callbridge_mango::api::{ApiError, VpbxClient};
use callbridge_mango_sandbox::{start_vpbx_api, RateLimits, Vpbx, VpbxApi, VpbxConfig};
use callbridge_traffic::{generate, Config, Traffic};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const KEY: &str = "emulator-key-0001";
const SALT: &str = "emulator-salt-never-shown";

async fn serve(config: VpbxConfig) -> VpbxApi {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_vpbx_api(listener, config).await.unwrap()
}

/// Generated traffic whose recordings are all kept, and a VPBX of its office.
fn office(seed: u64) -> (Traffic, Vpbx) {
    let traffic = generate(&Config {
        calls: 40,
        seed,
        recorded: 1.0,
        ..Config::default()
    });
    let vpbx = Vpbx::new(traffic.staff.clone());
    (traffic, vpbx)
}

fn client(api: &VpbxApi) -> VpbxClient {
    VpbxClient::with_base_url(api.base_url(), KEY, SALT).unwrap()
}

/// A signed form POST, as Mango's API expects; returns status, headers and body.
async fn signed_post(
    api: &VpbxApi,
    endpoint: &str,
    json: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let json = json.to_string();
    let sign = callbridge_mango::sign(KEY, &json, SALT);
    let response = reqwest::Client::new()
        .post(format!("{}{endpoint}", api.base_url()))
        .form(&[("vpbx_api_key", KEY), ("sign", &sign), ("json", &json)])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn users_and_groups_are_the_office_of_the_traffic() {
    let (traffic, vpbx) = office(3);
    let api = serve(VpbxConfig::new(KEY, SALT, vpbx.clone())).await;
    let client = client(&api);

    let users = client.users().await.unwrap();
    assert_eq!(users.len(), traffic.staff.employees.len());
    for (i, (user, employee)) in users.iter().zip(&traffic.staff.employees).enumerate() {
        assert_eq!(user.extension.as_deref(), Some(employee.extension.as_str()));
        assert_eq!(user.user_id, Some(employee.mango_user_id));
        assert_eq!(user.name, employee.name);
        assert_eq!(user.numbers, vec![employee.sip.clone()]);
        assert_eq!(user.groups, vpbx.groups_of(i));
        assert!(user.email.as_deref().is_some_and(|e| e.contains('@')));
    }
    // Group membership is there: every group member lists the group.
    assert!(users.iter().any(|u| !u.groups.is_empty()));

    let groups = client.groups().await.unwrap();
    assert_eq!(groups.len(), traffic.staff.groups.len());
    for (group, staff_group) in groups.iter().zip(&traffic.staff.groups) {
        assert_eq!(
            group.extension.as_deref(),
            Some(staff_group.extension.as_str())
        );
        let extensions: Vec<&str> = group
            .operators
            .iter()
            .filter_map(|o| o.extension.as_deref())
            .collect();
        let expected: Vec<&str> = staff_group
            .members
            .iter()
            .map(|&m| traffic.staff.employees[m].extension.as_str())
            .collect();
        assert_eq!(extensions, expected, "operators in ringing order");
        let alg = match staff_group.strategy {
            callbridge_traffic::GroupStrategy::RingAll => 2,
            callbridge_traffic::GroupStrategy::OneByOne => 0,
        };
        assert_eq!(group.dial_alg_group, Some(alg));
        assert!(users
            .iter()
            .all(|u| u.groups.contains(&group.id)
                == group.operators.iter().any(|o| o.id == u.user_id)));
    }
    let stats = api.stats();
    assert_eq!(stats.answered["config/users/request"], 1);
    assert_eq!(stats.answered["groups"], 1);
    assert_eq!(stats.rate_limit_violations, 0);
    api.shutdown().await.unwrap();
}

/// Walks MPEG audio frames from the start; returns the number of frames, or why it failed.
fn mp3_frames(data: &[u8]) -> Result<usize, String> {
    const BITRATES: [u32; 16] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0,
    ];
    const RATES: [u32; 4] = [44_100, 48_000, 32_000, 0];
    let mut at = 0;
    let mut frames = 0;
    while at < data.len() {
        let h = data
            .get(at..at + 4)
            .ok_or(format!("truncated header at {at}"))?;
        if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
            return Err(format!("no sync word 0xFFE at {at}"));
        }
        if (h[1] >> 3) & 0b11 != 0b11 {
            return Err(format!("not MPEG-1 at {at}"));
        }
        if (h[1] >> 1) & 0b11 != 0b01 {
            return Err(format!("not Layer III at {at}"));
        }
        let bitrate = BITRATES[(h[2] >> 4) as usize];
        let rate = RATES[((h[2] >> 2) & 0b11) as usize];
        if bitrate == 0 || rate == 0 {
            return Err(format!("bad bitrate or sampling index at {at}"));
        }
        let padding = u32::from((h[2] >> 1) & 1);
        let len = (144 * bitrate * 1000 / rate + padding) as usize;
        at += len;
        frames += 1;
    }
    if at != data.len() {
        return Err("the last frame is cut short".into());
    }
    Ok(frames)
}

#[tokio::test]
async fn recording_links_redirect_to_real_mp3_files() {
    let (traffic, vpbx) = office(5);
    // Play the events up to the first `record/added`: that recording exists but is not yet
    // downloadable.
    let first_added = traffic
        .events
        .iter()
        .position(|e| matches!(e, PbxEvent::RecordAdded(_)))
        .unwrap();
    for e in &traffic.events[..first_added] {
        vpbx.observe(e);
    }
    let PbxEvent::RecordAdded(pending) = &traffic.events[first_added] else {
        unreachable!()
    };
    let api = serve(VpbxConfig::new(KEY, SALT, vpbx.clone())).await;
    let client = client(&api);
    let err = client
        .recording_link(&pending.recording_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(3320), "{err}");

    for e in &traffic.events[first_added..] {
        vpbx.observe(e);
    }
    let link = client.recording_link(&pending.recording_id).await.unwrap();
    assert!(
        link.starts_with(&format!("http://{}/files/", api.addr())),
        "{link}"
    );
    let http = reqwest::Client::new();
    let response = http.get(&link).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/mpeg");
    assert_eq!(response.headers()["accept-ranges"], "bytes");
    let bytes = response.bytes().await.unwrap();
    let frames = mp3_frames(&bytes).unwrap();
    assert!(frames >= 40, "at least a second of audio: {frames} frames");

    // A byte range: the first frame header.
    let partial = http
        .get(&link)
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(
        partial.headers()["content-range"],
        format!("bytes 0-3/{}", bytes.len()).as_str()
    );
    assert_eq!(partial.bytes().await.unwrap().as_ref(), &bytes[..4]);
    let beyond = http
        .get(&link)
        .header("range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);

    // Unknown ids get Mango's "recording not found"; a made-up link is not served.
    let err = client
        .recording_link("no-such-recording")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(3320), "{err}");
    let fake = http
        .get(format!("http://{}/files/0123456789abcdef.mp3", api.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(fake.status(), 404);
    let stats = api.stats();
    assert_eq!(stats.recording_links, 1);
    assert_eq!(stats.recordings_not_found, 2);
    assert_eq!(stats.files_served, 2);
    api.shutdown().await.unwrap();
}

#[tokio::test]
async fn transcripts_exist_for_tagged_recordings_of_the_traffic() {
    let (traffic, vpbx) = office(6);
    for e in &traffic.events {
        vpbx.observe(e);
    }
    let tagged: BTreeSet<String> = traffic
        .events
        .iter()
        .filter_map(|e| match e {
            PbxEvent::RecordTagged(r) => Some(r.recording_id.clone()),
            _ => None,
        })
        .collect();
    let mut asked = vpbx.downloadable_recordings();
    assert!(asked.len() > tagged.len(), "some recordings are not tagged");
    asked.push("no-such-recording".into());
    let api = serve(VpbxConfig::new(KEY, SALT, vpbx.clone())).await;
    let transcripts = client(&api).recording_transcripts(&asked).await.unwrap();
    let got: BTreeSet<String> = transcripts.iter().map(|t| t.recording_id.clone()).collect();
    assert_eq!(got, tagged);
    for t in &transcripts {
        assert!(t.phrases.len() >= 4, "{t:?}");
        let speakers: BTreeSet<&str> = t.phrases.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(speakers, BTreeSet::from(["client", "operator"]));
        assert!(t.phrases.iter().all(|(_, text)| !text.is_empty()));
    }
    // Nothing asked for that exists: an empty answer, not an error.
    let none = client(&api)
        .recording_transcripts(&["nothing".to_string()])
        .await
        .unwrap();
    assert!(none.is_empty());
    api.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_credentials_are_refused_and_repeated_invalid_requests_block_the_key() {
    let (_, vpbx) = office(1);
    let api = serve(VpbxConfig {
        limits: RateLimits::none(),
        ..VpbxConfig::new(KEY, SALT, vpbx)
    })
    .await;
    let wrong_salt = VpbxClient::with_base_url(api.base_url(), KEY, "wrong-salt").unwrap();
    let err = wrong_salt.groups().await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::BadCredentials {
                status: 401,
                code: 3102,
                ..
            }
        ),
        "{err}"
    );
    let wrong_key = VpbxClient::with_base_url(api.base_url(), "other-key", SALT).unwrap();
    let err = wrong_key.groups().await.unwrap_err();
    assert!(
        matches!(err, ApiError::BadCredentials { code: 3105, .. }),
        "{err}"
    );
    // The right key's first invalid request does not block; a second within two minutes does,
    // and then even correct requests are refused.
    let good = client(&api);
    good.groups().await.unwrap();
    let err = wrong_salt
        .recording_transcripts(&["x".to_string()])
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::BadCredentials { .. }), "{err}");
    let err = good.groups().await.unwrap_err();
    assert!(matches!(err, ApiError::Blocked { .. }), "{err}");
    let stats = api.stats();
    assert_eq!(stats.bad_signatures, 2);
    assert_eq!(stats.unknown_keys, 1);
    assert_eq!(stats.blocked, 1);
    assert!(!format!("{stats:?}").contains(SALT));
    api.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_users_rate_limit_is_enforced_and_counted() {
    let (_, vpbx) = office(2);
    let api = serve(VpbxConfig::new(KEY, SALT, vpbx)).await;
    let client = client(&api);
    client.users().await.unwrap();
    // Straight after: over Mango's 1 request per 2 seconds.
    let (status, _, body) = signed_post(
        &api,
        "config/users/request",
        &json!({"ext_fields": ["general.user_id"]}),
    )
    .await;
    assert_eq!(status, 429);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"name": "Service Unavailable", "message": "Rate limit exceeded.", "code": 0, "status": 429})
    );
    let stats = api.stats();
    assert_eq!(stats.rate_limited["config/users/request"], 1);
    assert_eq!(stats.rate_limit_violations, 1);
    // The client spaces its own requests, so it is never refused.
    client.users().await.unwrap();
    assert_eq!(api.stats().rate_limit_violations, 1);
    assert_eq!(api.stats().answered["config/users/request"], 2);
    api.shutdown().await.unwrap();
}

#[tokio::test]
async fn statistics_come_in_two_steps_as_csv() {
    let (traffic, vpbx) = office(8);
    for e in &traffic.events {
        vpbx.observe(e);
    }
    let api = serve(VpbxConfig {
        stats_delay: Duration::from_secs(1),
        stats_poll_interval: Duration::from_secs(1),
        ..VpbxConfig::new(KEY, SALT, vpbx.clone())
    })
    .await;
    let from = traffic.calls[0].started_at;
    let to = from + 86_400;
    let fields = "entry_id,start,finish,answer,from_number,to_extension,records";
    let (status, _, body) = signed_post(
        &api,
        "stats/request",
        &json!({"date_from": from.to_string(), "date_to": to.to_string(), "fields": fields, "request_id": "r1"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let key = serde_json::from_str::<Value>(&body).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another request straight away is over the 1 per 2 s limit.
    let (status, _, _) = signed_post(
        &api,
        "stats/request",
        &json!({"date_from": from, "date_to": to}),
    )
    .await;
    assert_eq!(status, 429);
    // Not ready yet.
    let (status, _, body) = signed_post(&api, "stats/result", &json!({ "key": key })).await;
    assert_eq!((status, body.as_str()), (204, ""));
    // Polled again sooner than the key allows (5 s at Mango; 1 s here): refused.
    let (status, _, _) = signed_post(&api, "stats/result", &json!({ "key": key })).await;
    assert_eq!(status, 429);
    assert_eq!(api.stats().rate_limited["stats/result"], 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, headers, csv) = signed_post(&api, "stats/result", &json!({ "key": key })).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(';').collect()).collect();
    assert_eq!(rows.len(), traffic.calls.len());
    for (row, truth) in rows.iter().zip(&traffic.calls) {
        assert_eq!(row.len(), 7, "{row:?}");
        assert_eq!(row[0], truth.entry_id);
        assert_eq!(row[1], truth.started_at.to_string());
        assert!(row[2].parse::<i64>().unwrap() >= truth.started_at);
        assert_eq!(row[3] != "0", truth.answered, "{row:?} {truth:?}");
        let saved: Vec<&str> = truth
            .recordings
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        assert_eq!(row[6], format!("[{}]", saved.join(",")));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // A filter on one employee: only calls that employee was a party to.
    let ext = &traffic.staff.employees[0].extension;
    let (status, _, body) = signed_post(
        &api,
        "stats/request",
        &json!({"date_from": from, "date_to": to, "fields": "from_extension,to_extension",
                "call_party": {"extension": ext}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let key2 = serde_json::from_str::<Value>(&body).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, _, csv) = signed_post(&api, "stats/result", &json!({ "key": key2 })).await;
    assert!(csv.lines().count() < traffic.calls.len());
    for line in csv.lines() {
        assert!(line.split(';').any(|c| c == ext), "{line}");
    }
    // An unknown key: 404.
    let (status, _, _) = signed_post(&api, "stats/result", &json!({"key": "nope"})).await;
    assert_eq!(status, 404);
    api.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_requests_get_mango_codes() {
    let (_, vpbx) = office(1);
    let api = serve(VpbxConfig {
        invalid_block: None,
        limits: RateLimits::none(),
        ..VpbxConfig::new(KEY, SALT, vpbx)
    })
    .await;
    let http = reqwest::Client::new();
    let code = |body: &str| serde_json::from_str::<Value>(body).unwrap()["code"].clone();

    // Not a POST.
    let r = http
        .get(format!("{}groups", api.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 420);
    assert_eq!(code(&r.text().await.unwrap()), 3101);
    // No json field.
    let r = http
        .post(format!("{}groups", api.base_url()))
        .form(&[("vpbx_api_key", KEY), ("sign", "00")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 420);
    assert_eq!(code(&r.text().await.unwrap()), 3103);
    // Signed, but not JSON.
    let sign = callbridge_mango::sign(KEY, "{nope", SALT);
    let r = http
        .post(format!("{}groups", api.base_url()))
        .form(&[("vpbx_api_key", KEY), ("sign", &sign), ("json", "{nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 420);
    assert_eq!(code(&r.text().await.unwrap()), 3104);
    // Bad parameters: a window longer than a month, an unknown field, no recording id.
    let (status, _, body) = signed_post(
        &api,
        "stats/request",
        &json!({"date_from": 0, "date_to": 40 * 86_400}),
    )
    .await;
    assert_eq!((status, code(&body)), (420, json!(3100)));
    let (status, _, body) = signed_post(
        &api,
        "stats/request",
        &json!({"date_from": 0, "date_to": 1, "fields": "start,colour"}),
    )
    .await;
    assert_eq!((status, code(&body)), (420, json!(3100)));
    assert!(body.contains("colour"), "{body}");
    let (status, _, body) =
        signed_post(&api, "queries/recording/post", &json!({"action": "play"})).await;
    assert_eq!((status, code(&body)), (420, json!(3103)));
    // Not an API method.
    let (status, _, _) = signed_post(&api, "commands/teleport", &json!({})).await;
    assert_eq!(status, 404);
    let stats = api.stats();
    assert_eq!(stats.malformed, 6);
    assert_eq!(stats.unknown_endpoints, 1);
    assert_eq!(stats.blocked, 0);
    api.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_client_reads_the_statistics_as_typed_rows_within_the_limits() {
    use callbridge_mango::api::StatsPoll;
    let (traffic, vpbx) = office(9);
    for e in &traffic.events {
        vpbx.observe(e);
    }
    let api = serve(VpbxConfig {
        stats_delay: Duration::from_millis(500),
        stats_poll_interval: Duration::from_millis(300),
        ..VpbxConfig::new(KEY, SALT, vpbx.clone())
    })
    .await;
    let client = client(&api);
    let from = traffic.calls[0].started_at;
    let to = from + 86_400;
    let table = client
        .call_stats(
            from,
            to,
            Duration::from_millis(300),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(table.bad_rows, vec![]);
    assert_eq!(table.rows.len(), traffic.calls.len());
    for (row, truth) in table.rows.iter().zip(&traffic.calls) {
        assert_eq!(row.entry_id, truth.entry_id);
        assert_eq!(row.start, truth.started_at);
        assert!(row.finish >= row.start);
        assert_eq!(row.answer.is_some(), truth.answered, "{row:?} {truth:?}");
        let saved: Vec<String> = truth.recordings.iter().flatten().cloned().collect();
        assert_eq!(row.records, saved);
    }
    // Polled before it was ready, at the pace the key allows: never refused.
    assert_eq!(api.stats().rate_limit_violations, 0, "{:?}", api.stats());
    // Not ready within the time given: said so (the client spaces the second request 2 s).
    let err = client
        .call_stats(
            from,
            to,
            Duration::from_millis(300),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::StatsNotReady { .. }), "{err}");
    assert_eq!(
        client.stats_result("no-such-key").await.unwrap(),
        StatsPoll::Expired
    );
    api.shutdown().await.unwrap();
}
