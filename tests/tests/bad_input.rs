//! Bad input never passes, never hangs and always says where and what to do (issue 2).
//!
//! Each case copies `examples/deployment-repo` into a temporary folder, breaks one thing, runs
//! `validate` and checks the one problem that thing must cause: its repository-relative file,
//! its line (0 for a problem with the whole file), a piece of its message and of its help.
//! Line numbers are those of the files as the case leaves them; edits name the line they change
//! and fail loudly if the example no longer reads as expected there.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use panka_controller::validate::{validate, Validation};
use panka_core::diag::Diagnostic;
use panka_core::resolve::Options;
use tempfile::TempDir;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/deployment-repo");

/// Longest a single validation of bad input may take. Not a performance target (that is
/// `benches/load.rs`): a guard that a hostile input (alias bombs, 70,000 keys) cannot make
/// validation super-linear. Generous, because a debug build on a busy 2-core machine takes
/// over a second for the largest case when a build runs beside it.
const TIME_LIMIT: Duration = Duration::from_secs(10);

/// Path of a file of the `email-service` of stack `notification-platform`.
macro_rules! email {
    ($rel:literal) => {
        concat!("stacks/notification-platform/services/email-service/", $rel)
    };
}

/// Path of a file of the `production` environment of stack `notification-platform`.
macro_rules! production {
    ($rel:literal) => {
        concat!(
            "stacks/notification-platform/environments/production/",
            $rel
        )
    };
}

/// The StackInfra file of stack `notification-platform`.
const STACK_INFRA: &str = "stacks/notification-platform/infra/defaults.yaml";

/// A scratch copy of the example repository.
struct Repo {
    dir: TempDir,
    /// Folders outside the repository that a case links to; kept alive with the copy.
    outside: Vec<TempDir>,
}

