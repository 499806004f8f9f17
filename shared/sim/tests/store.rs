mod common;

use std::time::Duration;

use capstan_model::item::{AttrValue, INSTANCE_ID, Item, ItemKey, PK, RV, SK, item_key};
use capstan_runtime::{ChangeKind, Expect, Store, StoreError};
use capstan_sim::MemStore;
use common::{block_on, clock};

fn item(pk: &str, sk: &str, rv: u64, extra: &[(&str, &str)]) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), AttrValue::S(pk.into()));
    item.insert(SK.into(), AttrValue::S(sk.into()));
    item.insert(RV.into(), AttrValue::N(rv.to_string()));
    for (k, v) in extra {
        item.insert((*k).into(), AttrValue::S((*v).into()));
    }
    item
}

fn key(pk: &str, sk: &str) -> ItemKey {
    ItemKey {
        pk: pk.into(),
        sk: sk.into(),
    }
}

fn store() -> MemStore {
    let (_, clock) = clock();
    MemStore::new(clock)
}

#[test]
fn create_if_absent_conflicts_when_the_item_exists() {
    let s = store();
    block_on(async {
        s.put(
            item("ns#c", "Machine#a#spec", 1, &[("v", "first")]),
            Expect::Absent,
        )
        .await
        .unwrap();
        let again = s
            .put(
                item("ns#c", "Machine#a#spec", 1, &[("v", "second")]),
                Expect::Absent,
            )
            .await;
        assert_eq!(again, Err(StoreError::Conflict));
        let stored = s.query("ns#c", None).await.unwrap();
        assert_eq!(
            stored,
            vec![item("ns#c", "Machine#a#spec", 1, &[("v", "first")])]
        );
    });
    assert_eq!(s.take_stream().len(), 1);
    assert_eq!((s.writes(), s.conflicts()), (1, 1));
}

#[test]
fn stale_version_conflicts_and_leaves_item_and_stream_untouched() {
    let s = store();
    block_on(async {
        s.put(item("ns#c", "Machine#a#status", 3, &[]), Expect::Absent)
            .await
            .unwrap();
    });
    s.take_stream();
    block_on(async {
        let stale = s
            .put(
                item("ns#c", "Machine#a#status", 3, &[("phase", "Running")]),
                Expect::Version(2),
            )
            .await;
        assert_eq!(stale, Err(StoreError::Conflict));
        let stale_delete = s
            .delete(&key("ns#c", "Machine#a#status"), Expect::Version(2))
            .await;
        assert_eq!(stale_delete, Err(StoreError::Conflict));
        s.put(
            item("ns#c", "Machine#a#status", 4, &[("phase", "Running")]),
            Expect::Version(3),
        )
        .await
        .unwrap();
    });
    let stream = s.take_stream();
    assert_eq!(stream.len(), 1, "only the write under the current version");
    assert_eq!(stream[0].kind, ChangeKind::Modify);
    assert_eq!(
        s.items(),
        vec![item("ns#c", "Machine#a#status", 4, &[("phase", "Running")])]
    );
    assert_eq!(s.conflicts(), 2);
}

#[test]
fn an_item_without_rv_is_version_zero() {
    let s = store();
    let mut raw = item("ns#c", "Machine#a#spec", 0, &[]);
    raw.remove(RV);
    block_on(async {
        s.put(raw.clone(), Expect::Any).await.unwrap();
        assert_eq!(
            s.put(raw.clone(), Expect::Version(1)).await,
            Err(StoreError::Conflict)
        );
        s.put(item("ns#c", "Machine#a#spec", 1, &[]), Expect::Version(0))
            .await
            .unwrap();
    });
}

#[test]
fn stream_reports_insert_modify_remove_in_order_with_images() {
    let s = store();
    let v1 = item("ns#c", "Machine#a#spec", 1, &[]);
    let v2 = item("ns#c", "Machine#a#spec", 2, &[("x", "y")]);
    block_on(async {
        s.put(v1.clone(), Expect::Absent).await.unwrap();
        s.put(v2.clone(), Expect::Version(1)).await.unwrap();
        // Like DynamoDB, writing the same item again is still a MODIFY.
        s.put(v2.clone(), Expect::Version(2)).await.unwrap();
        s.delete(&key("ns#c", "Machine#a#spec"), Expect::Version(2))
            .await
            .unwrap();
        // Deleting what is not there succeeds and emits nothing.
        s.delete(&key("ns#c", "Machine#a#spec"), Expect::Any)
            .await
            .unwrap();
    });
    let stream = s.take_stream();
    let kinds: Vec<_> = stream.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Insert,
            ChangeKind::Modify,
            ChangeKind::Modify,
            ChangeKind::Remove
        ]
    );
    assert!(stream.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(
        (&stream[0].old_image, &stream[0].new_image),
        (&None, &Some(v1.clone()))
    );
    assert_eq!(
        (&stream[1].old_image, &stream[1].new_image),
        (&Some(v1), &Some(v2.clone()))
    );
    assert_eq!(
        (&stream[3].old_image, &stream[3].new_image),
        (&Some(v2), &None)
    );
    assert_eq!(stream[3].key, key("ns#c", "Machine#a#spec"));
    assert!(s.take_stream().is_empty(), "take_stream drains");
    assert!(s.is_empty());
    assert_eq!(s.writes(), 5);
}

