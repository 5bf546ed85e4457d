//! S3 and S3-compatible stores through aws-sdk-s3.
//!
//! Region and credentials come from the standard AWS chain (environment, profile files,
//! web identity, instance metadata); the endpoint from `AWS_ENDPOINT_URL` (read by the SDK
//! itself) or [`S3Options::endpoint`]. With an endpoint override, addressing is path-style,
//! as S3-compatible services expect.
//!
//! Uploads carry Content-MD5, so the service rejects bytes damaged on the way, and are
//! checked afterwards with HEAD: size, and the ETag (the service's MD5 of a single-part
//! upload) where the encryption mode keeps it an MD5.

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3::Client;
use base64::Engine as _;

use bytes::Bytes;

use super::{check_key, ObjectInfo, PutOutcome, Result, Store, StoreError};

/// Server-side encryption requested on every object written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3 (`AES256`).
    S3,
    /// SSE-KMS with an optional key id (else the bucket's default KMS key).
    Kms { key_id: Option<String> },
}

#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible service, e.g. `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
    /// Region when the AWS chain names none.
    pub region: Option<String>,
    pub sse: Option<Sse>,
    /// Access key and secret to use instead of the AWS chain (for embedding and tests;
    /// the CLI always uses the chain).
    pub static_credentials: Option<(String, String)>,
}

pub struct S3Store {
    client: Client,
    bucket: String,
    /// Key prefix inside the bucket, empty or ending in `/`.
    prefix: String,
    url: String,
    sse: Option<Sse>,
}

impl S3Store {
    pub async fn new(bucket: &str, prefix: &str, opts: &S3Options) -> Result<Self> {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
        if let Some(ep) = &opts.endpoint {
            loader = loader.endpoint_url(ep);
        }
        if let Some((key, secret)) = &opts.static_credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                key.clone(),
                secret.clone(),
                None,
                None,
                "vecwal-static",
            ));
        }
        let shared = loader.load().await;
        let endpoint = opts
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            // S3-compatible services rarely support the SDK's default trailing checksums;
            // integrity comes from Content-MD5 and the ETag check instead.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .force_path_style(endpoint.is_some());
        if shared.region().is_none() {
            let region = opts.region.clone().unwrap_or_else(|| "us-east-1".into());
            conf = conf.region(aws_sdk_s3::config::Region::new(region));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let url = match &endpoint {
            Some(ep) => format!("s3://{bucket}/{prefix} (endpoint {ep})"),
            None => format!("s3://{bucket}/{prefix}"),
        };
        Ok(S3Store {
            client: Client::from_conf(conf.build()),
            bucket: bucket.to_string(),
            prefix,
            url,
            sse: opts.sse.clone(),
        })
    }

    fn full_key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn err<E>(&self, op: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = status(&e);
        let code = e
            .as_service_error()
            .and_then(|s| s.code())
            .map(str::to_owned);
        let detail = DisplayErrorContext(&e).to_string();
        let (store, key) = (self.url.clone(), key.to_string());
        match (status, code.as_deref()) {
            (Some(404), _) | (_, Some("NoSuchKey")) | (_, Some("NotFound")) => {
                StoreError::NotFound { store, key }
            }
            (Some(s), _) if s == 429 || s >= 500 => StoreError::Unavailable {
                store,
                op,
                key,
                detail,
            },
            (Some(_), _) => StoreError::Refused {
                store,
                op,
                key,
                detail,
            },
            // No response at all: connection refused, timeout, DNS.
            (None, _) => StoreError::Unavailable {
                store,
                op,
                key,
                detail,
            },
        }
    }

    /// Whether the ETag of an object written with our SSE setting is its MD5.
    fn etag_is_md5(&self) -> bool {
        !matches!(self.sse, Some(Sse::Kms { .. }))
    }

    /// PUTs `data`, whose MD5 is `md5`, optionally only if the key is free.
    async fn write(
        &self,
        key: &str,
        data: Bytes,
        md5: &[u8; 16],
        if_none_match: bool,
    ) -> Result<(), (StoreError, bool)> {
        let full = self.full_key(key).map_err(|e| (e, false))?;
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_md5(md5)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data));
        if if_none_match {
            req = req.if_none_match("*");
        }
        match &self.sse {
            Some(Sse::S3) => req = req.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { key_id }) => {
                req = req.server_side_encryption(ServerSideEncryption::AwsKms);
                if let Some(k) = key_id {
                    req = req.ssekms_key_id(k);
                }
            }
            None => {}
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                // 412: the conditional create found the key taken.
                let taken = status(&e) == Some(412);
                Err((self.err("put", key, e), taken))
            }
        }
    }

    /// Checks the object at `key` holds exactly `data`: size and ETag, or the bytes when
    /// the ETag is no MD5.
    async fn matches(
        &self,
        key: &str,
        data: &[u8],
        md5: &[u8; 16],
    ) -> Result<std::result::Result<(), String>> {
        let full = self.full_key(key)?;
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.err("head", key, e))?;
        let size = head.content_length().unwrap_or(-1);
        if size != data.len() as i64 {
            return Ok(Err(format!(
                "{size} bytes stored, {} bytes expected",
                data.len()
            )));
        }
        let etag = head
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_ascii_lowercase();
        if self.etag_is_md5() && etag.len() == 32 && !etag.contains('-') {
            let want = hex::encode(md5);
            return Ok(if etag == want {
                Ok(())
            } else {
                Err(format!(
                    "ETag {etag} is not the MD5 {want} of the bytes sent"
                ))
            });
        }
        let stored = self.get(key).await?;
        Ok(if stored == data {
            Ok(())
        } else {
            Err("stored bytes differ".into())
        })
    }
}