impl Repo {
    fn copy_of_example() -> Repo {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        copy_dir(Path::new(EXAMPLE), dir.path());
        Repo {
            dir,
            outside: Vec::new(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Creates or overwrites a file (and its folders).
    fn write(&mut self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("mkdir");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {rel}: {e}"));
    }

    fn remove(&mut self, rel: &str) {
        std::fs::remove_file(self.path(rel)).unwrap_or_else(|e| panic!("remove {rel}: {e}"));
    }

    fn rename(&mut self, from: &str, to: &str) {
        std::fs::rename(self.path(from), self.path(to))
            .unwrap_or_else(|e| panic!("rename {from}: {e}"));
    }

    /// Replaces the lines starting at `line` (1-based), which must read `old`, by `new`.
    fn edit(&mut self, rel: &str, line: usize, old: &[&str], new: &[&str]) {
        let text =
            std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        let mut lines: Vec<&str> = text.lines().collect();
        let range = line - 1..line - 1 + old.len();
        assert_eq!(
            lines.get(range.clone()),
            Some(old),
            "{rel}:{line} no longer reads as this test expects"
        );
        lines.splice(range, new.iter().copied());
        self.write(rel, &(lines.join("\n") + "\n"));
    }

    /// Makes `rel` a symlink to a file in a folder outside the repository.
    fn symlink_outside(&mut self, rel: &str) {
        let outside = tempfile::tempdir().expect("create a temporary folder");
        let target = outside.path().join("stolen.yaml");
        std::fs::write(&target, "secret: outside the repository\n").expect("write target");
        let link = self.path(rel);
        std::fs::create_dir_all(link.parent().expect("a file has a folder")).expect("mkdir");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        self.outside.push(outside);
    }

    fn validate(&self, stack: &str, environment: Option<&str>) -> Validation {
        validate(self.root(), stack, environment, &Options::default())
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read example folder") {
        let entry = entry.expect("read example entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy example file");
        }
    }
}

/// One way to break the example and the problem it must cause.
struct Case {
    stack: &'static str,
    environment: Option<&'static str>,
    /// The one thing broken.
    change: fn(&mut Repo),
    /// File and line (0: the whole file) of the problem; `None` for a problem with no position.
    at: Option<(&'static str, u32)>,
    /// Part of the message.
    message: &'static str,
    /// Part of the help, which must be present (`""`: any help).
    help: &'static str,
}

/// A case in stack `notification-platform`, every environment.
fn case(
    change: fn(&mut Repo),
    at: Option<(&'static str, u32)>,
    message: &'static str,
    help: &'static str,
) -> Case {
    Case {
        stack: "notification-platform",
        environment: None,
        change,
        at,
        message,
        help,
    }
}

fn describe(problems: &[&Diagnostic]) -> String {
    problems
        .iter()
        .map(|d| format!("  {d:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Breaks a fresh copy, validates it and returns the result with the time validation took.
fn run(case: &Case) -> (Repo, Validation, Duration) {
    let mut repo = Repo::copy_of_example();
    (case.change)(&mut repo);
    let started = Instant::now();
    let validation = repo.validate(case.stack, case.environment);
    let took = started.elapsed();
    (repo, validation, took)
}

fn check(name: &str, case: &Case) {
    let (_repo, v, took) = run(case);
    let problems = v.problems();
    assert!(!v.is_ok(), "{name}: bad input passed validation");
    assert!(!problems.is_empty(), "{name}: failed without any problem");
    let found = problems.iter().find(|d| {
        d.message.contains(case.message)
            && match (&d.span, case.at) {
                (Some(span), Some((file, _))) => &*span.file == file,
                (None, None) => true,
                _ => false,
            }
    });
    let Some(d) = found else {
        panic!(
            "{name}: no problem in {:?} whose message contains {:?}; found:\n{}",
            case.at.map(|(f, _)| f),
            case.message,
            describe(&problems)
        );
    };
    if let (Some(span), Some((_, line))) = (&d.span, case.at) {
        assert_eq!(span.line, line, "{name}: wrong line in {d:?}");
    }
    let help = d
        .help
        .as_deref()
        .unwrap_or_else(|| panic!("{name}: no help in {d:?}"));
    assert!(!help.trim().is_empty(), "{name}: empty help in {d:?}");
    assert!(
        help.contains(case.help),
        "{name}: help {help:?} lacks {:?}",
        case.help
    );
    assert!(took < TIME_LIMIT, "{name}: validation took {took:?}");
}

/// One `#[test]` per case, plus `all_cases()` for the checks that span every case.
macro_rules! cases {
    ($($name:ident => $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name), &$case);
            }
        )*

        /// Every case with its name.
        fn all_cases() -> Vec<(&'static str, Case)> {
            vec![$((stringify!($name), $case)),*]
        }
    };
}

cases! {
    malformed_yaml_is_reported_where_the_parser_stopped => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 5,
            &["  name: api"], &["  name: api: extra"]),
        Some((email!("components/api/microservice.yaml"), 5)),
        "invalid YAML",
        "",
    );

    unknown_kind_suggests_the_nearest_kind => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 2,
            &["kind: MicroService"], &["kind: MicroServce"]),
        Some((email!("components/api/microservice.yaml"), 2)),
        "unknown kind `MicroServce`",
        "did you mean `MicroService`?",
    );

