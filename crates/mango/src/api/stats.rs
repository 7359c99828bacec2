//! Basic call statistics, as reconciliation reads them: `stats/request` names a period and the
//! fields, Mango answers a key; `stats/result` with that key answers 204 until the CSV is ready,
//! then the CSV (`;` between cells, `\n` between rows, no quoting, no header), or 404 once the key
//! is unknown or expired.
//!
//! Mango's limits: `stats/request` once per 2 s, and a key polled at most once per 5 s
//! ([`STATS_POLL_INTERVAL`]); the client spaces both. A row that cannot be read is reported in
//! [`StatsTable::bad_rows`] with its line and field, and the others are kept: one odd row must
//! not hide a day's calls.

use super::{malformed, to_json, ApiError, VpbxClient};
use reqwest::StatusCode;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

/// `stats/request`: documented limit of 1 request per 2 s.
pub const MIN_INTERVAL_STATS_REQUEST: Duration = Duration::from_secs(2);
/// `stats/result` has no per-product limit (50 per second in total); one key is polled at most
/// once per [`STATS_POLL_INTERVAL`], which [`VpbxClient::call_stats`] keeps.
pub(super) const MIN_INTERVAL_STATS_RESULT: Duration = Duration::from_millis(100);
/// How often Mango allows polling one statistics key ("не чаще раза в 5 секунд").
pub const STATS_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The fields asked for, in this order: [`parse_stats_csv`] reads the cells in it.
pub const STATS_FIELDS: &str = "records,start,finish,answer,from_extension,from_number,to_extension,to_number,disconnect_reason,line_number,location,entry_id";
const FIELD_COUNT: usize = 12;

const EP_STATS_REQUEST: &str = "stats/request";
const EP_STATS_RESULT: &str = "stats/result";

/// One row of the basic statistics: one call as the PBX recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StatsRow {
    pub entry_id: String,
    /// Recording ids (`records`, written `[id1,id2]`).
    pub records: Vec<String>,
    /// Unix seconds.
    pub start: i64,
    pub finish: i64,
    /// When somebody answered (Unix seconds); `None` when nobody did (Mango writes 0).
    pub answer: Option<i64>,
    pub from_extension: Option<String>,
    pub from_number: Option<String>,
    pub to_extension: Option<String>,
    pub to_number: Option<String>,
    pub disconnect_reason: Option<u32>,
    pub line_number: Option<String>,
    pub location: Option<String>,
}

/// A row that could not be read: where, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("statistics line {line}: {field}: {problem}")]
pub struct BadStatsRow {
    /// 1-based line of the CSV.
    pub line: usize,
    pub field: &'static str,
    pub problem: String,
}

/// The rows of one statistics answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StatsTable {
    pub rows: Vec<StatsRow>,
    pub bad_rows: Vec<BadStatsRow>,
}

/// What one `stats/result` poll said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsPoll {
    /// HTTP 204: still being prepared.
    NotReady,
    /// The CSV.
    Ready(String),
    /// HTTP 404: the key is unknown or expired.
    Expired,
}

/// Reads a `stats/result` CSV whose columns are [`STATS_FIELDS`], in that order.
pub fn parse_stats_csv(text: &str) -> StatsTable {
    let mut table = StatsTable::default();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(line) {
            Ok(row) => table.rows.push(row),
            Err((field, problem)) => table.bad_rows.push(BadStatsRow {
                line: i + 1,
                field,
                problem,
            }),
        }
    }
    table
}

