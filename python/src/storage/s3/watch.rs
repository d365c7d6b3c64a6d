//! The watch around every HTTP request to the object store: it counts how long the store has
//! kept failing (one budget per outage, not per request), tells the user on stderr while it
//! waits, gives up with one clear cause when the budget is spent, and never retries the cloud
//! metadata host.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::storage::s3::explain::{misconfigured, xml_field};
use crate::storage::s3::{
    FIRST_CONTACT_LIMIT, METADATA_HOSTS, NOTICE_AFTER, NOTICE_EVERY, REPORT_WAITS,
};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService, ReqwestConnector,
};

/// How the store has been answering: whether it ever did, and the current run of failures.
#[derive(Debug)]
pub(crate) struct Health {
    pub(crate) location: String,
    pub(crate) budget: Duration,
    pub(crate) reached: AtomicBool,
    pub(crate) trouble: Mutex<Option<Trouble>>,
}

#[derive(Debug)]
pub(crate) struct Trouble {
    pub(crate) since: Instant,
    pub(crate) reported: Option<Instant>,
    pub(crate) cause: String,
}

impl Health {
    pub(crate) fn answered(&self) {
        self.reached.store(true, Ordering::Release);
        let mut t = self.trouble.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(trouble) = t.take() {
            if trouble.reported.is_some() {
                notice(&format!(
                    "{} answers again after {:.0} s",
                    self.location,
                    trouble.since.elapsed().as_secs_f64()
                ));
            }
        }
    }

    /// Record a failure; how long the current run of failures has lasted.
    pub(crate) fn failed(&self, cause: &str) -> Duration {
        let mut t = self.trouble.lock().unwrap_or_else(|e| e.into_inner());
        let trouble = t.get_or_insert_with(|| Trouble {
            since: Instant::now(),
            reported: None,
            cause: String::new(),
        });
        trouble.cause = cause.to_string();
        let lasted = trouble.since.elapsed();
        let due = match trouble.reported {
            None => lasted >= NOTICE_AFTER,
            Some(at) => at.elapsed() >= NOTICE_EVERY,
        };
        if due {
            trouble.reported = Some(Instant::now());
            notice(&format!(
                "waiting for {}: {cause}; retrying for {:.0} s so far (gives up after {:.0} s)",
                self.location,
                lasted.as_secs_f64(),
                self.budget.as_secs_f64()
            ));
        }
        lasted
    }

    /// Whether the last request failed in a way worth retrying.
    pub(crate) fn troubled(&self) -> bool {
        self.trouble
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

pub(crate) fn notice(message: &str) {
    if REPORT_WAITS.load(Ordering::Relaxed) {
        eprintln!("containerarchive: {message}");
    }
}

/// Every request passes through here: it keeps [`Health`] current, reports long waits, and
/// turns failures that retrying cannot fix into ones the client does not retry.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) inner: HttpClient,
    pub(crate) health: Arc<Health>,
}

#[async_trait::async_trait]
impl HttpService for Watch {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let host = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let metadata = METADATA_HOSTS.iter().any(|h| host.starts_with(h));
        match self.inner.execute(req).await {
            Ok(response) => {
                let status = response.status();
                let transient = status.is_server_error()
                    || status == http::StatusCode::TOO_MANY_REQUESTS
                    || status == http::StatusCode::REQUEST_TIMEOUT;
                if metadata {
                    return Ok(response);
                }
                if !transient && status != http::StatusCode::BAD_REQUEST {
                    self.health.answered();
                    return Ok(response);
                }
                self.health.reached.store(true, Ordering::Release);
                // Error bodies are small: read it to name the cause (SlowDown…), then hand
                // the same bytes on.
                let (mut parts, body) = response.into_parts();
                let bytes = body.bytes().await.unwrap_or_default();
                let code = xml_field(&String::from_utf8_lossy(&bytes), "Code").unwrap_or_default();
                if !transient && code != "RequestTimeout" {
                    self.health.answered();
                    return Ok(HttpResponse::from_parts(
                        parts,
                        HttpResponseBody::from(bytes),
                    ));
                }
                if !transient {
                    // S3's "400 RequestTimeout" (the upload was too slow) is worth retrying,
                    // as the AWS SDKs do: present it to the client as the 503 it retries.
                    parts.status = http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let cause = format!("HTTP {} {code}", status.as_u16())
                    .trim()
                    .to_string();
                let lasted = self.health.failed(&cause);
                if lasted >= self.health.budget {
                    return Err(gave_up(lasted, &cause));
                }
                Ok(HttpResponse::from_parts(
                    parts,
                    HttpResponseBody::from(bytes),
                ))
            }
            Err(e) => {
                let cause = root_cause(&e);
                if metadata {
                    // Off EC2 and ECS nothing answers there: say so at once, never retry.
                    return Err(HttpError::new(
                        HttpErrorKind::Unknown,
                        Plain(format!("{host} did not answer ({cause})")),
                    ));
                }
                let lasted = self.health.failed(&cause);
                let never_reached = !self.health.reached.load(Ordering::Acquire);
                if never_reached && (misconfigured(&cause) || lasted >= FIRST_CONTACT_LIMIT) {
                    return Err(HttpError::new(HttpErrorKind::Unknown, Plain(cause)));
                }
                if lasted >= self.health.budget {
                    return Err(gave_up(lasted, &cause));
                }
                if e.kind() == HttpErrorKind::Interrupted {
                    // The connection broke mid-request (reset, broken pipe, early EOF).
                    // object_store retries that only for requests it calls idempotent, not
                    // for uploads; ours are safe to repeat (a create that landed answers 412
                    // and is compared, a replace or delete repeated changes nothing), so it
                    // is retried like a request that was never sent, within the budget.
                    return Err(HttpError::new(HttpErrorKind::Request, e));
                }
                Err(e)
            }
        }
    }
}

/// The failure that ends retrying: the store has kept failing for the whole budget (counted
/// from the first failure of the run, whichever request it was).
pub(crate) fn gave_up(lasted: Duration, cause: &str) -> HttpError {
    HttpError::new(
        HttpErrorKind::Unknown,
        Plain(format!(
            "{GAVE_UP} {:.0} s (last: {cause})",
            lasted.as_secs_f64()
        )),
    )
}

pub(crate) const GAVE_UP: &str = "the store kept failing for";

/// Builds [`Watch`] around the standard reqwest client.
#[derive(Debug)]
pub(crate) struct WatchConnector {
    pub(crate) health: Arc<Health>,
}

impl HttpConnector for WatchConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Watch {
            inner: ReqwestConnector::default().connect(options)?,
            health: self.health.clone(),
        }))
    }
}

/// An error that is just a message.
#[derive(Debug)]
pub(crate) struct Plain(String);

impl std::fmt::Display for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Plain {}

/// The innermost message of an error chain (the OS or TLS error), with the outer one when
/// it adds something.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut messages = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        messages.push(s.to_string());
        source = s.source();
    }
    messages.pop().unwrap_or_default()
}