#[test]
fn delete_under_a_condition_needs_the_item() {
    let s = store();
    block_on(async {
        assert_eq!(
            s.delete(&key("ns#c", "Machine#a#spec"), Expect::Version(0))
                .await,
            Err(StoreError::Conflict)
        );
        s.delete(&key("ns#c", "Machine#a#spec"), Expect::Absent)
            .await
            .unwrap();
    });
    assert!(s.take_stream().is_empty());
}

#[test]
fn query_reads_one_partition_in_sort_key_order_with_a_prefix() {
    let s = store();
    block_on(async {
        for (pk, sk) in [
            ("ns#c", "Machine#b#spec"),
            ("ns#c", "MachineSet#s#spec"),
            ("ns#c", "Machine#a#status"),
            ("ns#c", "Machine#a#spec"),
            ("ns#d", "Machine#a#spec"),
            ("ns#b", "Machine#a#spec"),
        ] {
            s.put(item(pk, sk, 1, &[]), Expect::Absent).await.unwrap();
        }
        let sks = |items: Vec<Item>| -> Vec<String> {
            items
                .iter()
                .map(|i| match &i[SK] {
                    AttrValue::S(s) => s.clone(),
                    other => panic!("sk {other:?}"),
                })
                .collect()
        };
        assert_eq!(
            sks(s.query("ns#c", None).await.unwrap()),
            [
                "Machine#a#spec",
                "Machine#a#status",
                "Machine#b#spec",
                "MachineSet#s#spec"
            ]
        );
        assert_eq!(
            sks(s.query("ns#c", Some("Machine#")).await.unwrap()),
            ["Machine#a#spec", "Machine#a#status", "Machine#b#spec"]
        );
        assert_eq!(
            sks(s.query("ns#c", Some("Machine#a#")).await.unwrap()),
            ["Machine#a#spec", "Machine#a#status"]
        );
        assert!(s.query("ns#x", None).await.unwrap().is_empty());
        assert_eq!(s.scan("Machine#a#spec").await.unwrap().len(), 3);
    });
    assert_eq!(s.len(), 6);
}

#[test]
fn instance_index_is_eventually_consistent() {
    let (clock, shared) = clock();
    let s = MemStore::new(shared).with_index_lag(Duration::from_millis(500));
    let observed = item(
        "ns#c",
        "Machine#a#status",
        1,
        &[(INSTANCE_ID, "i-0123456789abcdef0")],
    );
    block_on(async {
        s.put(observed, Expect::Absent).await.unwrap();
        assert_eq!(s.find_by_instance("i-0123456789abcdef0").await, Ok(vec![]));
        clock.advance(Duration::from_millis(499));
        assert_eq!(s.find_by_instance("i-0123456789abcdef0").await, Ok(vec![]));
        clock.advance(Duration::from_millis(1));
        assert_eq!(
            s.find_by_instance("i-0123456789abcdef0").await,
            Ok(vec![key("ns#c", "Machine#a#status")])
        );
        // Removing the attribute leaves the index entry for the lag, too.
        s.put(item("ns#c", "Machine#a#status", 2, &[]), Expect::Version(1))
            .await
            .unwrap();
        assert!(
            !s.find_by_instance("i-0123456789abcdef0")
                .await
                .unwrap()
                .is_empty()
        );
        clock.advance(Duration::from_millis(500));
        assert_eq!(s.find_by_instance("i-0123456789abcdef0").await, Ok(vec![]));
    });
}