impl S3Store {
    /// Every page of a ListObjectsV2 under `full_prefix` (`shown` names it in errors).
    async fn list_pages(
        &self,
        full_prefix: &str,
        delimiter: Option<&str>,
        shown: &str,
    ) -> Result<Vec<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output>> {
        let mut pages = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(full_prefix)
                .set_delimiter(delimiter.map(str::to_owned))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.err("list", shown, e))?;
            let next = match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => Some(t.to_string()),
                _ => None,
            };
            pages.push(page);
            match next {
                Some(t) => token = Some(t),
                None => return Ok(pages),
            }
        }
    }
}

#[async_trait]
impl Store for S3Store {
    fn url(&self) -> &str {
        &self.url
    }

    async fn put_new(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome> {
        let md5 = md5_of(&data);
        // One buffer, shared (not copied) by the request and the checks.
        let data = Bytes::from(data);
        // Look first: services without conditional writes would otherwise overwrite.
        let exists = self.head(key).await?.is_some();
        let outcome = if exists {
            PutOutcome::AlreadyPresent
        } else {
            match self.write(key, data.clone(), &md5, true).await {
                Ok(()) => PutOutcome::Created,
                Err((_, true)) => PutOutcome::AlreadyPresent,
                Err((e, false)) => return Err(e),
            }
        };
        match self.matches(key, &data, &md5).await? {
            Ok(()) => Ok(outcome),
            Err(detail) if outcome == PutOutcome::AlreadyPresent => Err(StoreError::Conflict {
                store: self.url.clone(),
                key: key.to_string(),
                detail,
            }),
            Err(detail) => Err(StoreError::Verification {
                store: self.url.clone(),
                key: key.to_string(),
                detail,
            }),
        }
    }

    async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let md5 = md5_of(&data);
        self.write(key, Bytes::from(data), &md5, false)
            .await
            .map_err(|(e, _)| e)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.err("get", key, e))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable {
                store: self.url.clone(),
                op: "get",
                key: key.to_string(),
                detail: e.to_string(),
            })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        let full = self.full_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(h) => Ok(Some(h.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) => match self.err("head", key, e) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        for page in self
            .list_pages(&format!("{}{prefix}", self.prefix), None, prefix)
            .await?
        {
            for o in page.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    out.push(ObjectInfo {
                        key: k.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn top_level(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for page in self.list_pages(&self.prefix, Some("/"), "").await? {
            for p in page.common_prefixes() {
                if let Some(name) = p.prefix().and_then(|k| k.strip_prefix(&self.prefix)) {
                    out.push(name.trim_end_matches('/').to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.err("delete", key, e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

fn md5_of(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}
