//! A component's log lines (pure): which lines of a CloudWatch Logs answer are new, in what
//! order they are printed, and where the next query starts.
//!
//! `panka logs` reads the component's log group with `FilterLogEvents`: one *poll* is one query
//! (a start time, a filter) read page by page with the API's `nextToken`; `--follow` polls again
//! and again. CloudWatch interleaves the streams of a group in time order, page after page, so a
//! page is printed as it arrives (sorted by time once more, stably, so lines logged in the same
//! millisecond keep the order CloudWatch gave them).
//!
//! A poll starts a little before the newest line printed — lines of a task may reach CloudWatch
//! later than newer lines of another task — so it reads some lines again. [`LogCursor`] remembers
//! the newest line of every stream (task) and the ids of the lines printed since the poll's start,
//! and lets through only lines it has not printed: none is repeated across pages and polls, and
//! none is dropped as long as a task's lines arrive within [`LAG_ALLOWANCE_MS`] of newer lines of
//! another task.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// How far behind the newest line printed a poll still starts for a task whose newest line is
/// older: lines of one task reaching CloudWatch up to this much later than newer lines of another
/// are still printed. A task quiet for longer (stopped, or idle) holds nothing back.
pub const LAG_ALLOWANCE_MS: i64 = 30_000;

/// One log line, as CloudWatch Logs returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    /// When it was logged, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The log stream: `{prefix}/{container}/{task id}`, as the awslogs driver names it.
    pub stream: String,
    /// CloudWatch's id of the line, unique in the log group.
    pub event_id: String,
    /// The line, without a trailing newline.
    pub message: String,
}

impl LogEvent {
    /// The ECS task that logged the line (see [`task_of_stream`]).
    pub fn task(&self) -> &str {
        task_of_stream(&self.stream)
    }
}

/// The ECS task id in an awslogs stream name, its last segment
/// (`api/api/0123456789abcdef0123456789abcdef` → `0123456789abcdef0123456789abcdef`); a name
/// without `/` (not written by awslogs) is returned whole.
pub fn task_of_stream(stream: &str) -> &str {
    stream.rsplit_once('/').map_or(stream, |(_, task)| task)
}

/// What has been printed of a log group, so a query that reads some lines again prints each line
/// once; and where the next poll starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    /// Where the first poll starts (`--since`); no poll starts earlier.
    since: i64,
    /// Where the current poll started: the query's start time.
    start: i64,
    /// The newest timestamp printed of each stream (task) still holding the start back.
    streams: BTreeMap<String, i64>,
    /// Ids of the lines printed at or after `start`, by timestamp.
    printed: BTreeMap<i64, BTreeSet<String>>,
}

impl LogCursor {
    /// A cursor for lines logged at or after `since` (ms since the epoch).
    pub fn new(since: i64) -> LogCursor {
        LogCursor {
            since,
            start: since,
            streams: BTreeMap::new(),
            printed: BTreeMap::new(),
        }
    }

    /// The start time (ms) of the current poll's query.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// Takes one page of the current poll: the lines not printed before, in time order, now
    /// counted as printed. A line older than the poll's start is not printed: it either was,
    /// by an earlier poll, or came later than [`LAG_ALLOWANCE_MS`] allows.
    pub fn take(&mut self, page: Vec<LogEvent>) -> Vec<LogEvent> {
        let mut page = page;
        // Stable: lines of the same millisecond stay in the order CloudWatch gave.
        page.sort_by_key(|e| e.timestamp);
        let mut fresh = Vec::with_capacity(page.len());
        for event in page {
            if event.timestamp < self.start {
                continue;
            }
            let ids = self.printed.entry(event.timestamp).or_default();
            if !ids.insert(event.event_id.clone()) {
                continue;
            }
            let newest = self.streams.entry(event.stream.clone()).or_insert(i64::MIN);
            *newest = (*newest).max(event.timestamp);
            fresh.push(event);
        }
        fresh
    }

