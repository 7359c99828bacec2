//! Log output on stderr: text (coloured only when stderr is a terminal, so files and journals get
//! no escape codes) or JSON, one object a line, for log shippers.

use callbridge_server::config::LogFormat;
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`, when given on the command line: it wins over the configuration.
static FROM_COMMAND_LINE: OnceLock<LogFormat> = OnceLock::new();

pub fn set_command_line_format(format: Option<LogFormat>) {
    if let Some(format) = format {
        let _ = FROM_COMMAND_LINE.set(format);
    }
}

/// The format to log in: `--log-format`, else `configured` (`log_format` in the file, or
/// `CALLBRIDGE_LOG_FORMAT`, read with the configuration), else `CALLBRIDGE_LOG_FORMAT` for the
/// commands that read no configuration, else text. An unknown value in the environment is
/// reported once and text used.
pub fn chosen_format(configured: Option<LogFormat>) -> LogFormat {
    if let Some(format) = FROM_COMMAND_LINE.get() {
        return *format;
    }
    if let Some(format) = configured {
        return format;
    }
    match std::env::var("CALLBRIDGE_LOG_FORMAT") {
        Ok(value) => value.parse().unwrap_or_else(|why| {
            eprintln!("callbridge: CALLBRIDGE_LOG_FORMAT: {why}; logging as text");
            LogFormat::Text
        }),
        Err(_) => LogFormat::Text,
    }
}

/// Logs to stderr at `default_level`, unless `CALLBRIDGE_LOG` (a tracing filter) says otherwise.
pub fn init(default_level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALLBRIDGE_LOG")
        .unwrap_or_else(|_| default_level.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.event_format(JsonLines).init(),
    }
}

/// One JSON object per event: `timestamp` (UTC, RFC 3339), `level`, `target`, the spans it is in
/// (`spans`, outermost first), `message` and the event's fields by name.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        fields.0.insert("timestamp".into(), rfc3339_now().into());
        let meta = event.metadata();
        fields
            .0
            .insert("level".into(), meta.level().as_str().into());
        fields.0.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<serde_json::Value> =
                scope.from_root().map(|span| span.name().into()).collect();
            fields.0.insert("spans".into(), spans.into());
        }
        event.record(&mut fields);
        let line = serde_json::Value::Object(fields.0).to_string();
        writer.write_str(&line)?;
        writer.write_char('\n')
    }
}

#[derive(Default)]
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// Now as `2026-12-06T01:14:21.123Z`, from the civil-from-days algorithm (no date crate needed
/// for one timestamp format).
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_timestamp_is_rfc3339_utc() {
        let t = super::rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
}
