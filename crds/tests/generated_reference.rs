//! The field tables of `docs/reference.md` must be exactly what the API types' schemas and doc
//! comments generate, and every kind must have one. Regenerate with
//! `cargo run -p panka-crds --bin crdgen`.

use std::path::PathBuf;

use panka_crds::reference::{self, REFERENCE_PATH, REGENERATE};
use panka_crds::Kind;

fn page() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(REFERENCE_PATH);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()))
}

#[test]
fn committed_reference_tables_match_the_doc_comments() {
    let committed = page();
    let generated = reference::update(&committed)
        .unwrap_or_else(|e| panic!("{REFERENCE_PATH}: {e} (then run `{REGENERATE}`)"));
    if generated != committed {
        // Name the first stale line, so the failure says which table to look at.
        let (line, (want, have)) = generated
            .lines()
            .zip(committed.lines())
            .enumerate()
            .find(|(_, (g, c))| g != c)
            .map(|(i, pair)| (i + 1, pair))
            .unwrap_or((0, ("", "")));
        panic!(
            "{REFERENCE_PATH}'s generated tables are out of date (run `{REGENERATE}`); \
             first difference at line {line}:\n  page:      {have}\n  generated: {want}"
        );
    }
}

#[test]
fn every_kind_has_a_table_in_the_reference() {
    let blocks = reference::blocks(&page());
    for kind in Kind::ALL {
        let table = reference::kind_table(kind)
            .expect("schemas render")
            .unwrap_or_else(|| panic!("{kind} is a document kind without a table"));
        assert!(
            blocks.iter().any(|b| b == table.name()),
            "{REFERENCE_PATH} has no generated table of {kind} (`{}`); add its markers to the \
             {kind} section and run `{REGENERATE}`",
            table.name()
        );
    }
}

#[test]
fn every_table_links_to_an_anchor_on_the_page() {
    // A GitHub heading anchor: lowercase, spaces to `-`, other punctuation dropped.
    fn slug(heading: &str) -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect()
    }
    let page = page();
    let anchors: Vec<String> = page
        .lines()
        .filter_map(|l| {
            if let Some(heading) = l.strip_prefix('#') {
                Some(slug(heading.trim_start_matches('#')))
            } else {
                let id = l.trim().strip_prefix("<a id=\"")?;
                Some(id.split('"').next()?.to_string())
            }
        })
        .collect();
    for table in reference::tables().expect("schemas render") {
        assert!(
            anchors.iter().any(|a| a == table.anchor()),
            "the table of `{}` has anchor #{}, which {REFERENCE_PATH} does not define",
            table.name(),
            table.anchor()
        );
    }
}
