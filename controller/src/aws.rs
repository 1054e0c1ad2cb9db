//! AWS plumbing shared by every stage that talks to AWS: one `SdkConfig` from the standard chain,
//! and one classification of SDK errors.
//!
//! Stage: infrastructure for observe/apply/record. Touches the network only through the clients
//! built from the config this module returns.
//!
//! Credentials and region come from aws-config's standard chain (environment, profile, SSO, web
//! identity, container and instance metadata). `AWS_ENDPOINT_URL` (and the per-service
//! `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`) is honoured by that chain; it is how tests
//! and demos reach the local emulator.

use std::collections::BTreeMap;
use std::fmt;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// How many attempts the SDK makes for one call before giving up (standard retry mode, with
/// exponential backoff and jitter; throttling and 5xx are retried, permanent errors are not).
pub const MAX_ATTEMPTS: u32 = 5;

/// AWS settings from the `aws:` section of the configuration (and overrides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Named profile of `~/.aws/config`; `None` uses the chain's default (`AWS_PROFILE`, then
    /// `default`). `AWS_PROFILE` in the environment wins over this value.
    pub profile: Option<String>,
    /// Region; `None` lets the chain decide (`AWS_REGION`, profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint override for every service. `None` leaves it to the chain, which reads
    /// `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
}

