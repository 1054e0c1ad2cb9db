//! What every driver shares in stages **observe** and **apply**: tag convergence, "not found",
//! and the ownership check before panka changes or deletes something it found by name.
//!
//! * **Tags.** A resource carries exactly panka's tags (`panka:*` and StackInfra `tags`), except
//!   for two kinds of tags that are not panka's to judge: AWS's own (`aws:…`, which AWS sets and
//!   forbids changing) and those StackInfra `ignoreTags` leaves to other systems. Neither is
//!   ever compared, set or removed; any other tag is drift, shown by the plan and removed by the
//!   next apply. [`TagPolicy`] computes all of it (pure); each driver only makes its service's
//!   tag calls.
//! * **Not found.** [`is_missing`] tells "does not exist" from other failures, by the error's
//!   class or a service's own codes; [`or_missing`] turns a call's result into `Ok(None)` for it,
//!   so a delete of something gone is done and an observe of it reports it missing.
//! * **Ownership.** [`ensure_ours`] (a component's resource) and [`ensure_stack_ours`] (a
//!   stack-shared one) refuse a resource with our name but not our tags unless `--adopt`
//!   (DESIGN.md §4): the check every create, update and delete makes before touching it.
//!
//! No I/O here: the drivers read and write; this module decides.

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use panka_core::model::ComponentId;
use panka_core::plan::{FieldValue, Observation};
use panka_core::tags::IgnoreTags;

use super::{Ctx, DriverError};
use crate::aws::{self, AwsError, ErrorClass, HttpStatus};

// ---------------------------------------------------------------------------------------------
// Tags
// ---------------------------------------------------------------------------------------------

/// What makes a resource's tags right: the tags to add or overwrite, and the keys to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagChanges {
    /// Tags missing or with another value.
    pub set: BTreeMap<String, String>,
    /// Keys of tags panka did not set, neither AWS's own nor ignored.
    pub remove: Vec<String>,
}

impl TagChanges {
    /// Whether the tags are right already.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// Which tags panka compares, sets and removes on a stack's resources (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagPolicy<'a> {
    ignore: IgnoreTags<'a>,
}

impl<'a> TagPolicy<'a> {
    /// A policy leaving the keys `ignore` matches to other systems.
    pub fn new(ignore: IgnoreTags<'a>) -> TagPolicy<'a> {
        TagPolicy { ignore }
    }

    /// Whether a tag is panka's to compare, set and remove: neither AWS's own nor ignored.
    pub fn manages(&self, key: &str) -> bool {
        !key.starts_with("aws:") && !self.ignore.matches(key)
    }

    /// The tags of `tags` panka manages: what a plan compares (the `tags` field of desired and
    /// observed alike, so an ignored tag never shows as a difference).
    pub fn managed(&self, tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        tags.iter()
            .filter(|(k, _)| self.manages(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The `tags` field of a desired or observed component: [`TagPolicy::managed`] of `tags`.
    pub fn field(&self, tags: &BTreeMap<String, String>) -> FieldValue {
        FieldValue::known(self.managed(tags))
    }

    /// What makes a resource holding `have` hold `want`, for services that add and remove tags
    /// by key: set what is missing or different, remove what panka manages and does not want.
    /// AWS's own and ignored tags are left as they are on both sides.
    pub fn changes(
        &self,
        want: &BTreeMap<String, String>,
        have: &BTreeMap<String, String>,
    ) -> TagChanges {
        let (set, remove) = aws::tag_changes(&self.managed(want), &self.managed(have));
        TagChanges { set, remove }
    }

    /// The whole tag set to write for services that replace every tag at once (S3
    /// PutBucketTagging): `want`, plus the ignored tags `have` holds so they survive the write.
    pub fn replacement(
        &self,
        want: &BTreeMap<String, String>,
        have: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut set = self.managed(want);
        set.extend(
            have.iter()
                .filter(|(k, _)| !k.starts_with("aws:") && self.ignore.matches(k))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        set
    }
}

impl Ctx {
    /// The stack's tag policy, from StackInfra `ignoreTags`.
    pub fn tag_policy(&self) -> TagPolicy<'_> {
        TagPolicy::new(IgnoreTags::new(&self.infra.ignore_tags))
    }

    /// The tags of the stack-shared resources (no service or component).
    pub fn stack_tags(&self) -> BTreeMap<String, String> {
        self.naming.tags(None, &self.extra_tags)
    }
}

// ---------------------------------------------------------------------------------------------
// Not found
// ---------------------------------------------------------------------------------------------

/// Whether an AWS error means "does not exist": classified so, or carrying one of a service's own
/// not-found codes (e.g. `DBInstanceNotFound`, `ClusterNotFoundException`).
pub fn is_missing(err: &AwsError, codes: &[&str]) -> bool {
    err.class == ErrorClass::NotFound
        || err.code.as_deref().is_some_and(|c| {
            codes.contains(&c)
                || c.ends_with("NotFound")
                || c.ends_with("NotFoundFault")
                || c.ends_with("NotFoundException")
        })
}

/// The output of a call, `None` when AWS answered "does not exist" (see [`is_missing`]); any
/// other failure is a [`DriverError::Aws`] saying what was being done (`action`, e.g.
/// `delete queue`) to which component.
pub fn or_missing<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    codes: &[&str],
    action: &str,
    id: &ComponentId,
) -> Result<Option<T>, DriverError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + HttpStatus,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) => {
            let err = AwsError::from_sdk(&e);
            if is_missing(&err, codes) {
                Ok(None)
            } else {
                Err(DriverError::Aws {
                    action: action.to_string(),
                    component: id.clone(),
                    source: Box::new(err),
                })
            }
        }
    }
}

