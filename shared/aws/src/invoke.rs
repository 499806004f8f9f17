//! The dispatcher's `Invoke` port on Lambda: a synchronous Invoke (RequestResponse) of
//! the reconciler's own function, `<prefix><reconciler>` (`Names::function`).
//!
//! Contract, on top of the port's:
//! - Lambda answers 200 with `X-Amz-Function-Error` when the function crashed, returned
//!   an error or timed out: that is `InvokeError::Function`, never retried here (the
//!   messages come back from SQS instead).
//! - 429 TooManyRequestsException (no concurrency left) is retried by the SDK's standard
//!   retry strategy (3 attempts with backoff); what still fails is `Throttled`.
//! - Each attempt may take [`ATTEMPT_TIMEOUT`], longer than any reconciler's function
//!   timeout, and the whole call [`CALL_TIMEOUT`], shorter than the dispatcher's own
//!   (infra/template.yaml): the dispatcher always answers before Lambda would kill it.
//!   <https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html>

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use capstan_runtime::dispatch::{Invoke, InvokeError};
use capstan_runtime::routes::Reconciler;

use crate::clients::{Names, Settings};
use crate::error::{Class, classify};

/// How long one Invoke attempt may take: more than the reconcilers' 30 s timeout.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(35);
/// How long one Invoke may take with its retries: less than the dispatcher's 45 s.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(40);

/// Invokes the reconcilers' functions.
#[derive(Clone, Debug)]
pub struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
    names: Names,
}

impl LambdaInvoker {
    /// Over `client`; function names from `names`.
    pub fn new(client: aws_sdk_lambda::Client, names: Names) -> LambdaInvoker {
        LambdaInvoker { client, names }
    }

    /// A client from `config` with the dispatcher's timeouts (see the module's contract).
    pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_lambda::Client {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(CALL_TIMEOUT)
            .build();
        aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::from(config)
                .timeout_config(timeouts)
                .build(),
        )
    }

    /// What the dispatcher's binary runs with: names from the environment, the usual
    /// credential chain.
    pub async fn from_env() -> LambdaInvoker {
        let clients = crate::clients::Clients::load(&Settings::default()).await;
        LambdaInvoker::new(LambdaInvoker::client(&clients.config), Names::from_env())
    }
}

impl Invoke for LambdaInvoker {
    async fn invoke(
        &self,
        reconciler: Reconciler,
        event: SqsEvent,
    ) -> Result<SqsBatchResponse, InvokeError> {
        let payload =
            serde_json::to_vec(&event).map_err(|e| InvokeError::Unavailable(e.to_string()))?;
        let out = self
            .client
            .invoke()
            .function_name(self.names.function(reconciler.name()))
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                let failure = classify(&e);
                match failure.class {
                    Class::Throttled => InvokeError::Throttled(failure.to_string()),
                    _ => InvokeError::Unavailable(failure.to_string()),
                }
            })?;
        let body = out.payload.map(Blob::into_inner).unwrap_or_default();
        if let Some(kind) = out.function_error {
            return Err(InvokeError::Function {
                kind,
                detail: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        // A handler that answers nothing (`null`) handled every message.
        if body.is_empty() || body.as_slice() == b"null" {
            return Ok(SqsBatchResponse::default());
        }
        serde_json::from_slice(&body).map_err(|e| InvokeError::Answer(e.to_string()))
    }
}
