//! The Kubernetes adapter — thin on purpose: everything it decides is decided in the
//! Kubernetes-free reconcile path or in the pure [`status`] and [`events`] modules. Here are
//! only the requests: server-side apply of Stack objects (git mode) and of their status, Events
//! through one shared kube-runtime `Recorder` (its dedup cache is per instance), taking the
//! approval annotation off, the finalizer of CRD mode, and the leader-election Lease.
//!
//! Every request made here is listed as an RBAC rule in `charts/panka/files/rbac-rules.yaml`;
//! the tests assert each request and check the chart's rules cover it.

pub mod crd;
pub mod events;
pub mod lease;
pub mod status;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use panka_crds::resource::{Stack, StackStatus};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::reconcile::{Report, StatusSink, APPROVE_ANNOTATION};

/// The field manager of every write (server-side apply).
pub const FIELD_MANAGER: &str = "panka-controller";
/// The finalizer CRD mode puts on Stack resources.
pub const FINALIZER: &str = "panka.io/cleanup";
/// Label on the Stack objects git mode creates (and the selector it watches them by).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "panka-controller");
/// Labels naming a Stack object's stack and environment.
pub const STACK_LABEL: &str = "panka.io/stack";
/// See [`STACK_LABEL`].
pub const ENVIRONMENT_LABEL: &str = "panka.io/environment";

/// The adapter: one client, one recorder, and the status last written per object.
pub struct Kube {
    client: Client,
    recorder: Recorder,
    /// What was last written, so a pass that changes nothing but a timestamp writes nothing
    /// even before the watch has brought the object back.
    written: Mutex<HashMap<(String, String), StackStatus>>,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube").finish_non_exhaustive()
    }
}

impl Kube {
    /// An adapter over `client`; `instance` names this replica in Events (its pod name).
    pub fn new(client: Client, instance: Option<String>) -> Kube {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance,
            },
        );
        Kube {
            client,
            recorder,
            written: Mutex::new(HashMap::new()),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Git mode: creates or updates the Stack object `obj` (labels and spec) by server-side
    /// apply.
    pub async fn apply_stack(&self, obj: &Stack) -> Result<(), kube::Error> {
        let (ns, name) = key(obj);
        let api: Api<Stack> = Api::namespaced(self.client.clone(), &ns);
        let body = json!({
            "apiVersion": Stack::api_version(&()),
            "kind": Stack::kind(&()),
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": obj.metadata.labels,
            },
            "spec": obj.spec,
        });
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
        Ok(())
    }

    /// Git mode: deletes the Stack object of a stack gone from the repository (its AWS
    /// resources stay).
    pub async fn delete_stack(&self, namespace: &str, name: &str) -> Result<(), kube::Error> {
        let api: Api<Stack> = Api::namespaced(self.client.clone(), namespace);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes `next` as `obj`'s status by server-side apply.
    async fn write_status(&self, obj: &Stack, next: &StackStatus) -> Result<(), kube::Error> {
        let (ns, name) = key(obj);
        let api: Api<Stack> = Api::namespaced(self.client.clone(), &ns);
        let body = json!({
            "apiVersion": Stack::api_version(&()),
            "kind": Stack::kind(&()),
            "status": next,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
        Ok(())
    }

    async fn event(&self, obj: &Stack, reason: &str, warning: bool, note: String, action: &str) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            // The API refuses notes over 1 kB.
            note: Some(truncate(note, 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "failed to publish an event");
        }
    }
}

#[async_trait::async_trait]
impl StatusSink for Kube {
    async fn publish(&self, report: &Report<'_>) {
        let obj = report.object;
        // By uid: a Stack deleted and created again under its name starts with no status.
        let id = (obj.uid().unwrap_or_default(), obj.name_any());
        let current = self
            .written
            .lock()
            .ok()
            .and_then(|w| w.get(&id).cloned())
            .or_else(|| obj.status.clone());
        let now = jiff::Timestamp::now().to_string();
        let next = status::stack_status(
            report.status,
            obj.metadata.generation,
            current.as_ref(),
            &now,
        );
        if status::unchanged(current.as_ref(), &next) {
            debug!("Stack status unchanged; not written");
        } else {
            match self.write_status(obj, &next).await {
                Ok(()) => {
                    if let Ok(mut w) = self.written.lock() {
                        w.insert(id, next);
                    }
                }
                Err(e) => warn!(error = %e, "failed to write the Stack's status"),
            }
        }
        for note in events::transitions(report.previous, report.status, report.rolled_back) {
            self.event(obj, note.reason, note.warning, note.message, "Reconcile")
                .await;
        }
    }

    async fn approval_handled(&self, obj: &Stack, outcome: &Result<String, String>) {
        let (ns, name) = key(obj);
        let api: Api<Stack> = Api::namespaced(self.client.clone(), &ns);
        if let Some(acted_on) = obj.annotations().get(APPROVE_ANNOTATION) {
            // Taken off only if it still names the plan acted on: one set meanwhile stays, and
            // its change brings another pass.
            let path = format!(
                "/metadata/annotations/{}",
                APPROVE_ANNOTATION.replace('/', "~1")
            );
            let ops = json!([
                {"op": "test", "path": path, "value": acted_on},
                {"op": "remove", "path": path},
            ]);
            let patch = serde_json::from_value::<json_patch::Patch>(ops).map(Patch::Json::<()>);
            match patch {
                Ok(patch) => match api.patch(&name, &PatchParams::default(), &patch).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 422 => {
                        info!("the approval annotation changed meanwhile: the new one is acted on next")
                    }
                    Err(e) => warn!(error = %e, "failed to take the approval annotation off"),
                },
                Err(e) => warn!(error = %e, "failed to build the approval annotation's removal"),
            }
        }
        match outcome {
            Ok(id) => {
                self.event(
                    obj,
                    "Approved",
                    false,
                    format!("plan {id} approved by annotation"),
                    "Approve",
                )
                .await
            }
            Err(why) => {
                self.event(obj, "ApprovalRejected", true, why.clone(), "Approve")
                    .await
            }
        }
    }
}

/// `(namespace, name)` of `obj`.
fn key(obj: &Stack) -> (String, String) {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub(1);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}