/// What observe reports of a component whose resource does not exist.
pub fn missing() -> Observation {
    Observation {
        status: "missing".into(),
        ..Observation::default()
    }
}

/// Sorted and without repeats (ids AWS lists in no set order).
pub fn sorted(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = items.into_iter().collect();
    set.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Ownership
// ---------------------------------------------------------------------------------------------

/// Refuses a resource found under component `id`'s name whose `tags` do not say it is that
/// component's, unless `--adopt` was given: the check before any change or delete of it.
/// `what` names the resource in the error, e.g. `table shop-dev-orders-table`.
pub fn ensure_ours(
    ctx: &Ctx,
    id: &ComponentId,
    tags: &BTreeMap<String, String>,
    what: impl Into<String>,
) -> Result<(), DriverError> {
    ensure_owned(ctx, id, Some(id), tags, what)
}

/// [`ensure_ours`] for a stack-shared resource (`id` is its reserved id): its tags must name the
/// stack and environment; shared resources carry no service or component.
pub fn ensure_stack_ours(
    ctx: &Ctx,
    id: &ComponentId,
    tags: &BTreeMap<String, String>,
    what: impl Into<String>,
) -> Result<(), DriverError> {
    ensure_owned(ctx, id, None, tags, what)
}

fn ensure_owned(
    ctx: &Ctx,
    id: &ComponentId,
    owner: Option<&ComponentId>,
    tags: &BTreeMap<String, String>,
    what: impl Into<String>,
) -> Result<(), DriverError> {
    if ctx.adopt || ctx.naming.owns(owner, tags) {
        Ok(())
    } else {
        Err(DriverError::NotOurs {
            component: id.clone(),
            what: what.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn tag_changes_set_what_differs_and_remove_only_what_panka_manages() {
        let want = map(&[("panka:stack", "shop"), ("team", "payments")]);
        struct Case {
            name: &'static str,
            ignore: &'static [&'static str],
            have: &'static [(&'static str, &'static str)],
            set: &'static [(&'static str, &'static str)],
            remove: &'static [&'static str],
        }
        for c in [
            Case {
                name: "converged",
                ignore: &[],
                have: &[("panka:stack", "shop"), ("team", "payments")],
                set: &[],
                remove: &[],
            },
            Case {
                name: "a fresh resource gets every tag",
                ignore: &[],
                have: &[],
                set: &[("panka:stack", "shop"), ("team", "payments")],
                remove: &[],
            },
            Case {
                name: "a changed value is set again",
                ignore: &[],
                have: &[("panka:stack", "shop"), ("team", "growth")],
                set: &[("team", "payments")],
                remove: &[],
            },
            Case {
                name: "a tag added by hand is removed",
                ignore: &[],
                have: &[
                    ("panka:stack", "shop"),
                    ("team", "payments"),
                    ("owner", "bob"),
                ],
                set: &[],
                remove: &["owner"],
            },
            Case {
                name: "AWS's own tags are never removed",
                ignore: &[],
                have: &[
                    ("panka:stack", "shop"),
                    ("team", "payments"),
                    ("aws:cloudformation:stack-name", "x"),
                ],
                set: &[],
                remove: &[],
            },
            Case {
                name: "an ignored key is kept",
                ignore: &["CostCenter"],
                have: &[
                    ("panka:stack", "shop"),
                    ("team", "payments"),
                    ("CostCenter", "42"),
                ],
                set: &[],
                remove: &[],
            },
            Case {
                name: "a glob keeps every key it matches and nothing else",
                ignore: &["org:*"],
                have: &[
                    ("panka:stack", "shop"),
                    ("team", "payments"),
                    ("org:unit", "a"),
                    ("org:cost", "b"),
                    ("organisation", "c"),
                ],
                set: &[],
                remove: &["organisation"],
            },
            Case {
                name: "missing, changed, foreign and ignored at once",
                ignore: &["CostCenter", "backup-*"],
                have: &[
                    ("team", "growth"),
                    ("CostCenter", "42"),
                    ("backup-plan", "daily"),
                    ("Name", "by hand"),
                    ("aws:createdBy", "someone"),
                ],
                set: &[("panka:stack", "shop"), ("team", "payments")],
                remove: &["Name"],
            },
        ] {
            let ignore = keys(c.ignore);
            let policy = TagPolicy::new(IgnoreTags::new(&ignore));
            let got = policy.changes(&want, &map(c.have));
            assert_eq!(
                got,
                TagChanges {
                    set: map(c.set),
                    remove: keys(c.remove),
                },
                "{}",
                c.name
            );
            assert_eq!(
                got.is_empty(),
                c.set.is_empty() && c.remove.is_empty(),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn the_compared_tags_leave_out_aws_and_ignored_keys() {
        let ignore = keys(&["CostCenter", "org:*"]);
        let policy = TagPolicy::new(IgnoreTags::new(&ignore));
        let have = map(&[
            ("panka:stack", "shop"),
            ("CostCenter", "42"),
            ("org:unit", "a"),
            ("aws:cloudformation:stack-name", "x"),
            ("Name", "by hand"),
        ]);
        assert_eq!(
            policy.managed(&have),
            map(&[("panka:stack", "shop"), ("Name", "by hand")])
        );
        assert!(policy.manages("Name"));
        assert!(!policy.manages("CostCenter"));
        assert!(!policy.manages("aws:createdBy"));
        assert_eq!(
            policy.field(&have),
            FieldValue::known(map(&[("panka:stack", "shop"), ("Name", "by hand")]))
        );
    }

    #[test]
    fn a_whole_set_replacement_keeps_the_ignored_tags() {
        let ignore = keys(&["CostCenter"]);
        let policy = TagPolicy::new(IgnoreTags::new(&ignore));
        let want = map(&[("panka:stack", "shop")]);
        let have = map(&[
            ("panka:stack", "old"),
            ("CostCenter", "42"),
            ("Name", "by hand"),
            ("aws:createdBy", "someone"),
        ]);
        assert_eq!(
            policy.replacement(&want, &have),
            map(&[("panka:stack", "shop"), ("CostCenter", "42")])
        );
        assert_eq!(
            TagPolicy::default().replacement(&want, &have),
            want,
            "without ignoreTags the set is exactly panka's"
        );
    }

    fn ctx(adopt: bool) -> Ctx {
        Ctx {
            sdk: aws_config::SdkConfig::builder().build(),
            naming: panka_core::naming::Naming::new("shop", "dev"),
            extra_tags: BTreeMap::new(),
            infra: Default::default(),
            adopt,
            calls: Default::default(),
        }
    }

    #[test]
    fn only_our_resources_are_touched_unless_adopting() {
        let id = ComponentId::new("orders", "queue");
        let other = ComponentId::new("orders", "table");
        let ours = ctx(false).tags(&id);
        let stack = ctx(false).stack_tags();
        let foreign = map(&[("Name", "theirs")]);
        for (name, adopt, tags, component_ok, stack_ok) in [
            ("our component's", false, &ours, true, true),
            (
                "another component's",
                false,
                &ctx(false).tags(&other),
                false,
                true,
            ),
            ("the stack's shared", false, &stack, false, true),
            ("someone else's", false, &foreign, false, false),
            ("someone else's, adopted", true, &foreign, true, true),
        ] {
            let c = ctx(adopt);
            let component = ensure_ours(&c, &id, tags, "queue q");
            assert_eq!(component.is_ok(), component_ok, "{name}: {component:?}");
            if let Err(e) = component {
                assert!(matches!(e, DriverError::NotOurs { .. }), "{name}: {e}");
                assert!(e.to_string().contains("queue q"), "{e}");
            }
            let shared = ensure_stack_ours(&c, &id, tags, "cluster c");
            assert_eq!(shared.is_ok(), stack_ok, "{name}: {shared:?}");
        }
    }

    #[test]
    fn not_found_is_a_class_or_a_service_code() {
        let err = |class, code: Option<&str>| AwsError {
            class,
            code: code.map(str::to_owned),
            status: Some(400),
            message: String::new(),
            request_id: None,
        };
        for (e, codes, missing) in [
            (err(ErrorClass::NotFound, None), &[][..], true),
            (
                err(ErrorClass::Permanent, Some("DBInstanceNotFound")),
                &[][..],
                true,
            ),
            (
                err(ErrorClass::Permanent, Some("ClusterNotFoundException")),
                &[][..],
                true,
            ),
            (
                err(ErrorClass::Permanent, Some("CacheSubnetGroupNotFoundFault")),
                &[][..],
                true,
            ),
            (
                err(
                    ErrorClass::Permanent,
                    Some("AWS.SimpleQueueService.NonExistentQueue"),
                ),
                &["AWS.SimpleQueueService.NonExistentQueue"][..],
                true,
            ),
            (
                err(
                    ErrorClass::Permanent,
                    Some("AWS.SimpleQueueService.NonExistentQueue"),
                ),
                &[][..],
                false,
            ),
            (
                err(ErrorClass::Permanent, Some("AccessDenied")),
                &[][..],
                false,
            ),
            (err(ErrorClass::Throttled, None), &[][..], false),
        ] {
            assert_eq!(is_missing(&e, codes), missing, "{e:?}");
        }
    }
}
