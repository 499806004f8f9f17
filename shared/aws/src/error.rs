//! Classifying SDK failures by error code and HTTP status, never by message text.
//!
//! Every adapter maps a failed call to one of three classes first, then to its port's
//! error type: the port says what is retried and what is final, this module says which
//! AWS codes mean what.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// What kind of failure an SDK call ended in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// The service asked us to slow down; retry with backoff.
    Throttled,
    /// A 5xx, a timeout, a dropped connection: the call may or may not have happened.
    Transient,
    /// The service answered with a 4xx error code: retrying the same request will not help
    /// (the port decides whether the code means something more specific).
    Service,
}

/// A failed call, reduced to what the ports need.
#[derive(Clone, Debug)]
pub struct Failure {
    pub class: Class,
    /// The service's error code ("ConditionalCheckFailedException"); empty for transport failures.
    pub code: String,
    /// Human-readable detail, for logs and conditions only; never matched on.
    pub message: String,
}

/// Throttling codes across DynamoDB, EC2, EventBridge and SQS.
const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "LimitExceededException",
    "TransactionInProgressException",
];

/// Server-side codes that mean "try again", whatever the status code says.
const TRANSIENT: &[&str] = &[
    "InternalServerError",
    "InternalServerException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
];

/// Whether a per-entry error code (PutEvents results) means throttling.
pub(crate) fn is_throttling(code: &str) -> bool {
    THROTTLING.contains(&code)
}

pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default().to_string();
            let message = service.err().message().unwrap_or_default().to_string();
            let status = service.raw().status().as_u16();
            let class = if THROTTLING.contains(&code.as_str()) || status == 429 {
                Class::Throttled
            } else if TRANSIENT.contains(&code.as_str()) || status >= 500 {
                Class::Transient
            } else {
                Class::Service
            };
            Failure {
                class,
                code,
                message,
            }
        }
        // Timeouts, dispatch failures (connection refused, reset), unreadable responses:
        // the request may have been carried out.
        _ => Failure {
            class: Class::Transient,
            code: String::new(),
            message: DisplayErrorContext(err).to_string(),
        },
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, _) => f.write_str(&self.message),
            (false, true) => f.write_str(&self.code),
            (false, false) => write!(f, "{}: {}", self.code, self.message),
        }
    }
}