type RowError = (&'static str, String);

fn parse_row(line: &str) -> Result<StatsRow, RowError> {
    let cells: Vec<&str> = line.split(';').map(str::trim).collect();
    if cells.len() != FIELD_COUNT {
        return Err((
            "row",
            format!(
                "{} cells, expected {FIELD_COUNT} ({STATS_FIELDS})",
                cells.len()
            ),
        ));
    }
    let text = |i: usize| (!cells[i].is_empty()).then(|| cells[i].to_owned());
    let entry_id = text(11).ok_or(("entry_id", "empty".to_owned()))?;
    let start = time(cells[1], "start")?.ok_or(("start", "empty".to_owned()))?;
    let finish = time(cells[2], "finish")?.ok_or(("finish", "empty".to_owned()))?;
    if finish < start {
        return Err(("finish", format!("{finish} is before the start {start}")));
    }
    let answer = time(cells[3], "answer")?.filter(|&t| t > 0);
    let disconnect_reason = match cells[8] {
        "" => None,
        code => Some(
            code.parse::<u32>()
                .map_err(|_| ("disconnect_reason", format!("{code:?} is not a code")))?,
        ),
    };
    Ok(StatsRow {
        entry_id,
        records: records(cells[0])?,
        start,
        finish,
        answer,
        from_extension: text(4),
        from_number: text(5),
        to_extension: text(6),
        to_number: text(7),
        disconnect_reason,
        line_number: text(9),
        location: text(10),
    })
}

/// Unix seconds; an empty cell is `None`.
fn time(cell: &str, field: &'static str) -> Result<Option<i64>, RowError> {
    if cell.is_empty() {
        return Ok(None);
    }
    match cell.parse::<i64>() {
        Ok(t) if t >= 0 => Ok(Some(t)),
        _ => Err((field, format!("{cell:?} is not a time in Unix seconds"))),
    }
}

/// `[id1,id2]`, `[]` or empty.
fn records(cell: &str) -> Result<Vec<String>, RowError> {
    let inner = match cell.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or(("records", format!("{cell:?} opens [ without closing it")))?,
        None if cell.is_empty() => "",
        None => return Err(("records", format!("{cell:?} is not a [list]"))),
    };
    Ok(inner
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect())
}

