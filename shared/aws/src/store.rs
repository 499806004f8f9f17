//! The Store port on one DynamoDB table (layout: `capstan_model::item`).
//!
//! Contract, on top of the port's:
//! - Reads on the base table are strongly consistent (`ConsistentRead`); the instance
//!   index is a GSI and eventually consistent, as the port allows.
//! - Every write carries a condition: `Absent` is `attribute_not_exists(pk)`;
//!   `Version(n)` is `attribute_exists(pk) AND rv = n` (for n = 0 also an item written
//!   without `rv`, which is how a raw PutItem looks).
//! - `ConditionalCheckFailedException` is `StoreError::Conflict` (re-read and decide
//!   again). Throttling is `Throttled`, 5xx and transport failures `Unavailable`
//!   (both retryable, after the SDK's own retries); any other service error is
//!   `Rejected` (final).
//! - A transaction is one TransactWriteItems. Cancelled because a condition failed
//!   (`ConditionalCheckFailed`) or another transaction held an item
//!   (`TransactionConflict`), it is `Conflict`; cancelled for throttling, `Throttled`.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem};
use capstan_model::item::{INSTANCE_ID, INSTANCE_INDEX, Item, ItemKey, PK, RV, SK, item_key};
use capstan_runtime::ports::{Expect, Store, StoreError, Write};

use crate::convert::{item_from_sdk, item_to_sdk};
use crate::error::{Class, classify};

/// The one table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Reads every page of a Query or Scan: `page(start)` fetches one page from `start`.
    async fn all_pages<F, Fut>(&self, mut page: F) -> Result<Vec<Item>, StoreError>
    where
        F: FnMut(Option<HashMap<String, AttributeValue>>) -> Fut,
        Fut: std::future::Future<
                Output = Result<
                    (
                        Vec<HashMap<String, AttributeValue>>,
                        Option<HashMap<String, AttributeValue>>,
                    ),
                    StoreError,
                >,
            >,
    {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let (page_items, last) = page(start).await?;
            items.extend(page_items.iter().map(item_from_sdk));
            match last {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(items),
            }
        }
    }
}

/// The condition expression and its values for `expect`.
fn condition(expect: Expect) -> Option<(String, HashMap<String, AttributeValue>)> {
    match expect {
        Expect::Any => None,
        Expect::Absent => Some((format!("attribute_not_exists({PK})"), HashMap::new())),
        Expect::Version(n) => {
            let values = HashMap::from([(":rv".to_string(), AttributeValue::N(n.to_string()))]);
            let expression = if n == 0 {
                format!("attribute_exists({PK}) AND (attribute_not_exists({RV}) OR {RV} = :rv)")
            } else {
                format!("attribute_exists({PK}) AND {RV} = :rv")
            };
            Some((expression, values))
        }
    }
}

fn store_error<E>(err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let failure = classify(&err);
    match failure.class {
        _ if failure.code == "ConditionalCheckFailedException" => StoreError::Conflict,
        Class::Throttled => StoreError::Throttled(failure.to_string()),
        Class::Transient => StoreError::Unavailable(failure.to_string()),
        Class::Service => StoreError::Rejected(failure.to_string()),
    }
}