#[test]
fn instance_index_without_lag_is_immediate_and_sparse() {
    let s = store();
    block_on(async {
        s.put(item("ns#c", "Machine#a#spec", 1, &[]), Expect::Absent)
            .await
            .unwrap();
        s.put(
            item(
                "ns#c",
                "Machine#a#status",
                1,
                &[(INSTANCE_ID, "i-0aaaaaaaaaaaaaaaa")],
            ),
            Expect::Absent,
        )
        .await
        .unwrap();
        assert_eq!(
            s.find_by_instance("i-0aaaaaaaaaaaaaaaa").await,
            Ok(vec![key("ns#c", "Machine#a#status")])
        );
        s.delete(&key("ns#c", "Machine#a#status"), Expect::Any)
            .await
            .unwrap();
        assert_eq!(s.find_by_instance("i-0aaaaaaaaaaaaaaaa").await, Ok(vec![]));
    });
}

#[test]
fn fail_next_fails_one_call_without_effect() {
    let s = store();
    s.fail_next(StoreError::Throttled(
        "ProvisionedThroughputExceededException".into(),
    ));
    block_on(async {
        let err = s
            .put(item("ns#c", "Machine#a#spec", 1, &[]), Expect::Absent)
            .await;
        assert!(err.as_ref().is_err_and(StoreError::is_retryable));
        assert!(s.is_empty());
        s.put(item("ns#c", "Machine#a#spec", 1, &[]), Expect::Absent)
            .await
            .unwrap();
    });
    assert_eq!(s.take_stream().len(), 1);
}

#[test]
fn fail_next_after_effect_writes_then_reports_the_error() {
    let s = store();
    s.fail_next_after_effect(StoreError::Unavailable("timeout".into()));
    block_on(async {
        let err = s
            .put(item("ns#c", "Machine#a#spec", 1, &[]), Expect::Absent)
            .await;
        assert_eq!(err, Err(StoreError::Unavailable("timeout".into())));
        // The retry finds the write already done.
        let retry = s
            .put(item("ns#c", "Machine#a#spec", 1, &[]), Expect::Absent)
            .await;
        assert_eq!(retry, Err(StoreError::Conflict));
    });
    assert_eq!(s.len(), 1);
}

#[test]
fn items_dynamodb_would_refuse_are_rejected() {
    let s = store();
    block_on(async {
        let mut no_sk = item("ns#c", "x", 1, &[]);
        no_sk.remove(SK);
        assert!(matches!(
            s.put(no_sk, Expect::Any).await,
            Err(StoreError::Rejected(_))
        ));
        let mut numeric_index_key = item("ns#c", "Machine#a#status", 1, &[]);
        numeric_index_key.insert(INSTANCE_ID.into(), AttrValue::N("7".into()));
        assert!(matches!(
            s.put(numeric_index_key, Expect::Any).await,
            Err(StoreError::Rejected(_))
        ));
        let mut bad_number = item("ns#c", "Machine#a#status", 1, &[]);
        bad_number.insert("generation".into(), AttrValue::N("seven".into()));
        assert!(matches!(
            s.put(bad_number, Expect::Any).await,
            Err(StoreError::Rejected(_))
        ));
        let huge = item(
            "ns#c",
            "Machine#a#status",
            1,
            &[("blob", &"x".repeat(400 * 1024))],
        );
        assert!(matches!(
            s.put(huge, Expect::Any).await,
            Err(StoreError::Rejected(_))
        ));
    });
    assert!(s.is_empty());
    assert!(s.take_stream().is_empty());
}

/// A Scan answers in pages; a partition may straddle two; following `next` reads every
/// matching item once, in key order.
#[test]
fn scans_page_through_every_item_once() {
    block_on(async {
        let (_, clock) = clock();
        let s = MemStore::new(clock).with_page_size(3);
        for (pk, sk) in [
            ("a#c", "Machine#1#spec"),
            ("a#c", "Machine#1#status"),
            ("a#c", "Machine#2#spec"),
            ("a#c", "Machine#2#status"),
            ("b#c", "Machine#3#spec"),
            ("b#c", "Cluster#c#spec"),
            ("c#c", "Machine#4#spec"),
        ] {
            s.put(item(pk, sk, 1, &[]), Expect::Absent).await.unwrap();
        }
        let first = s.scan_page("Machine#", None).await.unwrap();
        assert_eq!(first.items.len(), 3);
        assert!(first.next.is_some());
        let mut seen = Vec::new();
        let mut start = None;
        loop {
            let page = s.scan_page("Machine#", start).await.unwrap();
            assert!(page.items.len() <= 3);
            seen.extend(page.items.iter().filter_map(item_key));
            match page.next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        assert_eq!(seen.len(), 6);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert_eq!(s.scan("Machine#").await.unwrap().len(), 6);
    });
}
