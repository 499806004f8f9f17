//! The SQLite table keeps the Store port's contract across connections, as across
//! processes: conditional writes lose nothing, the stream has every change in order,
//! the instance index follows the items.

use std::collections::BTreeMap;
use std::path::PathBuf;

use capstan_local::SqliteStore;
use capstan_model::item::{AttrValue, INSTANCE_ID, Item, ItemKey, RV, version_of};
use capstan_runtime::{ChangeKind, Expect, Store, StoreError, Write};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capstan-local-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("state.db")
}

fn item(pk: &str, sk: &str, rv: u64, extra: &[(&str, &str)]) -> Item {
    let mut item: Item = BTreeMap::new();
    item.insert("pk".into(), AttrValue::S(pk.into()));
    item.insert("sk".into(), AttrValue::S(sk.into()));
    item.insert(RV.into(), AttrValue::N(rv.to_string()));
    for (k, v) in extra {
        item.insert((*k).into(), AttrValue::S((*v).into()));
    }
    item
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Reads the counter, writes it back one higher under its version; retries on conflict.
fn increment(store: &SqliteStore, key: &ItemKey) -> u32 {
    let mut conflicts = 0;
    loop {
        let items = block_on(store.query(&key.pk, Some(&key.sk))).expect("query");
        let current = items.first().expect("the counter");
        let rv = version_of(current);
        match block_on(store.put(item(&key.pk, &key.sk, rv + 1, &[]), Expect::Version(rv))) {
            Ok(()) => return conflicts,
            Err(StoreError::Conflict) => conflicts += 1,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn two_writers_at_once_lose_no_increment() {
    let path = temp("writers");
    let key = ItemKey {
        pk: "default#demo".into(),
        sk: "counter".into(),
    };
    let first = SqliteStore::open(&path).expect("open");
    block_on(first.put(item(&key.pk, &key.sk, 1, &[]), Expect::Absent)).expect("create");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (path, key) = (path.clone(), key.clone());
            std::thread::spawn(move || {
                // Its own connection, as another process has.
                let store = SqliteStore::open(&path).expect("open");
                (0..50).map(|_| increment(&store, &key)).sum::<u32>()
            })
        })
        .collect();
    let conflicts: u32 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    let items = block_on(first.query(&key.pk, None)).expect("query");
    assert_eq!(
        version_of(&items[0]),
        101,
        "{conflicts} conflicts along the way"
    );
    // One record per committed write, versions rising in stream order.
    let stream = first.stream_after(0, 1000).expect("stream");
    assert_eq!(stream.len(), 101);
    assert_eq!(stream[0].kind, ChangeKind::Insert);
    let versions: Vec<u64> = stream
        .iter()
        .filter_map(|r| r.new_image.as_ref().map(version_of))
        .collect();
    assert_eq!(versions, (1..=101).collect::<Vec<u64>>());
    assert!(stream.windows(2).all(|w| w[0].old_image.is_none()
        || w[1].old_image.as_ref().map(version_of) == w[0].new_image.as_ref().map(version_of)));
}

#[test]
fn a_failed_condition_changes_nothing_and_a_transaction_is_all_or_none() {
    let path = temp("conditions");
    let store = SqliteStore::open(&path).expect("open");
    let a = item("p", "a", 1, &[]);
    block_on(store.put(a.clone(), Expect::Absent)).expect("create");
    assert_eq!(
        block_on(store.put(a.clone(), Expect::Absent)),
        Err(StoreError::Conflict)
    );
    assert_eq!(
        block_on(store.put(item("p", "a", 3, &[]), Expect::Version(7))),
        Err(StoreError::Conflict)
    );
    let result = block_on(store.transact(vec![
        Write::Put {
            item: item("p", "b", 1, &[]),
            expect: Expect::Absent,
        },
        Write::Check {
            key: ItemKey {
                pk: "p".into(),
                sk: "a".into(),
            },
            expect: Expect::Version(9),
        },
    ]));
    assert_eq!(result, Err(StoreError::Conflict));
    assert_eq!(block_on(store.query("p", None)).expect("query"), vec![a]);
    assert_eq!(store.stream_after(0, 100).expect("stream").len(), 1);
    // Deleting under the right version works and is one Remove record.
    block_on(store.delete(
        &ItemKey {
            pk: "p".into(),
            sk: "a".into(),
        },
        Expect::Version(1),
    ))
    .expect("delete");
    let stream = store.stream_after(1, 100).expect("stream");
    assert_eq!(stream.len(), 1);
    assert_eq!(stream[0].kind, ChangeKind::Remove);
    assert!(stream[0].old_image.is_some() && stream[0].new_image.is_none());
}

#[test]
fn the_instance_index_follows_the_items_and_scans_page() {
    let path = temp("index");
    let store = SqliteStore::open(&path).expect("open");
    for n in 0..150 {
        let sk = format!("Machine#m{n:03}#status");
        block_on(store.put(
            item(
                "default#demo",
                &sk,
                1,
                &[(INSTANCE_ID, &format!("i-{n:03}"))],
            ),
            Expect::Any,
        ))
        .expect("put");
    }
    let found = block_on(store.find_by_instance("i-042")).expect("find");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].sk, "Machine#m042#status");
    block_on(store.put(
        item("default#demo", "Machine#m042#status", 2, &[]),
        Expect::Any,
    ))
    .expect("put");
    assert!(
        block_on(store.find_by_instance("i-042"))
            .expect("find")
            .is_empty()
    );
    assert_eq!(block_on(store.scan("Machine#")).expect("scan").len(), 150);
    // Another connection sees the same, at once.
    let other = SqliteStore::open(&path).expect("open");
    assert_eq!(
        block_on(other.query("default#demo", Some("Machine#m1")))
            .expect("query")
            .len(),
        50
    );
}
