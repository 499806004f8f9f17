//! Keeps the server's `Retry-After` on a 429. kube-rs turns an error response into
//! `Error::Api(Status)` from the body alone, and API priority and fairness answers 429
//! with a plain-text body and the delay only in the header (k8s.io/apiserver
//! `filters/maxinflight.go`, `tooManyRequests`). This layer, under kube's error
//! handling, folds the header into the Status body's `details.retryAfterSeconds` (where
//! the API server's own `NewTooManyRequests` puts it), building the Status when the
//! body is not one, so [`crate::error`] can read it back.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use kube::client::Body;
use kube::core::{Status, response::StatusDetails};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Adds [`RetryAfter`] to a kube client's service stack.
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryAfterLayer;

impl<S> tower::Layer<S> for RetryAfterLayer {
    type Service = RetryAfter<S>;

    fn layer(&self, inner: S) -> RetryAfter<S> {
        RetryAfter { inner }
    }
}

/// See the module documentation.
pub struct RetryAfter<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<Body>> for RetryAfter<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<UnsyncBoxBody<Bytes, BoxError>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await.map_err(Into::into)?;
            let seconds = (res.status() == StatusCode::TOO_MANY_REQUESTS)
                .then(|| res.headers().get(RETRY_AFTER))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok());
            let Some(seconds) = seconds else {
                return Ok(res.map(|b| b.map_err(Into::into).boxed_unsync()));
            };
            let (mut parts, body) = res.into_parts();
            let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
            let body = with_retry_after(&bytes, seconds);
            parts.headers.remove(CONTENT_LENGTH);
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let body = Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync();
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// The 429 body as a Status carrying `seconds` (unless it already names a delay).
fn with_retry_after(body: &[u8], seconds: u32) -> Vec<u8> {
    let mut status = serde_json::from_slice::<Status>(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        Status::failure(text.trim(), "TooManyRequests").with_code(429)
    });
    let details = status.details.get_or_insert_with(|| StatusDetails {
        name: String::new(),
        group: String::new(),
        kind: String::new(),
        uid: String::new(),
        causes: Vec::new(),
        retry_after_seconds: 0,
    });
    if details.retry_after_seconds == 0 {
        details.retry_after_seconds = seconds;
    }
    // A Status always serialises; should it not, kube reports the original text.
    serde_json::to_vec(&status).unwrap_or_else(|_| body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_429_becomes_a_status_with_the_delay() {
        let body = with_retry_after(b"Too many requests, please try again later.\n", 3);
        let s: Status = serde_json::from_slice(&body).expect("status");
        assert_eq!(s.code, 429);
        assert_eq!(s.message, "Too many requests, please try again later.");
        assert_eq!(s.details.map(|d| d.retry_after_seconds), Some(3));
    }

    #[test]
    fn a_status_keeps_its_own_delay() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":429,"reason":"TooManyRequests","message":"m","details":{"retryAfterSeconds":10}}"#;
        let s: Status = serde_json::from_slice(&with_retry_after(body, 1)).expect("status");
        assert_eq!(s.details.map(|d| d.retry_after_seconds), Some(10));
    }
}
