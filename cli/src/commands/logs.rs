//! `panka logs`: a container component's log lines from CloudWatch Logs, every task's, merged in
//! time order, each prefixed with the task that logged it; `--follow` keeps printing new ones.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use panka_controller::telemetry::LogQuery;
use panka_core::telemetry::logs::LogEvent;
use serde_json::json;

use super::{cancel_on_signal, open_session, resolve_component, runtime, ComponentArgs};
use crate::app::{parse_duration, GlobalArgs, OutputFormat};
use crate::render::to_yaml;

/// How often `--follow` asks CloudWatch Logs for new lines.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Arguments of `panka logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: ComponentArgs,
    /// Lines logged at most this long ago: `30m`, `1h`, `24h`, `90s`.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,
    /// Only lines matching this CloudWatch Logs filter pattern: a term (`ERROR`), several terms
    /// that must all appear (`ERROR timeout`), or an exact phrase in double quotes
    /// (`'"connection refused"'`).
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// Keep printing new lines as they arrive, until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Runs `panka logs`.
pub fn run(global: &GlobalArgs, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let Some((desired, id)) = resolve_component(global, &args.target)? else {
        return Ok(ExitCode::FAILURE);
    };
    let since = i64::try_from(args.since.as_millis()).unwrap_or(i64::MAX);
    let query = LogQuery {
        since_ms: jiff::Timestamp::now()
            .as_millisecond()
            .saturating_sub(since),
        filter: args.filter.clone(),
        follow: args.follow.then_some(FOLLOW_EVERY),
    };
    let format = global.output;
    runtime()?.block_on(async {
        let cancel = cancel_on_signal();
        let session = open_session(global, &desired).await?;
        let deployed = session.deployed(&desired, &id, "logs").await?;
        let stop = cancel.clone();
        let mut printed = 0usize;
        let mut print = |lines: Vec<LogEvent>| {
            printed += lines.len();
            let mut out = std::io::stdout().lock();
            for line in &lines {
                // A reader that went away (`panka logs -f | head`) is Ctrl-C: stop reading.
                if out.write_all(render(format, line).as_bytes()).is_err() {
                    stop.cancel();
                    return;
                }
            }
            let _ = out.flush();
        };
        session
            .telemetry()
            .tail(&deployed, &query, &cancel, &mut print)
            .await?;
        if printed == 0 && !args.follow {
            // Nothing on stdout is ambiguous: say where panka looked (on stderr, so a pipe of
            // lines stays empty).
            let group = deployed.identifier("logGroup").map_or_else(
                |_| {
                    panka_core::naming::Naming::new(&desired.name, &desired.environment)
                        .log_group(&id)
                },
                str::to_owned,
            );
            let filter = args
                .filter
                .as_deref()
                .map(|f| format!(" matching `{f}`"))
                .unwrap_or_default();
            let span = jiff::SignedDuration::try_from(args.since).unwrap_or(jiff::SignedDuration::MAX);
            eprintln!(
                "No log lines{filter} in {group} in the last {}; a longer --since looks further back",
                crate::render::duration(span)
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One line as printed: `[task] time message` for people; for machines a JSON object per line,
/// or a YAML document per line.
fn render(format: OutputFormat, line: &LogEvent) -> String {
    let time = jiff::Timestamp::from_millisecond(line.timestamp).map_or_else(
        |_| line.timestamp.to_string(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    );
    let data = || {
        json!({
            "timestamp": time,
            "task": line.task(),
            "stream": line.stream,
            "eventId": line.event_id,
            "message": line.message,
        })
    };
    match format {
        OutputFormat::Table => format!("[{}] {time} {}\n", line.task(), line.message),
        OutputFormat::Json => format!("{}\n", data()),
        OutputFormat::Yaml => match to_yaml(&data()) {
            Ok(doc) => format!("---\n{doc}"),
            Err(e) => format!("--- # {e:#}\n"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> LogEvent {
        LogEvent {
            timestamp: 1_795_444_522_123,
            stream: "api/api/0123456789abcdef0123456789abcdef".into(),
            event_id: "3797".into(),
            message: "GET /healthz 200".into(),
        }
    }

    #[test]
    fn a_line_for_people_starts_with_its_task_then_the_time() {
        assert_eq!(
            render(OutputFormat::Table, &line()),
            "[0123456789abcdef0123456789abcdef] 2026-11-23T14:35:22.123Z GET /healthz 200\n"
        );
    }

    #[test]
    fn a_line_for_machines_is_one_json_object_or_yaml_document() {
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &line())).expect("JSON");
        assert_eq!(json["task"], "0123456789abcdef0123456789abcdef");
        assert_eq!(json["timestamp"], "2026-11-23T14:35:22.123Z");
        assert_eq!(json["eventId"], "3797");
        assert_eq!(json["message"], "GET /healthz 200");
        let yaml = render(OutputFormat::Yaml, &line());
        assert!(yaml.starts_with("---\n"), "{yaml}");
        assert!(yaml.contains("message: GET /healthz 200\n"), "{yaml}");
    }
}
