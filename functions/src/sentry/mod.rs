//! The `sentry` provider: a succeeded PipelineRun records a deploy of its
//! release (by default the commit) to an environment, creating the release
//! first when Sentry does not know it yet.

pub mod deploy;

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use relay_core::field::FieldErrors;
use relay_core::RunState;
use relay_core::chat::template_text;
use relay_core::config::{ProviderDoc, check};
use relay_core::engine::template_context;
use relay_core::escape;
use relay_core::model::RunEvent;
use relay_core::notification::compile;
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderFactory, Verdict,
    commit_sha, Compiled, Parsed, no_action, parse_settings,
};
use relay_core::secret::SecretFile;
use relay_core::template::Template;
use relay_core::transport::{Http, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

pub const TYPE: &str = "sentry";
const DEFAULT_BASE_URL: &str = "https://sentry.io";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SentrySettings {
    /// An auth token with `project:releases` (an organization token, or an
    /// internal integration's), sent as `Authorization: Bearer …`.
    pub auth_token_file: SecretFile,
    /// `https://sentry.io` (default), `https://de.sentry.io`, or a
    /// self-hosted server.
    #[serde(rename = "baseURL", default)]
    pub base_url: Option<url::Url>,
    /// The organization's slug.
    pub organization: String,
    /// Project slugs: a release Sentry does not know is created in these,
    /// and the deploy is recorded for them.
    #[serde(default)]
    pub projects: Vec<String>,
    /// The deploy's environment; a Notification's `params.environment`
    /// overrides it, and one of the two is required.
    #[serde(default)]
    pub environment: Option<String>,
    /// The release version, a minijinja template (default the commit,
    /// `{{ event.scm.sha }}`), e.g. `widgets@{{ event.scm.sha[:12] }}`.
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SentryParams {
    #[serde(default)]
    pub environment: Option<String>,
}

pub struct Sentry {
    base: url::Url,
    token: SecretFile,
    organization: String,
    projects: Vec<String>,
    environment: Option<String>,
    /// `None`: the commit.
    version: Option<Template>,
}

pub struct SentryFactory;

impl ProviderFactory for SentryFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        Ok(Arc::new(Sentry::new(parse_settings(doc)?)?))
    }
}

/// Why Sentry would refuse `env` as an environment name, if it would.
fn environment_error(env: &str) -> Option<String> {
    if env.trim().is_empty() {
        Some("must not be empty".into())
    } else if env.chars().count() > deploy::ENVIRONMENT_MAX {
        Some(format!("at most {} characters", deploy::ENVIRONMENT_MAX))
    } else if env.contains('/') || env.chars().any(char::is_control) {
        Some("no `/` or control characters".into())
    } else {
        None
    }
}

impl Sentry {
    pub fn new(s: SentrySettings) -> Result<Sentry, FieldErrors> {
        let mut errs = FieldErrors::new();
        let mut base = s
            .base_url
            .unwrap_or_else(|| url::Url::parse(DEFAULT_BASE_URL).expect("a valid URL"));
        errs.extend(check::http_url("baseURL", &base));
        base.set_query(None);
        if escape::path_segment(&s.organization).is_none() || s.organization.trim().is_empty() {
            errs.push(
                "organization",
                "expected the organization's slug",
            );
        }
        errs.extend(check::blank_items("projects", &s.projects));
        if let Some(e) = s.environment.as_deref().and_then(environment_error) {
            errs.push("environment", e);
        }
        let version = s.version.as_deref().map(Template::compile).map(|t| {
            let sample = relay_core::sample::run_event();
            t.and_then(|t| t.render(template_context(&sample, "sample")).map(|_| t))
        });
        let version = match version.transpose() {
            Ok(t) => t,
            Err(e) => {
                errs.push("version", e);
                None
            }
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Sentry {
            base,
            token: s.auth_token_file,
            organization: s.organization,
            projects: s.projects,
            environment: s.environment,
            version,
        })
    }

    /// `<base>/api/0/organizations/<org>/releases/[<version>/deploys/]`,
    /// each name one encoded segment (Sentry wants the trailing slash).
    fn url(&self, version: Option<&str>) -> Result<url::Url, Verdict> {
        let seg = |s: &str| {
            escape::path_segment(s)
                .ok_or_else(|| Verdict::permanent(format!("{s:?} cannot be a URL segment")))
        };
        let mut path = format!(
            "{}/api/0/organizations/{}/releases/",
            self.base.path().trim_end_matches('/'),
            seg(&self.organization)?
        );
        if let Some(v) = version {
            path.push_str(&format!("{}/deploys/", seg(v)?));
        }
        let mut url = self.base.clone();
        url.set_path(&path);
        Ok(url)
    }

    async fn post(
        &self,
        http: &Http<'_>,
        url: url::Url,
        body: &Value,
    ) -> Result<Response, Verdict> {
        let mut req = OutboundRequest::post_json(url, body.to_string());
        self.token
            .authorize(&mut req, "Bearer")
            .await
            .map_err(|e| Verdict::permanent(e.to_string()))?;
        http.send(&Outbound::Http(req)).await
    }

