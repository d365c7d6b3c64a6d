//! What went wrong, in words: object_store's error text turned into the cause and the fix
//! (refused connection, TLS or plain HTTP, bucket in the endpoint, missing credentials, clock
//! skew, an outage after the store had answered).

use std::sync::atomic::Ordering;

use crate::storage::s3::watch::GAVE_UP;
use crate::storage::s3::METADATA_HOSTS;
use crate::storage::S3Storage;
use containerarchive_core::StorageError;

impl S3Storage {
    /// A storage error with the cause spelled out for an operator.
    pub(crate) fn explained(&self, key: &str, e: StorageError) -> StorageError {
        match e {
            StorageError::Backend { key: k, message } => {
                self.explain_text(if k.is_empty() { key } else { &k }, &message)
            }
            other => other,
        }
    }

    /// Turn `object_store`'s text into what happened, naming the object and the cause.
    pub(crate) fn explain_text(&self, key: &str, text: &str) -> StorageError {
        let endpoint = self
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region));
        let lower = text.to_ascii_lowercase();
        let backend = |message: String| StorageError::Backend {
            key: key.to_string(),
            message,
        };
        if text.contains("InvalidObjectState") {
            return StorageError::Archived {
                key: key.to_string(),
                class: xml_field(text, "StorageClass").unwrap_or_else(|| "GLACIER".into()),
            };
        }
        if METADATA_HOSTS.iter().any(|h| text.contains(h)) {
            return backend(format!(
                "no AWS credentials found: looked in {}, and the container and EC2 instance \
                 metadata services did not answer. Set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or write them to ~/.aws/credentials (`aws configure`)",
                self.settings.credential_sources.as_deref().unwrap_or(
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials and ~/.aws/config"
                )
            ));
        }
        if let Some(at) = text.find(GAVE_UP) {
            let what = text[at..].split(" / ").next().unwrap_or(&text[at..]);
            let what = what.split(')').next().unwrap_or(what);
            return backend(format!(
                "{what}) at {endpoint}; gave up: --retry-storage sets how long to keep retrying"
            ));
        }
        if let Some(status) = status_of(text) {
            let code = xml_field(text, "Code").unwrap_or_default();
            let detail = xml_field(text, "Message").unwrap_or_default();
            let what = format!("the store answered HTTP {status} {code}: {detail}")
                .trim_end_matches([' ', ':'])
                .to_string();
            let hint = match (status, code.as_str()) {
                (_, "NoSuchBucket") => format!(" (bucket {} does not exist)", self.bucket),
                (301, _) | (_, "PermanentRedirect") | (_, "AuthorizationHeaderMalformed") => {
                    format!(
                        " (bucket {} is in another region than {}: set AWS_REGION)",
                        self.bucket, self.region
                    )
                }
                (_, "RequestTimeTooSkewed") => " (this machine's clock is more than 15 minutes \
                     off the store's: set it right, for example with NTP)"
                    .to_string(),
                (403, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken")
                | (401, _) => format!(
                    " (check the credentials: {})",
                    self.settings
                        .credential_sources
                        .as_deref()
                        .unwrap_or("the AWS_* environment variables")
                ),
                (403, _) => " (the credentials lack permission for it)".to_string(),
                (500..=599 | 429 | 408, _) => format!(
                    " (still failing after retrying for {:.0} s; --retry-storage sets how long)",
                    self.budget.as_secs_f64()
                ),
                _ => String::new(),
            };
            return backend(format!("{what}{hint}"));
        }
        // The innermost message, without object_store's "Error performing GET … - " framing.
        let last = text.rsplit(" / ").next().unwrap_or(text);
        let cause = last
            .rsplit(" - ")
            .next()
            .unwrap_or(last)
            .trim()
            .trim_start_matches("HTTP error: ")
            .to_string();
        let reached = self.health.reached.load(Ordering::Acquire);
        let message = if reached {
            // It answered earlier in this run: not a configuration mistake, an outage.
            format!(
                "lost the connection to {endpoint} ({cause}); retried for up to {:.0} s \
                 (--retry-storage sets how long)",
                self.budget.as_secs_f64()
            )
        } else if lower.contains("connection refused") {
            format!(
                "cannot connect to {endpoint}: connection refused (nothing listens there: \
                 check the endpoint URL and port)"
            )
        } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
            format!("cannot resolve the host of {endpoint}: {cause}")
        } else if misconfigured(&lower) && endpoint.starts_with("https://") {
            format!(
                "TLS with {endpoint} failed ({cause}): if the server speaks plain HTTP, use an \
                 http:// endpoint"
            )
        } else if misconfigured(&lower)
            || lower.contains("connection closed before message completed")
            || lower.contains("incompletemessage")
            || lower.contains("connection reset")
        {
            if endpoint.starts_with("http://") {
                format!(
                    "{endpoint} did not answer plain HTTP ({cause}): if it expects TLS, use an \
                     https:// endpoint"
                )
            } else {
                format!("{endpoint} closed the connection ({cause})")
            }
        } else if lower.contains("timed out") || lower.contains("timeout") {
            format!(
                "{endpoint} did not answer in time ({cause}; retried for up to {:.0} s)",
                self.budget.as_secs_f64()
            )
        } else {
            format!("request to {endpoint} failed: {cause}")
        };
        backend(message)
    }
}

/// Failures that mean the endpoint is set up wrong, not that it is busy.
pub(crate) fn misconfigured(cause: &str) -> bool {
    let c = cause.to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "ssl",
        "handshake",
        "invalidcontenttype",
        "corrupt message",
        "wrong version number",
        "invalid http version",
        "dns error",
        "failed to lookup address",
        "name or service not known",
    ]
    .iter()
    .any(|needle| c.contains(needle))
}

/// The text of `<name>…</name>` in an S3 XML error body.
pub(crate) fn xml_field(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].trim().to_string()).filter(|s| !s.is_empty())
}

/// Every message of an error chain, outermost first.
pub(crate) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(" / ");
            out.push_str(&m);
        }
        source = s.source();
    }
    out
}

/// The HTTP status named in an `object_store` error message.
pub(crate) fn status_of(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}
