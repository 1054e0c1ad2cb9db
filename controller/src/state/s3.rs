//! [`ObjectStore`] in an S3 bucket, with S3 conditional writes (`If-None-Match: *`, `If-Match`).
//!
//! The bucket has versioning on (checked by `panka backend create`), so every state version is
//! kept. Objects are encrypted by the bucket's default encryption.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;

use super::{ObjectStore, PutCondition, PutOutcome, StateError, StoredObject};
use crate::aws::{AwsError, ErrorClass};

/// A bucket holding `stacks/…`.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    /// A store in `bucket` through `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> S3Store {
        S3Store {
            client,
            bucket: bucket.into(),
        }
    }

    fn at(&self, path: &str) -> String {
        format!("s3://{}/{path}", self.bucket)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn location(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn get(&self, path: &str) -> Result<Option<StoredObject>, StateError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(path)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err) => {
                let err = AwsError::from_sdk(&err);
                if err.class == ErrorClass::NotFound && err.code.as_deref() != Some("NoSuchBucket")
                {
                    return Ok(None);
                }
                return Err(StateError::Aws {
                    op: "read",
                    location: self.at(path),
                    source: err,
                });
            }
        };
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let body = out.body.collect().await.map_err(|e| StateError::Aws {
            op: "read the body of",
            location: self.at(path),
            source: AwsError {
                class: ErrorClass::Transient,
                code: None,
                status: None,
                message: e.to_string(),
                request_id: None,
            },
        })?;
        Ok(Some(StoredObject {
            body: body.into_bytes().to_vec(),
            etag,
        }))
    }

    async fn put(
        &self,
        path: &str,
        body: Vec<u8>,
        condition: PutCondition,
    ) -> Result<PutOutcome, StateError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(path)
            .content_type("application/json")
            .body(ByteStream::from(body));
        req = match &condition {
            PutCondition::IfAbsent => req.if_none_match("*"),
            PutCondition::IfMatch(etag) => req.if_match(etag),
        };
        match req.send().await {
            Ok(out) => Ok(PutOutcome::Written {
                etag: out.e_tag().unwrap_or_default().to_owned(),
            }),
            Err(err) => {
                let err = AwsError::from_sdk(&err);
                match (err.class, &condition) {
                    // 412, or 409 ConditionalRequestConflict (a concurrent conditional write
                    // won): the caller re-reads to learn what is there now.
                    (ErrorClass::ConditionFailed, _) => Ok(PutOutcome::PreconditionFailed),
                    // If-Match on an object deleted meanwhile answers 404 NoSuchKey.
                    (ErrorClass::NotFound, PutCondition::IfMatch(_))
                        if err.code.as_deref() != Some("NoSuchBucket") =>
                    {
                        Ok(PutOutcome::PreconditionFailed)
                    }
                    _ => Err(StateError::Aws {
                        op: "write",
                        location: self.at(path),
                        source: err,
                    }),
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StateError::Aws {
                op: "list",
                location: self.at(prefix),
                source: AwsError::from_sdk(&e),
            })?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        out.sort();
        Ok(out)
    }
}
