//! One conformance suite for every store backend. Each check takes a factory
//! of independent clients (replicas) of one shared store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use relay_core::RunEvent;
use relay_core::accumulator::{Accumulator, RunSummary};
use relay_core::message::{MessageAction, MessageIds};
use relay_core::store::{Claim, SharedStore};

pub type Factory = Arc<dyn Fn() -> futures::future::BoxFuture<'static, SharedStore> + Send + Sync>;

const LONG: Duration = Duration::from_secs(60);

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Polls `f` until it holds, for at most `limit` (waiting on time-based
/// expiry needs real time to pass; the loop ends as soon as it has).
async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn claim_done_release(s: SharedStore) {
    let k = unique("cycle");
    assert_eq!(s.claim(&k, "a", LONG).await.unwrap(), Claim::Acquired);
    assert_eq!(s.claim(&k, "b", LONG).await.unwrap(), Claim::InProgress);
    assert!(
        !s.release(&k, "b").await.unwrap(),
        "only the owner releases"
    );
    assert!(s.release(&k, "a").await.unwrap());
    assert_eq!(s.claim(&k, "b", LONG).await.unwrap(), Claim::Acquired);
    assert!(
        !s.complete(&k, "a", LONG).await.unwrap(),
        "only the owner completes"
    );
    assert!(s.complete(&k, "b", LONG).await.unwrap());
    assert_eq!(s.claim(&k, "c", LONG).await.unwrap(), Claim::Done);
    assert!(s.is_done(&k).await.unwrap());
    assert!(!s.release(&k, "b").await.unwrap(), "done is not released");
    let m = unique("mark");
    assert!(!s.is_done(&m).await.unwrap());
    s.mark_done(&m, LONG).await.unwrap();
    assert!(s.is_done(&m).await.unwrap());
    s.ping().await.unwrap();
}

pub async fn lease_and_ttl_expire(s: SharedStore) {
    let k = unique("lease");
    assert_eq!(
        s.claim(&k, "a", Duration::from_millis(300)).await.unwrap(),
        Claim::Acquired
    );
    assert_eq!(s.claim(&k, "b", LONG).await.unwrap(), Claim::InProgress);
    assert!(
        eventually(Duration::from_secs(10), async || s
            .claim(&k, "b", LONG)
            .await
            .unwrap()
            == Claim::Acquired)
        .await,
        "an expired lease frees the key"
    );
    assert!(
        !s.complete(&k, "a", LONG).await.unwrap(),
        "a's lease ran out"
    );
    let d = unique("ttl");
    s.mark_done(&d, Duration::from_millis(300)).await.unwrap();
    assert!(s.is_done(&d).await.unwrap());
    assert!(
        eventually(Duration::from_secs(10), async || !s
            .is_done(&d)
            .await
            .unwrap())
        .await,
        "done expires"
    );
    let v = unique("vttl");
    s.put_if_version(&v, b"x", None, Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || s
            .get(&v)
            .await
            .unwrap()
            .is_none())
        .await,
        "records expire"
    );
    assert_eq!(
        s.put_if_version(&v, b"y", None, LONG).await.unwrap(),
        Some(1),
        "an expired record is absent"
    );
}

pub async fn versioned_records(s: SharedStore) {
    let k = unique("rec");
    assert_eq!(s.get(&k).await.unwrap(), None);
    assert_eq!(
        s.put_if_version(&k, b"one", None, LONG).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        s.put_if_version(&k, b"two", None, LONG).await.unwrap(),
        None,
        "not absent"
    );
    assert_eq!(
        s.put_if_version(&k, b"two", Some(1), LONG).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        s.put_if_version(&k, b"stale", Some(1), LONG).await.unwrap(),
        None,
        "lost race"
    );
    let got = s.get(&k).await.unwrap().unwrap();
    assert_eq!((got.version, got.value.as_slice()), (2, b"two".as_slice()));
}

