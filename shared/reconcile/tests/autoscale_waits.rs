//! The wait memory of an autoscaled pool (`settle_waiting`): which pods a scale-up
//! waits on, which leave once scheduled, and the wait each reports, once.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_model::Timestamp;
use capstan_reconcile::autoscale::{Placement, PodRef};
use capstan_reconcile::autoscale_pools::{PodTimes, WAITING_PODS_CAP, settle_waiting};
use proptest::prelude::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + seconds).unwrap()
}

fn reference(i: usize) -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: format!("web-{i}"),
    }
}

fn uid(i: usize) -> String {
    format!("uid-{i}")
}

fn pending(i: usize, created: Option<i64>) -> PodTimes {
    PodTimes {
        pod: reference(i),
        uid: uid(i),
        created: created.map(at),
        bound: false,
        scheduled_at: None,
    }
}

fn scheduled(p: PodTimes, at_s: Option<i64>) -> PodTimes {
    PodTimes {
        bound: true,
        scheduled_at: at_s.map(at),
        ..p
    }
}

fn by_uid(pods: impl IntoIterator<Item = PodTimes>) -> BTreeMap<String, PodTimes> {
    pods.into_iter().map(|p| (p.uid.clone(), p)).collect()
}

fn on_pool(is: impl IntoIterator<Item = usize>, pool: &str) -> BTreeMap<PodRef, Placement> {
    is.into_iter()
        .map(|i| (reference(i), Placement::Pool(pool.into())))
        .collect()
}

#[test]
fn a_scale_up_remembers_the_pods_packed_onto_its_pool_and_reports_each_once_scheduled() {
    let placements: BTreeMap<PodRef, Placement> = on_pool([0, 1], "workers")
        .into_iter()
        .chain([
            (reference(2), Placement::Node("n1".into())),
            (reference(3), Placement::Pool("gpus".into())),
        ])
        .collect();
    let pods = by_uid((0..4).map(|i| pending(i, Some(0))));
    let (waiting, waited) =
        settle_waiting(&BTreeMap::new(), "workers", true, &placements, &pods, at(5));
    assert!(waited.is_empty());
    assert_eq!(
        waiting,
        BTreeMap::from([(uid(0), at(5)), (uid(1), at(5))]),
        "only this pool's pods, first seen now"
    );

    // web-0 bound 70 s after it was created; web-1 still pending: one value, for web-0.
    let pods = by_uid([
        scheduled(pending(0, Some(0)), Some(70)),
        pending(1, Some(0)),
    ]);
    let (after, waited) =
        settle_waiting(&waiting, "workers", false, &BTreeMap::new(), &pods, at(80));
    assert_eq!(after, BTreeMap::from([(uid(1), at(5))]));
    assert_eq!(waited.len(), 1);
    assert_eq!(waited[0].pod, reference(0));
    assert_eq!(waited[0].waited, Duration::from_secs(70));

    // The next pass, nothing new: the memory is as it was, nothing reported again.
    let (again, waited) = settle_waiting(&after, "workers", false, &BTreeMap::new(), &pods, at(90));
    assert_eq!(again, after);
    assert!(waited.is_empty());
}

#[test]
fn a_pod_gone_or_bound_at_an_unknown_time_leaves_uncounted_and_a_missing_creation_counts_from_first_seen()
 {
    let remembered = BTreeMap::from([(uid(0), at(10)), (uid(1), at(10)), (uid(2), at(10))]);
    let pods = by_uid([
        scheduled(pending(1, None), None),
        scheduled(pending(2, None), Some(40)),
    ]);
    let (waiting, waited) = settle_waiting(
        &remembered,
        "workers",
        false,
        &BTreeMap::new(),
        &pods,
        at(50),
    );
    assert!(waiting.is_empty());
    assert_eq!(waited.len(), 1);
    assert_eq!(waited[0].pod, reference(2));
    assert_eq!(waited[0].waited, Duration::from_secs(30), "from first seen");
}

#[test]
fn the_memory_is_capped() {
    let n = WAITING_PODS_CAP + 20;
    let pods = by_uid((0..n).map(|i| pending(i, Some(0))));
    let (waiting, _) = settle_waiting(
        &BTreeMap::new(),
        "workers",
        true,
        &on_pool(0..n, "workers"),
        &pods,
        at(1),
    );
    assert_eq!(waiting.len(), WAITING_PODS_CAP);
}

/// One pod's state at one pass: absent, pending, or bound at a time (or unknown).
#[derive(Clone, Debug)]
enum State {
    Gone,
    Pending,
    Bound(Option<i64>),
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Gone),
        Just(State::Pending),
        proptest::option::of(0i64..600).prop_map(State::Bound),
    ]
}

proptest! {
    /// Over passes in which pods come and go, get bound (never unbound), and the pool
    /// sometimes scales up: each pod is reported at most once, only once bound, with a
    /// wait of its bind time less its creation; the memory never outgrows its cap;
    /// a pass that scales nothing and sees no remembered pod change leaves it as it was.
    #[test]
    fn each_pod_is_reported_at_most_once_with_its_wait(
        passes in proptest::collection::vec(
            (proptest::collection::vec(state(), 8), any::<bool>()),
            1..12,
        ),
    ) {
        let mut memory: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut reported: BTreeMap<PodRef, Duration> = BTreeMap::new();
        let mut bound_at: BTreeMap<usize, Option<i64>> = BTreeMap::new();
        for (n, (states, scale_up)) in passes.iter().enumerate() {
            let now = at(1000 + n as i64 * 10);
            let mut pods = Vec::new();
            for (i, s) in states.iter().enumerate() {
                // Bound stays bound, at the time it was first bound.
                let s = match (bound_at.get(&i), s) {
                    (Some(_), State::Gone) => State::Gone,
                    (Some(t), _) => State::Bound(*t),
                    (None, s) => s.clone(),
                };
                match s {
                    State::Gone => {}
                    State::Pending => pods.push(pending(i, Some(0))),
                    State::Bound(t) => {
                        bound_at.entry(i).or_insert(t);
                        pods.push(scheduled(pending(i, Some(0)), t));
                    }
                }
            }
            let pods = by_uid(pods);
            let placements = on_pool(0..8, "workers");
            let (next, waited) =
                settle_waiting(&memory, "workers", *scale_up, &placements, &pods, now);
            prop_assert!(next.len() <= WAITING_PODS_CAP);
            for w in &waited {
                prop_assert!(reported.insert(w.pod.clone(), w.waited).is_none(), "{} twice", w.pod);
                let i: usize = w.pod.name.trim_start_matches("web-").parse().unwrap();
                prop_assert!(memory.contains_key(&uid(i)), "reported but not remembered");
                let t = bound_at[&i].unwrap();
                prop_assert_eq!(w.waited, Duration::from_secs(t as u64));
            }
            for u in next.keys() {
                prop_assert!(pods.get(u).is_some_and(|p| !p.bound), "{u} kept but not pending");
            }
            if !scale_up {
                let unchanged = memory.keys().all(|u| pods.get(u).is_some_and(|p| !p.bound));
                if unchanged {
                    prop_assert_eq!(&next, &memory);
                }
                prop_assert!(next.keys().all(|u| memory.contains_key(u)), "only a scale-up adds");
            }
            memory = next;
        }
    }
}
