//! Shared helpers: start a sandbox on a random loopback port and talk to it over real HTTP.
#![allow(dead_code)]

use callbridge_amocrm_sandbox::{start, Sandbox, SandboxConfig, Seed};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

pub const TOKEN: &str = "sandbox-token";

/// A seed with: one contact without leads (+7 916 123-45-67), one with two open leads
/// (+7 903 000-00-02), one with a won and an open lead (+7 903 000-00-03).
pub const SEED: &str = r#"{
  "long_lived_token": "sandbox-token",
  "users": [{"id": 1001, "name": "Olga", "email": "olga@example.com"},
            {"id": 1002, "name": "Ivan"}],
  "contacts": [
    {"name": "Known client", "phone": "+7 916 123-45-67", "responsible_user_id": 1001},
    {"name": "Two open", "phone": "+7 903 000-00-02",
     "leads": [{"name": "Open A", "status": "open"}, {"name": "Open B"}]},
    {"name": "Won and open", "phone": "+7 903 000-00-03",
     "leads": [{"name": "Won", "status": "won"}, {"name": "Still open", "status": "open"}]}
  ],
  "oauth_clients": [{"client_id": "cid-1", "client_secret": "secret-1",
                     "redirect_uri": "https://integration.example.com/oauth"}]
}"#;

pub fn seed() -> Seed {
    Seed::from_json_str(SEED).expect("test seed is valid")
}

pub fn config() -> SandboxConfig {
    SandboxConfig {
        // High enough that functional tests never trip the limiter; limit tests set their own.
        rps: 10_000,
        seed: seed(),
        ..SandboxConfig::default()
    }
}

pub async fn start_with(config: SandboxConfig) -> Sandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    start(listener, config).await.expect("sandbox starts")
}

pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A response read whole: status, content type, body text and (when it parses) JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub text: String,
    pub json: Value,
    pub location: Option<String>,
}

pub async fn send(
    client: &Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request reaches the sandbox");
    read(resp).await
}

pub async fn read(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        content_type,
        text,
        json,
        location,
    }
}

/// The API as the long-lived token's user.
pub struct Api {
    pub base: String,
    pub client: Client,
    pub token: String,
}

impl Api {
    pub fn new(sandbox: &Sandbox) -> Api {
        Api {
            base: sandbox.base_url(),
            client: client(),
            token: TOKEN.to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        send(
            &self.client,
            Method::GET,
            &format!("{}{path}", self.base),
            Some(&self.token),
            None,
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        send(
            &self.client,
            Method::POST,
            &format!("{}{path}", self.base),
            Some(&self.token),
            Some(body),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        send(
            &self.client,
            Method::PATCH,
            &format!("{}{path}", self.base),
            Some(&self.token),
            Some(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        send(
            &self.client,
            Method::DELETE,
            &format!("{}{path}", self.base),
            Some(&self.token),
            None,
        )
        .await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> Reply {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request reaches the sandbox");
        read(resp).await
    }

    /// The id of the only contact a search finds.
    pub async fn contact_id(&self, query: &str) -> u64 {
        let r = self
            .get(&format!("/api/v4/contacts?query={}", urlencode(query)))
            .await;
        assert_eq!(r.status, 200, "search {query}: {}", r.text);
        let contacts = r.json["_embedded"]["contacts"]
            .as_array()
            .expect("contacts");
        assert_eq!(contacts.len(), 1, "search {query}: {}", r.text);
        contacts[0]["id"].as_u64().expect("id")
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes an `application/x-www-form-urlencoded` query into pairs.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
