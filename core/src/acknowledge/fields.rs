//! Which repository setting a drifted field is written back to (pure): the one table from the
//! fields plans and drift reports name (`desiredCount`, `visibilityTimeout`, …) to the setting
//! under `spec:` of a component's document, with the value converted to how the repository
//! writes it. A field not in the table cannot be acknowledged automatically.

use std::collections::BTreeMap;
use std::sync::Arc;

use panka_crds::Kind;
use serde_json::Value as Json;

use super::{edit, ComponentFile, FileEdit, Setting};
use crate::diag::Diagnostic;
use crate::model::ComponentId;
use crate::source::FileTree;

/// Where a drifted field is set in the repository, and the value to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The component's document holding it.
    pub file: ComponentFile,
    /// Keys below `spec:`.
    pub path: Vec<&'static str>,
    /// The value as the repository writes it.
    pub value: Json,
}

/// The setting `field` of a component of `kind` is written back to, with `actual` (what AWS
/// holds) converted; `None` for a field panka cannot write back (the person edits the
/// repository by hand).
pub fn target(kind: Kind, field: &str, actual: &Json) -> Option<Target> {
    use ComponentFile::{Infra, Spec};
    let at = |file, path: &[&'static str], value: Json| {
        Some(Target {
            file,
            path: path.to_vec(),
            value,
        })
    };
    match (kind, field) {
        (Kind::MicroService | Kind::Worker, "desiredCount") => {
            at(Infra, &["scaling", "replicas"], actual.clone())
        }
        (Kind::MicroService | Kind::Worker, "cpu") => {
            at(Infra, &["resources", "cpu"], actual.clone())
        }
        (Kind::MicroService | Kind::Worker, "memory") => {
            at(Infra, &["resources", "memory"], actual.clone())
        }
        (Kind::MicroService | Kind::Worker, "image") => {
            // `repository:tag`; a digest or a bare repository has no tag to write.
            let image = actual.as_str().filter(|i| !i.contains('@'))?;
            let (_, tag) = image.rsplit_once(':').filter(|(_, t)| !t.contains('/'))?;
            at(Spec, &["image", "tag"], Json::String(tag.to_owned()))
        }
        (Kind::Sqs, "visibilityTimeout") => at(Spec, &["visibilityTimeout"], actual.clone()),
        (Kind::Sqs, "messageRetentionPeriod") => {
            at(Spec, &["messageRetentionPeriod"], actual.clone())
        }
        (Kind::Sqs, "delaySeconds") => at(Spec, &["delaySeconds"], actual.clone()),
        (Kind::Sqs, "receiveWaitTimeSeconds") => {
            at(Spec, &["receiveWaitTimeSeconds"], actual.clone())
        }
        (Kind::Sqs, "maxMessageSize") => at(Spec, &["maxMessageSize"], actual.clone()),
        (Kind::S3, "versioning") => at(Spec, &["versioning"], actual.clone()),
        (Kind::DynamoDb, "pointInTimeRecovery") => {
            at(Spec, &["pointInTimeRecovery"], actual.clone())
        }
        (Kind::Rds, "backup.retentionDays") => {
            at(Spec, &["backup", "retentionDays"], actual.clone())
        }
        (Kind::Rds, "instanceClass") => at(Spec, &["instance", "class"], actual.clone()),
        (Kind::Rds, "multiAZ") => at(Spec, &["instance", "multiAZ"], actual.clone()),
        (Kind::Rds, "deletionProtection") => at(Spec, &["deletionProtection"], actual.clone()),
        _ => None,
    }
}

/// The edits that write every `(field, actual)` of `component` (of `kind`) into the repository
/// `tree` of stack `stack` for `environment`, one [`FileEdit`] per file changed (each edit made
/// on the text the previous ones left). Errs on a field [`target`] does not know, naming it.
pub fn acknowledge(
    tree: &FileTree,
    stack: &str,
    environment: &str,
    component: &ComponentId,
    kind: Kind,
    fields: &[(&str, &Json)],
) -> Result<Vec<FileEdit>, Diagnostic> {
    let mut tree = tree.clone();
    let mut edits: BTreeMap<Arc<str>, FileEdit> = BTreeMap::new();
    for (field, actual) in fields {
        let Some(t) = target(kind, field, actual) else {
            return Err(Diagnostic::general(format!(
                "panka cannot write `{field}` of {component} ({kind}) back to the repository"
            ))
            .help("edit the component's YAML by hand, or leave `--field` out to acknowledge the fields it can write"));
        };
        let loaded =
            crate::validate::load_tree(stack, &tree).map_err(|(ds, _)| ds.first().clone())?;
        let setting = Setting {
            component,
            file: t.file,
            path: &t.path,
            value: &t.value,
        };
        let e = edit(&loaded, environment, &setting)?;
        let rel = e
            .path
            .strip_prefix(&format!("{}/", tree.prefix))
            .unwrap_or(&e.path)
            .to_owned();
        tree.files.insert(rel, Arc::from(e.after.as_str()));
        edits
            .entry(e.path.clone())
            .and_modify(|earlier| earlier.after.clone_from(&e.after))
            .or_insert(e);
    }
    Ok(edits
        .into_values()
        .filter(|e| e.before != e.after)
        .collect())
}