pub async fn concurrent_claims_have_one_winner(replicas: Factory) {
    let k = unique("race");
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = replicas().await;
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            store.claim(&k, &format!("o{i}"), LONG).await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() == Claim::Acquired {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

/// Events of one PipelineRun, in the order a sender delivered them.
pub fn run_events(scenario: &str) -> Vec<RunEvent> {
    let sc = crate::fixtures::Scenario::load(&crate::fixtures::dir().join(scenario));
    sc.files
        .iter()
        .filter_map(|f| {
            let mut headers = axum::http::HeaderMap::new();
            for (k, v) in f.send_headers() {
                headers.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                );
            }
            let accepted = relay_core::ingress::parse_request(&headers, f.body_bytes().into())
                .and_then(relay_core::ingress::decode)
                .ok()?;
            match accepted {
                relay_core::ingress::Accepted::Run { event, .. } => Some(*event),
                _ => None,
            }
        })
        .collect()
}

/// Gives every event a run uid of its own, so several checks can share a store.
fn reuid(events: &[RunEvent], tag: &str) -> Vec<RunEvent> {
    events
        .iter()
        .cloned()
        .map(|mut e| {
            if e.kind == "PipelineRun" {
                e.uid = format!("{}-{tag}", e.uid);
            } else if let Some(p) = e.pipeline_run.as_mut() {
                p.uid = p.uid.as_ref().map(|u| format!("{u}-{tag}"));
            }
            e
        })
        .collect()
}

async fn fold(acc: &Accumulator, events: &[RunEvent]) -> RunSummary {
    let mut last = None;
    for e in events {
        if let Some(s) = acc.record(e).await.unwrap() {
            last = Some(s);
        }
    }
    let uid = last.unwrap().uid;
    acc.get(&uid).await.unwrap().unwrap()
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

/// Every order of five events of one run (120 orders), then seeded shuffles
/// of the whole run with duplicates: the summary is always the same.
pub async fn accumulator_converges_in_every_order(s: SharedStore) {
    let acc = Accumulator::new(s, LONG);
    let events = run_events("tekton-pipelinerun-failure");
    let in_order = fold(&acc, &reuid(&events, &unique("ref"))).await;
    assert_eq!(
        in_order.run.as_ref().unwrap().state,
        relay_core::RunState::Failed
    );
    assert_eq!(
        in_order.tasks["unit-tests"].state,
        relay_core::RunState::Failed
    );
    assert_eq!(
        in_order.tasks["fetch-source"].state,
        relay_core::RunState::Succeeded
    );
    assert_eq!(
        in_order.pipeline_tasks,
        ["fetch-source", "unit-tests", "build-image"]
    );
    assert!(in_order.skipped_tasks.contains("build-image"));

    let pick: Vec<RunEvent> = [0usize, 5, 9, 10, 11]
        .iter()
        .map(|i| events[*i].clone())
        .collect();
    let mut reference: Option<RunSummary> = None;
    for perm in permutations(pick.len()) {
        let tag = unique("perm");
        let ordered: Vec<RunEvent> = perm.iter().map(|i| pick[*i].clone()).collect();
        let mut got = fold(&acc, &reuid(&ordered, &tag)).await;
        got.uid.clear();
        match &reference {
            None => reference = Some(got),
            Some(r) => assert_eq!(&got, r, "order {perm:?}"),
        }
    }

    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut want = in_order.clone();
    want.uid.clear();
    for _ in 0..12 {
        let mut shuffled = events.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        let dups: Vec<RunEvent> = shuffled.iter().step_by(3).cloned().collect();
        shuffled.extend(dups);
        let mut got = fold(&acc, &reuid(&shuffled, &unique("shuffle"))).await;
        got.uid.clear();
        assert_eq!(got, want);
    }
}

/// Many replicas update one run at once, each with a task of its own:
/// every update lands.
pub async fn concurrent_accumulator_updates_are_not_lost(replicas: Factory) {
    let template = run_events("tekton-pipelinerun-success")
        .into_iter()
        .find(|e| e.kind == "TaskRun")
        .unwrap();
    let run = unique("run");
    let mut tasks = Vec::new();
    for i in 0..24 {
        let acc = Accumulator::new(replicas().await, LONG);
        let mut ev = template.clone();
        ev.pipeline_task = Some(format!("task-{i:02}"));
        ev.pipeline_run.as_mut().unwrap().uid = Some(run.clone());
        tasks.push(tokio::spawn(async move { acc.record(&ev).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acc = Accumulator::new(replicas().await, LONG);
    let got = acc.get(&run).await.unwrap().unwrap();
    let names: Vec<&String> = got.tasks.keys().collect();
    assert_eq!(names.len(), 24, "lost updates: {names:?}");
}

/// Replicas racing to post one run's message: one creates, the rest update
/// (or are told creation is in progress, and update on their retry).
pub async fn message_created_once(replicas: Factory) {
    let key = unique("msg");
    let creates = Arc::new(AtomicUsize::new(0));
    let updates = Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = replicas().await;
        let state = relay_core::state::State::new(&store, "conformance");
        let ids = MessageIds::new(state, LONG, LONG);
        let key = state.key(relay_core::state::Kind::ChatMessage, &[&key]);
        let (creates, updates) = (creates.clone(), updates.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let c = creates.clone();
                let u = updates.clone();
                let action = ids
                    .create_or_update(
                        &key,
                        &format!("replica-{i}"),
                        || async move {
                            c.fetch_add(1, Ordering::SeqCst);
                            // The provider's create call takes a moment.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, ()>("comment-42".to_string())
                        },
                        |id| async move {
                            *u.lock().unwrap().entry(id).or_default() += 1;
                            Ok(())
                        },
                    )
                    .await
                    .unwrap();
                match action {
                    MessageAction::CreationInProgress => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    other => return other,
                }
            }
        }));
    }
    let mut created = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), MessageAction::Created(_)) {
            created += 1;
        }
    }
    assert_eq!((created, creates.load(Ordering::SeqCst)), (1, 1));
    assert_eq!(updates.lock().unwrap().get("comment-42"), Some(&15));
}