    wrong_api_version_for_the_kind_names_the_right_one => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 1,
            &["apiVersion: components.panka.io/v1"], &["apiVersion: infra.panka.io/v1"]),
        Some((email!("components/api/microservice.yaml"), 1)),
        "unknown apiVersion `infra.panka.io/v1` for kind `MicroService`",
        "components.panka.io/v1",
    );

    unknown_field_suggests_the_nearest_field => case(
        |r| r.edit(email!("components/api/infra.yaml"), 15,
            &["    replicas: 2"], &["    replcas: 2"]),
        Some((email!("components/api/infra.yaml"), 15)),
        "unknown field `replcas`",
        "did you mean `replicas`?",
    );

    unknown_field_in_an_environment_overlay_points_at_the_overlay => case(
        |r| r.edit(production!("services/email-service/components/api/infra.yaml"), 13,
            &["    replicas: 3"], &["    replcas: 3"]),
        Some((production!("services/email-service/components/api/infra.yaml"), 13)),
        "unknown field `replcas`",
        "did you mean `replicas`?",
    );

    missing_required_field_points_at_the_mapping_that_lacks_it => case(
        // Without `engine`, the spec mapping starts with `instance:` on line 10.
        |r| r.edit(email!("components/database/rds.yaml"), 10,
            &["  engine:", "    type: postgres", "    version: \"15.4\"", ""], &[]),
        Some((email!("components/database/rds.yaml"), 10)),
        "missing field `engine`",
        "engine",
    );
    wrong_type_points_at_the_value => case(
        |r| r.edit(email!("components/api/infra.yaml"), 11,
            &["    cpu: 256"], &["    cpu: lots"]),
        Some((email!("components/api/infra.yaml"), 11)),
        "u32",
        "",
    );
    metadata_stack_not_matching_the_folder_points_at_the_stack_field => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 7,
            &["  stack: notification-platform"], &["  stack: notification-platfrom"]),
        Some((email!("components/api/microservice.yaml"), 7)),
        "metadata.stack `notification-platfrom` does not match the stack folder",
        "stack: notification-platform",
    );
    metadata_service_not_matching_the_folder_points_at_the_service_field => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 6,
            &["  service: email-service"], &["  service: email-svc"]),
        Some((email!("components/api/microservice.yaml"), 6)),
        "metadata.service `email-svc` does not match the service folder",
        "service: email-service",
    );

    metadata_name_not_matching_the_folder_points_at_the_name_field => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 5,
            &["  name: api"], &["  name: email-api"]),
        Some((email!("components/api/microservice.yaml"), 5)),
        "metadata.name `email-api` does not match its folder `api`",
        "name: api",
    );

    second_kind_file_in_a_component_folder_is_a_duplicate_component => case(
        |r| r.write(email!("components/api/worker.yaml"), WORKER),
        Some((email!("components/api/worker.yaml"), 0)),
        "duplicate component",
        "microservice.yaml",
    );

    dangling_depends_on_suggests_the_nearest_component => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 49,
            &["    - email-service/database"], &["    - email-service/databse"]),
        Some((email!("components/api/microservice.yaml"), 49)),
        "`email-service/databse` refers to a component that does not exist",
        "did you mean `email-service/database`?",
    );

    dangling_value_from_component_lists_the_components => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 29,
            &["        component: email-service/queue"],
            &["        component: billing-service/ledger"]),
        Some((email!("components/api/microservice.yaml"), 29)),
        "`billing-service/ledger` refers to a component that does not exist",
        "email-service/queue",
    );

    unknown_value_from_output_suggests_the_nearest_output => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 25,
            &["        output: endpoint"], &["        output: endpointt"]),
        Some((email!("components/api/microservice.yaml"), 25)),
        "component `email-service/database` has no output `endpointt`",
        "did you mean `endpoint`?",
    );

    unresolved_variable_suggests_the_nearest_variable => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 12,
            &["    tag: \"${VERSION}\""], &["    tag: \"${VERSON}\""]),
        Some((email!("components/api/microservice.yaml"), 12)),
        "unresolved variable `${VERSON}`",
        "did you mean `${VERSION}`?",
    );

    unresolved_variable_in_a_config_file_points_at_its_line => case(
        |r| r.edit(email!("components/api/configs/app.yaml"), 2,
            &["  name: email-api"], &["  name: email-api-${VERSON}"]),
        Some((email!("components/api/configs/app.yaml"), 2)),
        "unresolved variable `${VERSON}`",
        "did you mean `${VERSION}`?",
    );

    unresolved_variable_in_a_number_field_points_at_the_value => case(
        |r| r.edit(email!("components/api/infra.yaml"), 15,
            &["    replicas: 2"], &["    replicas: ${REPLICAS}"]),
        Some((email!("components/api/infra.yaml"), 15)),
        "unresolved variable `${REPLICAS}`",
        "define `REPLICAS` in environments/",
    );

    variable_named_like_a_built_in_is_refused_at_its_key => case(
        |r| r.edit("stacks/notification-platform/environments/staging/variables.yaml", 10,
            &["  VERSION: v1.0.0"], &["  VERSION: v1.0.0", "  ENVIRONMENT: stage"]),
        Some(("stacks/notification-platform/environments/staging/variables.yaml", 11)),
        "`ENVIRONMENT` is a built-in variable and cannot be defined",
        "rename it; ${ENVIRONMENT} is set by panka",
    );

    dependency_cycle_names_the_whole_cycle => case(
        |r| r.edit(email!("components/database/rds.yaml"), 24,
            &["      ref: /stacks/notification-platform/email-service/db-password"],
            &["      ref: /stacks/notification-platform/email-service/db-password",
              "",
              "  dependsOn:",
              "    - email-service/api"]),
        // Reported at the cycle's first edge: api's `dependsOn: email-service/database`.
        Some((email!("components/api/microservice.yaml"), 49)),
        "email-service/api → email-service/database → email-service/api",
        "",
    );

    config_path_leaving_the_component_folder_is_refused => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 39,
            &["    files:", "      - app.yaml"],
            &["    files: [\"../../../../../etc/passwd\"]"]),
        Some((email!("components/api/microservice.yaml"), 39)),
        "leaves the component's configs/ folder",
        "",
    );

    config_file_listed_but_missing_says_where_to_create_it => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 40,
            &["      - app.yaml"], &["      - missing.yaml"]),
        Some((email!("components/api/microservice.yaml"), 40)),
        "config file `missing.yaml` not found",
        "configs/missing.yaml",
    );

    symlink_leaving_the_repository_is_refused => case(
        |r| r.symlink_outside(email!("components/api/configs/stolen.yaml")),
        Some((email!("components/api/configs/stolen.yaml"), 0)),
        "symlink leaves the repository",
        "",
    );

    policy_file_linking_out_of_the_repository_is_refused => case(
        |r| r.symlink_outside("policies/stolen.rego"),
        Some(("policies/stolen.rego", 0)),
        "symlink leaves the repository",
        "",
    );

    policies_folder_linking_out_of_the_repository_is_refused => case(
        |r| {
            let outside = tempfile::tempdir().expect("create a temporary folder");
            std::fs::write(outside.path().join("allow.rego"), "package panka\n").expect("write");
            std::fs::remove_dir_all(r.path("policies")).expect("remove policies/");
            std::os::unix::fs::symlink(outside.path(), r.path("policies")).expect("symlink");
            r.outside.push(outside);
        },
        Some(("policies", 0)),
        "`policies` is a symlink that leaves the repository",
        "real folder",
    );

    policy_file_over_one_mebibyte_is_refused_naming_the_limit => case(
        |r| r.write("policies/big.rego", &format!("package panka\n#{}\n", "x".repeat(1100 * 1024))),
        Some(("policies/big.rego", 0)),
        "over the 1048576-byte limit",
        "",
    );

    policy_that_does_not_parse_is_reported_at_its_line => case(
        |r| r.write("policies/old-syntax.rego", OLD_SYNTAX_POLICY),
        Some(("policies/old-syntax.rego", 4)),
        "policy does not parse",
        "Rego v1",
    );

    policy_denial_points_at_the_component_and_names_the_policy => case(
        |r| r.edit(production!("services/email-service/components/database/rds.yaml"), 18,
            &["  deletionProtection: true"], &["  deletionProtection: false"]),
        Some((email!("components/database/rds.yaml"), 5)),
        "policies/rds-production.rego denies email-service/database in production: \
         database has no deletion protection in production",
        "environments/production/), or the policy",
    );

    alias_bomb_is_refused_at_the_alias_that_crosses_the_limit => case(
        |r| r.write(email!("components/api/microservice.yaml"), &alias_bomb()),
        // a0..a3 expand to 12 375 values; the 8th alias of a4 (line 5) passes 100 000.
        Some((email!("components/api/microservice.yaml"), 5)),
        "alias bomb",
        "",
    );

    absurdly_deep_nesting_is_refused => case(
        |r| r.write(email!("components/api/microservice.yaml"), &deep_nesting()),
        Some((email!("components/api/microservice.yaml"), 10)),
        "nested deeper than 64 levels",
        "",
    );

    file_over_one_mebibyte_is_refused_naming_the_limit => case(
        |r| r.write(email!("components/api/configs/big.json"), &" ".repeat(1100 * 1024)),
        Some((email!("components/api/configs/big.json"), 0)),
        "over the 1048576-byte limit",
        "",
    );

    environment_overlay_without_a_base_file_is_refused => case(
        |r| r.write(production!("services/email-service/components/cache/elasticache.yaml"),
            CACHE_OVERLAY),
        Some((production!("services/email-service/components/cache/elasticache.yaml"), 0)),
        "overlay for production has no base file",
        "base file",
    );
    unknown_environment_suggests_the_nearest_environment => Case {
        environment: Some("prod"),
        ..case(
            |_| {},
            None,
            "stack `notification-platform` has no environment `prod`",
            "did you mean `production`?",
        )
    };

    plain_text_secret_in_an_environment_variable_is_refused => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 30,
            &["        output: url"],
            &["        output: url", "", "    - name: DB_PASSWORD", "      value: hunter2"]),
        Some((email!("components/api/microservice.yaml"), 33)),
        "`DB_PASSWORD` looks like a secret but has a plain value",
        "secretRef",
    );

    yml_extension_is_refused_with_a_rename_hint => case(
        |r| r.rename(email!("components/queue/sqs.yaml"), email!("components/queue/sqs.yml")),
        Some((email!("components/queue/sqs.yml"), 0)),
        "panka does not know what this file is",
        "`.yaml`",
    );

    misnamed_kind_file_suggests_the_right_name => case(
        |r| r.rename(
            email!("components/api/microservice.yaml"),
            email!("components/api/microservices.yaml"),
        ),
        Some((email!("components/api/microservices.yaml"), 0)),
        "`microservices.yaml` is not a component file",
        "did you mean `microservice.yaml`?",
    );

    duplicate_yaml_key_points_at_the_second_and_names_the_first => case(
        |r| r.edit(email!("components/database/rds.yaml"), 15,
            &["    class: db.t3.small"], &["    class: db.t3.small", "    class: db.t3.large"]),
        Some((email!("components/database/rds.yaml"), 16)),
        "duplicate key `class`",
        "line 15",
    );

    missing_service_yaml_is_reported_for_the_service_folder => case(
        |r| r.remove(email!("service.yaml")),
        Some((email!("service.yaml"), 0)),
        "service `email-service` has no service.yaml",
        "",
    );
    mapping_with_seventy_thousand_keys_parses_quickly => case(
        |r| r.write(email!("components/api/microservice.yaml"), &many_keys(70_000)),
        Some((email!("components/api/microservice.yaml"), 10)),
        "unknown field `bogus`",
        "image",
    );
    overlay_removing_a_required_field_points_at_the_overlay => case(
        |r| r.write(production!("services/email-service/components/database/rds.yaml"),
            RDS_OVERLAY_WITHOUT_ENGINE),
        Some((production!("services/email-service/components/database/rds.yaml"), 11)),
        "missing field `engine`",
        "",
    );
    metadata_environment_not_matching_the_folder_points_at_the_environment_field => case(
        |r| r.edit("stacks/notification-platform/environments/staging/variables.yaml", 7,
            &["  environment: staging"], &["  environment: stage"]),
        Some(("stacks/notification-platform/environments/staging/variables.yaml", 7)),
        "metadata.environment `stage` does not match its folder `staging`",
        "environment: staging",
    );
    tab_indentation_points_at_the_tab => case(
        |r| r.edit(email!("components/queue/sqs.yaml"), 12,
            &["  visibilityTimeout: 300"], &["\tvisibilityTimeout: 300"]),
        Some((email!("components/queue/sqs.yaml"), 12)),
        "tab",
        "",
    );
    spec_that_is_not_a_mapping_is_refused => case(
        |r| r.write(email!("components/queue/sqs.yaml"), SQS_SPEC_SCALAR),
        Some((email!("components/queue/sqs.yaml"), 9)),
        "`spec` must be a mapping",
        "",
    );
    dangling_reference_to_an_unrelated_name_suggests_nothing => case(
        |r| r.edit(email!("components/api/microservice.yaml"), 50,
            &["    - email-service/queue"], &["    - email-service/topic"]),
        Some((email!("components/api/microservice.yaml"), 50)),
        "`email-service/topic` refers to a component that does not exist",
        "components of stack `notification-platform`",
    );

    ignore_tags_matching_an_ownership_tag_is_refused => case(
        |r| r.edit(STACK_INFRA, 24,
            &["    environments: [production]"],
            &["    environments: [production]", "  ignoreTags:", "    - CostCenter", "    - \"panka:*\""]),
        Some((STACK_INFRA, 27)),
        "`ignoreTags` pattern `panka:*` matches panka's ownership tag `panka:stack`",
        "never ignored",
    );
    ignore_tags_matching_a_tag_panka_sets_is_refused => case(
        |r| r.edit(STACK_INFRA, 24,
            &["    environments: [production]"],
            &["    environments: [production]", "  tags:", "    team: email",
              "  ignoreTags: [CostCenter, \"te*\"]"]),
        Some((STACK_INFRA, 27)),
        "`ignoreTags` pattern `te*` matches `team`, which `tags` sets",
        "remove it from one of them",
    );
    a_permissions_boundary_that_is_no_policy_arn_is_refused => case(
        |r| r.edit(STACK_INFRA, 24,
            &["    environments: [production]"],
            &["    environments: [production]", "  executionRole:",
              "    permissionsBoundary: arn:aws:iam::123456789012:role/boundary"]),
        Some((STACK_INFRA, 26)),
        "`arn:aws:iam::123456789012:role/boundary` is not the ARN of an IAM managed policy",
        "arn:aws:iam::123456789012:policy/panka-task-boundary",
    );
    an_empty_ignore_tags_entry_is_refused => case(
        |r| r.edit(STACK_INFRA, 24,
            &["    environments: [production]"],
            &["    environments: [production]", "  ignoreTags:", "    - \"\""]),
        Some((STACK_INFRA, 26)),
        "an empty `ignoreTags` entry matches no tag key",
        "org:*",
    );
    a_misspelt_ignore_tags_suggests_the_field => case(
        |r| r.edit(STACK_INFRA, 24,
            &["    environments: [production]"],
            &["    environments: [production]", "  ignoreTag: [CostCenter]"]),
        Some((STACK_INFRA, 25)),
        "unknown field `ignoreTag`",
        "did you mean `ignoreTags`?",
    );

    unknown_stack_suggests_the_nearest_stack => Case {
        stack: "user-platfrom",
        ..case(
            |_| {},
            None,
            "stack `user-platfrom` not found",
            "did you mean `user-platform`?",
        )
    };
}

