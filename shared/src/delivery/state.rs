//! What providers remember between deliveries (a posted status, a message
//! id), kept in the shared store under one key scheme:
//! `<provider type>/<kind>/<part>/<part>…`, each part escaped so that no
//! value an event carries (a repository `a/b`, a context `ci/tekton`) can
//! make one key read as another. Providers get a [`State`] handle, never
//! the raw store, so every key they write follows the scheme.

use std::fmt;

use crate::delivery::store::SharedStore;

/// What a key records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The last commit status posted (state and description), per
    /// repository, commit and context.
    CommitStatus,
    /// The id of a run's check run (GitHub).
    CheckRun,
    /// The id of a run's summary message on a pull request (a comment, a
    /// merge-request note, a review thread).
    Summary,
    /// Whether a run's summary thread was closed (Azure DevOps).
    SummaryClosed,
    /// The id of a run's chat message or thread parent (Slack).
    ChatMessage,
    /// What a run's chat message last showed.
    ChatShown,
    /// The last state an issue was commented for (Jira).
    IssueComment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CommitStatus => "commit-status",
            Kind::CheckRun => "check-run",
            Kind::Summary => "summary",
            Kind::SummaryClosed => "summary-closed",
            Kind::ChatMessage => "chat-message",
            Kind::ChatShown => "chat-shown",
            Kind::IssueComment => "issue-comment",
        }
    }
}

/// A key in the scheme; made only by [`State::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateKey(String);

impl StateKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One provider type's part of the shared store.
#[derive(Clone, Copy)]
pub struct State<'a> {
    store: &'a SharedStore,
    namespace: &'a str,
}

impl<'a> State<'a> {
    /// The part of `store` that providers of `provider_type` write.
    pub fn new(store: &'a SharedStore, provider_type: &'a str) -> State<'a> {
        State {
            store,
            namespace: provider_type,
        }
    }

    /// `<provider type>/<kind>/<parts…>`, each part escaped (`%` → `%25`,
    /// `/` → `%2F`), so the parts are read back unambiguously.
    pub fn key(&self, kind: Kind, parts: &[&str]) -> StateKey {
        let mut k = format!("{}/{}", escape(self.namespace), kind.as_str());
        for p in parts {
            k.push('/');
            k.push_str(&escape(p));
        }
        StateKey(k)
    }

    /// The store itself, for the toolkit in this crate (message ids, last
    /// posted values), which reads and writes only under `StateKey`s.
    pub(crate) fn store(&self) -> &'a SharedStore {
        self.store
    }
}

fn escape(part: &str) -> String {
    part.replace('%', "%25").replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn store() -> SharedStore {
        Arc::new(crate::delivery::store::memory::MemoryStore::default())
    }

    #[test]
    fn keys_of_two_providers_or_kinds_never_collide() {
        let s = store();
        let (gh, gl) = (State::new(&s, "github"), State::new(&s, "another"));
        let parts = ["acme/widgets", "0c5c7fd0", "tekton/build"];
        let a = gh.key(Kind::CommitStatus, &parts);
        assert_eq!(
            a.as_str(),
            "github/commit-status/acme%2Fwidgets/0c5c7fd0/tekton%2Fbuild"
        );
        assert_ne!(a, gl.key(Kind::CommitStatus, &parts));
        assert_ne!(a, gh.key(Kind::CheckRun, &parts));
        assert_ne!(a, gh.key(Kind::Summary, &parts));
    }

    /// A `/` in one part (a repository, a context from an event) cannot
    /// move the boundary between parts, nor reach another kind's keys.
    #[test]
    fn parts_holding_a_separator_cannot_forge_another_key() {
        let s = store();
        let gh = State::new(&s, "github");
        assert_ne!(
            gh.key(Kind::CommitStatus, &["acme", "widgets/sha"]),
            gh.key(Kind::CommitStatus, &["acme/widgets", "sha"])
        );
        assert_ne!(
            gh.key(Kind::CommitStatus, &["a", "b"]),
            gh.key(Kind::CommitStatus, &["a/b"])
        );
        // Escapes are escaped too: `%2F` typed into a part stays literal.
        assert_ne!(
            gh.key(Kind::CommitStatus, &["a%2Fb"]),
            gh.key(Kind::CommitStatus, &["a/b"])
        );
        // A provider type cannot reach into another's namespace.
        let forged = State::new(&s, "github/commit-status/acme");
        assert_ne!(
            forged.key(Kind::CommitStatus, &["x"]).as_str(),
            gh.key(Kind::CommitStatus, &["acme", "x"]).as_str()
        );
        assert!(
            !gh.key(Kind::Summary, &["x/../commit-status"])
                .as_str()
                .contains("/commit-status")
        );
    }
}
