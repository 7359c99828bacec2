//! The call journal's reads: planned entries filtered by number, time, employee, direction,
//! outcome and delivery state, newest first; the events an entry was planned from; its outbox
//! items. The columns filtered on are copied out of the plan JSON when the plan is saved
//! ([`JournalColumns`], migration 10).

use crate::entries::{entry_item_keys, EntryRow, ENTRY_COLUMNS};
use crate::outbox::{item, ItemRow, ITEM_COLUMNS};
use crate::{with_db, OutboxItem, Result, Store, StoredEntry, StoredEvent};
use serde_json::Value;
use std::collections::HashMap;

/// What the journal filters by, as read from a plan's JSON (the `simulate` output shape).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JournalColumns {
    /// The last ten digits of `client_phone`.
    pub(crate) client_phone10: Option<String>,
    /// `inbound`, `outbound` or `internal`.
    pub(crate) direction: Option<String>,
    /// `answered` or `missed`.
    pub(crate) outcome: Option<String>,
    /// `started_at`, Unix seconds.
    pub(crate) started_at: Option<i64>,
    /// The employees' extensions of the records and ignored items, sorted, as `,101,105,`;
    /// `None` when there are none.
    pub(crate) extensions: Option<String>,
}

impl JournalColumns {
    /// The columns of a plan; a field the plan lacks (or holds in another type) stays empty.
    pub(crate) fn of_plan(plan: &Value) -> JournalColumns {
        let text = |key: &str| plan.get(key).and_then(Value::as_str).map(str::to_string);
        let client_phone10 = plan
            .get("client_phone")
            .and_then(Value::as_str)
            .map(last_ten_digits)
            .filter(|digits| !digits.is_empty());
        let mut extensions: Vec<&str> = ["records", "ignored"]
            .iter()
            .filter_map(|list| plan.get(*list).and_then(Value::as_array))
            .flatten()
            .filter_map(|item| item.get("employee_extension").and_then(Value::as_str))
            // A comma would split one extension into two in the list.
            .filter(|ext| !ext.is_empty() && !ext.contains(','))
            .collect();
        extensions.sort_unstable();
        extensions.dedup();
        JournalColumns {
            client_phone10,
            direction: text("direction"),
            outcome: text("outcome"),
            started_at: plan.get("started_at").and_then(Value::as_i64),
            extensions: (!extensions.is_empty()).then(|| format!(",{},", extensions.join(","))),
        }
    }
}

/// The last ten digits of a number (all of them when it has fewer): what amoCRM matches a
/// client on.
fn last_ten_digits(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(10)..].iter().collect()
}

/// An entry's delivery state, from its outbox items: parked if any is parked, else pending if
/// any is pending, else delivered; an entry with no items has nothing to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFilter {
    Parked,
    Pending,
    Delivered,
    NothingToDeliver,
}

impl DeliveryFilter {
    /// Every state by its name, as the entries API spells it.
    pub const ALL: [(&'static str, DeliveryFilter); 4] = [
        ("parked", DeliveryFilter::Parked),
        ("pending", DeliveryFilter::Pending),
        ("delivered", DeliveryFilter::Delivered),
        ("nothing_to_deliver", DeliveryFilter::NothingToDeliver),
    ];

    /// The state named `name` (`parked`, `pending`, `delivered`, `nothing_to_deliver`).
    pub fn from_name(name: &str) -> Option<DeliveryFilter> {
        DeliveryFilter::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        DeliveryFilter::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| n)
    }
}

/// Which entries the journal lists; every field set narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalFilter {
    /// Digits of the client's number: 10 or more match the last ten exactly; fewer match
    /// anywhere in the last ten. Empty: no filter.
    pub phone_digits: Option<String>,
    /// Planned at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Planned before (Unix ms).
    pub to_ms: Option<i64>,
    /// An employee's extension among the entry's records and ignored items.
    pub extension: Option<String>,
    /// `inbound`, `outbound` or `internal`.
    pub direction: Option<String>,
    /// `answered` or `missed`.
    pub outcome: Option<String>,
    pub delivery: Option<DeliveryFilter>,
}

/// How far the `delivered` and `nothing_to_deliver` filters count: they look at each entry's
/// outbox items, which at 100,000 entries took over 200 ms for an exact count on SQLite, so
/// past this many the count stops (see [`JournalPage::total_capped`]).
pub const JOURNAL_COUNT_CAP: i64 = 10_000;