impl VpbxClient {
    /// `stats/request` for the calls that started within `from..=to` (Unix seconds): the key to
    /// poll. Mango refuses periods longer than a month (the caller checks first).
    pub async fn stats_request(&self, from: i64, to: i64) -> Result<String, ApiError> {
        #[derive(Serialize)]
        struct Req<'a> {
            date_from: String,
            date_to: String,
            fields: &'a str,
            request_id: String,
        }
        let json = to_json(&Req {
            date_from: from.to_string(),
            date_to: to.to_string(),
            fields: STATS_FIELDS,
            request_id: format!("callbridge-reconcile-{from}-{to}"),
        });
        let answer = self
            .post(EP_STATS_REQUEST, &self.inner.stats_request, json)
            .await?;
        let root = super::json_body(EP_STATS_REQUEST, &answer)?;
        match root.get("key").and_then(serde_json::Value::as_str) {
            Some(key) if !key.trim().is_empty() => Ok(key.trim().to_owned()),
            _ => Err(malformed(EP_STATS_REQUEST, "no key in the answer")),
        }
    }

    /// One `stats/result` poll of `key`.
    pub async fn stats_result(&self, key: &str) -> Result<StatsPoll, ApiError> {
        #[derive(Serialize)]
        struct Req<'a> {
            key: &'a str,
        }
        let json = to_json(&Req { key });
        let answer = match self
            .post(EP_STATS_RESULT, &self.inner.stats_result, json)
            .await
        {
            Err(ApiError::Http { status: 404, .. }) => return Ok(StatsPoll::Expired),
            other => other?,
        };
        if answer.status == StatusCode::NO_CONTENT {
            return Ok(StatsPoll::NotReady);
        }
        if answer.status != StatusCode::OK {
            return Err(malformed(
                EP_STATS_RESULT,
                format!("unexpected HTTP {}", answer.status.as_u16()),
            ));
        }
        let text = String::from_utf8(answer.body)
            .map_err(|_| malformed(EP_STATS_RESULT, "the CSV is not UTF-8"))?;
        if text.trim_start().starts_with('{') {
            // A JSON body on 200 is a refusal in Mango's words, not statistics.
            if let Ok(root) = serde_json::from_str::<serde_json::Value>(&text) {
                super::check_result(EP_STATS_RESULT, &root)?;
            }
            return Err(malformed(EP_STATS_RESULT, "JSON where a CSV was expected"));
        }
        Ok(StatsPoll::Ready(text))
    }

    /// The calls that started within `from..=to`: requests the statistics, then polls every
    /// `poll` (Mango allows no more than once per [`STATS_POLL_INTERVAL`]; tests against the
    /// emulator go faster) until they are ready, for at most `give_up_after`.
    pub async fn call_stats(
        &self,
        from: i64,
        to: i64,
        poll: Duration,
        give_up_after: Duration,
    ) -> Result<StatsTable, ApiError> {
        let key = self.stats_request(from, to).await?;
        let started = Instant::now();
        loop {
            tokio::time::sleep(poll).await;
            match self.stats_result(&key).await? {
                StatsPoll::Ready(csv) => return Ok(parse_stats_csv(&csv)),
                StatsPoll::Expired => return Err(ApiError::StatsKeyExpired),
                StatsPoll::NotReady if started.elapsed() + poll > give_up_after => {
                    return Err(ApiError::StatsNotReady {
                        waited_s: started.elapsed().as_secs(),
                    })
                }
                StatsPoll::NotReady => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = "[r1,r2];1764000000;1764000090;1764000010;;79161234567;101;;1100;74951234567;abonent;ZW50cnk6MQ==";

    #[test]
    fn a_full_row_reads_into_its_fields() {
        let table = parse_stats_csv(&format!("{ROW}\r\n\n"));
        assert_eq!(table.bad_rows, vec![]);
        assert_eq!(
            table.rows,
            vec![StatsRow {
                entry_id: "ZW50cnk6MQ==".into(),
                records: vec!["r1".into(), "r2".into()],
                start: 1764000000,
                finish: 1764000090,
                answer: Some(1764000010),
                from_extension: None,
                from_number: Some("79161234567".into()),
                to_extension: Some("101".into()),
                to_number: None,
                disconnect_reason: Some(1100),
                line_number: Some("74951234567".into()),
                location: Some("abonent".into()),
            }]
        );
    }

    #[test]
    fn an_unanswered_call_and_no_recordings() {
        let table = parse_stats_csv("[];1764000000;1764000030;0;;79161234567;;;1110;;ivr;e2\n;1764000000;1764000030;;;;;;;;;e3");
        assert_eq!(table.bad_rows, vec![]);
        assert_eq!(table.rows.len(), 2);
        assert!(table
            .rows
            .iter()
            .all(|r| r.answer.is_none() && r.records.is_empty()));
    }

    #[test]
    fn bad_rows_are_named_and_the_others_kept() {
        let csv = [
            ROW,
            "[r1;1764000000",
            "[r1;1764000000;1764000090;0;;;;;;;;e",
            "[];yesterday;1764000090;0;;;;;;;;e",
            "[];1764000090;1764000000;0;;;;;;;;e",
            "[];1764000000;1764000090;0;;;;;busy;;;e",
            "[];1764000000;1764000090;0;;;;;;;;",
            "r1;1764000000;1764000090;0;;;;;;;;e",
            "[];-5;1764000090;0;;;;;;;;e",
        ]
        .join("\n");
        let table = parse_stats_csv(&csv);
        assert_eq!(table.rows.len(), 1);
        let fields: Vec<(usize, &str)> = table.bad_rows.iter().map(|b| (b.line, b.field)).collect();
        assert_eq!(
            fields,
            vec![
                (2, "row"),
                (3, "records"),
                (4, "start"),
                (5, "finish"),
                (6, "disconnect_reason"),
                (7, "entry_id"),
                (8, "records"),
                (9, "start"),
            ]
        );
        assert_eq!(
            table.bad_rows[0].to_string(),
            format!("statistics line 2: row: 2 cells, expected 12 ({STATS_FIELDS})")
        );
    }

    #[test]
    fn nothing_in_a_cell_makes_it_panic() {
        for junk in [
            "",
            ";",
            ";;;;;;;;;;;",
            "\u{feff}",
            "[;]",
            "];[",
            "ё;ё;ё;ё;ё;ё;ё;ё;ё;ё;ё;ё",
        ] {
            let _ = parse_stats_csv(junk);
        }
    }
}
