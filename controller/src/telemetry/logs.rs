//! A component's log lines from CloudWatch Logs: `FilterLogEvents` on its log group (every
//! task's stream), page after page with the API's `nextToken`, polled again while following.
//! Which lines are new and in what order they go is [`LogCursor`]'s (pure) decision.

use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use panka_core::telemetry::logs::{LogCursor, LogEvent};
use tokio_util::sync::CancellationToken;

use super::{Deployed, Telemetry, TelemetryError};
use crate::driver::{counted_client, DriverError};

/// What `panka logs` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// Lines logged at or after this moment, in milliseconds since the Unix epoch.
    pub since_ms: i64,
    /// A CloudWatch Logs filter pattern (`ERROR`, `"connection refused"`), if any.
    pub filter: Option<String>,
    /// Keep reading: poll again this long after the last page, until cancelled. `None` reads
    /// what there is and returns.
    pub follow: Option<Duration>,
}

impl Telemetry {
    /// Reads the log lines of `deployed` that `query` asks for and hands each page's new ones to
    /// `on_lines`, in time order, each line once. Returns when the lines are read (or, when
    /// following, when `cancel` fires; a cancel also interrupts a call in flight).
    pub async fn tail(
        &self,
        deployed: &Deployed,
        query: &LogQuery,
        cancel: &CancellationToken,
        on_lines: &mut (dyn FnMut(Vec<LogEvent>) + Send),
    ) -> Result<(), TelemetryError> {
        let group = deployed.identifier("logGroup")?;
        let logs = counted_client!(self, aws_sdk_cloudwatchlogs);
        let mut cursor = LogCursor::new(query.since_ms);
        loop {
            let mut token: Option<String> = None;
            loop {
                let request = logs
                    .filter_log_events()
                    .log_group_name(group)
                    .start_time(cursor.start())
                    .set_filter_pattern(query.filter.clone())
                    .set_next_token(token.take())
                    .send();
                let page = tokio::select! {
                    page = request => page.map_err(|e| {
                        DriverError::aws("read the log lines of", &deployed.component, &e)
                    })?,
                    () = cancel.cancelled() => return Ok(()),
                };
                let fresh = cursor.take(page.events().iter().filter_map(event).collect());
                if !fresh.is_empty() {
                    on_lines(fresh);
                }
                match page.next_token() {
                    Some(next) => token = Some(next.to_owned()),
                    None => break,
                }
            }
            let Some(every) = query.follow else {
                return Ok(());
            };
            cursor.next_poll();
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = cancel.cancelled() => return Ok(()),
            }
        }
    }
}

/// A line as the pure stage takes it; `None` for an answer without the fields every line has.
fn event(e: &FilteredLogEvent) -> Option<LogEvent> {
    Some(LogEvent {
        timestamp: e.timestamp()?,
        stream: e.log_stream_name()?.to_owned(),
        event_id: e.event_id()?.to_owned(),
        message: e
            .message()
            .unwrap_or_default()
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
    })
}
