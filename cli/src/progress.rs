//! How a changing command shows its progress: one bar per wave on a terminal, one line per
//! step everywhere else (CI logs, pipes). Receives the engine's [`Event`]s; decides nothing.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use panka_controller::engine::{Event, Progress};
use panka_controller::lock::format_epoch;
use panka_core::plan::{Action, Plan};

use crate::render::say;

/// Bars where a person watches; CI logs and pipes keep the line output.
pub fn progress_for(table: bool) -> ApplyProgress {
    ApplyProgress(if table && std::io::stderr().is_terminal() {
        Shown::Bars(Bars::new(ProgressDrawTarget::stderr()))
    } else {
        Shown::Lines(Printer {
            table,
            waiting: std::sync::Mutex::new(BTreeMap::new()),
        })
    })
}

/// How apply shows progress: bars on a terminal, lines everywhere else.
pub struct ApplyProgress(Shown);

enum Shown {
    Lines(Printer),
    Bars(Bars),
}

impl ApplyProgress {
    /// The plan about to be applied (sizes the deletion bar).
    pub fn planned(&self, plan: &Plan) {
        if let Shown::Bars(b) = &self.0 {
            b.planned(plan);
        }
    }

    /// Apply returned: leave the bars as they stand, before the summary is printed.
    pub fn finish(&self) {
        if let Shown::Bars(b) = &self.0 {
            b.finish();
        }
    }
}

impl Progress for ApplyProgress {
    fn event(&self, event: Event<'_>) {
        match &self.0 {
            Shown::Lines(p) => p.event(event),
            Shown::Bars(b) => b.event(event),
        }
    }
}

/// Apply progress as one bar per wave (components done / changing in the wave, the latest
/// status as the message), finished components logged above the bars.
struct Bars {
    multi: MultiProgress,
    state: std::sync::Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    /// The bar of the wave (or the deletions) running now.
    current: Option<ProgressBar>,
    /// A wave with nothing changing, whose bar is made only if something in it is waited for.
    idle_wave: Option<usize>,
    /// Deletions in the plan.
    deletions: u64,
    /// Whether the deletions' bar is the current one.
    deleting: bool,
}

impl Bars {
    fn new(target: ProgressDrawTarget) -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(target),
            state: std::sync::Mutex::new(BarState::default()),
        }
    }

    fn planned(&self, plan: &Plan) {
        if let Ok(mut s) = self.state.lock() {
            s.deletions = plan.deletions.len() as u64;
        }
    }

    fn finish(&self) {
        if let Ok(mut s) = self.state.lock() {
            // Abandon, not finish: a failed wave's bar keeps showing how far it got.
            if let Some(bar) = s.current.take() {
                bar.abandon();
            }
        }
    }

    fn bar(&self, name: String, len: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix:>15.bold} [{bar:30.cyan/blue}] {pos}/{len} {elapsed:>4} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = self
            .multi
            .add(ProgressBar::new(len).with_style(style).with_prefix(name));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// Prints a line above the bars (straight to the terminal when there are none).
    fn log(&self, line: String) {
        let _ = self.multi.println(line);
    }

    /// Replaces the current bar with a new one.
    fn start(&self, s: &mut BarState, name: String, len: u64) {
        if let Some(old) = s.current.take() {
            old.abandon();
        }
        s.current = Some(self.bar(name, len));
    }
}

impl Progress for Bars {
    fn event(&self, event: Event<'_>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        match event {
            Event::LockWaiting(h) => self.log(format!(
                "Waiting for lock held by {} ({} since {})…",
                h.locked_by,
                h.operation,
                format_epoch(h.locked_at)
            )),
            Event::LockAcquired(h) => {
                self.log(format!("Lock acquired: {} (fence {})", h.key(), h.fence))
            }
            Event::WaveStarted { number, components } => {
                s.idle_wave = None;
                let name = format!("Wave {number}");
                if components > 0 {
                    self.start(&mut s, name, components as u64);
                } else {
                    if let Some(old) = s.current.take() {
                        old.abandon();
                    }
                    s.idle_wave = Some(number);
                }
            }
            Event::ComponentStarted(p) => {
                if p.action == Action::Delete && !s.deleting {
                    s.deleting = true;
                    let len = s.deletions;
                    self.start(&mut s, "Deleting".to_owned(), len);
                }
                if let Some(bar) = &s.current {
                    // A deletion the plan did not count still gets a slot.
                    if s.deleting && bar.position() >= bar.length().unwrap_or(0) {
                        bar.inc_length(1);
                    }
                    bar.set_message(format!("{} {} ({})…", verb(&p.action), p.id, p.kind));
                }
            }
            Event::Waiting(id, status) => {
                if s.current.is_none() {
                    if let Some(n) = s.idle_wave.take() {
                        self.start(&mut s, format!("Wave {n}"), 0);
                    }
                }
                if let Some(bar) = &s.current {
                    bar.set_message(format!("{id}: waiting ({status})"));
                }
            }
            Event::ComponentDone(p, took, _) => {
                self.log(format!("✓ {} {} ({:.1?})", p.id, done(&p.action), took));
                if let Some(bar) = &s.current {
                    bar.inc(1);
                    bar.set_message(String::new());
                }
            }
            Event::ComponentFailed(p, why) => {
                self.log(format!("✗ {} failed: {why}", p.id));
                if let Some(bar) = &s.current {
                    bar.set_message(format!("{} failed", p.id));
                }
            }
            Event::StateSaved(_) => {}
        }
    }
}

