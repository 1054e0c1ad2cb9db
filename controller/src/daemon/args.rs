//! The controller's flags; each can also be set by a `PANKA_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, ValueEnum};

use super::shard::ShardSpec;
use crate::config::parse_duration;

/// panka-controller: keeps AWS equal to a deployment repository (or to Kubernetes custom
/// resources), forever.
///
/// Git mode polls the repository's branch and applies what changed; CRD mode (`--source crd`)
/// applies Stack, Service and component resources. Either way it checks every
/// stack/environment for drift on an interval and remediates or reports it per the stack's
/// `drift.mode`, writes each Stack resource's status and Events (unless `--no-kubernetes`), and
/// elects one leader per shard. State and locks are configured exactly as for the `panka` CLI
/// (same file, same variables), so the two never fight over a stack.
#[derive(Debug, Clone, Parser)]
#[command(name = "panka-controller", version)]
pub struct Args {
    /// Where the desired state comes from.
    #[arg(long, value_enum, default_value = "git", env = "PANKA_SOURCE")]
    pub source: SourceKind,
    /// Git mode: the deployment repository's URL (`https://…`, `ssh://…`, `git://…`,
    /// `file://…` or a path).
    #[arg(long, env = "PANKA_REPO_URL")]
    pub repo_url: Option<String>,
    /// The branch to deploy.
    #[arg(long, default_value = "main", env = "PANKA_BRANCH")]
    pub branch: String,
    /// Folder of the repository that holds `stacks/` (default: its root).
    #[arg(long, default_value = "", env = "PANKA_REPO_PATH")]
    pub path: String,
    /// An environment this controller owns; repeatable (`PANKA_ENVIRONMENTS=a,b`). Required
    /// in git mode; in CRD mode it limits which Stack resources are acted on.
    #[arg(
        long = "environment",
        short = 'e',
        env = "PANKA_ENVIRONMENTS",
        value_delimiter = ','
    )]
    pub environments: Vec<String>,
    /// How often the repository is fetched.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "PANKA_POLL_INTERVAL")]
    pub poll_interval: Duration,
    /// How often each stack/environment is checked for drift (a stack's `drift.interval`
    /// wins).
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "PANKA_DRIFT_INTERVAL")]
    pub drift_interval: Duration,
    /// HTTPS: a file holding an access token for the repository (or set `PANKA_GIT_TOKEN`).
    #[arg(long, env = "PANKA_GIT_TOKEN_FILE")]
    pub git_token_file: Option<PathBuf>,
    /// HTTPS: the user name sent with the token.
    #[arg(long, default_value = "x-access-token", env = "PANKA_GIT_USERNAME")]
    pub git_username: String,
    /// SSH: the private key file for `ssh://` or `user@host:path` URLs.
    #[arg(long, env = "PANKA_GIT_SSH_KEY_FILE")]
    pub ssh_key_file: Option<PathBuf>,
    /// SSH: the known_hosts file the server's host key must be listed in (required for SSH).
    #[arg(long, env = "PANKA_GIT_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// Stack/environments reconciled at once.
    #[arg(long, default_value_t = 4, env = "PANKA_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "127.0.0.1:9090", env = "PANKA_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Where the push webhook (`POST /webhook`, GitHub's format) is served; off when unset.
    #[arg(long, env = "PANKA_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    /// File holding the webhook's shared secret (or set `PANKA_WEBHOOK_SECRET`).
    #[arg(long, env = "PANKA_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Run without a Kubernetes API server: status is kept beside the state and in the logs
    /// (`panka status` shows it).
    #[arg(long, env = "PANKA_NO_KUBERNETES", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub no_kubernetes: bool,
    /// Kubernetes namespace: where git mode keeps its Stack resources, and the one CRD mode
    /// watches (default: the namespace of the pod, or the kubeconfig's).
    #[arg(long, env = "PANKA_NAMESPACE")]
    pub namespace: Option<String>,
    /// CRD mode: watch Stack resources in every namespace.
    #[arg(long, env = "PANKA_ALL_NAMESPACES", conflicts_with = "namespace", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub all_namespaces: bool,
    /// Own only the targets whose stable hash falls in shard INDEX of COUNT (`0/3`), or
    /// `ordinal/COUNT` to take INDEX from the StatefulSet pod name (`POD_NAME`).
    #[arg(long, env = "PANKA_SHARD")]
    pub shard: Option<ShardSpec>,
    /// Act without electing a leader (only one replica per shard may run then).
    #[arg(long, env = "PANKA_NO_LEADER_ELECTION", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub no_leader_election: bool,
    /// Name of the leader-election Lease (a shard's index is appended when sharded).
    #[arg(long, default_value = "panka-controller", env = "PANKA_LEASE_NAME")]
    pub lease_name: String,
    /// Where the repository is cloned (default: `~/.cache/panka/repos/`).
    #[arg(long, env = "PANKA_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Configuration file (state and lock backends), as for the CLI.
    #[arg(long, env = "PANKA_CONFIG")]
    pub config: Option<PathBuf>,
    /// AWS calls per second allowed to each AWS service, shared by every reconcile (halved on
    /// throttling, recovering over two minutes); 0 for no limit.
    #[arg(long, default_value_t = 20.0, env = "PANKA_AWS_CALLS_PER_SECOND")]
    pub aws_calls_per_second: f64,
    /// How long one reconcile waits for a rollout before it lets the worker go and looks
    /// again later.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "PANKA_ROLLOUT_WAIT")]
    pub rollout_wait: Duration,
    /// How long a rollout may take in all, from the release that started it, before the
    /// target is reported failed (it is still looked at, and recovers when it settles).
    #[arg(long, default_value = "15m", value_parser = parse_duration, env = "PANKA_ROLLOUT_TIMEOUT")]
    pub rollout_timeout: Duration,
    /// Let applies delete components that hold data (databases, tables, buckets, caches).
    #[arg(long, env = "PANKA_ALLOW_DESTROY", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub allow_destroy: bool,
    /// How long SIGTERM waits for in-flight reconciles to stop safely.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "PANKA_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "PANKA_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Where the desired state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// A git repository's branch.
    Git,
    /// Stack, Service and component custom resources in the cluster.
    Crd,
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_intervals_and_several_environments_are_accepted() {
        let args = Args::try_parse_from([
            "panka-controller",
            "--repo-url",
            "file:///tmp/repo",
            "-e",
            "development",
            "--environment",
            "staging",
            "--poll-interval",
            "2s",
            "--drift-interval",
            "1m30s",
        ])
        .unwrap();
        assert_eq!(args.environments, ["development", "staging"]);
        assert_eq!(args.poll_interval, Duration::from_secs(2));
        assert_eq!(args.drift_interval, Duration::from_secs(90));
        assert_eq!(args.concurrency, 4);
    }

    #[test]
    fn switches_read_one_yes_and_true_from_the_environment() {
        // Only this test sets the variable: no other test reads `allow_destroy`.
        for (value, want) in [("1", true), ("yes", true), ("true", true), ("0", false)] {
            std::env::set_var("PANKA_ALLOW_DESTROY", value);
            let args =
                Args::try_parse_from(["panka-controller", "--repo-url", "x", "-e", "d"]).unwrap();
            assert_eq!(args.allow_destroy, want, "{value}");
        }
        std::env::remove_var("PANKA_ALLOW_DESTROY");
    }

    #[test]
    fn crd_mode_needs_no_repository_and_shards_parse() {
        let args = Args::try_parse_from([
            "panka-controller",
            "--source",
            "crd",
            "--all-namespaces",
            "--shard",
            "ordinal/3",
        ])
        .unwrap();
        assert_eq!(args.source, SourceKind::Crd);
        assert!(args.repo_url.is_none() && args.environments.is_empty());
        assert!(args.all_namespaces);
        assert_eq!(args.shard.map(|s| s.count), Some(3));
        let err = Args::try_parse_from(["panka-controller", "--shard", "3/3"]).unwrap_err();
        assert!(
            err.to_string().contains("not below the shard count"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_concurrency_is_refused() {
        let err = Args::try_parse_from([
            "panka-controller",
            "--repo-url",
            "x",
            "-e",
            "d",
            "--concurrency",
            "0",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--concurrency"), "{err}");
    }
}
