//! Where a run lives, as a CloudEvents `source`: the Kubernetes API path of
//! the object, its segments percent-encoded (run names are user-controlled
//! and a `source` must stay a valid URI-reference).

use relay_core::RunEvent;

/// `/apis/<group>/<version>/namespaces/<ns>/<plural>/<name>`.
pub fn path(ev: &RunEvent) -> String {
    let (group_version, plural) = api_of(&ev.kind);
    format!(
        "/apis/{group_version}/namespaces/{}/{plural}/{}",
        segment(&ev.namespace),
        segment(&ev.name)
    )
}

/// The API group/version and resource of a kind: Tekton's runs, else a
/// lower-cased plural under an unknown group.
fn api_of(kind: &str) -> (&'static str, String) {
    let tekton = "tekton.dev/v1";
    match kind {
        "PipelineRun" => (tekton, "pipelineruns".into()),
        "TaskRun" => (tekton, "taskruns".into()),
        "CustomRun" => ("tekton.dev/v1beta1", "customruns".into()),
        "Run" => ("tekton.dev/v1alpha1", "runs".into()),
        other => ("unknown", segment(&plural(other))),
    }
}

/// Kubernetes' plural of a kind: `GitRepository` → `gitrepositories`.
fn plural(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    match k.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{k}s"),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_valid_uri_references() {
        let mut ev = relay_core::sample::run_event();
        assert_eq!(
            path(&ev),
            "/apis/tekton.dev/v1/namespaces/ci/pipelineruns/build-and-test-abcde"
        );
        ev.name = "<script>alert(1)</script>*bold*".into();
        assert_eq!(
            path(&ev),
            "/apis/tekton.dev/v1/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C%2Fscript%3E%2Abold%2A"
        );
        ev.kind = "Widget".into();
        ev.name = "w".into();
        assert_eq!(path(&ev), "/apis/unknown/namespaces/ci/widgets/w");
    }
}
