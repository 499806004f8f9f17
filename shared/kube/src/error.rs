//! kube-rs errors as the port's [`WorkloadError`], by HTTP status (the port's contract):
//! 429 → `Throttled`, 5xx and transport failures → `Unavailable`, 409 → `Conflict`,
//! 401/403 → `Forbidden`, other 4xx → `Invalid`. Never by message text.

use std::time::Duration;

use capstan_runtime::ports::WorkloadError;
use kube::core::Status;

/// A failed call's error as the port's.
pub fn from_kube(e: kube::Error) -> WorkloadError {
    match e {
        kube::Error::Api(status) => from_status(&status),
        // Refused or dropped connections, connect and read timeouts (hyper-timeout's
        // io::ErrorKind::TimedOut), TLS handshakes: the call may or may not have
        // happened.
        kube::Error::HyperError(e) => WorkloadError::Unavailable(chain(&e)),
        kube::Error::Service(e) => WorkloadError::Unavailable(chain(e.as_ref())),
        kube::Error::ReadEvents(e) => WorkloadError::Unavailable(chain(&e)),
        kube::Error::FromUtf8(e) => WorkloadError::Unavailable(chain(&e)),
        // How to reach or authenticate to the cluster is wrong: a person fixes it.
        kube::Error::Auth(e) => WorkloadError::Forbidden(chain(&e)),
        kube::Error::RustlsTls(e) => WorkloadError::Forbidden(chain(&e)),
        kube::Error::TlsRequired => WorkloadError::Forbidden(
            "the API server URL is https but no TLS stack is configured".into(),
        ),
        kube::Error::InferKubeconfig(e) => WorkloadError::Forbidden(chain(&e)),
        kube::Error::SerdeError(e) => {
            WorkloadError::Invalid(format!("the API server's answer does not decode: {e}"))
        }
        other => WorkloadError::Invalid(chain(&other)),
    }
}

/// An API server's `Status` (kube-rs builds one for non-JSON error bodies too).
pub fn from_status(s: &Status) -> WorkloadError {
    let message = describe(s);
    match s.code {
        429 => WorkloadError::Throttled {
            retry_after: s
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|&secs| secs > 0)
                .map(|secs| Duration::from_secs(u64::from(secs))),
            message,
        },
        409 => WorkloadError::Conflict(message),
        401 | 403 => WorkloadError::Forbidden(message),
        400..=499 => WorkloadError::Invalid(message),
        _ => WorkloadError::Unavailable(message),
    }
}

/// The call was refused for its credentials: a token may have expired.
pub fn is_unauthorized(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 401)
}

/// The object (or its namespace) does not exist.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// `<code> <reason>: <message>`, e.g. `409 Conflict: Operation cannot be fulfilled…`.
pub fn describe(s: &Status) -> String {
    match (s.reason.is_empty(), s.message.is_empty()) {
        (true, true) => format!("HTTP {}", s.code),
        (false, true) => format!("{} {}", s.code, s.reason),
        (true, false) => format!("{} {}", s.code, s.message),
        (false, false) => format!("{} {}: {}", s.code, s.reason, s.message),
    }
}

/// An error and its sources, so a timeout reads "… operation timed out" rather than
/// "client error (Connect)".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
