//! Panka's own configuration: where state and locks live and which AWS profile/region to use.
//!
//! Stage: setup, before any stage runs. Reads one small YAML file (`~/.panka/config.yaml`, or
//! `--config PATH` / `PANKA_CONFIG`) and the `PANKA_*` environment overrides; touches nothing else.
//!
//! ```yaml
//! version: v1
//! backend:            # state: s3 {region, bucket} or local {dir}
//!   type: s3
//!   region: us-east-1
//!   bucket: company-panka-state
//! locks:              # locks: dynamodb {region, table} or local {dir}
//!   type: dynamodb
//!   region: us-east-1
//!   table: company-panka-locks
//! aws:
//!   profile: default
//!   region: us-east-1
//! ```
//!
//! Precedence, highest first: `PANKA_STATE_BUCKET` / `PANKA_LOCK_TABLE` / `PANKA_STATE_DIR`, the
//! file, the default. With nothing configured, state and locks live in a local directory
//! (`~/.panka/state`), so a newcomer can validate and plan without an AWS account.

use std::path::{Path, PathBuf};

use thiserror::Error;
use yaml_rust2::{Yaml, YamlLoader};

use crate::aws::AwsSettings;

/// Environment variable naming the configuration file.
pub const ENV_CONFIG: &str = "PANKA_CONFIG";
/// Environment variable selecting the S3 state bucket (and so the S3 backend).
pub const ENV_STATE_BUCKET: &str = "PANKA_STATE_BUCKET";
/// Environment variable selecting the DynamoDB lock table (and so DynamoDB locks).
pub const ENV_LOCK_TABLE: &str = "PANKA_LOCK_TABLE";
/// Environment variable selecting the local state directory (and so the local backend).
pub const ENV_STATE_DIR: &str = "PANKA_STATE_DIR";

/// Where deployment state and release history are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateConfig {
    /// An S3 bucket (versioning on), objects under `stacks/`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Region of the bucket; `None` uses `aws.region` or the AWS chain.
        region: Option<String>,
    },
    /// A local directory with the same layout.
    Local {
        /// The directory.
        dir: PathBuf,
    },
}

/// Where locks are held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocksConfig {
    /// A DynamoDB table with partition key `lockKey` and TTL on `expiresAt`.
    DynamoDb {
        /// Table name.
        table: String,
        /// Region of the table; `None` uses `aws.region` or the AWS chain.
        region: Option<String>,
    },
    /// Lock files in a local directory (only meaningful with local state).
    Local {
        /// The directory (locks live under `locks/` inside it).
        dir: PathBuf,
    },
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// State backend.
    pub state: StateConfig,
    /// Lock backend.
    pub locks: LocksConfig,
    /// AWS profile and region.
    pub aws: AwsSettings,
    /// The file it was read from, when one was.
    pub source: Option<PathBuf>,
}

/// Errors of loading or saving the configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read the configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("failed to write the configuration {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("failed to parse the configuration {path}: {detail}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        detail: String,
    },
    /// The file is YAML but says something wrong.
    #[error("failed to load the configuration {path}: {detail}")]
    Invalid {
        /// The file, or the environment variable at fault.
        path: PathBuf,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The combination of file and environment makes no sense.
    #[error("failed to resolve the configuration: {0}")]
    Conflict(String),
    /// No home directory to find `~/.panka` in.
    #[error("failed to find the home directory (set HOME, or pass --config and PANKA_STATE_DIR)")]
    NoHome,
}

/// The file's settings before environment overrides and defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// `backend:`.
    pub state: Option<StateConfig>,
    /// `locks:`.
    pub locks: Option<LocksConfig>,
    /// `aws:`.
    pub aws: AwsSettings,
}

/// The home directory, from `HOME` (or `USERPROFILE` on Windows).
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `~/.panka/config.yaml`.
pub fn default_config_path() -> Result<PathBuf, ConfigError> {
    Ok(home_dir()
        .ok_or(ConfigError::NoHome)?
        .join(".panka")
        .join("config.yaml"))
}

/// `~/.panka/state`, the local backend's default directory.
pub fn default_state_dir() -> Result<PathBuf, ConfigError> {
    Ok(home_dir()
        .ok_or(ConfigError::NoHome)?
        .join(".panka")
        .join("state"))
}

