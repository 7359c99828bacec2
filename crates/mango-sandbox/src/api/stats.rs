//! `stats/request` and `stats/result`: a CSV of the calls in a window, ready after a delay.

use super::gate::{bad_params, int, missing_param, text};
use super::*;

/// A statistics filter on one side of a call: `(extension, number)`.
pub(super) type PartyFilter = (Option<String>, Option<String>);

/// `{extension, number}` of a statistics filter.
pub(super) fn party_filter(
    state: &ApiState,
    request: &Value,
    name: &str,
) -> Result<Option<PartyFilter>, Invalid> {
    match request.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(obj)) => {
            let ext = text(obj.get("extension"))
                .map_err(|_| bad_params(state, format!("{name}.extension must be text")))?;
            let number = text(obj.get("number"))
                .map_err(|_| bad_params(state, format!("{name}.number must be text")))?;
            Ok(Some((ext, number)))
        }
        Some(_) => Err(bad_params(state, format!("{name} must be an object"))),
    }
}

pub(super) fn matches(filter: &PartyFilter, ext: &Option<String>, num: &Option<String>) -> bool {
    filter.0.as_ref().is_none_or(|x| ext.as_ref() == Some(x))
        && filter.1.as_ref().is_none_or(|x| num.as_ref() == Some(x))
}

/// One CSV cell; Mango's CSV has no escaping, so separators cannot appear in values.
pub(super) fn cell(value: String) -> String {
    value.replace([';', '\n', '\r'], " ")
}

pub(super) fn csv_row(row: &CallRow, fields: &[&str]) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let cells: Vec<String> = fields
        .iter()
        .map(|f| match *f {
            "records" => format!("[{}]", row.records.join(",")),
            "start" | "create" => row.start.to_string(),
            "finish" => row.finish.to_string(),
            "answer" => row.answer.to_string(),
            "from_extension" => opt(&row.from_extension),
            "from_number" => opt(&row.from_number),
            "to_extension" => opt(&row.to_extension),
            "to_number" => opt(&row.to_number),
            "disconnect_reason" => row
                .disconnect_reason
                .map(|r| r.to_string())
                .unwrap_or_default(),
            "line_number" => opt(&row.line_number),
            "location" => opt(&row.location),
            "entry_id" => row.entry_id.clone(),
            _ => String::new(),
        })
        .map(cell)
        .collect();
    cells.join(";")
}

pub(super) fn stats_request(
    state: &ApiState,
    request: &Value,
    now: Instant,
) -> Result<Response, Invalid> {
    let date = |name: &str| {
        int(request.get(name))
            .map_err(|_| bad_params(state, format!("{name} must be Unix seconds")))?
            .ok_or_else(|| missing_param(state, name))
    };
    let from = date("date_from")?;
    let to = date("date_to")?;
    if to < from {
        return Err(bad_params(state, "date_to is before date_from"));
    }
    if to - from > MAX_STATS_WINDOW {
        return Err(bad_params(
            state,
            "the period must not be longer than one month",
        ));
    }
    let fields_text = text(request.get("fields"))
        .map_err(|_| bad_params(state, "fields must be a comma-separated list"))?
        .unwrap_or_else(|| DEFAULT_STATS_FIELDS.to_owned());
    let mut fields: Vec<&str> = Vec::new();
    for f in fields_text
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        match STATS_FIELDS.iter().find(|known| **known == f) {
            Some(known) => fields.push(known),
            None => return Err(bad_params(state, format!("unknown statistics field {f:?}"))),
        }
    }
    if fields.is_empty() {
        return Err(bad_params(state, "fields names no field"));
    }
    let call_party = party_filter(state, request, "call_party")?;
    let from_party = party_filter(state, request, "from")?;
    let to_party = party_filter(state, request, "to")?;
    if call_party.is_some() && (from_party.is_some() || to_party.is_some()) {
        return Err(bad_params(
            state,
            "call_party cannot be combined with from or to",
        ));
    }
    let mut csv = String::new();
    for row in state.config.vpbx.call_rows(from, to) {
        let keep = call_party.as_ref().is_none_or(|p| {
            matches(p, &row.from_extension, &row.from_number)
                || matches(p, &row.to_extension, &row.to_number)
        }) && from_party
            .as_ref()
            .is_none_or(|p| matches(p, &row.from_extension, &row.from_number))
            && to_party
                .as_ref()
                .is_none_or(|p| matches(p, &row.to_extension, &row.to_number));
        if keep {
            csv.push_str(&csv_row(&row, &fields));
            csv.push('\n');
        }
    }
    let mut m = state.lock();
    m.jobs.retain(|_, j| j.expires > now);
    if m.jobs.len() >= MAX_JOBS {
        drop(m);
        return Ok(mango_error(
            StatusCode::SERVICE_UNAVAILABLE,
            5001,
            "too many statistics requests pending",
        ));
    }
    let key = state.token(&mut m, "stats");
    let ready_at = now + state.config.stats_delay;
    m.jobs.insert(
        key.clone(),
        StatsJob {
            csv,
            ready_at,
            expires: ready_at + state.config.stats_ttl,
            last_poll: None,
        },
    );
    m.stats.stats_requests += 1;
    Ok(json_response(StatusCode::OK, &json!({ "key": key })))
}

pub(super) fn stats_result(
    state: &ApiState,
    request: &Value,
    now: Instant,
) -> Result<Response, Invalid> {
    let key = text(request.get("key"))
        .map_err(|_| bad_params(state, "key must be text"))?
        .ok_or_else(|| missing_param(state, "key"))?;
    let mut m = state.lock();
    match m.jobs.get_mut(&key) {
        Some(job) if job.expires > now => {
            let too_soon = job.last_poll.is_some_and(|last| {
                now.saturating_duration_since(last) < state.config.stats_poll_interval
            });
            if too_soon {
                m.stats.rate_limit_violations += 1;
                *m.stats
                    .rate_limited
                    .entry(Endpoint::StatsResult.name().into())
                    .or_default() += 1;
                return Ok(json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({"name": "Service Unavailable", "message": "Rate limit exceeded.",
                        "code": 0, "status": 429}),
                ));
            }
            job.last_poll = Some(now);
            if job.ready_at > now {
                return Ok(empty(StatusCode::NO_CONTENT));
            }
            let mut response = Response::new(Body::from(job.csv.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            Ok(response)
        }
        // Unknown or expired: not an invalid request, just nothing there.
        _ => Ok(empty(StatusCode::NOT_FOUND)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_never_carry_separators() {
        let row = CallRow {
            entry_id: "e;1".into(),
            records: vec!["a".into(), "b".into()],
            start: 5,
            from_number: Some("7\n9".into()),
            ..CallRow::default()
        };
        assert_eq!(
            csv_row(
                &row,
                &["records", "start", "from_number", "entry_id", "to_number"]
            ),
            "[a,b];5;7 9;e 1;"
        );
    }
}