    /// Ends the current poll: the next one starts at the oldest of the streams' newest lines,
    /// but no more than [`LAG_ALLOWANCE_MS`] before the newest line printed (and never before
    /// `since`); what is remembered of lines before that start is forgotten.
    pub fn next_poll(&mut self) {
        let Some(newest) = self.streams.values().copied().max() else {
            // Nothing printed yet: the same window again.
            return;
        };
        let floor = newest.saturating_sub(LAG_ALLOWANCE_MS);
        self.streams.retain(|_, last| *last >= floor);
        let oldest = self.streams.values().copied().min().unwrap_or(newest);
        self.start = self.start.max(self.since).max(oldest);
        self.printed = self.printed.split_off(&self.start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(timestamp: i64, task: &str, id: &str) -> LogEvent {
        LogEvent {
            timestamp,
            stream: format!("api/api/{task}"),
            event_id: id.to_owned(),
            message: format!("{task} {id}"),
        }
    }

    fn ids(events: &[LogEvent]) -> Vec<&str> {
        events.iter().map(|e| e.event_id.as_str()).collect()
    }

    #[test]
    fn the_task_is_the_last_segment_of_an_awslogs_stream() {
        assert_eq!(
            task_of_stream("api/api/0123456789abcdef0123456789abcdef"),
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(task_of_stream("hand-made"), "hand-made");
        assert_eq!(line(1, "t1", "a").task(), "t1");
    }

    #[test]
    fn a_page_is_printed_in_time_order_keeping_the_order_of_lines_of_one_millisecond() {
        let mut cursor = LogCursor::new(0);
        let page = vec![
            line(30, "t2", "c"),
            line(10, "t1", "a"),
            line(20, "t2", "b2"),
            line(20, "t1", "b1"),
        ];
        assert_eq!(ids(&cursor.take(page)), ["a", "b2", "b1", "c"]);
    }

    #[test]
    fn lines_split_across_pages_are_each_printed_once() {
        let mut cursor = LogCursor::new(0);
        // Two lines of the same millisecond, one on each page.
        let first = cursor.take(vec![line(10, "t1", "a"), line(20, "t1", "b")]);
        let second = cursor.take(vec![line(20, "t2", "c"), line(30, "t1", "d")]);
        assert_eq!(ids(&first), ["a", "b"]);
        assert_eq!(ids(&second), ["c", "d"]);
    }

    #[test]
    fn a_poll_reading_lines_again_prints_only_the_new_ones() {
        let mut cursor = LogCursor::new(0);
        cursor.take(vec![line(10, "t1", "a"), line(20, "t1", "b")]);
        cursor.next_poll();
        assert_eq!(cursor.start(), 20);
        // The next poll reads from 20 again: `b` is not repeated; a line logged in the same
        // millisecond as `b` that arrived since is not dropped.
        let again = cursor.take(vec![
            line(20, "t1", "b"),
            line(20, "t1", "b-late"),
            line(25, "t1", "c"),
        ]);
        assert_eq!(ids(&again), ["b-late", "c"]);
        cursor.next_poll();
        assert_eq!(cursor.take(vec![line(25, "t1", "c")]), Vec::new());
    }

    #[test]
    fn a_poll_starts_at_the_task_that_is_behind_so_its_late_lines_are_kept() {
        let mut cursor = LogCursor::new(0);
        cursor.take(vec![line(1_000, "slow", "s1"), line(9_000, "fast", "f1")]);
        cursor.next_poll();
        // `slow` is 8 s behind: the next poll starts at its newest line, not at `fast`'s.
        assert_eq!(cursor.start(), 1_000);
        let late = cursor.take(vec![
            line(1_000, "slow", "s1"),
            line(5_000, "slow", "s2"),
            line(9_000, "fast", "f1"),
            line(9_500, "fast", "f2"),
        ]);
        assert_eq!(ids(&late), ["s2", "f2"]);
    }

    #[test]
    fn a_quiet_task_holds_the_start_back_no_more_than_the_lag_allowance() {
        let mut cursor = LogCursor::new(0);
        cursor.take(vec![line(1_000, "stopped", "a")]);
        cursor.take(vec![line(100_000, "running", "b")]);
        cursor.next_poll();
        assert_eq!(cursor.start(), 100_000);
        // A line of the stopped task older than the start is not printed: it was, or it is
        // later than the allowance.
        assert_eq!(cursor.take(vec![line(1_000, "stopped", "a")]), Vec::new());
        cursor.take(vec![line(100_000 + LAG_ALLOWANCE_MS, "other", "c")]);
        cursor.take(vec![line(101_000, "running", "d")]);
        cursor.next_poll();
        // `running` (101 s) is within the allowance of the newest line (130 s).
        assert_eq!(cursor.start(), 101_000);
    }

    #[test]
    fn the_start_never_moves_back_and_nothing_before_since_is_printed() {
        let mut cursor = LogCursor::new(5_000);
        assert_eq!(cursor.take(vec![line(4_999, "t1", "old")]), Vec::new());
        cursor.next_poll();
        assert_eq!(cursor.start(), 5_000);
        cursor.take(vec![line(6_000, "t1", "a")]);
        cursor.next_poll();
        assert_eq!(cursor.start(), 6_000);
        // A task that joins later starts no earlier than the start either.
        cursor.take(vec![line(6_500, "t2", "b")]);
        cursor.next_poll();
        assert_eq!(cursor.start(), 6_000);
    }

    #[test]
    fn what_is_remembered_is_only_what_the_next_poll_can_read_again() {
        let mut cursor = LogCursor::new(0);
        let many: Vec<LogEvent> = (0..1_000)
            .map(|i| line(i * 100, "t1", &format!("e{i}")))
            .collect();
        cursor.take(many);
        cursor.next_poll();
        assert_eq!(cursor.start(), 99_900);
        assert_eq!(cursor.printed.len(), 1);
        assert_eq!(cursor.streams.len(), 1);
    }
}
