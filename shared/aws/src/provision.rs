//! Creating what a deployment has, if absent: the table (stream NEW_AND_OLD_IMAGES,
//! the sparse instance index), the bus, the one work queue and the one dead-letter
//! queue it redrives to, and one rule per reconciler whose pattern comes from
//! `Reconciler::patterns()` and whose target is the work queue, through an input
//! transformer that wraps the event with the reconciler's name
//! (`Reconciler::input_template()`) — the same sources the SAM template's rules are
//! written from (a test compares them). Used by the endpoint runtime; in AWS the
//! template creates these.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
};
use aws_sdk_eventbridge::types::{InputTransformer, RuleState, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use capstan_model::item::{INSTANCE_ID, INSTANCE_INDEX, PK, SK};
use capstan_runtime::routes::Reconciler;
use serde_json::{Value, json};
use thiserror::Error;
use tracing::info;

use crate::clients::{Clients, Names};
use crate::error::classify;

/// The bus EC2 (and AWS services generally) publish to.
pub const DEFAULT_BUS: &str = "default";
/// How many receives a message gets before it moves to the DLQ.
pub const MAX_RECEIVE_COUNT: u32 = 5;

#[derive(Debug, Error)]
pub enum ProvisionError {
    #[error("{action}: {detail}")]
    Call { action: String, detail: String },
    #[error("table {0} did not become ACTIVE")]
    TableNotActive(String),
}

/// How the queues are set up.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// How long a received message stays invisible: a failed message comes back after this.
    pub visibility_timeout: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            visibility_timeout: Duration::from_secs(30),
        }
    }
}

/// A queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    pub url: String,
    pub arn: String,
}

/// What exists after provisioning.
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub stream_arn: String,
    /// The one work queue every rule feeds (wrapped messages).
    pub work: Queue,
    /// Where the work queue's messages go after `MAX_RECEIVE_COUNT` receives.
    pub dead_letter: Queue,
}

/// The bus a reconciler's rule lives on: EC2's events arrive on the default bus.
pub fn rule_bus(reconciler: Reconciler, names: &Names) -> String {
    match reconciler {
        Reconciler::InstanceEvents => DEFAULT_BUS.to_string(),
        _ => names.bus.clone(),
    }
}

/// The one event pattern of a reconciler's rule: its patterns, joined with `$or` when
/// there are several (EventBridge allows one pattern per rule).
pub fn rule_pattern(reconciler: Reconciler) -> Value {
    let mut patterns = reconciler.patterns();
    if patterns.len() == 1 {
        patterns.remove(0)
    } else {
        json!({ "$or": patterns })
    }
}

fn call_failed<E>(
    action: impl Into<String>,
) -> impl FnOnce(
    aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> ProvisionError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let action = action.into();
    move |err| ProvisionError::Call {
        action,
        detail: classify(&err).to_string(),
    }
}

/// Creates whatever is missing; leaves what exists as it is. Returns the stream to read
/// and the queues to drain.
pub async fn ensure(
    clients: &Clients,
    names: &Names,
    options: &QueueOptions,
) -> Result<Provisioned, ProvisionError> {
    let stream_arn = ensure_table(clients, &names.table).await?;
    ensure_bus(clients, &names.bus).await?;
    let (work, dead_letter) = ensure_queues(clients, names, options).await?;
    for reconciler in Reconciler::ALL {
        ensure_rule(clients, names, reconciler, &work).await?;
    }
    Ok(Provisioned {
        stream_arn,
        work,
        dead_letter,
    })
}

/// The table, with its stream and the instance index; returns the stream's ARN.
pub async fn ensure_table(clients: &Clients, table: &str) -> Result<String, ProvisionError> {
    let ddb = &clients.dynamodb;
    let described = ddb.describe_table().table_name(table).send().await;
    let exists = match described {
        Ok(_) => true,
        Err(e) if classify(&e).code == "ResourceNotFoundException" => false,
        Err(e) => return Err(call_failed(format!("describing table {table}"))(e)),
    };
    if !exists {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let index = GlobalSecondaryIndex::builder()
            .index_name(INSTANCE_INDEX)
            .key_schema(key(INSTANCE_ID, KeyType::Hash).map_err(build_failed)?)
            // The handler needs only the Machine's key: the index stays small.
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .map_err(build_failed)?;
        ddb.create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(PK, KeyType::Hash).map_err(build_failed)?)
            .key_schema(key(SK, KeyType::Range).map_err(build_failed)?)
            .attribute_definitions(attribute(PK).map_err(build_failed)?)
            .attribute_definitions(attribute(SK).map_err(build_failed)?)
            .attribute_definitions(attribute(INSTANCE_ID).map_err(build_failed)?)
            .global_secondary_indexes(index)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .map_err(build_failed)?,
            )
            .send()
            .await
            .map_err(call_failed(format!("creating table {table}")))?;
        info!(
            step = "provision",
            table, "created the table (stream NEW_AND_OLD_IMAGES, index instance-index)"
        );
    }
    for _ in 0..60 {
        let out = ddb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(call_failed(format!("describing table {table}")))?;
        if let Some(t) = out.table
            && t.table_status == Some(TableStatus::Active)
            && let Some(arn) = t.latest_stream_arn
        {
            return Ok(arn);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(ProvisionError::TableNotActive(table.to_string()))
}

fn build_failed(e: aws_sdk_dynamodb::error::BuildError) -> ProvisionError {
    ProvisionError::Call {
        action: "building a request".to_string(),
        detail: e.to_string(),
    }
}

async fn ensure_bus(clients: &Clients, bus: &str) -> Result<(), ProvisionError> {
    let eb = &clients.eventbridge;
    match eb.describe_event_bus().name(bus).send().await {
        Ok(_) => return Ok(()),
        Err(e) if classify(&e).code == "ResourceNotFoundException" => {}
        Err(e) => {
            return Err(ProvisionError::Call {
                action: format!("describing bus {bus}"),
                detail: classify(&e).to_string(),
            });
        }
    }
    eb.create_event_bus()
        .name(bus)
        .send()
        .await
        .map_err(|e| ProvisionError::Call {
            action: format!("creating bus {bus}"),
            detail: classify(&e).to_string(),
        })?;
    info!(step = "provision", bus, "created the event bus");
    Ok(())
}

async fn queue_arn(clients: &Clients, url: &str) -> Result<String, ProvisionError> {
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| ProvisionError::Call {
            action: format!("reading the ARN of {url}"),
            detail: classify(&e).to_string(),
        })?;
    out.attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| ProvisionError::Call {
            action: format!("reading the ARN of {url}"),
            detail: "no QueueArn attribute".to_string(),
        })
}

