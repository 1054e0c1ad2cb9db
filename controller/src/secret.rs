//! Secret values read at apply time from AWS Secrets Manager, wrapped so they cannot leak.
//!
//! Stage: plan and apply (infrastructure). Touches Secrets Manager through the client it is
//! given: `DescribeSecret` to check a reference before any change (plan), `GetSecretValue` when a
//! value must be sent (apply). A value read here lives in a [`SecretString`]: its `Debug` and
//! `Display` print `<redacted>`, it is not serialisable, and its buffer is overwritten when
//! dropped. Callers
//! hand it to the one AWS call that needs it (e.g. `MasterUserPassword`) and never put it in
//! fields, outputs, state, logs or errors; the errors of this module name the secret, never its
//! value.

use std::fmt;

use aws_sdk_secretsmanager::Client;
use panka_crds::spec::PasswordSecret;

use crate::aws::AwsError;
use crate::driver::DriverError;

/// JSON key read from a password secret when the reference names none.
pub const DEFAULT_PASSWORD_KEY: &str = "password";

/// A secret value. Printing it, with `{}` or `{:?}`, shows `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(value.into())
    }

    /// The value, for the one call that needs it. Never log or store what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        // Best effort without `unsafe`: overwrite the bytes before the allocation is freed.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// Why a secret could not be read. Names the secret, never carries its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager refused or failed.
    #[error("failed to read secret {reference}: {source}")]
    Aws {
        /// Secret name or ARN.
        reference: String,
        /// The classified AWS error.
        #[source]
        source: AwsError,
    },
    /// The secret holds binary data, not a string.
    #[error("secret {reference} holds no string value (binary secrets are not supported)")]
    NotString {
        /// Secret name or ARN.
        reference: String,
    },
    /// A key was asked for but the secret is not a JSON object.
    #[error("secret {reference} is not a JSON object, so its key `{key}` cannot be read")]
    NotJson {
        /// Secret name or ARN.
        reference: String,
        /// The key asked for.
        key: String,
    },
    /// The JSON object has no string under the key.
    #[error("secret {reference} has no string value under the key `{key}`")]
    MissingKey {
        /// Secret name or ARN.
        reference: String,
        /// The key asked for.
        key: String,
    },
}