/// One page of the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalPage {
    /// Entries matching the filter, on every page; at most [`JOURNAL_COUNT_CAP`] when
    /// `total_capped`.
    pub total: i64,
    /// More than [`JOURNAL_COUNT_CAP`] entries match and `total` is the cap ("10,000+"). Only
    /// the `delivered` and `nothing_to_deliver` filters are capped; every other count is exact.
    pub total_capped: bool,
    /// This page's entries, newest first.
    pub entries: Vec<StoredEntry>,
}

/// A planned entry with the events it was planned from, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryWithEvents {
    pub entry: StoredEntry,
    pub events: Vec<StoredEvent>,
}

/// A value bound to a `$n` placeholder.
enum Arg {
    Text(String),
    Int(i64),
}

/// A `WHERE` clause over `entries e` and its arguments, numbered in order.
struct Conditions {
    sql: Vec<String>,
    args: Vec<Arg>,
}

impl Conditions {
    /// Adds an argument, returning its placeholder.
    fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    fn of(tenant_id: &str, filter: &JournalFilter) -> Conditions {
        let mut c = Conditions {
            sql: Vec::new(),
            args: Vec::new(),
        };
        let tenant = c.arg(Arg::Text(tenant_id.to_string()));
        c.sql.push(format!("e.tenant_id = {tenant}"));
        if let Some(digits) = filter.phone_digits.as_deref().filter(|d| !d.is_empty()) {
            let cond = if digits.len() >= 10 {
                let last_ten = digits[digits.len() - 10..].to_string();
                format!("e.client_phone10 = {}", c.arg(Arg::Text(last_ten)))
            } else {
                let pattern = format!("%{}%", escape_like(digits));
                format!(
                    "e.client_phone10 LIKE {} ESCAPE '\\'",
                    c.arg(Arg::Text(pattern))
                )
            };
            c.sql.push(cond);
        }
        if let Some(from) = filter.from_ms {
            let p = c.arg(Arg::Int(from));
            c.sql.push(format!("e.planned_at_ms >= {p}"));
        }
        if let Some(to) = filter.to_ms {
            let p = c.arg(Arg::Int(to));
            c.sql.push(format!("e.planned_at_ms < {p}"));
        }
        if let Some(ext) = &filter.extension {
            let p = c.arg(Arg::Text(format!("%,{},%", escape_like(ext))));
            c.sql.push(format!("e.extensions LIKE {p} ESCAPE '\\'"));
        }
        if let Some(direction) = &filter.direction {
            let p = c.arg(Arg::Text(direction.clone()));
            c.sql.push(format!("e.direction = {p}"));
        }
        if let Some(outcome) = &filter.outcome {
            let p = c.arg(Arg::Text(outcome.clone()));
            c.sql.push(format!("e.outcome = {p}"));
        }
        if let Some(delivery) = filter.delivery {
            // Parked and pending items are few (a tenant's items are indexed by state), so those
            // two sets are read whole; whether an entry has items at all is a range of the
            // outbox's primary key (`tenant/entry/...`).
            let in_state = |state: &str| {
                format!(
                    "e.entry_id IN (SELECT o.entry_id FROM outbox o WHERE o.tenant_id = {tenant} AND o.state = '{state}')"
                )
            };
            let has_items = "EXISTS (SELECT 1 FROM outbox o WHERE o.item_key >= e.tenant_id || '/' || e.entry_id || '/' \
                 AND o.item_key < e.tenant_id || '/' || e.entry_id || '0' AND o.entry_id = e.entry_id)";
            let cond = match delivery {
                DeliveryFilter::Parked => in_state("parked"),
                DeliveryFilter::Pending => {
                    format!("{} AND NOT {}", in_state("pending"), in_state("parked"))
                }
                DeliveryFilter::Delivered => format!(
                    "{has_items} AND NOT {} AND NOT {}",
                    in_state("pending"),
                    in_state("parked")
                ),
                DeliveryFilter::NothingToDeliver => format!("NOT {has_items}"),
            };
            c.sql.push(cond);
        }
        c
    }

    fn clause(&self) -> String {
        self.sql.join(" AND ")
    }
}

/// `text` with LIKE's wildcards (and the escape character) escaped by `\`.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Binds `args` in order to a query built by `sqlx::query_as` or `sqlx::query_scalar`.
macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Text(text) => q.bind(text.as_str()),
                Arg::Int(n) => q.bind(*n),
            };
        }
        q
    }};
}

const EVENT_COLUMNS: &str = "id, tenant_id, entry_id, path, json, received_at_ms";