const WORKER: &str = "\
apiVersion: components.panka.io/v1
kind: Worker

metadata:
  name: api
  service: email-service
  stack: notification-platform

spec:
  image:
    repository: 123456789012.dkr.ecr.us-east-1.amazonaws.com/email-worker
    tag: \"${VERSION}\"
";

const CACHE_OVERLAY: &str = "\
apiVersion: components.panka.io/v1
kind: ElastiCacheRedis

metadata:
  name: cache
  service: email-service
  stack: notification-platform
  environment: production

spec:
  cluster:
    numNodes: 3
";

const RDS_OVERLAY_WITHOUT_ENGINE: &str = "\
apiVersion: components.panka.io/v1
kind: RDS

metadata:
  name: database
  service: email-service
  stack: notification-platform
  environment: production

spec:
  engine: null
";

/// Rego v0: a partial set without `contains` and `if` (line 4).
const OLD_SYNTAX_POLICY: &str = "\
package panka

# Written for OPA before 1.0.
deny[msg] {
	input.kind == \"S3\"
	msg := \"no buckets\"
}
";

const SQS_SPEC_SCALAR: &str = "\
apiVersion: components.panka.io/v1
kind: SQS

metadata:
  name: queue
  service: email-service
  stack: notification-platform

spec: standard
";