/// Prints apply progress.
struct Printer {
    table: bool,
    /// Last waiting status printed per component, so a poll that changes nothing prints nothing.
    waiting: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Progress for Printer {
    fn event(&self, event: Event<'_>) {
        if !self.table {
            return;
        }
        match event {
            Event::LockWaiting(h) => say!(
                "Waiting for lock held by {} ({} since {})…",
                h.locked_by,
                h.operation,
                format_epoch(h.locked_at)
            ),
            Event::LockAcquired(h) => say!("Lock acquired: {} (fence {})", h.key(), h.fence),
            Event::WaveStarted { number, components } if components > 0 => {
                say!("\nWave {number} ({components} changing)")
            }
            Event::WaveStarted { .. } => {}
            Event::ComponentStarted(p) => {
                say!("├── {} {} ({})…", verb(&p.action), p.id, p.kind)
            }
            Event::Waiting(id, status) => {
                let changed = self.waiting.lock().map_or(true, |mut seen| {
                    seen.insert(id.to_string(), status.to_string()).as_deref() != Some(status)
                });
                if changed {
                    say!("│   {id}: waiting ({status})");
                }
            }
            Event::ComponentDone(p, took, _) => {
                say!("│   ✓ {} {} ({:.1?})", p.id, done(&p.action), took)
            }
            Event::ComponentFailed(p, why) => say!("│   ✗ {} failed: {why}", p.id),
            Event::StateSaved(_) => {}
        }
    }
}

fn verb(a: &Action) -> &'static str {
    match a {
        Action::Create => "Creating",
        Action::Update => "Updating",
        Action::Replace { .. } => "Replacing",
        Action::Delete => "Deleting",
        Action::NoOp | Action::Conflict { .. } => "Checking",
    }
}

fn done(a: &Action) -> &'static str {
    match a {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Replace { .. } => "replaced",
        Action::Delete => "deleted",
        Action::NoOp | Action::Conflict { .. } => "unchanged",
    }
}

#[cfg(test)]
mod tests {
    use panka_core::model::ComponentId;
    use panka_core::plan::ComponentPlan;

    use super::*;

    fn component(id: &str, action: Action) -> ComponentPlan {
        ComponentPlan {
            id: ComponentId::try_from(id.to_owned()).expect("an id"),
            kind: "SQS".into(),
            action,
            diffs: Vec::new(),
            dangerous: false,
            drift: false,
            ignored: Vec::new(),
        }
    }

    fn current(bars: &Bars) -> Option<(String, u64, Option<u64>, String)> {
        let s = bars.state.lock().expect("not poisoned");
        s.current
            .as_ref()
            .map(|b| (b.prefix(), b.position(), b.length(), b.message()))
    }

    #[test]
    fn each_wave_gets_a_bar_counting_its_changing_components() {
        let bars = Bars::new(ProgressDrawTarget::hidden());
        let queue = component("svc/queue", Action::Create);
        let table = component("svc/table", Action::Update);
        let id = queue.id.clone();
        let took = Duration::from_millis(5);
        let outputs = BTreeMap::new();

        bars.event(Event::WaveStarted {
            number: 1,
            components: 2,
        });
        bars.event(Event::ComponentStarted(&queue));
        assert_eq!(
            current(&bars).map(|c| c.3),
            Some("Creating svc/queue (SQS)…".into())
        );
        bars.event(Event::ComponentStarted(&table));
        bars.event(Event::Waiting(&id, "1/2 running"));
        assert_eq!(
            current(&bars),
            Some((
                "Wave 1".into(),
                0,
                Some(2),
                "svc/queue: waiting (1/2 running)".into()
            ))
        );
        bars.event(Event::ComponentDone(&queue, took, &outputs));
        assert_eq!(current(&bars).map(|c| c.1), Some(1));
        bars.event(Event::ComponentDone(&table, took, &outputs));
        assert_eq!(current(&bars).map(|c| (c.1, c.2)), Some((2, Some(2))));

        bars.finish();
        assert_eq!(current(&bars), None);
    }

    #[test]
    fn a_wave_with_nothing_changing_gets_a_bar_only_when_something_is_waited_for() {
        let bars = Bars::new(ProgressDrawTarget::hidden());
        let id = ComponentId::new("svc", "api");
        bars.event(Event::WaveStarted {
            number: 1,
            components: 0,
        });
        assert_eq!(current(&bars), None);
        bars.event(Event::Waiting(&id, "rolling out"));
        assert_eq!(
            current(&bars),
            Some((
                "Wave 1".into(),
                0,
                Some(0),
                "svc/api: waiting (rolling out)".into()
            ))
        );
    }

    #[test]
    fn deletions_get_a_bar_of_their_own_sized_by_the_plan() {
        let bars = Bars::new(ProgressDrawTarget::hidden());
        bars.state.lock().expect("not poisoned").deletions = 1;
        let first = component("svc/queue", Action::Delete);
        let second = component("svc/table", Action::Delete);
        let outputs = BTreeMap::new();
        bars.event(Event::ComponentStarted(&first));
        assert_eq!(
            current(&bars),
            Some((
                "Deleting".into(),
                0,
                Some(1),
                "Deleting svc/queue (SQS)…".into()
            ))
        );
        bars.event(Event::ComponentDone(&first, Duration::ZERO, &outputs));
        // One the plan did not count still gets a slot.
        bars.event(Event::ComponentStarted(&second));
        bars.event(Event::ComponentFailed(&second, "boom"));
        assert_eq!(
            current(&bars),
            Some(("Deleting".into(), 1, Some(2), "svc/table failed".into()))
        );
    }
}
