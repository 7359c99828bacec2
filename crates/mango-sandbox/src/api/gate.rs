//! Every request's way in: block and rate-limit checks, method, fields, key, signature and
//! JSON (as Mango answers each fault), then the endpoint; a refusal counts towards the block.

use super::endpoints::{groups, recording, transcripts, users};
use super::stats::{stats_request, stats_result};
use super::*;

// ---- the API ---------------------------------------------------------------------------------

pub(super) async fn api(
    State(state): State<Arc<ApiState>>,
    method: Method,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(ep) = Endpoint::from_path(&endpoint) else {
        state.lock().stats.unknown_endpoints += 1;
        return mango_error(
            StatusCode::NOT_FOUND,
            3100,
            format!("unknown API method {endpoint:?}"),
        );
    };
    let now = Instant::now();
    let mut fields: HashMap<String, String> = HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        fields
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    let presented_key = fields.get("vpbx_api_key").cloned().unwrap_or_default();
    {
        let mut m = state.lock();
        *m.stats.requests.entry(ep.name().into()).or_default() += 1;
        if let Some(block) = m.blocks.get(&presented_key) {
            if let Some(until) = block.until.filter(|u| *u > now) {
                m.stats.blocked += 1;
                let left = until.saturating_duration_since(now).as_secs();
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"name": "Unauthorized", "code": 0, "status": 401,
                        "message": format!("Too many invalid requests; blocked for {left} more seconds.")}),
                );
            }
        }
        if let Some(limit) = state.config.limits.of(ep) {
            let window = m.windows.entry(ep).or_default();
            while window
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= limit.per)
            {
                window.pop_front();
            }
            if window.len() >= limit.requests as usize {
                m.stats.rate_limit_violations += 1;
                *m.stats.rate_limited.entry(ep.name().into()).or_default() += 1;
                tracing::debug!(endpoint = ep.name(), "rate limit exceeded");
                return json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({"name": "Service Unavailable", "message": "Rate limit exceeded.",
                        "code": 0, "status": 429}),
                );
            }
            window.push_back(now);
        }
    }
    let answer = match check(&state, &method, &fields) {
        Ok(request) => handle(&state, ep, &request, &headers, now),
        Err(refusal) => Err(refusal),
    };
    match answer {
        Ok(response) => {
            if response.status().is_success() || response.status().is_redirection() {
                *state
                    .lock()
                    .stats
                    .answered
                    .entry(ep.name().into())
                    .or_default() += 1;
            }
            response
        }
        Err(Invalid(response)) => {
            let response = *response;
            if let Some(window) = state.config.invalid_block {
                let mut m = state.lock();
                if m.blocks.len() >= MAX_BLOCK_ENTRIES {
                    m.blocks.retain(|_, b| b.until.is_some_and(|u| u > now));
                }
                let block = m.blocks.entry(presented_key).or_insert(Block {
                    last_invalid: None,
                    until: None,
                });
                if block
                    .last_invalid
                    .is_some_and(|t| now.saturating_duration_since(t) < window)
                {
                    block.until = Some(now + window);
                    tracing::info!(
                        "VPBX API emulator: key blocked after repeated invalid requests"
                    );
                }
                block.last_invalid = Some(now);
            }
            response
        }
    }
}

/// Method, fields, key, signature and JSON; the parsed request on success.
pub(super) fn check(
    state: &ApiState,
    method: &Method,
    fields: &HashMap<String, String>,
) -> Result<Value, Invalid> {
    let malformed = |status: StatusCode, code: i64, message: String| {
        state.lock().stats.malformed += 1;
        Invalid::new(mango_error(status, code, message))
    };
    if method != Method::POST {
        return Err(malformed(
            status_420(),
            3101,
            format!("the API takes POST requests, not {method}"),
        ));
    }
    let field = |name: &str| {
        fields.get(name).ok_or_else(|| {
            malformed(
                status_420(),
                3103,
                format!("form field {name:?} is missing"),
            )
        })
    };
    let key = field("vpbx_api_key")?;
    let sign = field("sign")?;
    let json_text = field("json")?;
    if !bool::from(key.as_bytes().ct_eq(state.config.api_key.as_bytes())) {
        state.lock().stats.unknown_keys += 1;
        return Err(Invalid::new(mango_error(
            StatusCode::UNAUTHORIZED,
            3105,
            "invalid vpbx_api_key",
        )));
    }
    if !callbridge_mango::verify(key, json_text, &state.config.api_salt, sign) {
        state.lock().stats.bad_signatures += 1;
        return Err(Invalid::new(mango_error(
            StatusCode::UNAUTHORIZED,
            3102,
            "sign does not match sha256(vpbx_api_key + json + salt)",
        )));
    }
    match serde_json::from_str::<Value>(json_text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(malformed(
            status_420(),
            3104,
            "json must be a JSON object".into(),
        )),
        Err(e) => Err(malformed(
            status_420(),
            3104,
            format!("json is not valid JSON: {e}"),
        )),
    }
}

/// A refusal for bad parameters (counts as invalid).
pub(super) fn bad_params(state: &ApiState, message: impl Into<String>) -> Invalid {
    state.lock().stats.malformed += 1;
    Invalid::new(mango_error(status_420(), 3100, message))
}

pub(super) fn missing_param(state: &ApiState, name: &str) -> Invalid {
    state.lock().stats.malformed += 1;
    Invalid::new(mango_error(
        status_420(),
        3103,
        format!("parameter {name:?} is missing"),
    ))
}

pub(super) fn handle(
    state: &ApiState,
    ep: Endpoint,
    request: &Value,
    headers: &HeaderMap,
    now: Instant,
) -> Result<Response, Invalid> {
    match ep {
        Endpoint::Users => users(state, request),
        Endpoint::Groups => groups(state, request),
        Endpoint::Recording => recording(state, request, headers, now),
        Endpoint::Transcripts => transcripts(state, request),
        Endpoint::StatsRequest => stats_request(state, request, now),
        Endpoint::StatsResult => stats_result(state, request, now),
    }
}

// ---- lenient readers -------------------------------------------------------------------------

/// Text given as a string or a number; empty text is absent.
pub(super) fn text(v: Option<&Value>) -> Result<Option<String>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(()),
    }
}

/// An integer given as a number or a decimal string.
pub(super) fn int(v: Option<&Value>) -> Result<Option<i64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

pub(super) fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().is_some_and(|i| i != 0),
        Some(Value::String(s)) => matches!(s.trim(), "1" | "true"),
        _ => false,
    }
}
