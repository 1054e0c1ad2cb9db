//! A plan as Markdown for a pull-request comment (`panka plan --output markdown`): one line of
//! totals and cost, dangerous operations called out first, one table row per change with its
//! fields, and the unchanged components folded away. GitHub-flavoured: tables, `<details>` and
//! `> [!CAUTION]` alerts (shown as plain quotes elsewhere).

use super::{Action, ComponentPlan, Plan};

/// The longest value a cell shows; longer ones end in `…` (the full plan is `panka plan`).
const MAX_VALUE: usize = 60;

/// `plan` as Markdown. `version` is the stack's `VERSION` variable, when set.
pub fn markdown(plan: &Plan, version: Option<&str>) -> String {
    let scope = plan
        .service
        .as_ref()
        .map(|s| format!(" · service `{s}`"))
        .unwrap_or_default();
    let mut out = format!(
        "### panka plan: `{}` · `{}`{scope}\n\n",
        plan.stack, plan.environment
    );
    let s = &plan.summary;
    let mut totals = vec![
        count(s.create, "to create"),
        count(s.update, "to update"),
        count(s.replace, "to replace"),
        count(s.delete, "to delete"),
    ];
    if s.conflict > 0 {
        totals.push(count(s.conflict, "in conflict"));
    }
    let version = version
        .map(|v| format!("**Version** `{}` · ", code(v)))
        .unwrap_or_default();
    let delta = plan
        .previous_cost_usd
        .map(|prev| plan.cost.monthly_usd - prev)
        .filter(|d| d.abs() >= 0.5)
        .map(|d| {
            format!(
                " ({}${:.0} vs last applied)",
                if d > 0.0 { "+" } else { "-" },
                d.abs()
            )
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "{version}{} · {} unchanged · **Cost** ${:.0}/month{delta}\n\n",
        totals.join(", "),
        s.unchanged,
        plan.cost.monthly_usd
    ));

    let dangerous: Vec<&ComponentPlan> = plan.dangerous().collect();
    alert(
        &mut out,
        "CAUTION",
        "**Data loss** — apply needs `--allow-destroy`:",
        &dangerous,
    );
    let conflicts: Vec<&ComponentPlan> = plan
        .all()
        .filter(|p| matches!(p.action, Action::Conflict { .. }))
        .collect();
    alert(
        &mut out,
        "WARNING",
        "**Not panka's** — apply refuses without `--adopt`:",
        &conflicts,
    );

    let rows: Vec<(String, &ComponentPlan)> = plan
        .waves
        .iter()
        .enumerate()
        .flat_map(|(n, wave)| wave.iter().map(move |p| ((n + 1).to_string(), p)))
        .chain(plan.deletions.iter().map(|p| ("—".to_owned(), p)))
        .filter(|(_, p)| p.action.is_change())
        .collect();
    if rows.is_empty() {
        out.push_str("No changes: AWS matches the repository.\n");
    } else {
        out.push_str("| wave | component | kind | change | fields |\n|---|---|---|---|---|\n");
        for (wave, p) in rows {
            let drift = if p.drift { " *(drift)*" } else { "" };
            out.push_str(&format!(
                "| {wave} | `{}` | {} | {}{drift} | {} |\n",
                p.id,
                cell(&p.kind),
                cell(&action(&p.action)),
                fields(p)
            ));
        }
    }
    let unchanged: Vec<String> = plan
        .all()
        .filter(|p| !p.action.is_change())
        .map(|p| format!("`{}` ({})", p.id, p.kind))
        .collect();
    if !unchanged.is_empty() {
        out.push_str(&format!(
            "\n<details><summary>{} unchanged</summary>\n\n{}\n\n</details>\n",
            unchanged.len(),
            unchanged.join(", ")
        ));
    }
    out.push_str(
        "\n<sub>Cost: fixed monthly costs only (instances, Fargate tasks, nodes); usage-priced \
         services count as $0.</sub>\n",
    );
    out
}

/// A GitHub alert (`> [!KIND]`) listing `plans`, when there are any.
fn alert(out: &mut String, kind: &str, title: &str, plans: &[&ComponentPlan]) {
    if plans.is_empty() {
        return;
    }
    out.push_str(&format!("> [!{kind}]\n> {title}\n"));
    for p in plans {
        out.push_str(&format!(
            "> - `{}` ({}): {}\n",
            p.id,
            p.kind,
            action(&p.action)
        ));
    }
    out.push('\n');
}

fn count(n: usize, what: &str) -> String {
    if n > 0 {
        format!("**{n} {what}**")
    } else {
        format!("{n} {what}")
    }
}

fn action(a: &Action) -> String {
    match a {
        Action::Create => "create".into(),
        Action::Update => "update".into(),
        Action::Replace { reason } => format!("replace ({reason})"),
        Action::Delete => "delete".into(),
        Action::NoOp => "no change".into(),
        Action::Conflict { reason } => format!("conflict: {reason}"),
    }
}

/// A component's changed fields, one per line in the cell: `field`: old → new.
fn fields(p: &ComponentPlan) -> String {
    p.diffs
        .iter()
        .map(|d| {
            let value = |v: &Option<super::FieldValue>| {
                v.as_ref()
                    .map_or_else(|| "(none)".to_owned(), |v| short(&v.display()))
            };
            format!(
                "`{}`: `{}` → `{}`",
                code(&d.field),
                code(&value(&d.old)),
                code(&value(&d.new))
            )
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn short(text: &str) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() > MAX_VALUE {
        let cut: String = one_line.chars().take(MAX_VALUE - 1).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// Text for a table cell: pipes escaped, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Text inside `` `…` `` in a table cell: pipes escaped, backticks (which would end the span)
/// made quotes.
fn code(text: &str) -> String {
    cell(text).replace('`', "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table_or_the_code_span() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(code("`x`|y"), "'x'\\|y");
        let long = "x".repeat(100);
        let s = short(&long);
        assert_eq!(s.chars().count(), MAX_VALUE);
        assert!(s.ends_with('…'));
        assert_eq!(short("a\nb"), "a b");
    }

    #[test]
    fn counts_that_matter_are_bold() {
        assert_eq!(count(2, "to create"), "**2 to create**");
        assert_eq!(count(0, "to delete"), "0 to delete");
    }
}