impl Config {
    /// Loads the configuration: `explicit` (from `--config` or `PANKA_CONFIG`) must exist; the
    /// default file may be absent. Environment overrides come from the process environment.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with(explicit, &|name| std::env::var(name).ok())
    }

    /// [`Config::load`] with an injectable environment (for tests).
    pub fn load_with(
        explicit: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let explicit = explicit
            .map(Path::to_path_buf)
            .or_else(|| env(ENV_CONFIG).map(PathBuf::from));
        let (file, source) = match explicit {
            Some(path) => (FileConfig::read(&path)?, Some(path)),
            None => {
                let path = default_config_path();
                match path {
                    Ok(path) if path.is_file() => (FileConfig::read(&path)?, Some(path)),
                    // No file (or no home) is fine: defaults and environment apply.
                    _ => (FileConfig::default(), None),
                }
            }
        };
        Self::resolve(file, source, &env)
    }

    /// Applies environment overrides and defaults to a parsed file.
    pub fn resolve(
        file: FileConfig,
        source: Option<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let region_of = |state: &Option<StateConfig>| match state {
            Some(StateConfig::S3 { region, .. }) => region.clone(),
            _ => None,
        };
        let state = if let Some(bucket) = env(ENV_STATE_BUCKET) {
            StateConfig::S3 {
                bucket,
                region: region_of(&file.state),
            }
        } else if let Some(dir) = env(ENV_STATE_DIR) {
            StateConfig::Local {
                dir: expand_tilde(&dir),
            }
        } else if let Some(state) = file.state.clone() {
            state
        } else {
            StateConfig::Local {
                dir: default_state_dir()?,
            }
        };
        let locks = if let Some(table) = env(ENV_LOCK_TABLE) {
            let region = match &file.locks {
                Some(LocksConfig::DynamoDb { region, .. }) => region.clone(),
                _ => None,
            };
            LocksConfig::DynamoDb { table, region }
        } else {
            match (&state, file.locks.clone()) {
                // A local state directory chosen by the environment brings its lock files along.
                (StateConfig::Local { dir }, _) if env(ENV_STATE_DIR).is_some() => {
                    LocksConfig::Local { dir: dir.clone() }
                }
                (_, Some(locks)) => locks,
                (StateConfig::Local { dir }, None) => LocksConfig::Local { dir: dir.clone() },
                (StateConfig::S3 { .. }, None) => {
                    return Err(ConfigError::Conflict(
                        "state is in S3 but no DynamoDB lock table is configured; add \
                         `locks: {type: dynamodb, table: …}` to the configuration or set \
                         PANKA_LOCK_TABLE"
                            .into(),
                    ))
                }
            }
        };
        if let (StateConfig::S3 { bucket, .. }, LocksConfig::Local { .. }) = (&state, &locks) {
            // Lock files on one machine cannot protect state shared through S3.
            return Err(ConfigError::Conflict(format!(
                "state is in S3 bucket `{bucket}` but locks are local files, which other \
                 machines cannot see; configure `locks: {{type: dynamodb, table: …}}` or set \
                 PANKA_LOCK_TABLE"
            )));
        }
        Ok(Config {
            state,
            locks,
            aws: file.aws,
            source,
        })
    }

    /// The region for S3 (backend's own, else `aws.region`, else the chain's).
    pub fn state_region(&self) -> Option<&str> {
        match &self.state {
            StateConfig::S3 {
                region: Some(r), ..
            } => Some(r),
            _ => self.aws.region.as_deref(),
        }
    }

    /// The region for DynamoDB (locks' own, else `aws.region`, else the chain's).
    pub fn locks_region(&self) -> Option<&str> {
        match &self.locks {
            LocksConfig::DynamoDb {
                region: Some(r), ..
            } => Some(r),
            _ => self.aws.region.as_deref(),
        }
    }

    /// Whether any AWS service is configured (so an SDK config is needed).
    pub fn uses_aws(&self) -> bool {
        matches!(self.state, StateConfig::S3 { .. })
            || matches!(self.locks, LocksConfig::DynamoDb { .. })
    }
}