impl SecretError {
    /// The AWS error, when Secrets Manager failed (for retry classification).
    pub fn aws(&self) -> Option<&AwsError> {
        match self {
            SecretError::Aws { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads the current value of a secret by name or ARN. With `key`, the secret must be a JSON
/// object and the string under `key` is returned; without, the whole secret string.
pub async fn read(
    client: &Client,
    reference: &str,
    key: Option<&str>,
) -> Result<SecretString, SecretError> {
    let raw = fetch(client, reference).await?;
    match key {
        Some(key) => pick(reference, &raw, key),
        None => Ok(raw),
    }
}

/// Reads a password reference: the string under `key` when one is named; otherwise the
/// documented default key `password` when the secret is a JSON object, or else the whole secret
/// string (a plain-text secret).
pub async fn read_password(
    client: &Client,
    secret: &PasswordSecret,
) -> Result<SecretString, SecretError> {
    let raw = fetch(client, &secret.secret_ref).await?;
    password_of(&secret.secret_ref, raw, secret.key.as_deref())
}

/// [`read_password`] for a driver: a failure becomes a [`DriverError`] on component `id`, and
/// `what` names the secret in it (`master password`, `AUTH token`).
pub(crate) async fn read_reference(
    client: &Client,
    reference: &PasswordSecret,
    id: &panka_core::model::ComponentId,
    what: &str,
) -> Result<SecretString, DriverError> {
    read_password(client, reference)
        .await
        .map_err(|e| match e.aws() {
            Some(source) => DriverError::Aws {
                action: format!("read the {what} secret {} for", reference.secret_ref),
                component: id.clone(),
                source: source.clone().into(),
            },
            None => DriverError::Unexpected {
                component: id.clone(),
                message: e.to_string(),
            },
        })
}

/// Checks, before any change, that a password reference names a secret that exists — with
/// `DescribeSecret`, which reads no value — so a plan refuses what apply could not finish.
/// `field` is where the reference is written in `component`'s file (`database.passwordSecret.ref`).
pub(crate) async fn require_reference(
    client: &Client,
    reference: &PasswordSecret,
    component: &panka_core::model::DesiredComponent,
    field: &str,
) -> Result<(), DriverError> {
    let id = &component.id;
    let name = reference.secret_ref.trim();
    match client.describe_secret().secret_id(name).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = AwsError::from_sdk(&e);
            if err.code.as_deref() == Some("ResourceNotFoundException") {
                Err(DriverError::MissingSecret {
                    file: component.source.clone(),
                    component: id.clone(),
                    secret: name.to_string(),
                    field: field.to_string(),
                })
            } else {
                Err(DriverError::Aws {
                    action: format!("look up the secret {name} for"),
                    component: id.clone(),
                    source: err.into(),
                })
            }
        }
    }
}

async fn fetch(client: &Client, reference: &str) -> Result<SecretString, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(reference)
        .send()
        .await
        .map_err(|e| SecretError::Aws {
            reference: reference.to_string(),
            source: sanitized(&e),
        })?;
    // The SDK's output type redacts the value in its own Debug, but is never printed here.
    out.secret_string()
        .map(SecretString::new)
        .ok_or_else(|| SecretError::NotString {
            reference: reference.to_string(),
        })
}

/// The classified error with a message made only of the error code and the service's own
/// message: the SDK's full error context includes the raw HTTP response, and a response that
/// failed to parse could be one carrying the secret value.
fn sanitized<E, R>(err: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> AwsError
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + crate::aws::HttpStatus,
{
    use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
    let mut classified = AwsError::from_sdk(err);
    classified.message = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => match classified.status {
            Some(status) => format!("request failed with HTTP status {status}"),
            None => "request failed before a response arrived (network or timeout)".to_string(),
        },
    };
    classified
}

/// The password in `raw` by the rules of [`read_password`] (pure).
pub fn password_of(
    reference: &str,
    raw: SecretString,
    key: Option<&str>,
) -> Result<SecretString, SecretError> {
    if let Some(key) = key {
        return pick(reference, &raw, key);
    }
    let is_object = serde_json::from_str::<serde_json::Value>(raw.expose())
        .map(|v| v.is_object())
        .unwrap_or(false);
    if is_object {
        pick(reference, &raw, DEFAULT_PASSWORD_KEY)
    } else {
        Ok(raw)
    }
}

/// The string under `key` of the JSON object in `raw` (pure). Parse errors are not passed on:
/// they could quote the value.
pub fn pick(reference: &str, raw: &SecretString, key: &str) -> Result<SecretString, SecretError> {
    let parsed: serde_json::Value =
        serde_json::from_str(raw.expose()).map_err(|_| SecretError::NotJson {
            reference: reference.to_string(),
            key: key.to_string(),
        })?;
    let Some(object) = parsed.as_object() else {
        return Err(SecretError::NotJson {
            reference: reference.to_string(),
            key: key.to_string(),
        });
    };
    match object.get(key) {
        Some(serde_json::Value::String(s)) => Ok(SecretString::new(s.as_str())),
        _ => Err(SecretError::MissingKey {
            reference: reference.to_string(),
            key: key.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "SecretString(<redacted>)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(SecretString(<redacted>))");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_named_key_is_read_from_a_json_object() {
        let raw = SecretString::new(r#"{"username":"u","password":"p4ss"}"#);
        let got = pick("db", &raw, "password").expect("key present");
        assert_eq!(got.expose(), "p4ss");
    }

    #[test]
    fn a_missing_key_or_non_json_secret_is_an_error_without_the_value() {
        let raw = SecretString::new(r#"{"user":"s3cr3t-value"}"#);
        let err = pick("db", &raw, "password").expect_err("no such key");
        assert!(matches!(err, SecretError::MissingKey { .. }));
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let plain = SecretString::new("s3cr3t-value");
        let err = pick("db", &plain, "password").expect_err("not JSON");
        assert!(matches!(err, SecretError::NotJson { .. }));
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn a_password_without_a_key_is_the_default_key_or_the_whole_string() {
        let json = SecretString::new(r#"{"password":"from-json"}"#);
        assert_eq!(
            password_of("db", json, None).expect("json").expose(),
            "from-json"
        );
        let plain = SecretString::new("plain-text");
        assert_eq!(
            password_of("db", plain, None).expect("plain").expose(),
            "plain-text"
        );
        let other = SecretString::new(r#"{"token":"t"}"#);
        assert_eq!(
            password_of("db", other, Some("token"))
                .expect("named")
                .expose(),
            "t"
        );
    }
}