/// Loads the shared SDK configuration: the standard credential/region chain, the profile and
/// region of `settings` when given, and the standard retry mode.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
    // An explicit AWS_PROFILE is a per-shell choice and beats the file, like PANKA_* variables.
    let env_profile = std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty());
    if let (Some(profile), None) = (&settings.profile, env_profile) {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// An S3 client for `config`, in `region` when given. Path-style addressing is forced when an
/// endpoint override is in effect: emulators and S3-compatible stores do not serve
/// virtual-hosted buckets.
pub fn s3_client(config: &SdkConfig, region: Option<&str>) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(config);
    if let Some(region) = region {
        builder = builder.region(Region::new(region.to_owned()));
    }
    if config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// A DynamoDB client for `config`, in `region` when given.
pub fn dynamodb_client(config: &SdkConfig, region: Option<&str>) -> aws_sdk_dynamodb::Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(config);
    if let Some(region) = region {
        builder = builder.region(Region::new(region.to_owned()));
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

/// A resource's tags as a map, from the `(key, value)` pairs of any service's tag type: without
/// the `aws:` tags AWS sets itself (they cannot be changed, so they are never compared) and
/// without key-less entries; a missing value counts as empty.
pub fn tag_map<'a>(
    pairs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((k?, v.unwrap_or_default())))
        .filter(|(k, _)| !k.starts_with("aws:"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What makes a resource's tags `have` exactly `want`: the tags to add or overwrite, and the
/// keys to remove.
pub fn tag_changes(
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let set = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = have
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    (set, remove)
}

/// What kind of failure an AWS call ended in; decides retry and user message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The resource does not exist (404, `NoSuchKey`, `ResourceNotFoundException`, …).
    NotFound,
    /// A conditional write's condition did not hold (412, `ConditionalCheckFailedException`,
    /// `TransactionCanceledException`).
    ConditionFailed,
    /// AWS asked us to slow down; retry with backoff.
    Throttled,
    /// Network, timeout or 5xx; retry with backoff.
    Transient,
    /// Validation, access denied and the like; retrying will not help.
    Permanent,
}

/// An AWS SDK error, classified once, with its code and a readable message. Holds no request
/// payloads, so it never carries a secret value.
#[derive(Debug, Clone)]
pub struct AwsError {
    /// The classification.
    pub class: ErrorClass,
    /// The AWS error code, when the service sent one.
    pub code: Option<String>,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// What AWS said (its error message), or what went wrong on the way (timeout, network).
    pub message: String,
    /// The request id AWS gave the failed call, for AWS support and CloudTrail.
    pub request_id: Option<String>,
}

/// One line: the AWS error code, its message, the request id. Never the SDK's `Debug` dump or
/// a raw HTTP response.
impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) if self.message.is_empty() || self.message == *code => f.write_str(code)?,
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

impl AwsError {
    /// A failure with no answer from AWS (no code, status or request id).
    fn bare(class: ErrorClass, message: String) -> AwsError {
        AwsError {
            class,
            code: None,
            status: None,
            message,
            request_id: None,
        }
    }

    /// Classifies an SDK error.
    pub fn from_sdk<E, R>(err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug + HttpStatus,
    {
        // The source's own words, first line only: some carry a whole response after it.
        let cause = |e: &dyn std::error::Error| {
            let text = aws_sdk_s3::error::DisplayErrorContext(e).to_string();
            text.lines().next().unwrap_or_default().to_owned()
        };
        let bare = Self::bare;
        match err {
            SdkError::ConstructionFailure(_) => bare(
                ErrorClass::Permanent,
                format!("failed to build the request: {}", cause(err)),
            ),
            SdkError::TimeoutError(_) => {
                bare(ErrorClass::Transient, "the request timed out".into())
            }
            SdkError::DispatchFailure(e) => match e.as_connector_error() {
                Some(c) => dispatch_failure(c),
                None => bare(
                    ErrorClass::Transient,
                    format!("failed to reach AWS: {}", cause(err)),
                ),
            },
            SdkError::ResponseError(e) => Self {
                class: ErrorClass::Transient,
                code: None,
                status: Some(e.raw().status_u16()),
                message: format!("unreadable response (HTTP {})", e.raw().status_u16()),
                request_id: e.raw().request_id(),
            },
            SdkError::ServiceError(e) => {
                let code = e.err().code().map(str::to_owned);
                let status = e.raw().status_u16();
                Self {
                    class: classify(code.as_deref(), Some(status)),
                    message: e.err().message().map_or_else(
                        || code.clone().unwrap_or_else(|| format!("HTTP {status}")),
                        str::to_owned,
                    ),
                    code,
                    status: Some(status),
                    request_id: e.raw().request_id(),
                }
            }
            _ => bare(ErrorClass::Transient, cause(err)),
        }
    }
}

/// A request that never reached AWS: no region, no credentials, or the network. Says which, in
/// words a person can act on, without the SDK's `Debug` dump.
fn dispatch_failure(err: &aws_smithy_runtime_api::client::result::ConnectorError) -> AwsError {
    let mut chain = Vec::new();
    let mut next = std::error::Error::source(err);
    while let Some(e) = next {
        chain.push(e);
        next = e.source();
    }
    let bare = AwsError::bare;
    // No endpoint could be resolved for want of a region. The endpoint error's type lives in
    // two releases of aws-smithy-http in this build (the SDK crates pin different ones), so a
    // downcast would miss half the services: its words are read instead — S3 says "A region
    // must be set", the other services "Missing Region".
    let endpoint = chain.iter().map(|e| e.to_string()).find(|text| {
        let lower = text.to_ascii_lowercase();
        lower.contains("region must be set") || lower.contains("missing region")
    });
    if let Some(said) = endpoint {
        return bare(
            ErrorClass::Permanent,
            format!(
                "cannot pick the AWS endpoint ({said}): set AWS_REGION, a region in the AWS \
                 profile, or `aws.region` in panka's configuration"
            ),
        );
    }
    if chain
        .iter()
        .any(|e| e.is::<aws_credential_types::provider::error::CredentialsError>())
    {
        // The chain's own text lists what it tried, one provider per line after the first.
        let tried: Vec<String> = chain
            .iter()
            .flat_map(|e| {
                e.to_string()
                    .lines()
                    .skip(1)
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut message = String::from(
            "no AWS credentials found: set AWS_PROFILE (after `aws sso login` when it uses SSO) \
             or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a role is available \
             (IRSA, EKS Pod Identity, ECS, EC2)",
        );
        if !tried.is_empty() {
            message.push_str(&format!(" (tried: {})", tried.join("; ")));
        }
        return bare(ErrorClass::Permanent, message);
    }
    // Each cause's own words, outermost first, without repeats (hyper nests the same text).
    let mut words: Vec<String> = Vec::new();
    for e in &chain {
        let text = e.to_string();
        let text = text.lines().next().unwrap_or_default().trim().to_string();
        if !text.is_empty() && !words.iter().any(|w| w.contains(&text)) {
            words.push(text);
        }
    }
    let what = if words.is_empty() {
        err.to_string()
    } else {
        words.join(": ")
    };
    let class = if err.is_user() {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    };
    bare(class, format!("failed to reach AWS: {what}"))
}

/// Access to an HTTP response's status, so [`AwsError::from_sdk`] works for every client's
/// response type.
pub trait HttpStatus {
    /// The HTTP status code.
    fn status_u16(&self) -> u16;
    /// The request id AWS sent back, when it did.
    fn request_id(&self) -> Option<String>;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }

    fn request_id(&self) -> Option<String> {
        ["x-amzn-requestid", "x-amz-request-id", "x-amzn-request-id"]
            .iter()
            .find_map(|h| self.headers().get(*h))
            .map(str::to_owned)
    }
}

/// Classification by AWS error code first, HTTP status second.
pub fn classify(code: Option<&str>, status: Option<u16>) -> ErrorClass {
    if let Some(code) = code {
        match code {
            "NoSuchKey"
            | "NoSuchBucket"
            | "NotFound"
            | "NoSuchVersion"
            | "ResourceNotFoundException"
            | "TableNotFoundException" => return ErrorClass::NotFound,
            "ConditionalCheckFailedException"
            | "TransactionCanceledException"
            | "PreconditionFailed"
            | "ConditionalRequestConflict" => return ErrorClass::ConditionFailed,
            "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException"
            | "TooManyRequestsException"
            | "SlowDown"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "LimitExceededException"
            | "TransactionInProgressException" => return ErrorClass::Throttled,
            "InternalError"
            | "InternalServerError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "TransactionConflictException" => return ErrorClass::Transient,
            _ => {}
        }
    }
    match status {
        Some(404) => ErrorClass::NotFound,
        Some(412) => ErrorClass::ConditionFailed,
        Some(429) => ErrorClass::Throttled,
        Some(s) if s >= 500 => ErrorClass::Transient,
        None => ErrorClass::Transient,
        Some(_) => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_smithy_types::body::SdkBody;

    #[test]
    fn a_request_that_never_left_says_what_to_set() {
        use aws_smithy_runtime_api::client::endpoint::error::ResolveEndpointError;
        use aws_smithy_runtime_api::client::result::ConnectorError;

        let no_region = ConnectorError::other(
            Box::new(ResolveEndpointError::message(
                "A region must be set when sending requests to S3.",
            )),
            None,
        );
        let e = dispatch_failure(&no_region);
        assert_eq!(e.class, ErrorClass::Permanent);
        assert!(
            e.message
                .starts_with("cannot pick the AWS endpoint (A region must be set")
                && e.message.contains("set AWS_REGION"),
            "{e}"
        );
        // Other services word it differently; the type is what counts.
        let e = dispatch_failure(&ConnectorError::other(
            Box::new(ResolveEndpointError::message(
                "Invalid Configuration: Missing Region",
            )),
            None,
        ));
        assert_eq!(e.class, ErrorClass::Permanent);
        assert!(e.message.contains("Missing Region): set AWS_REGION"), "{e}");

        let no_credentials = ConnectorError::other(
            Box::new(aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no credentials found in chain. Attempted:\n  Environment: not set\n  Profile: none",
            )),
            None,
        );
        let e = dispatch_failure(&no_credentials);
        assert_eq!(e.class, ErrorClass::Permanent);
        assert!(
            e.message
                .starts_with("no AWS credentials found: set AWS_PROFILE"),
            "{e}"
        );
        assert!(
            e.message.contains("Environment: not set; Profile: none"),
            "{e}"
        );

        let refused = ConnectorError::io(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        )));
        let e = dispatch_failure(&refused);
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(
            e.message,
            "failed to reach AWS: Connection refused (os error 111)"
        );
    }

    fn response(status: u16, body: &'static str) -> HttpResponse {
        let mut raw = HttpResponse::new(
            status.try_into().expect("a valid status"),
            SdkBody::from(body),
        );
        raw.headers_mut().insert("x-amz-request-id", "REQ123");
        raw
    }

    #[test]
    fn a_service_error_prints_as_one_line_with_code_message_and_request_id() {
        let raw = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        let err = SdkError::service_error(
            GetObjectError::generic(
                ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("Access Denied")
                    .build(),
            ),
            response(403, raw),
        );
        let e = AwsError::from_sdk(&err);
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(
            e.to_string(),
            "AccessDenied: Access Denied (request id REQ123)"
        );
        assert!(!e.to_string().contains('<'), "no raw response: {e}");
    }

    #[test]
    fn an_unreadable_response_says_its_status_not_its_body() {
        let err: SdkError<GetObjectError, HttpResponse> = SdkError::response_error(
            std::io::Error::other("bad xml"),
            response(502, "<html>Bad gateway page</html>"),
        );
        let e = AwsError::from_sdk(&err);
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(
            e.to_string(),
            "unreadable response (HTTP 502) (request id REQ123)"
        );
    }

    #[test]
    fn codes_win_over_status() {
        assert_eq!(
            classify(Some("ConditionalCheckFailedException"), Some(400)),
            ErrorClass::ConditionFailed
        );
        assert_eq!(
            classify(Some("ThrottlingException"), Some(400)),
            ErrorClass::Throttled
        );
        assert_eq!(classify(Some("NoSuchKey"), Some(404)), ErrorClass::NotFound);
    }

    #[test]
    fn tag_maps_drop_aws_tags_and_keyless_entries() {
        let tags = tag_map([
            (Some("panka:stack"), Some("shop")),
            (Some("aws:cloudformation:stack-name"), Some("x")),
            (None, Some("orphan")),
            (Some("empty"), None),
        ]);
        let want: BTreeMap<String, String> = [("panka:stack", "shop"), ("empty", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(tags, want);
    }

    #[test]
    fn tag_changes_set_what_differs_and_remove_extras() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let want = map(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let have = map(&[("a", "1"), ("b", "old"), ("x", "9")]);
        let (set, remove) = tag_changes(&want, &have);
        assert_eq!(set, map(&[("b", "2"), ("c", "3")]));
        assert_eq!(remove, ["x"]);
        assert_eq!(tag_changes(&want, &want), (BTreeMap::new(), vec![]));
    }

    #[test]
    fn status_decides_unknown_codes() {
        assert_eq!(classify(None, Some(412)), ErrorClass::ConditionFailed);
        assert_eq!(classify(Some("Whatever"), Some(503)), ErrorClass::Transient);
        assert_eq!(
            classify(Some("AccessDenied"), Some(403)),
            ErrorClass::Permanent
        );
        assert_eq!(classify(None, Some(429)), ErrorClass::Throttled);
    }
}
