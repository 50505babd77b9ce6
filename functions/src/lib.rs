//! The Tekton event relay's functions: every provider as a module (behind
//! its Cargo feature, listed once in the provider table of Cargo.toml), the
//! ingress, the dead-letter function, and what serves each of them
//! ([`function`]). The binary (`src/main.rs`) is all of them.

#[cfg(feature = "dlq")]
pub mod dlq;
pub mod function;
#[cfg(feature = "ingress")]
pub mod ingress;
pub mod manifests;
pub mod router;

/// One row of the provider table (`[package.metadata.relay.providers]` in
/// Cargo.toml), from which build.rs makes the modules and the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderRow {
    /// The Provider document's `type`, the function's name, the feature's.
    pub name: &'static str,
    /// git-host, chat, incident, issue-tracker, annotation, forward or log.
    pub family: &'static str,
    /// `store`: remembers what it posted (the store must be shared between
    /// replicas); `summary`: renders run summaries.
    pub needs: &'static [&'static str],
    /// Whether this build has it (its feature was on).
    pub enabled: bool,
}

/// One column of the git hosts' state table: its heading, and how a relay
/// state shows there.
pub type StateColumn = (&'static str, fn(relay_core::RunState) -> String);

include!(concat!(env!("OUT_DIR"), "/providers.rs"));

/// What the providers' unit tests share.
#[cfg(test)]
pub(crate) mod testkit {
    use relay_core::config::ProviderDoc;
    use relay_core::field::FieldErrors;
    use relay_core::provider::ProviderFactory;

    /// The `Provider` document `name` of type `provider_type` with `settings`.
    pub(crate) fn provider_doc(
        name: &str,
        provider_type: &str,
        settings: serde_json::Value,
    ) -> ProviderDoc {
        ProviderDoc {
            name: name.into(),
            provider_type: provider_type.into(),
            settings,
        }
    }

    /// The errors `factory` refuses `doc` with (it must refuse it).
    pub(crate) fn refused(factory: &dyn ProviderFactory, doc: &ProviderDoc) -> FieldErrors {
        match factory.build(doc) {
            Ok(_) => panic!("the settings were accepted"),
            Err(e) => e,
        }
    }
}

#[cfg(test)]
mod table_tests {
    use std::path::Path;

    use super::*;

    fn repo(path: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }

    /// The registry and `relay validate`'s type list are the table's rows,
    /// in its order; each factory builds the type its row names.
    #[test]
    fn the_registry_is_the_table() {
        let names: Vec<&str> = PROVIDERS.iter().map(|r| r.name).collect();
        assert_eq!(registry().type_names(), names);
        assert!(
            PROVIDERS.iter().all(|r| r.enabled),
            "the default build has every provider"
        );
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a provider listed twice");
    }

    /// The four places of a provider: its module (the build fails without
    /// it), its row, its example `examples/<name>.yaml` (a Provider of that
    /// type), its page `docs/providers/<name>.md` (linked from the index).
    /// Its row's `summary` need is what the provider built from its example
    /// says.
    #[test]
    fn every_row_has_its_example_and_page() {
        let index = std::fs::read_to_string(repo("docs/providers/README.md")).unwrap();
        let registry = registry();
        for row in PROVIDERS {
            let name = row.name;
            let example = repo(&format!("examples/{name}.yaml"));
            let text = std::fs::read_to_string(&example)
                .unwrap_or_else(|e| panic!("{name}: examples/{name}.yaml: {e}"));
            let cfg = relay_core::config::RelayConfig::parse(&text)
                .unwrap_or_else(|e| panic!("examples/{name}.yaml: {e}"));
            let doc = cfg
                .providers
                .iter()
                .find(|p| p.provider_type == name)
                .unwrap_or_else(|| panic!("examples/{name}.yaml has no Provider of type {name}"));
            let provider = registry
                .factory(name)
                .unwrap()
                .build(doc)
                .unwrap_or_else(|e| panic!("examples/{name}.yaml: {e:?}"));
            assert_eq!(provider.type_name(), name);
            assert_eq!(
                provider.uses_summary(),
                row.needs.contains(&"summary"),
                "{name}: the table's `summary` need"
            );
            assert!(
                repo(&format!("docs/providers/{name}.md")).is_file(),
                "{name}: no docs/providers/{name}.md"
            );
            assert!(
                index.contains(&format!("({name}.md)")),
                "{name}: docs/providers/README.md does not link its page"
            );
        }
    }
}