impl FileConfig {
    /// Reads and parses a configuration file.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        let invalid = |detail: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let docs = YamlLoader::load_from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let root = match docs.into_iter().next() {
            None | Some(Yaml::Null) => return Ok(FileConfig::default()),
            Some(root @ Yaml::Hash(_)) => root,
            Some(_) => return Err(invalid("the top level must be a mapping".into())),
        };
        check_keys(&root, "", &["version", "backend", "locks", "aws"]).map_err(invalid)?;
        match scalar(&root, "", "version").map_err(invalid)? {
            None => {}
            Some(v) if v == "v1" || v == "1" => {}
            Some(v) => {
                return Err(invalid(format!(
                    "unsupported `version: {v}`; this panka reads `version: v1`"
                )))
            }
        }

        let state = match section(&root, "backend").map_err(invalid)? {
            None => None,
            Some(b) => {
                let kind = scalar(b, "backend", "type")
                    .map_err(invalid)?
                    .unwrap_or_else(|| "s3".into());
                Some(match kind.as_str() {
                    "s3" => {
                        check_keys(b, "backend", &["type", "region", "bucket"]).map_err(invalid)?;
                        StateConfig::S3 {
                            bucket: required(b, "backend", "bucket").map_err(invalid)?,
                            region: scalar(b, "backend", "region").map_err(invalid)?,
                        }
                    }
                    "local" => {
                        check_keys(b, "backend", &["type", "dir"]).map_err(invalid)?;
                        StateConfig::Local {
                            dir: match scalar(b, "backend", "dir").map_err(invalid)? {
                                Some(d) => expand_tilde(&d),
                                None => default_state_dir()?,
                            },
                        }
                    }
                    other => {
                        return Err(invalid(format!(
                            "unknown `backend.type: {other}`; use `s3` or `local`"
                        )))
                    }
                })
            }
        };

        let locks = match section(&root, "locks").map_err(invalid)? {
            None => None,
            Some(l) => {
                let kind = scalar(l, "locks", "type")
                    .map_err(invalid)?
                    .unwrap_or_else(|| "dynamodb".into());
                Some(match kind.as_str() {
                    "dynamodb" => {
                        check_keys(l, "locks", &["type", "region", "table"]).map_err(invalid)?;
                        LocksConfig::DynamoDb {
                            table: required(l, "locks", "table").map_err(invalid)?,
                            region: scalar(l, "locks", "region").map_err(invalid)?,
                        }
                    }
                    "local" => {
                        check_keys(l, "locks", &["type", "dir"]).map_err(invalid)?;
                        let dir = match scalar(l, "locks", "dir").map_err(invalid)? {
                            Some(d) => expand_tilde(&d),
                            None => match &state {
                                Some(StateConfig::Local { dir }) => dir.clone(),
                                _ => default_state_dir()?,
                            },
                        };
                        LocksConfig::Local { dir }
                    }
                    other => {
                        return Err(invalid(format!(
                            "unknown `locks.type: {other}`; use `dynamodb` or `local`"
                        )))
                    }
                })
            }
        };

        let aws = match section(&root, "aws").map_err(invalid)? {
            None => AwsSettings::default(),
            Some(a) => {
                check_keys(a, "aws", &["profile", "region", "endpoint"]).map_err(invalid)?;
                AwsSettings {
                    profile: scalar(a, "aws", "profile").map_err(invalid)?,
                    region: scalar(a, "aws", "region").map_err(invalid)?,
                    endpoint_url: scalar(a, "aws", "endpoint").map_err(invalid)?,
                }
            }
        };
        Ok(FileConfig { state, locks, aws })
    }

    /// Renders the file in the seeds' format.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from("version: v1\n");
        match &self.state {
            Some(StateConfig::S3 { bucket, region }) => {
                out.push_str("backend:\n  type: s3\n");
                if let Some(r) = region {
                    out.push_str(&format!("  region: {}\n", quote(r)));
                }
                out.push_str(&format!("  bucket: {}\n", quote(bucket)));
            }
            Some(StateConfig::Local { dir }) => {
                out.push_str("backend:\n  type: local\n");
                out.push_str(&format!("  dir: {}\n", quote(&dir.to_string_lossy())));
            }
            None => {}
        }
        match &self.locks {
            Some(LocksConfig::DynamoDb { table, region }) => {
                out.push_str("locks:\n  type: dynamodb\n");
                if let Some(r) = region {
                    out.push_str(&format!("  region: {}\n", quote(r)));
                }
                out.push_str(&format!("  table: {}\n", quote(table)));
            }
            Some(LocksConfig::Local { dir }) => {
                out.push_str("locks:\n  type: local\n");
                out.push_str(&format!("  dir: {}\n", quote(&dir.to_string_lossy())));
            }
            None => {}
        }
        let AwsSettings {
            profile,
            region,
            endpoint_url,
        } = &self.aws;
        if profile.is_some() || region.is_some() || endpoint_url.is_some() {
            out.push_str("aws:\n");
            if let Some(p) = profile {
                out.push_str(&format!("  profile: {}\n", quote(p)));
            }
            if let Some(r) = region {
                out.push_str(&format!("  region: {}\n", quote(r)));
            }
            if let Some(e) = endpoint_url {
                out.push_str(&format!("  endpoint: {}\n", quote(e)));
            }
        }
        out
    }

    /// Writes the file (creating its directory), replacing any previous one atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let write_err = |source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let tmp = path.with_extension(format!("yaml.tmp.{}", std::process::id()));
        std::fs::write(&tmp, self.to_yaml()).map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }
}