impl Store {
    /// A page of a tenant's journal: the entries matching `filter`, newest first (planned time,
    /// then entry id, descending), and how many match in all.
    pub async fn journal(
        &self,
        tenant_id: &str,
        filter: &JournalFilter,
        limit: i64,
        offset: i64,
    ) -> Result<JournalPage> {
        let mut c = Conditions::of(tenant_id, filter);
        let capped = matches!(
            filter.delivery,
            Some(DeliveryFilter::Delivered | DeliveryFilter::NothingToDeliver)
        );
        let count_sql = if capped {
            format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM entries e WHERE {} LIMIT {}) counted",
                c.clause(),
                JOURNAL_COUNT_CAP + 1
            )
        } else {
            format!("SELECT COUNT(*) FROM entries e WHERE {}", c.clause())
        };
        let counted: i64 = with_db!(&self.db, pool => {
            bind_all!(sqlx::query_scalar(&count_sql), &c.args).fetch_one(pool).await?
        });
        let total_capped = capped && counted > JOURNAL_COUNT_CAP;
        let total = if total_capped {
            JOURNAL_COUNT_CAP
        } else {
            counted
        };
        let limit = c.arg(Arg::Int(limit));
        let offset = c.arg(Arg::Int(offset));
        let page_sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries e WHERE {} \
             ORDER BY e.planned_at_ms DESC, e.entry_id DESC LIMIT {limit} OFFSET {offset}",
            c.clause()
        );
        let rows: Vec<EntryRow> = with_db!(&self.db, pool => {
            bind_all!(sqlx::query_as(&page_sql), &c.args).fetch_all(pool).await?
        });
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            entries.push(self.with_outbox_states(row).await?);
        }
        Ok(JournalPage {
            total,
            total_capped,
            entries,
        })
    }

    /// On PostgreSQL, what autovacuum does in the background after many writes: `VACUUM
    /// ANALYZE` of the entries and the outbox (fresh statistics for the planner, and a
    /// visibility map that lets index-only scans skip the table). For a benchmark, so it
    /// measures the steady state rather than the minute after a bulk load. Nothing on SQLite,
    /// which gathers no statistics unless told to (and the service never tells it).
    pub async fn vacuum_analyze_journal(&self) -> Result<()> {
        if let crate::Db::Postgres(pool) = &self.db {
            sqlx::raw_sql("VACUUM ANALYZE entries, outbox")
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// The events of an entry, oldest first: a range of the log's primary key when the entry
    /// was stored with its event ids; for an entry not planned yet, the log from the recovery
    /// mark on (every event below it belongs to a planned entry); else (entries planned before
    /// the ids were kept) a scan of the whole log.
    pub async fn entry_events(&self, tenant_id: &str, entry_id: &str) -> Result<Vec<StoredEvent>> {
        let range: Option<(Option<i64>, Option<i64>)> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT first_event_id, last_event_id FROM entries WHERE tenant_id = $1 AND entry_id = $2")
                .bind(tenant_id)
                .bind(entry_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(match range {
            Some((Some(first), Some(last))) => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE id >= $1 AND id <= $2 AND tenant_id = $3 AND entry_id = $4 ORDER BY id"
                );
                with_db!(&self.db, pool => {
                    sqlx::query_as(&sql).bind(first).bind(last).bind(tenant_id).bind(entry_id).fetch_all(pool).await?
                })
            }
            unranged => {
                let from = if unranged.is_none() {
                    self.recovery_mark().await?
                } else {
                    0
                };
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE id >= $1 AND tenant_id = $2 AND entry_id = $3 ORDER BY id"
                );
                with_db!(&self.db, pool => {
                    sqlx::query_as(&sql).bind(from).bind(tenant_id).bind(entry_id).fetch_all(pool).await?
                })
            }
        })
    }

    /// The tenant's newest `n` planned entries with the events each was planned from (what a
    /// settings preview runs the new settings on). The events are read in one range scan of
    /// the log, from the smallest first id of the entries to the largest last id, each kept for
    /// the entry whose range holds it; entries stored without a range are read together by a
    /// scan of the log.
    pub async fn recent_entries_with_events(
        &self,
        tenant_id: &str,
        n: i64,
    ) -> Result<Vec<EntryWithEvents>> {
        let mut out: Vec<EntryWithEvents> = self
            .entries(tenant_id, n, 0)
            .await?
            .into_iter()
            .map(|entry| EntryWithEvents {
                entry,
                events: Vec::new(),
            })
            .collect();
        let by_entry: HashMap<String, usize> = out
            .iter()
            .enumerate()
            .map(|(i, e)| (e.entry.entry_id.clone(), i))
            .collect();
        let ranges = out
            .iter()
            .filter_map(|e| e.entry.first_event_id.zip(e.entry.last_event_id));
        let span = ranges.fold(None, |span: Option<(i64, i64)>, (first, last)| {
            Some(span.map_or((first, last), |(a, b)| (a.min(first), b.max(last))))
        });
        if let Some((first, last)) = span {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id >= $1 AND id <= $2 AND tenant_id = $3 ORDER BY id"
            );
            let events: Vec<StoredEvent> = with_db!(&self.db, pool => {
                sqlx::query_as(&sql).bind(first).bind(last).bind(tenant_id).fetch_all(pool).await?
            });
            for event in events {
                let Some(&i) = by_entry.get(&event.entry_id) else {
                    continue;
                };
                let entry = &out[i].entry;
                // Only into an entry whose own range holds it: an event past it came after the
                // plan was made (a late straggler), and an entry without a range is read below.
                let within = entry
                    .first_event_id
                    .zip(entry.last_event_id)
                    .is_some_and(|(first, last)| (first..=last).contains(&event.id));
                if within {
                    out[i].events.push(event);
                }
            }
        }
        let unranged: Vec<&str> = out
            .iter()
            .filter(|e| e.entry.first_event_id.is_none() || e.entry.last_event_id.is_none())
            .map(|e| e.entry.entry_id.as_str())
            .collect();
        if !unranged.is_empty() {
            let mut args = vec![Arg::Text(tenant_id.to_string())];
            let mut marks = Vec::with_capacity(unranged.len());
            for id in &unranged {
                args.push(Arg::Text(id.to_string()));
                marks.push(format!("${}", args.len()));
            }
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND entry_id IN ({}) ORDER BY id",
                marks.join(", ")
            );
            let events: Vec<StoredEvent> = with_db!(&self.db, pool => {
                bind_all!(sqlx::query_as(&sql), &args).fetch_all(pool).await?
            });
            for event in events {
                if let Some(&i) = by_entry.get(&event.entry_id) {
                    out[i].events.push(event);
                }
            }
        }
        Ok(out)
    }

    /// The outbox items of one entry, by key: its delivery state, the CRM's answers (the ids
    /// of what was written) and the reasons of parked items. A range of the outbox's primary
    /// key (`tenant/entry/...`).
    pub async fn entry_outbox(&self, tenant_id: &str, entry_id: &str) -> Result<Vec<OutboxItem>> {
        let (from, to) = entry_item_keys(tenant_id, entry_id);
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM outbox WHERE item_key >= $1 AND item_key < $2 AND entry_id = $3 ORDER BY item_key"
        );
        let rows: Vec<ItemRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(&from).bind(&to).bind(entry_id).fetch_all(pool).await?
        });
        rows.into_iter().map(item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plans_columns_are_read_from_its_json() {
        let plan = json!({
            "direction": "inbound", "outcome": "answered", "client_phone": "79161234567",
            "started_at": 1764000000,
            "records": [{"employee_extension": "105"}, {"employee_extension": "101"}, {"employee_extension": null}],
            "ignored": [{"employee_extension": "105"}, {"employee_extension": "7"}],
        });
        assert_eq!(
            JournalColumns::of_plan(&plan),
            JournalColumns {
                client_phone10: Some("9161234567".into()),
                direction: Some("inbound".into()),
                outcome: Some("answered".into()),
                started_at: Some(1764000000),
                extensions: Some(",101,105,7,".into()),
            }
        );
        let internal =
            json!({"direction": "internal", "client_phone": null, "records": [], "ignored": []});
        let c = JournalColumns::of_plan(&internal);
        assert_eq!((c.client_phone10, c.extensions), (None, None));
        assert_eq!(
            JournalColumns::of_plan(&json!("not a plan")),
            JournalColumns::default()
        );
        assert_eq!(last_ten_digits("2079460958"), "2079460958");
        assert_eq!(last_ten_digits("442079460958"), "2079460958");
        assert_eq!(last_ten_digits("1234567"), "1234567");
    }

    #[test]
    fn like_wildcards_are_escaped_and_delivery_names_round_trip() {
        assert_eq!(escape_like(r"1%2_3\4"), r"1\%2\_3\\4");
        for (name, state) in DeliveryFilter::ALL {
            assert_eq!(DeliveryFilter::from_name(name), Some(state));
            assert_eq!(state.name(), name);
        }
        assert_eq!(DeliveryFilter::from_name("Parked"), None);
    }
}