/// Ten levels of ten aliases each: 10^10 values if expanded.
fn alias_bomb() -> String {
    let mut text = format!("a0: &a0 [{}]\n", ["\"lol\""; 10].join(", "));
    for i in 1..10 {
        let aliases = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{aliases}]\n"));
    }
    text
}

/// A component whose spec has an unknown field `bogus` (line 10) holding `count` keys.
fn many_keys(count: usize) -> String {
    let mut text = String::from(
        "apiVersion: components.panka.io/v1\nkind: MicroService\n\nmetadata:\n  name: api\n  \
         service: email-service\n  stack: notification-platform\n\nspec:\n  bogus:\n",
    );
    for i in 0..count {
        text.push_str(&format!("    k{i}: 0\n"));
    }
    text
}

/// A component whose spec is 200 nested lists, on line 10.
fn deep_nesting() -> String {
    format!(
        "apiVersion: components.panka.io/v1\nkind: MicroService\n\nmetadata:\n  name: api\n  \
         service: email-service\n  stack: notification-platform\n\nspec:\n  image: {}{}\n",
        "[".repeat(200),
        "]".repeat(200)
    )
}

#[test]
fn example_stacks_are_valid_in_every_environment() {
    let repo = Repo::copy_of_example();
    for stack in ["notification-platform", "user-platform"] {
        let v = repo.validate(stack, None);
        assert!(v.is_ok(), "{stack}:\n{}", describe(&v.problems()));
        let envs: Vec<&str> = v.environments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(envs, ["development", "production", "staging"], "{stack}");
        for env in envs {
            assert!(repo.validate(stack, Some(env)).is_ok(), "{stack}/{env}");
        }
    }
}

