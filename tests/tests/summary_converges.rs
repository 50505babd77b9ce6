//! For every fixture scenario, every permutation and duplication of its
//! events yields the same final PipelineRun summary text.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use relay_core::RunEvent;
use relay_core::accumulator::Accumulator;
use relay_core::store::memory::MemoryStore;
use relay_core::summary;
use relay_tests::conformance::run_events;
use relay_tests::fixtures::Scenario;

/// The final summary text of every PipelineRun, after `events` in this order.
fn texts(events: &[RunEvent]) -> BTreeMap<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let acc = Accumulator::new(Arc::new(MemoryStore::default()), Duration::from_secs(600));
        let mut uids = Vec::new();
        for e in events {
            if let Some(s) = acc.record(e).await.unwrap() {
                uids.push(s.uid);
            }
        }
        let mut out = BTreeMap::new();
        for uid in uids {
            let s = acc.get(&uid).await.unwrap().unwrap();
            out.insert(uid, summary::text(&s));
        }
        out
    })
}

fn scenarios_with_runs() -> Vec<(String, Vec<RunEvent>)> {
    Scenario::all()
        .into_iter()
        .filter(|sc| sc.name != "flux-events")
        .map(|sc| (sc.name.clone(), run_events(&sc.name)))
        .filter(|(_, e)| {
            e.iter()
                .any(|e| e.kind == "PipelineRun" || e.pipeline_run.is_some())
        })
        .collect()
}

#[test]
fn summary_of_the_success_scenario_reads_right() {
    let t = texts(&run_events("tekton-pipelinerun-success"));
    let text = t.values().next().unwrap();
    assert!(
        text.starts_with("### ✅ build\\-and\\-test: succeeded"),
        "{text}"
    );
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| [")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[0].contains("fetch\\-source") && rows[2].contains("build\\-image"),
        "pipeline order: {text}"
    );
    assert!(rows.iter().all(|r| r.contains("✅ succeeded")));
    let failure = texts(&run_events("tekton-pipelinerun-failure"));
    let text = failure.values().next().unwrap();
    assert!(
        text.contains("| build\\-image | ⏭️ skipped | — |"),
        "{text}"
    );
    assert!(text.contains("❌ failed"));
}

#[test]
fn user_controlled_names_cannot_inject_markup() {
    let events = run_events("bad-input");
    for text in texts(&events).values() {
        for bad in ["<script>", "*bold*", "@channel"] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_order_and_duplication_gives_the_same_summary(seed in any::<u64>(), dups in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        for (name, events) in scenarios_with_runs() {
            let want = texts(&events);
            let mut shuffled = events.clone();
            for d in &dups {
                shuffled.push(events[d.index(events.len())].clone());
            }
            // Fisher–Yates with a seeded xorshift.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(&texts(&shuffled), &want, "{}", name);
        }
    }
}