/// `~/x` → `$HOME/x`; anything else unchanged.
pub fn expand_tilde(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ if path == "~" => home_dir().unwrap_or_else(|| PathBuf::from(path)),
        _ => PathBuf::from(path),
    }
}

/// Quotes a scalar when plain YAML would misread it.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@+".contains(c))
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn section<'a>(map: &'a Yaml, key: &str) -> Result<Option<&'a Yaml>, String> {
    match &map[key] {
        Yaml::BadValue | Yaml::Null => Ok(None),
        h @ Yaml::Hash(_) => Ok(Some(h)),
        _ => Err(format!("`{key}` must be a mapping")),
    }
}

fn scalar(map: &Yaml, at: &str, key: &str) -> Result<Option<String>, String> {
    let name = if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    };
    match &map[key] {
        Yaml::BadValue | Yaml::Null => Ok(None),
        Yaml::String(s) if s.trim().is_empty() => Ok(None),
        Yaml::String(s) => Ok(Some(s.trim().to_owned())),
        Yaml::Integer(i) => Ok(Some(i.to_string())),
        Yaml::Real(r) => Ok(Some(r.clone())),
        _ => Err(format!("`{name}` must be a string")),
    }
}

fn required(map: &Yaml, at: &str, key: &str) -> Result<String, String> {
    scalar(map, at, key)?.ok_or_else(|| format!("`{at}.{key}` is required"))
}