#[test]
fn an_unresolved_variable_in_a_number_field_is_the_only_problem_it_causes() {
    let mut repo = Repo::copy_of_example();
    repo.edit(
        email!("components/api/infra.yaml"),
        15,
        &["    replicas: 2"],
        &["    replicas: ${REPLICAS}"],
    );
    let v = repo.validate("notification-platform", None);
    let problems = v.problems();
    assert_eq!(problems.len(), 1, "{}", describe(&problems));
    assert_eq!(problems[0].message, "unresolved variable `${REPLICAS}`");
}

#[test]
fn every_built_in_name_is_refused_as_a_variable() {
    for name in ["ENVIRONMENT", "STACK", "SERVICE"] {
        let mut repo = Repo::copy_of_example();
        let rel = "stacks/notification-platform/environments/staging/variables.yaml";
        let line = format!("  {name}: mine");
        repo.edit(
            rel,
            10,
            &["  VERSION: v1.0.0"],
            &["  VERSION: v1.0.0", &line],
        );
        let v = repo.validate("notification-platform", Some("staging"));
        let problems = v.problems();
        assert_eq!(problems.len(), 1, "{name}:\n{}", describe(&problems));
        let d = problems[0];
        let span = d.span.as_ref().expect("a position");
        assert_eq!((&*span.file, span.line, span.col), (rel, 11, 3), "{name}");
        assert_eq!(
            d.help.as_deref(),
            Some(format!("rename it; ${{{name}}} is set by panka").as_str())
        );
    }
    // On the command line too, where there is no file to point at.
    let err = panka_core::resolve::parse_cli_vars(["STACK=other"]).expect_err("refused");
    assert!(
        err.message.contains("`STACK` is a built-in variable"),
        "{err}"
    );
}