    /// Creates release `version`; one that already exists is fine.
    async fn create_release(
        &self,
        http: &Http<'_>,
        ev: &RunEvent,
        version: &str,
    ) -> Result<(), Verdict> {
        if self.projects.is_empty() {
            return Err(Verdict::permanent(format!(
                "release {version:?} does not exist in Sentry, and no `projects` are \
                 configured to create it in"
            )));
        }
        let body = deploy::release(ev, version, &self.projects);
        match self.post(http, self.url(None)?, &body).await {
            // Created meanwhile (another replica, a CI step): go on.
            Err(Verdict::Permanent {
                status: Some(409), ..
            }) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

#[async_trait]
impl Provider for Sentry {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn compile_notification(
        &self,
        action: Option<&str>,
        params: &Map<String, Value>,
    ) -> Result<Compiled, FieldErrors> {
        let action = no_action(TYPE, action, "a succeeded PipelineRun records a deploy");
        let compiled = compile::<(), SentryParams>(action, params)?;
        let env = params.get("environment").and_then(Value::as_str);
        let err = match (env, &self.environment) {
            (Some(e), _) => environment_error(e),
            (None, None) => Some("required: the provider sets no environment".into()),
            (None, Some(_)) => None,
        };
        match err {
            Some(e) => Err(FieldErrors::one("params.environment", e)),
            None => Ok(compiled),
        }
    }

    /// A deploy is a success: nothing else is sent (nor claimed).
    fn declines(&self, ev: &RunEvent) -> Option<String> {
        if ev.kind != "PipelineRun" {
            return Some(format!(
                "sentry records deploys of PipelineRuns, not {}",
                ev.kind
            ));
        }
        if ev.state != RunState::Succeeded {
            return Some(format!(
                "sentry records deploys of succeeded runs, not {} ones",
                relay_core::chat::StateStyle::of(ev.state).word
            ));
        }
        None
    }

    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let ev = input.event;
        if self.declines(ev).is_some() {
            return Ok(String::new());
        }
        let Parsed { params, .. } = input.compiled.get::<Parsed<(), SentryParams>>()?;
        let environment = params
            .environment
            .clone()
            .or_else(|| self.environment.clone())
            .ok_or_else(|| Verdict::permanent("no environment (settings or params)"))?;
        let version = match &self.version {
            Some(t) => t
                .render(template_context(ev, input.notification))
                .map_err(|e| Verdict::permanent(format!("version: {e}")))?,
            None => commit_sha(ev)?.to_string(),
        };
        let version = version.trim();
        deploy::check_version(version)
            .map_err(|e| Verdict::permanent(format!("release version {version:?}: {e}")))?;
        let body = deploy::deploy(ev, &environment, &self.projects, template_text(input)?);
        let url = self.url(Some(version))?;
        let done = format!("deploy of release {version} to {environment}");
        match self.post(http, url.clone(), &body).await {
            Ok(_) => Ok(done),
            Err(Verdict::Permanent {
                status: Some(s), ..
            }) if s == StatusCode::NOT_FOUND.as_u16() => {
                self.create_release(http, ev, version).await?;
                self.post(http, url, &body).await?;
                Ok(format!("created release {version}; {done}"))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("sentry", TYPE, settings)
    }

    fn sentry(settings: Value) -> Result<Sentry, FieldErrors> {
        Sentry::new(parse_settings(&doc(settings))?)
    }

    fn minimal() -> Value {
        json!({"authTokenFile": "/t", "organization": "acme", "environment": "production"})
    }

    #[test]
    fn settings_errors_name_their_path() {
        assert!(SentryFactory.build(&doc(minimal())).is_ok());
        let e = SentryFactory
            .build(&doc(json!({"authTokenFile": "/t"})))
            .err()
            .unwrap();
        assert!(e[0].message.contains("missing field `organization`"), "{e:?}");
        let mut bad = minimal();
        bad["organization"] = "..".into();
        bad["environment"] = "prod/eu".into();
        bad["version"] = "{{ event.nope }}".into();
        bad["projects"] = json!(["api", " "]);
        let e = sentry(bad).err().unwrap();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["organization", "projects[1]", "environment", "version"]
        );
        let mut bad = minimal();
        bad["authToken"] = "x".into();
        let e = SentryFactory.build(&doc(bad)).err().unwrap();
        assert!(e[0].message.contains("unknown field `authToken`"), "{e:?}");
    }

    #[test]
    fn an_environment_is_required_somewhere() {
        let mut s = minimal();
        s.as_object_mut().unwrap().remove("environment");
        let without = sentry(s).unwrap();
        let e = without.compile_notification(None, &Map::new()).unwrap_err();
        assert_eq!(e[0].path, "params.environment");
        let mut p = Map::new();
        p.insert("environment".into(), "staging".into());
        assert!(without.compile_notification(None, &p).is_ok());
        p.insert("environment".into(), "a/b".into());
        assert!(without.compile_notification(None, &p).is_err());
        let with = sentry(minimal()).unwrap();
        assert!(with.compile_notification(None, &Map::new()).is_ok());
        let e = with
            .compile_notification(Some("deploy"), &Map::new())
            .unwrap_err();
        assert_eq!(e[0].path, "action");
    }

    #[test]
    fn urls_encode_names_and_keep_the_base_path() {
        let mut s = minimal();
        s["baseURL"] = "https://sentry.example.com/sentry/".into();
        let sentry = sentry(s).unwrap();
        assert_eq!(
            sentry.url(None).unwrap().as_str(),
            "https://sentry.example.com/sentry/api/0/organizations/acme/releases/"
        );
        assert_eq!(
            sentry.url(Some("widgets@1.0+b?x#y")).unwrap().as_str(),
            "https://sentry.example.com/sentry/api/0/organizations/acme/releases/widgets%401.0%2Bb%3Fx%23y/deploys/"
        );
    }

    #[test]
    fn only_succeeded_pipeline_runs_are_sent() {
        let sentry = sentry(minimal()).unwrap();
        let mut ev = relay_core::sample::run_event();
        assert_eq!(
            sentry.declines(&ev).unwrap(),
            "sentry records deploys of succeeded runs, not failed ones"
        );
        ev.state = RunState::Succeeded;
        assert!(sentry.declines(&ev).is_none());
        ev.kind = "TaskRun".into();
        assert!(sentry.declines(&ev).is_some());
    }
}