/// The queue if it exists, else creates it with `attributes`.
async fn queue_url(
    clients: &Clients,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Result<String, ProvisionError> {
    let sqs = &clients.sqs;
    match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => {
            if let Some(url) = out.queue_url {
                return Ok(url);
            }
        }
        Err(e) => {
            let f = classify(&e);
            if !f.code.contains("NonExistentQueue") && f.code != "QueueDoesNotExist" {
                return Err(ProvisionError::Call {
                    action: format!("looking up queue {name}"),
                    detail: f.to_string(),
                });
            }
        }
    }
    let mut create = sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        create = create.attributes(k, v);
    }
    let out = create.send().await.map_err(|e| ProvisionError::Call {
        action: format!("creating queue {name}"),
        detail: classify(&e).to_string(),
    })?;
    info!(step = "provision", queue = name, "created the queue");
    out.queue_url.ok_or_else(|| ProvisionError::Call {
        action: format!("creating queue {name}"),
        detail: "no QueueUrl in the answer".to_string(),
    })
}

/// The rule ARN EventBridge sends as `aws:SourceArn` for `reconciler`'s rule.
fn rule_arn(clients: &Clients, names: &Names, reconciler: Reconciler) -> String {
    format!(
        "arn:aws:events:{}:*:rule/{}{}",
        clients.region,
        match reconciler {
            Reconciler::InstanceEvents => String::new(),
            _ => format!("{}/", names.bus),
        },
        names.rule(reconciler.name())
    )
}

/// The dead-letter queue, and the work queue that redrives to it.
async fn ensure_queues(
    clients: &Clients,
    names: &Names,
    options: &QueueOptions,
) -> Result<(Queue, Queue), ProvisionError> {
    let dlq_url = queue_url(
        clients,
        &names.dead_letter_queue(),
        vec![(
            QueueAttributeName::MessageRetentionPeriod,
            "1209600".to_string(),
        )],
    )
    .await?;
    let dead_letter = Queue {
        arn: queue_arn(clients, &dlq_url).await?,
        url: dlq_url,
    };
    let redrive =
        json!({ "deadLetterTargetArn": dead_letter.arn, "maxReceiveCount": MAX_RECEIVE_COUNT });
    let url = queue_url(
        clients,
        &names.work_queue(),
        vec![
            (
                QueueAttributeName::VisibilityTimeout,
                options.visibility_timeout.as_secs().max(1).to_string(),
            ),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ],
    )
    .await?;
    let arn = queue_arn(clients, &url).await?;
    // EventBridge may send to the queue only from the reconcilers' rules.
    let rules: Vec<String> = Reconciler::ALL
        .into_iter()
        .map(|r| rule_arn(clients, names, r))
        .collect();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": arn,
            "Condition": { "ArnLike": { "aws:SourceArn": rules } },
        }],
    });
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(|e| ProvisionError::Call {
            action: format!("setting the policy of {url}"),
            detail: classify(&e).to_string(),
        })?;
    Ok((Queue { url, arn }, dead_letter))
}

async fn ensure_rule(
    clients: &Clients,
    names: &Names,
    reconciler: Reconciler,
    queue: &Queue,
) -> Result<(), ProvisionError> {
    let bus = rule_bus(reconciler, names);
    let rule = names.rule(reconciler.name());
    let eb = &clients.eventbridge;
    // PutRule and PutTargets are upserts: running them again changes nothing.
    eb.put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(rule_pattern(reconciler).to_string())
        .state(RuleState::Enabled)
        .description(format!("Capstan: events for {}", reconciler.name()))
        .send()
        .await
        .map_err(|e| ProvisionError::Call {
            action: format!("putting rule {rule} on bus {bus}"),
            detail: classify(&e).to_string(),
        })?;
    let wrapping = InputTransformer::builder()
        .input_template(reconciler.input_template())
        .build()
        .map_err(|e| ProvisionError::Call {
            action: "building an input transformer".to_string(),
            detail: e.to_string(),
        })?;
    let target = Target::builder()
        .id("queue")
        .arn(&queue.arn)
        .input_transformer(wrapping)
        .build()
        .map_err(|e| ProvisionError::Call {
            action: "building a target".to_string(),
            detail: e.to_string(),
        })?;
    eb.put_targets()
        .rule(&rule)
        .event_bus_name(&bus)
        .targets(target)
        .send()
        .await
        .map_err(|e| ProvisionError::Call {
            action: format!("pointing rule {rule} at the work queue"),
            detail: classify(&e).to_string(),
        })?;
    Ok(())
}