fn check_keys(map: &Yaml, at: &str, allowed: &[&str]) -> Result<(), String> {
    let Yaml::Hash(h) = map else {
        return Ok(());
    };
    for k in h.keys() {
        let name = k.as_str().unwrap_or("?");
        if !allowed.contains(&name) {
            let place = if at.is_empty() {
                "the top level".to_owned()
            } else {
                format!("`{at}`")
            };
            let hint = panka_core::diag::suggest(name, allowed.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(format!(
                "unknown key `{name}` in {place} (expected one of: {}){hint}",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// The value parser of every duration flag of the CLI and the controller (`--lock-timeout`,
/// `--poll-interval` …): a human
/// duration (`90s`, `5m`, `1h30m`, `2 hours`) or, as before, bare seconds (`300`). Negative
/// durations are refused. On an error clap prints this message after the flag's name.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    static PARSER: jiff::fmt::friendly::SpanParser = jiff::fmt::friendly::SpanParser::new();
    let text = text.trim();
    let hint = "write it like `90s`, `5m`, `1h30m` or `7d` (bare seconds such as `300` also work)";
    // Bare seconds first: scripts written before human durations pass them.
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let parsed = match PARSER.parse_duration(text) {
        Ok(d) => d,
        // Days and weeks are calendar units to jiff; here a day is 24 hours.
        Err(_) => PARSER
            .parse_span(text)
            .ok()
            .and_then(|span| {
                span.total(jiff::SpanTotal::from(jiff::Unit::Second).days_are_24_hours())
                    .ok()
            })
            .and_then(|secs| jiff::SignedDuration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| format!("not a duration; {hint}"))?,
    };
    std::time::Duration::try_from(parsed)
        .map_err(|_| format!("a duration cannot be negative; {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "version: v1\nbackend:\n  type: s3\n  region: us-east-1\n  bucket: company-panka-state\nlocks:\n  type: dynamodb\n  region: us-east-1\n  table: company-panka-locks\naws:\n  profile: default\n  region: us-east-1\n";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("config.yaml"))
    }

    #[test]
    fn seed_format_parses_and_round_trips() {
        let file = parse(SEED).unwrap();
        assert_eq!(
            file.state,
            Some(StateConfig::S3 {
                bucket: "company-panka-state".into(),
                region: Some("us-east-1".into())
            })
        );
        assert_eq!(file.aws.profile.as_deref(), Some("default"));
        assert_eq!(file.to_yaml(), SEED);
    }

    #[test]
    fn env_overrides_win_over_the_file() {
        let file = parse(SEED).unwrap();
        let env = |k: &str| match k {
            ENV_STATE_BUCKET => Some("other-bucket".to_owned()),
            ENV_LOCK_TABLE => Some("other-table".to_owned()),
            _ => None,
        };
        let c = Config::resolve(file, None, &env).unwrap();
        assert_eq!(
            c.state,
            StateConfig::S3 {
                bucket: "other-bucket".into(),
                region: Some("us-east-1".into())
            }
        );
        assert_eq!(
            c.locks,
            LocksConfig::DynamoDb {
                table: "other-table".into(),
                region: Some("us-east-1".into())
            }
        );
    }

    #[test]
    fn state_dir_selects_local_state_and_locks() {
        let file = parse(SEED).unwrap();
        let env = |k: &str| (k == ENV_STATE_DIR).then(|| "/tmp/st".to_owned());
        let c = Config::resolve(file, None, &env).unwrap();
        assert_eq!(
            c.state,
            StateConfig::Local {
                dir: "/tmp/st".into()
            }
        );
        assert_eq!(
            c.locks,
            LocksConfig::Local {
                dir: "/tmp/st".into()
            }
        );
    }

    #[test]
    fn nothing_configured_means_local() {
        let c = Config::resolve(FileConfig::default(), None, &no_env);
        if home_dir().is_some() {
            let c = c.unwrap();
            assert!(matches!(c.state, StateConfig::Local { .. }));
            assert!(matches!(c.locks, LocksConfig::Local { .. }));
            assert!(!c.uses_aws());
        }
    }

    #[test]
    fn s3_state_without_a_lock_table_is_refused() {
        let file = parse("backend: {type: s3, bucket: b}\n").unwrap();
        let err = Config::resolve(file, None, &no_env).unwrap_err();
        assert!(err.to_string().contains("PANKA_LOCK_TABLE"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        let err = parse("backend:\n  type: s3\n  buckett: x\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown key `buckett`"), "{msg}");
        assert!(msg.contains("did you mean `bucket`"), "{msg}");
    }

    #[test]
    fn missing_bucket_is_an_error() {
        let err = parse("backend:\n  type: s3\n").unwrap_err();
        assert!(err.to_string().contains("`backend.bucket` is required"));
    }

    #[test]
    fn bad_yaml_names_the_file() {
        let err = parse("backend: [\n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }));
        assert!(err.to_string().contains("config.yaml"));
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let err =
            Config::load_with(Some(Path::new("/nonexistent/panka.yaml")), &no_env).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn quoting_keeps_odd_values_intact() {
        let file = FileConfig {
            state: Some(StateConfig::Local {
                dir: "/tmp/a dir: x".into(),
            }),
            locks: None,
            aws: AwsSettings {
                profile: Some("yes".into()),
                ..Default::default()
            },
        };
        let back = parse(&file.to_yaml()).unwrap();
        assert_eq!(back, file);
    }
}
