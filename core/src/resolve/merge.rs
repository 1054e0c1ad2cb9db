//! Overlay deep merge of [`Node`] trees (stage: resolve, pure).
//!
//! Maps merge key by key, lists and scalars replace, and an explicit `null` removes the key.
//! Every node keeps the position of the file it came from.

use crate::load::yaml::{Node, Value};

/// `base` with `overlay` laid over it.
pub fn merge(base: &Node, overlay: &Node) -> Node {
    match (&base.value, &overlay.value) {
        (Value::Map(base_entries), Value::Map(over_entries)) => {
            let mut entries = base_entries.clone();
            let mut span = base.span.clone();
            for over in over_entries {
                let existing = entries.iter().position(|e| e.key == over.key);
                match (existing, &over.value.value) {
                    (Some(i), Value::Null) => {
                        entries.remove(i);
                        // If the removal leaves a required field missing, say where it was removed.
                        span = over.key_span.clone();
                    }
                    (None, Value::Null) => {}
                    (Some(i), _) => {
                        let merged = merge(&entries[i].value, &over.value);
                        entries[i].value = merged;
                    }
                    (None, _) => entries.push(over.clone()),
                }
            }
            Node {
                value: Value::Map(entries),
                span,
            }
        }
        _ => overlay.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::load::yaml::{parse, Limits};

    fn node(file: &str, text: &str) -> Node {
        let file: Arc<str> = Arc::from(file);
        parse(&file, text, Limits::default()).unwrap().remove(0)
    }

    #[test]
    fn maps_merge_lists_replace_and_null_removes() {
        let base = node(
            "base.yaml",
            "a: {x: 1, y: 2}\nl: [1, 2]\ngone: 5\nkeep: k\n",
        );
        let over = node("over.yaml", "a: {y: 3, z: 4}\nl: [9]\ngone: null\n");
        let merged = merge(&base, &over);
        let a = merged.get("a").unwrap();
        assert_eq!(a.get("x").unwrap().as_str(), Some("1"));
        assert_eq!(a.get("y").unwrap().as_str(), Some("3"));
        assert_eq!(a.get("z").unwrap().as_str(), Some("4"));
        let Value::Seq(items) = &merged.get("l").unwrap().value else {
            panic!()
        };
        assert_eq!(items.len(), 1);
        assert!(merged.get("gone").is_none());
        assert_eq!(merged.get("keep").unwrap().as_str(), Some("k"));
    }

    #[test]
    fn a_mapping_that_lost_a_key_to_null_points_at_the_removal() {
        let base = node("base.yaml", "spec:\n  engine: x\n  other: y\n");
        let over = node("over.yaml", "spec:\n  engine: null\n");
        let merged = merge(&base, &over);
        let spec = merged.get("spec").unwrap();
        assert_eq!((&*spec.span.file, spec.span.line), ("over.yaml", 2));
    }

    #[test]
    fn merged_values_keep_the_file_they_came_from() {
        let base = node("base.yaml", "a: {x: 1}\n");
        let over = node("over.yaml", "a: {y: 2}\n");
        let merged = merge(&base, &over);
        let a = merged.get("a").unwrap();
        assert_eq!(&*a.get("x").unwrap().span.file, "base.yaml");
        assert_eq!(&*a.get("y").unwrap().span.file, "over.yaml");
    }
}