#[test]
fn every_bad_input_fails_without_blowing_up() {
    let mut slowest = (Duration::ZERO, "");
    for (name, case) in all_cases() {
        let (_repo, v, took) = run(&case);
        assert!(!v.is_ok(), "{name}: bad input passed validation");
        assert!(took < TIME_LIMIT, "{name}: validation took {took:?}");
        if took > slowest.0 {
            slowest = (took, name);
        }
    }
    eprintln!("slowest case: {} in {:?}", slowest.1, slowest.0);
}

#[test]
fn a_plain_text_secret_is_never_echoed_in_problems() {
    let mut repo = Repo::copy_of_example();
    repo.edit(
        email!("components/api/microservice.yaml"),
        30,
        &["        output: url"],
        &[
            "        output: url",
            "",
            "    - name: DB_PASSWORD",
            "      value: hunter2",
        ],
    );
    let v = repo.validate("notification-platform", None);
    assert!(!v.is_ok(), "a plain-text secret passed validation");
    for d in v.problems() {
        assert!(!d.to_string().contains("hunter2"), "secret echoed: {d}");
    }
}

#[test]
fn a_broken_base_file_does_not_make_its_overlays_look_orphaned() {
    let mut repo = Repo::copy_of_example();
    repo.edit(
        email!("components/api/microservice.yaml"),
        2,
        &["kind: MicroService"],
        &["kind: MicroServce"],
    );
    let v = repo.validate("notification-platform", None);
    let problems = v.problems();
    assert!(!v.is_ok());
    let orphans: Vec<&&Diagnostic> = problems
        .iter()
        .filter(|d| d.message.contains("has no base file"))
        .collect();
    assert!(orphans.is_empty(), "spurious:\n{}", describe(&problems));
}

