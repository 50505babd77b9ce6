//! Hostile events for the provider tests: the successful PipelineRun of the
//! fixtures with what its author (or any sender) controls changed —
//! annotations, params, the run's name — and the attacks of issue 13 on
//! git-host API paths.

use serde_json::Value;

use crate::fixtures::RequestFile;
use crate::function::{Function, fixture};

/// The PipelineRun event every hostile variant starts from.
pub const BASE: &str = crate::fixtures::PIPELINERUN_SUCCEEDED;

/// Event fields that were put into git-host API paths as they were:
/// `(annotation, value)`. The first two made the relay `POST
/// /admin/hooks?/…` and `POST /user/repos` with its token.
pub const PATH_ATTACKS: &[(&str, &str)] = &[
    ("relay.tekton.dev/url-org", "../../../../admin/hooks?"),
    ("relay.tekton.dev/sha", "../../../../../user/repos#"),
    ("relay.tekton.dev/url-repository", ".."),
    (
        "relay.tekton.dev/url-repository",
        "widgets/../../../../user/repos?",
    ),
    ("relay.tekton.dev/url-org", "acme\u{1b}[31m"),
    ("relay.tekton.dev/url-org", "ac\u{202e}me"),
];

/// [`BASE`] with a fresh id and uid (`tag`), so no two are duplicates.
pub fn pipelinerun(tag: &str) -> RequestFile {
    crate::fixtures::fresh_pipelinerun(&format!("attack-{tag}"))
}

/// [`pipelinerun`] with `annotations` set on the PipelineRun.
pub fn pipelinerun_with(tag: &str, annotations: &[(&str, &str)]) -> RequestFile {
    let mut f = pipelinerun(tag);
    let a = f.body["pipelineRun"]["metadata"]["annotations"]
        .as_object_mut()
        .expect("the fixture's PipelineRun has annotations");
    for (k, v) in annotations {
        a.insert(k.to_string(), Value::String(v.to_string()));
    }
    f
}

/// Sends one event per `(annotation, value)` of `attacks` (such as
/// [`PATH_ATTACKS`]), on top of the annotations `base` (an Azure Repos
/// `repo-url`, say), to `f`, each of which must be refused, permanently:
/// dead-lettered before any request, naming what was refused, counted in
/// `relay_dead_letters_total` of `notification`. The caller checks that
/// its mock received no request.
pub async fn assert_path_attacks_refused(
    f: &Function,
    notification: &str,
    base: &[(&str, &str)],
    attacks: &[(&str, &str)],
) {
    for (i, attack) in attacks.iter().enumerate() {
        let (key, value) = attack;
        let mut annotations = base.to_vec();
        annotations.push(*attack);
        let answer = f
            .delivery(&pipelinerun_with(&format!("path-{i}"), &annotations))
            .await;
        assert_eq!(
            answer["outcome"], "dead_lettered",
            "{key}: {value:?}: {answer}"
        );
    }
    let dead = f.dead_letters();
    assert_eq!(dead.len(), attacks.len(), "{dead:?}");
    for d in &dead {
        assert_eq!(d["cause"]["kind"], "permanent", "{d}");
        assert!(
            d["cause"]["status"].is_null(),
            "refused before any request: {d}"
        );
        // Says what was refused (or, for a URL the parser itself takes
        // apart, that it is no repository URL).
        let message = d["cause"]["message"].as_str().unwrap();
        assert!(
            message.contains("refused") || message.contains("is not an"),
            "{message}"
        );
    }
    let metrics = reqwest::get(format!("{}/metrics", f.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = format!(
        "relay_dead_letters_total{{notification=\"{notification}\"}} {}",
        attacks.len()
    );
    assert!(metrics.contains(&counted), "{counted} in {metrics}");
}

/// Invisible formatting characters: an RLO (`build\u{202E}gpj.exe` shows
/// as `buildexe.jpg`), zero-width space and mark, bidi isolates, a BOM.
pub const INVISIBLE: [char; 6] = [
    '\u{202E}', '\u{200B}', '\u{200F}', '\u{2066}', '\u{2069}', '\u{FEFF}',
];

/// The host of a run link that reads like the dashboard's.
pub const PHISH_HOST: &str = "phish.example.net";

/// The markup-injection fixture (`bad-input/008`) with more of what a run's
/// author controls: an annotation whose *key* is a mention (`<!channel>`,
/// its value `<!here>`), the [`INVISIBLE`] characters in the run's name,
/// and (no `dashboardURL` configured) a run link with userinfo that shows
/// the dashboard's host and goes to [`PHISH_HOST`].
pub fn markup_injection_plus() -> RequestFile {
    let mut f = fixture("bad-input/008-markup-injection.json");
    let md = &mut f.body["pipelineRun"]["metadata"];
    let name: String = format!(
        "build{}gpj.exe{}{}x{}{}{}",
        INVISIBLE[0], INVISIBLE[1], INVISIBLE[2], INVISIBLE[3], INVISIBLE[4], INVISIBLE[5]
    );
    md["name"] = Value::String(name);
    let a = md["annotations"].as_object_mut().unwrap();
    a.insert("<!channel>".into(), "<!here>".into());
    a.insert(
        "pipelinesascode.tekton.dev/log-url".into(),
        format!("https://tekton.acme.dev@{PHISH_HOST}/#/pipelineruns/x").into(),
    );
    f
}
