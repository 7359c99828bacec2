//! The directory, groups, recording-link and transcript endpoints.

use super::gate::{bad_params, flag, int, missing_param, text};
use super::*;

// ---- endpoints -------------------------------------------------------------------------------

pub(super) fn users(state: &ApiState, request: &Value) -> Result<Response, Invalid> {
    let ext_fields: Vec<String> = match request.get("ext_fields") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s.split(',').map(|f| f.trim().to_owned()).collect(),
        Some(_) => return Err(bad_params(state, "ext_fields must be an array of names")),
    };
    let want = |name: &str| ext_fields.iter().any(|f| f == name);
    let only = text(request.get("extension"))
        .map_err(|_| bad_params(state, "extension must be text or a number"))?;
    let vpbx = &state.config.vpbx;
    let staff = vpbx.staff();
    let users: Vec<Value> = staff
        .employees
        .iter()
        .enumerate()
        .filter(|(_, e)| only.as_deref().is_none_or(|x| x == e.extension))
        .map(|(i, e)| {
            let (first, role) = match e.name.split_once(',') {
                Some((first, role)) => (first.trim(), role.trim()),
                None => (e.name.as_str(), ""),
            };
            let mut general = Map::new();
            general.insert("name".into(), e.name.clone().into());
            general.insert(
                "email".into(),
                format!("{}.{}@example.com", first.to_lowercase(), e.extension).into(),
            );
            general.insert("department".into(), "Office".into());
            general.insert("position".into(), role.into());
            if want("general.user_id") {
                general.insert("user_id".into(), e.mango_user_id.into());
            }
            if want("general.sips") {
                general.insert("sips".into(), json!([e.sip]));
            }
            let mut user = Map::new();
            user.insert("general".into(), Value::Object(general));
            user.insert(
                "telephony".into(),
                json!({
                    "extension": e.extension,
                    "outgoingline": staff.lines.first().cloned().unwrap_or_default(),
                    "numbers": [{"number": e.sip, "protocol": "sip", "order": "0",
                                 "wait_sec": "20", "status": "on"}],
                }),
            );
            if want("groups") {
                user.insert("groups".into(), json!(vpbx.groups_of(i)));
            }
            Value::Object(user)
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "users": users })))
}

pub(super) fn groups(state: &ApiState, request: &Value) -> Result<Response, Invalid> {
    let show_users = flag(request.get("show_users"));
    let group_id =
        int(request.get("group_id")).map_err(|_| bad_params(state, "group_id must be a number"))?;
    let operator_id = int(request.get("operator_id"))
        .map_err(|_| bad_params(state, "operator_id must be a number"))?;
    let operator_extension = text(request.get("operator_extension"))
        .map_err(|_| bad_params(state, "operator_extension must be text"))?;
    let vpbx = &state.config.vpbx;
    let staff = vpbx.staff();
    let groups: Vec<Value> = vpbx
        .groups()
        .iter()
        .filter(|g| group_id.is_none_or(|id| id == g.id))
        .filter(|g| {
            operator_id.is_none_or(|id| {
                g.members.iter().any(|&m| {
                    staff
                        .employees
                        .get(m)
                        .is_some_and(|e| e.mango_user_id == id)
                })
            })
        })
        .filter(|g| {
            operator_extension.as_deref().is_none_or(|ext| {
                g.members
                    .iter()
                    .any(|&m| staff.employees.get(m).is_some_and(|e| e.extension == ext))
            })
        })
        .map(|g| {
            let mut group = json!({
                "id": g.id, "name": g.name, "description": format!("Group {}", g.extension),
                "extension": g.extension, "dial_alg_group": g.dial_alg_group,
                "dial_alg_users": 1, "auto_redirect": 0, "auto_dial": null,
                "line_id": null, "use_dynamic_ivr": 0, "use_dynamic_seq_num": 0,
                "melody_id": null,
            });
            if show_users {
                let operators: Vec<Value> = g
                    .members
                    .iter()
                    .enumerate()
                    .filter_map(|(order, &m)| staff.employees.get(m).map(|e| (order, e)))
                    .map(|(order, e)| {
                        json!({"id": e.mango_user_id, "name": e.name, "extension": e.extension,
                               "priority": 1, "order": order + 1})
                    })
                    .collect();
                group["operators"] = Value::Array(operators);
            }
            group
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"result": 1000, "groups": groups}),
    ))
}

/// The host the client used, when it is a plain host name or address, for absolute links.
pub(super) fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?.trim();
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'));
    plain.then(|| host.to_owned())
}

pub(super) fn recording(
    state: &ApiState,
    request: &Value,
    headers: &HeaderMap,
    now: Instant,
) -> Result<Response, Invalid> {
    let id = text(request.get("recording_id"))
        .map_err(|_| bad_params(state, "recording_id must be text"))?
        .ok_or_else(|| missing_param(state, "recording_id"))?;
    let download = match text(request.get("action"))
        .map_err(|_| bad_params(state, "action must be text"))?
        .as_deref()
    {
        None | Some("download") => true,
        Some("play") => false,
        Some(other) => {
            return Err(bad_params(
                state,
                format!("action must be \"download\" or \"play\", got {other:?}"),
            ))
        }
    };
    let available = state
        .config
        .vpbx
        .recording(&id)
        .filter(|r| r.saved && r.added);
    let Some(info) = available else {
        state.lock().stats.recordings_not_found += 1;
        // Not an invalid request: the recording may simply not be stored yet.
        return Ok(mango_error(status_420(), 3320, "recording not found"));
    };
    let seconds = info
        .duration()
        .map_or(1.0, |d| d as f64)
        .clamp(1.0, MAX_RECORDING_SECONDS);
    let mut m = state.lock();
    if m.links.len() >= MAX_LINKS {
        m.links.retain(|_, l| l.expires > now);
    }
    let token = state.token(&mut m, &id);
    m.links.insert(
        token.clone(),
        Link {
            recording_id: id,
            download,
            seconds,
            expires: now + state.config.link_ttl,
        },
    );
    m.stats.recording_links += 1;
    drop(m);
    let host = request_host(headers).unwrap_or_else(|| state.addr.to_string());
    let location = format!("http://{host}/files/{token}.mp3");
    let mut response = empty(StatusCode::FOUND);
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

pub(super) fn transcripts(state: &ApiState, request: &Value) -> Result<Response, Invalid> {
    // Mango takes the id array JSON-encoded into a string; a plain array is accepted too.
    let ids: Vec<Value> = match request.get("recording_id") {
        None | Some(Value::Null) => return Err(missing_param(state, "recording_id")),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(items)) => items,
            Ok(Value::String(one)) => vec![Value::String(one)],
            _ => vec![Value::String(s.clone())],
        },
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(bad_params(
                state,
                "recording_id must be a JSON array of ids in a string",
            ))
        }
    };
    if ids.len() > MAX_TRANSCRIPT_IDS {
        return Err(bad_params(
            state,
            format!(
                "at most {MAX_TRANSCRIPT_IDS} recording ids per request, got {}",
                ids.len()
            ),
        ));
    }
    let data: Vec<Value> = ids
        .iter()
        .filter_map(|id| text(Some(id)).ok().flatten())
        .filter_map(|id| state.config.vpbx.transcript(&id))
        .map(|t| {
            let phrases: Vec<Value> = t
                .phrases
                .iter()
                .map(|(who, what)| json!([who, what]))
                .collect();
            json!({"recording_id": t.recording_id,
                   "names": {"client": "Клиент", "operator": t.operator_name},
                   "phrases": phrases})
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"result": 1000, "data": data}),
    ))
}