fn key_of(key: &ItemKey) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.pk.clone())),
        (SK.to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

impl Store for DynamoStore {
    async fn query(&self, pk: &str, sk_prefix: Option<&str>) -> Result<Vec<Item>, StoreError> {
        self.all_pages(|start| {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
                .set_exclusive_start_key(start);
            request = match sk_prefix {
                Some(prefix) => request
                    .key_condition_expression(format!("{PK} = :pk AND begins_with({SK}, :prefix)"))
                    .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_string())),
                None => request.key_condition_expression(format!("{PK} = :pk")),
            };
            async move {
                let out = request.send().await.map_err(store_error)?;
                Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
            }
        })
        .await
    }

    async fn put(&self, item: Item, expect: Expect) -> Result<(), StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_to_sdk(&item)));
        if let Some((expression, values)) = condition(expect) {
            request = request
                .condition_expression(expression)
                .set_expression_attribute_values((!values.is_empty()).then_some(values));
        }
        request.send().await.map_err(store_error)?;
        Ok(())
    }

    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<(), StoreError> {
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_of(key)));
        if let Some((expression, values)) = condition(expect) {
            request = request
                .condition_expression(expression)
                .set_expression_attribute_values((!values.is_empty()).then_some(values));
        }
        request.send().await.map_err(store_error)?;
        Ok(())
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(writes.len());
        for write in writes {
            let built = match write {
                Write::Put { item, expect } => {
                    let (expression, values) = condition(expect).unzip();
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&self.table)
                                .set_item(Some(item_to_sdk(&item)))
                                .set_condition_expression(expression)
                                .set_expression_attribute_values(values.filter(|v| !v.is_empty()))
                                .build()
                                .map_err(|e| StoreError::Rejected(e.to_string()))?,
                        )
                        .build()
                }
                Write::Delete { key, expect } => {
                    let (expression, values) = condition(expect).unzip();
                    TransactWriteItem::builder()
                        .delete(
                            Delete::builder()
                                .table_name(&self.table)
                                .set_key(Some(key_of(&key)))
                                .set_condition_expression(expression)
                                .set_expression_attribute_values(values.filter(|v| !v.is_empty()))
                                .build()
                                .map_err(|e| StoreError::Rejected(e.to_string()))?,
                        )
                        .build()
                }
                Write::Check { key, expect } => {
                    // A ConditionCheck needs a condition; an unconditional one checks nothing.
                    let Some((expression, values)) = condition(expect) else {
                        continue;
                    };
                    TransactWriteItem::builder()
                        .condition_check(
                            ConditionCheck::builder()
                                .table_name(&self.table)
                                .set_key(Some(key_of(&key)))
                                .condition_expression(expression)
                                .set_expression_attribute_values(
                                    Some(values).filter(|v| !v.is_empty()),
                                )
                                .build()
                                .map_err(|e| StoreError::Rejected(e.to_string()))?,
                        )
                        .build()
                }
            };
            items.push(built);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    err.as_service_error()
                {
                    let codes: Vec<&str> = cancelled
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code())
                        .collect();
                    return Err(cancellation_error(&codes, &err.to_string()));
                }
                Err(store_error(err))
            }
        }
    }

    async fn find_by_instance(&self, instance_id: &str) -> Result<Vec<ItemKey>, StoreError> {
        let items = self
            .all_pages(|start| {
                let request = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(INSTANCE_INDEX)
                    .key_condition_expression(format!("{INSTANCE_ID} = :id"))
                    .expression_attribute_values(":id", AttributeValue::S(instance_id.to_string()))
                    .set_exclusive_start_key(start);
                async move {
                    let out = request.send().await.map_err(store_error)?;
                    Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
                }
            })
            .await?;
        Ok(items.iter().filter_map(item_key).collect())
    }

    async fn scan(&self, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.all_pages(|start| {
            let mut request = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start);
            // begins_with on an empty string is a validation error in DynamoDB.
            if !sk_prefix.is_empty() {
                request = request
                    .filter_expression(format!("begins_with({SK}, :prefix)"))
                    .expression_attribute_values(
                        ":prefix",
                        AttributeValue::S(sk_prefix.to_string()),
                    );
            }
            async move {
                let out = request.send().await.map_err(store_error)?;
                Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
            }
        })
        .await
    }
}

/// A cancelled transaction's error, from the reasons DynamoDB gives per write
/// (`None` for the writes that were fine).
fn cancellation_error(codes: &[&str], message: &str) -> StoreError {
    if codes
        .iter()
        .any(|c| matches!(*c, "ConditionalCheckFailed" | "TransactionConflict"))
    {
        StoreError::Conflict
    } else if codes
        .iter()
        .any(|c| matches!(*c, "ThrottlingError" | "ProvisionedThroughputExceeded"))
    {
        StoreError::Throttled(message.to_string())
    } else {
        StoreError::Rejected(format!(
            "transaction cancelled ({}): {message}",
            codes.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_transaction_is_a_conflict_when_a_condition_failed() {
        assert_eq!(
            cancellation_error(&["None", "ConditionalCheckFailed"], "x"),
            StoreError::Conflict
        );
        assert_eq!(
            cancellation_error(&["TransactionConflict"], "x"),
            StoreError::Conflict
        );
        assert!(matches!(
            cancellation_error(&["ThrottlingError"], "x"),
            StoreError::Throttled(_)
        ));
        assert!(matches!(
            cancellation_error(&["ValidationError"], "x"),
            StoreError::Rejected(_)
        ));
    }

    #[test]
    fn version_zero_also_matches_an_item_a_raw_writer_left_without_rv() {
        let (expression, values) = condition(Expect::Version(0)).unwrap();
        assert!(
            expression.contains("attribute_not_exists(rv)"),
            "{expression}"
        );
        assert_eq!(values[":rv"], AttributeValue::N("0".into()));
        let (expression, _) = condition(Expect::Version(4)).unwrap();
        assert_eq!(expression, "attribute_exists(pk) AND rv = :rv");
        assert_eq!(
            condition(Expect::Absent).unwrap().0,
            "attribute_not_exists(pk)"
        );
        assert!(condition(Expect::Any).is_none());
    }
}