#[test]
fn a_dense_dependency_graph_validates_quickly() {
    let mut repo = Repo::copy_of_example();
    let n = 200;
    for i in 0..n {
        let mut text = format!(
            "apiVersion: components.panka.io/v1\nkind: SQS\nmetadata:\n  name: q{i}\n  \
             service: email-service\n  stack: notification-platform\nspec:\n  type: standard\n"
        );
        if i > 0 {
            text.push_str("  dependsOn:\n");
            for j in 0..i {
                text.push_str(&format!("    - email-service/q{j}\n"));
            }
        }
        repo.write(
            &format!(
                "stacks/notification-platform/services/email-service/components/q{i}/sqs.yaml"
            ),
            &text,
        );
    }
    let started = Instant::now();
    let v = repo.validate("notification-platform", Some("development"));
    let took = started.elapsed();
    assert!(v.is_ok(), "{}", describe(&v.problems()));
    assert!(took < TIME_LIMIT, "validation took {took:?}");
}

#[test]
fn rendering_thousands_of_problems_stays_fast() {
    let mut repo = Repo::copy_of_example();
    let text: String = (0..20_000).map(|i| format!("k{i}: 0\n")).collect();
    repo.write(email!("components/api/microservice.yaml"), &text);
    let v = repo.validate("notification-platform", Some("development"));
    let problems = v.problems();
    assert!(problems.len() >= 20_000, "{} problems", problems.len());
    let started = Instant::now();
    let rendered: usize = problems.iter().map(|d| d.render(&v.sources).len()).sum();
    let took = started.elapsed();
    assert!(rendered > 0);
    assert!(took < TIME_LIMIT, "rendering took {took:?}");
}
