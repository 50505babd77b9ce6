//! The delivery engine: per Notification, filter → claim → order → deliver →
//! classify (docs/design.md "Delivery semantics").

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::join_all;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::delivery::deadletter::{Cause, CauseKind, DeadLetterEntry, DeadLetterTarget};
use crate::delivery::metrics::Metrics;
use crate::delivery::provider::{DeliveryInput, Provider, Registry};
use crate::delivery::store::{Claim, SharedStore, StoreError};
use crate::delivery::summary::SummaryView;
use crate::delivery::transport::Transport;
use crate::delivery::verdict::Verdict;
use crate::event::config::filter::{Filter, FilterVerdict};
use crate::event::config::{ConfigErrors, Dedupe, RelayConfig, RelaySettings};
use crate::event::model::RunEvent;
use crate::event::template::{Template, summary_template_context, template_context};

/// `spec.apiAuth`: a credential of its own (bearer token, HMAC or JWT),
/// not one an event sender holds, and no Flux signature (Flux sends events,
/// it does not administer dead letters).
fn check_api_auth(s: &RelaySettings) -> Vec<(String, String)> {
    let Some(api) = &s.api_auth else {
        return Vec::new();
    };
    let at = |p: &str| {
        if p.is_empty() {
            "spec.apiAuth".to_string()
        } else {
            format!("spec.apiAuth.{p}")
        }
    };
    let mut errs = Vec::new();
    if api.flux_hmac_secret_file.is_some() {
        errs.push((
            at("fluxHmacSecretFile"),
            "the dead-letter API takes bearerTokenFile, hmacSecretFile or jwt; Flux signatures are for events".to_string(),
        ));
    } else if let Err((p, m)) = api.check_config() {
        errs.push((at(&p), m));
    }
    if let Some(inbound) = &s.inbound_auth {
        let same_file = |a: &Option<crate::event::secret::SecretFile>,
                         b: &Option<crate::event::secret::SecretFile>| {
            matches!((a, b), (Some(x), Some(y)) if x == y)
        };
        let same_jwt = matches!((&api.jwt, &inbound.jwt), (Some(a), Some(b))
            if a.audience == b.audience
                && (same_file(&a.hs256_secret_file, &b.hs256_secret_file)
                    || same_file(&a.rs256_public_key_file, &b.rs256_public_key_file)));
        let shared = [
            &inbound.bearer_token_file,
            &inbound.hmac_secret_file,
            &inbound.flux_hmac_secret_file,
        ]
        .iter()
        .any(|i| same_file(&api.bearer_token_file, i) || same_file(&api.hmac_secret_file, i));
        if shared || same_jwt {
            errs.push((
                at(""),
                "uses the same credential as spec.inboundAuth: every event sender could administer dead letters; give the API its own secret (or, for jwt, its own audience)".to_string(),
            ));
        }
    }
    errs
}

/// One Notification, ready to run.
pub struct CompiledNotification {
    pub name: String,
    pub provider_name: String,
    pub provider_type: String,
    pub provider: Arc<dyn Provider>,
    pub filter: Filter,
    pub template: Option<Template>,
    pub dedupe: Dedupe,
    /// The `action` and `params`, as the provider compiled them.
    pub compiled: crate::delivery::provider::Compiled,
}

/// A configuration compiled against a registry: every filter, template and
/// provider built, every error collected.
pub struct Plan {
    pub settings: RelaySettings,
    pub notifications: Vec<CompiledNotification>,
    pub dashboard: Option<Template>,
}

impl Plan {
    /// The provider types with a Notification that wants `ev`: its filter
    /// matches (or fails to evaluate, which that function then reports as a
    /// failure) and its provider does not decline the event. The router
    /// (docs/design.md, "Routing") wakes only these functions.
    pub fn wanted_by(&self, ev: &RunEvent) -> std::collections::BTreeSet<&str> {
        self.notifications
            .iter()
            .filter(|n| !matches!(n.filter.evaluate(ev), FilterVerdict::NoMatch))
            .filter(|n| n.provider.declines(ev).is_none())
            .map(|n| n.provider_type.as_str())
            .collect()
    }

    pub fn compile(cfg: &RelayConfig, registry: &Registry) -> Result<Plan, ConfigErrors> {
        let mut errs = ConfigErrors::default();
        if let Err(e) = crate::delivery::store::check_url(&cfg.settings.store) {
            errs.push(&cfg.settings_document, "spec.store", e);
        }
        if let Err(e) = crate::delivery::deadletter::check_url(&cfg.settings.dead_letter) {
            errs.push(&cfg.settings_document, "spec.deadLetter", e);
        }
        if let Some(Err((path, msg))) = cfg.settings.inbound_auth.as_ref().map(|a| a.check_config())
        {
            let path = if path.is_empty() {
                "spec.inboundAuth".to_string()
            } else {
                format!("spec.inboundAuth.{path}")
            };
            errs.push(&cfg.settings_document, path, msg);
        }
        for (path, msg) in check_api_auth(&cfg.settings) {
            errs.push(&cfg.settings_document, path, msg);
        }
        let dashboard = match cfg.settings.dashboard_url.as_deref().map(Template::compile) {
            Some(Ok(t)) => {
                if let Err(e) = t.render(dashboard_context(&crate::event::sample::run_event())) {
                    errs.push(&cfg.settings_document, "spec.dashboardURL", e);
                }
                Some(t)
            }
            Some(Err(e)) => {
                errs.push(&cfg.settings_document, "spec.dashboardURL", e);
                None
            }
            None => None,
        };
        let mut providers: Vec<(String, String, Arc<dyn Provider>)> = Vec::new();
        for doc in &cfg.providers {
            if !registry.serves(&doc.provider_type) {
                continue;
            }
            let name = format!("Provider/{}", doc.name);
            match registry.factory(&doc.provider_type) {
                None => errs.push(
                    &name,
                    "spec.type",
                    format!(
                        "unknown provider type {:?}, expected one of {}",
                        doc.provider_type,
                        registry.type_names().join(", ")
                    ),
                ),
                Some(f) => match f.build(doc) {
                    Ok(p) => providers.push((doc.name.clone(), doc.provider_type.clone(), p)),
                    Err(list) => {
                        for e in list.under(&format!("spec.{}", doc.provider_type)) {
                            errs.push(&name, e.path, e.message);
                        }
                    }
                },
            }
        }
        let mut notifications = Vec::new();
        for n in &cfg.notifications {
            let doc = format!("Notification/{}", n.name);
            let Some(ptype) = cfg
                .providers
                .iter()
                .find(|p| p.name == n.spec.provider_ref.name)
                .map(|p| p.provider_type.clone())
            else {
                continue; // reported by RelayConfig::parse
            };
            if !registry.serves(&ptype) {
                continue;
            }
            let filter = match n.spec.filter.as_ref().map(Filter::compile) {
                None => Some(Filter::any()),
                Some(Ok(f)) => Some(f),
                Some(Err(list)) => {
                    for (p, m) in list {
                        errs.push(&doc, format!("spec.filter.{p}"), m);
                    }
                    None
                }
            };
            let provider = providers
                .iter()
                .find(|(name, _, _)| *name == n.spec.provider_ref.name);
            let template = match n.spec.template.as_deref().map(Template::compile) {
                None => None,
                Some(Ok(t)) => {
                    // Render against a sample, in the context the provider
                    // will give it, so a broken template fails here, not on
                    // a delivery.
                    let sample = crate::event::sample::run_event();
                    let rendered = match provider {
                        Some((_, _, p)) if p.uses_summary() => {
                            let summary =
                                crate::delivery::accumulator::RunSummary::from_event(&sample)
                                    .expect("the sample is a PipelineRun");
                            t.render(summary_template_context(
                                &sample,
                                &n.name,
                                &SummaryView::of(&summary),
                            ))
                        }
                        _ => t.render(template_context(&sample, &n.name)),
                    };
                    if let Err(e) = rendered {
                        errs.push(&doc, "spec.template", e);
                    }
                    Some(t)
                }
                Some(Err(e)) => {
                    errs.push(&doc, "spec.template", e);
                    None
                }
            };
            let compiled = match provider
                .map(|(_, _, p)| p.compile_notification(n.spec.action.as_deref(), &n.spec.params))
            {
                Some(Ok(c)) => Some(c),
                Some(Err(list)) => {
                    for e in list.under("spec") {
                        errs.push(&doc, e.path, e.message);
                    }
                    None
                }
                None => None,
            };
            if let (Some(filter), Some((pname, ptype, p)), Some(compiled)) =
                (filter, provider, compiled)
            {
                notifications.push(CompiledNotification {
                    name: n.name.clone(),
                    provider_name: pname.clone(),
                    provider_type: ptype.clone(),
                    provider: p.clone(),
                    filter,
                    template,
                    dedupe: n.spec.dedupe,
                    compiled,
                });
            }
        }
        errs.into_result(Plan {
            settings: cfg.settings.clone(),
            notifications,
            dashboard,
        })
    }
}

fn dashboard_context(ev: &RunEvent) -> serde_json::Value {
    let resource = match ev.kind.as_str() {
        "PipelineRun" => "pipelineruns",
        "TaskRun" => "taskruns",
        "CustomRun" => "customruns",
        "Run" => "runs",
        _ => "",
    };
    serde_json::json!({
        "namespace": ev.namespace, "name": ev.name, "kind": ev.kind,
        "resource": resource, "uid": ev.uid,
    })
}

/// What happened for one Notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    Duplicate,
    Filtered,
    Stale,
    Ignored,
    DeadLettered,
    /// Failed retryably; the sender should retry.
    Failed,
    /// Failed permanently and the dead-letter target is `respond`.
    Rejected,
}

impl Outcome {
    /// Not done: dead-lettered, or to be retried, or refused.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::DeadLettered | Outcome::Failed | Outcome::Rejected
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Duplicate => "duplicate",
            Outcome::Filtered => "filtered",
            Outcome::Stale => "stale",
            Outcome::Ignored => "ignored",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    pub notification: String,
    pub provider: String,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

/// The engine's answer for one event.
#[derive(Debug, Clone, Serialize)]
pub struct EventResult {
    pub outcome: Outcome,
    pub deliveries: Vec<DeliveryReport>,
    /// Set when the sender should retry, with the delay to advise.
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

/// A failed delivery, classified.
#[derive(Debug, Clone)]
struct Failure {
    retryable: bool,
    status: Option<u16>,
    retry_after: Option<Duration>,
    message: String,
    attempts: u32,
}

enum Run {
    Done(Outcome, Option<String>),
    Failed(Failure),
}

/// How an event is being processed.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// An event from a sender: every Notification; permanent failures dead-lettered.
    Live,
    /// A dead letter replayed to the one Notification that failed.
    Replay { notification: &'a str },
    /// A dead letter's event back on the event bus, marked for the one
    /// Notification that failed (`redrive`): that Notification only, its
    /// failures handled as live ones are (a permanent one dead-lettered
    /// again, with `replays`).
    Redrive { notification: &'a str, replays: u32 },
}

pub struct Engine {
    pub plan: Plan,
    pub store: SharedStore,
    /// Present when some Notification's provider renders summaries.
    accumulator: Option<crate::delivery::accumulator::Accumulator>,
    pub dead_letters: DeadLetterTarget,
    pub metrics: Arc<Metrics>,
    transport: Transport,
}

impl Engine {
    pub fn new(
        plan: Plan,
        store: SharedStore,
        dead_letters: DeadLetterTarget,
        metrics: Arc<Metrics>,
    ) -> Engine {
        let transport = Transport::new(
            crate::delivery::transport::seconds(plan.settings.delivery.request_timeout_seconds),
            metrics.clone(),
        )
        .with_outbound_limits(&plan.settings.limits.outbound);
        store.count_evictions(metrics.store_evictions.clone());
        let accumulator = plan
            .notifications
            .iter()
            .any(|n| n.provider.uses_summary())
            .then(|| {
                let ttl = Duration::from_secs(plan.settings.idempotency.done_ttl_seconds);
                crate::delivery::accumulator::Accumulator::new(store.clone(), ttl)
            });
        Engine {
            plan,
            store,
            accumulator,
            dead_letters,
            metrics,
            transport,
        }
    }

    /// Processes one decoded event. `original` is what was received, kept in
    /// dead letters so they can be replayed.
    pub async fn process(
        &self,
        mut event: RunEvent,
        original: &crate::delivery::original::Original,
        mode: Mode<'_>,
    ) -> EventResult {
        let (traceparent, tracestate) = original.trace_context();
        let parent = crate::delivery::otel::parent(traceparent.as_deref(), tracestate.as_deref());
        let trace = event_span(&event, &parent, mode);
        // Log lines of the event name its trace, to find it in a trace store.
        {
            use opentelemetry::trace::TraceContextExt;
            let trace_id = trace.span().span_context().trace_id();
            tracing::Span::current().record("trace_id", tracing::field::display(trace_id));
        }
        if let Some(t) = &self.plan.dashboard {
            match t.render(dashboard_context(&event)) {
                Ok(url) => event.url = Some(url),
                Err(e) => tracing::warn!(error = %e, "dashboardURL did not render"),
            }
        }
        // Every provider links to it (status target URLs, summaries), and it
        // is built from user-controlled names.
        event.url = event.url.as_deref().and_then(crate::event::escape::link);
        // One accumulator update per event, before any Notification renders.
        let summary = match &self.accumulator {
            Some(acc) => match acc.record(&event).await {
                Ok(s) => s,
                Err(e) => {
                    self.store_error(&e);
                    crate::delivery::accumulator::RunSummary::from_event(&event)
                }
            },
            None => None,
        };
        let summary = summary.as_ref();
        let selected = self.plan.notifications.iter().filter(|n| match mode {
            Mode::Live => true,
            Mode::Replay { notification } | Mode::Redrive { notification, .. } => {
                n.name == notification
            }
        });
        let event = &event;
        let trace = &trace;
        let runs = join_all(selected.map(|n| async move {
            let started = Instant::now();
            let span = crate::delivery::otel::start(
                format!("deliver {}", n.name),
                opentelemetry::trace::SpanKind::Internal,
                trace,
                vec![
                    opentelemetry::KeyValue::new("relay.notification", n.name.clone()),
                    opentelemetry::KeyValue::new("relay.provider", n.provider_name.clone()),
                    opentelemetry::KeyValue::new("relay.provider_type", n.provider_type.clone()),
                ],
            );
            // A panic anywhere else in this Notification's run (filter,
            // store) fails it alone: the other Notifications of the event
            // complete, and the failure is dead-lettered like any other.
            let run = AssertUnwindSafe(self.run_one(n, event, original, summary, mode, &span))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Run::Failed(panicked(n)));
            self.metrics
                .observe_delivery(&n.name, started.elapsed().as_secs_f64());
            (n, run, span)
        }))
        .await;

        let mut deliveries = Vec::with_capacity(runs.len());
        let mut retry_after: Option<Duration> = None;
        for (n, run, span) in runs {
            let (outcome, detail) = match run {
                Run::Done(o, d) => (o, d),
                Run::Failed(f) if f.retryable => {
                    let hint = f.retry_after.unwrap_or(Duration::from_secs(1));
                    retry_after = Some(retry_after.map_or(hint, |r| r.max(hint)));
                    (Outcome::Failed, Some(f.message))
                }
                Run::Failed(f) => match (mode, &self.dead_letters) {
                    (Mode::Replay { .. }, _) => (Outcome::Failed, Some(f.message)),
                    (Mode::Live | Mode::Redrive { .. }, DeadLetterTarget::Respond) => {
                        (Outcome::Rejected, Some(f.message))
                    }
                    (Mode::Live | Mode::Redrive { .. }, DeadLetterTarget::Sink(sink)) => {
                        let mut kept = original.to_json();
                        // Dead letters are listed over the API: no clone-URL token in them.
                        crate::event::decode::scm::redact_userinfo(&mut kept);
                        let mut entry = dead_letter(n, &f, kept);
                        if let Mode::Redrive { replays, .. } = mode {
                            entry.replays = replays;
                        }
                        match sink.put(&entry).await {
                            Ok(()) => {
                                if let Mode::Live = mode {
                                    self.settle_dead_lettered(n, event).await;
                                }
                                self.metrics
                                    .dead_letters
                                    .with_label_values(&[&n.name])
                                    .inc();
                                tracing::warn!(notification = %n.name, id = %entry.id,
                                    cause = %f.message, "dead-lettered");
                                (Outcome::DeadLettered, Some(f.message))
                            }
                            Err(e) => {
                                // Nowhere to keep it: ask the sender to retry instead.
                                self.metrics.dead_letter_errors.inc();
                                tracing::error!(notification = %n.name, error = %e,
                                    "cannot write dead letter; answering retryable");
                                retry_after = Some(Duration::from_secs(5));
                                (Outcome::Failed, Some(format!("{}; {e}", f.message)))
                            }
                        }
                    }
                },
            };
            self.metrics
                .deliveries
                .with_label_values(&[&n.name, outcome.as_str()])
                .inc();
            crate::delivery::otel::end(
                &span,
                "relay.outcome",
                outcome.as_str(),
                outcome.is_failure(),
            );
            deliveries.push(DeliveryReport {
                notification: n.name.clone(),
                provider: n.provider_name.clone(),
                outcome,
                detail,
            });
        }
        let outcome = summarize(&deliveries);
        crate::delivery::otel::end(
            trace,
            "relay.outcome",
            outcome.as_str(),
            outcome.is_failure(),
        );
        EventResult {
            outcome,
            deliveries,
            retry_after,
        }
    }

    fn store_error(&self, e: &StoreError) {
        self.metrics
            .store_errors
            .with_label_values(&[e.backend, e.op])
            .inc();
        tracing::warn!(error = %e, "store unavailable; delivering without idempotency");
    }

    async fn run_one(
        &self,
        n: &CompiledNotification,
        ev: &RunEvent,
        original: &crate::delivery::original::Original,
        summary: Option<&crate::delivery::accumulator::RunSummary>,
        mode: Mode<'_>,
        trace: &opentelemetry::Context,
    ) -> Run {
        match n.filter.evaluate(ev) {
            FilterVerdict::Match => {}
            FilterVerdict::NoMatch => return Run::Done(Outcome::Filtered, None),
            FilterVerdict::Error(e) => {
                return Run::Failed(Failure {
                    retryable: false,
                    status: None,
                    retry_after: None,
                    message: e,
                    attempts: 0,
                });
            }
        }
        if let Some(why) = n.provider.declines(ev) {
            return Run::Done(Outcome::Filtered, Some(why));
        }
        let keys = Keys::new(n, ev, mode);
        let idem = &self.plan.settings.idempotency;
        let lease = Duration::from_secs(idem.lease_seconds);
        let ttl = Duration::from_secs(idem.done_ttl_seconds);
        let owner = uuid::Uuid::new_v4().to_string();

        // Claims held (false when the store failed and we fail open).
        let mut held_id = false;
        let mut held_sem = false;
        match self.store.claim(&keys.id, &owner, lease).await {
            Ok(Claim::Done) => return Run::Done(Outcome::Duplicate, Some("same event id".into())),
            Ok(Claim::InProgress) => return in_progress(),
            Ok(Claim::Acquired) => held_id = true,
            Err(e) => self.store_error(&e),
        }
        match self.store.claim(&keys.semantic, &owner, lease).await {
            Ok(Claim::Done) => {
                if held_id {
                    let _ = self.store.complete(&keys.id, &owner, ttl).await;
                }
                return Run::Done(Outcome::Duplicate, Some("same condition".into()));
            }
            Ok(Claim::InProgress) => {
                self.release(&keys.id, &owner, held_id).await;
                return in_progress();
            }
            Ok(Claim::Acquired) => held_sem = true,
            Err(e) => self.store_error(&e),
        }
        if !ev.state.is_terminal() {
            match self.store.is_done(&keys.terminal).await {
                Ok(true) => {
                    self.release(&keys.id, &owner, held_id).await;
                    self.release(&keys.semantic, &owner, held_sem).await;
                    return Run::Done(
                        Outcome::Stale,
                        Some("run already reached a final state".into()),
                    );
                }
                Ok(false) => {}
                Err(e) => self.store_error(&e),
            }
        }
        // A panic while delivering (a provider's bug met by odd input) is
        // this delivery's failure: its claims are released below, so a
        // retry runs again rather than waiting out the lease.
        let delivered = AssertUnwindSafe(self.deliver(n, ev, original, summary, trace))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(panicked(n)));
        match delivered {
            Ok(detail) => {
                for (key, held) in [(&keys.id, held_id), (&keys.semantic, held_sem)] {
                    if held && let Err(e) = self.store.complete(key, &owner, ttl).await {
                        self.store_error(&e);
                    }
                }
                if ev.state.is_terminal()
                    && let Err(e) = self.store.mark_done(&keys.terminal, ttl).await
                {
                    self.store_error(&e);
                }
                Run::Done(Outcome::Delivered, detail)
            }
            Err(f) => {
                self.release(&keys.id, &owner, held_id).await;
                self.release(&keys.semantic, &owner, held_sem).await;
                Run::Failed(f)
            }
        }
    }

    /// A Notification dead-lettered for a live event is settled for that
    /// event: a redelivery of it (the sender's or Lambda's retry, because
    /// another Notification failed retryably) is a duplicate rather than a
    /// second dead letter. Its replay claims a key of its own (`Keys::new`).
    async fn settle_dead_lettered(&self, n: &CompiledNotification, ev: &RunEvent) {
        let ttl = Duration::from_secs(self.plan.settings.idempotency.done_ttl_seconds);
        let key = Keys::new(n, ev, Mode::Live).id;
        if let Err(e) = self.store.mark_done(&key, ttl).await {
            self.store_error(&e);
        }
    }

    async fn release(&self, key: &str, owner: &str, held: bool) {
        if held && let Err(e) = self.store.release(key, owner).await {
            self.store_error(&e);
        }
    }

    /// Performs the Notification's effects with bounded retries inside the deadline.
    async fn deliver(
        &self,
        n: &CompiledNotification,
        ev: &RunEvent,
        original: &crate::delivery::original::Original,
        summary: Option<&crate::delivery::accumulator::RunSummary>,
        trace: &opentelemetry::Context,
    ) -> Result<Option<String>, Failure> {
        let policy = &self.plan.settings.delivery;
        let input = DeliveryInput {
            event: ev,
            original: Some(original),
            notification: &n.name,
            template: n.template.as_ref(),
            summary,
            compiled: &n.compiled,
            state: crate::delivery::state::State::new(&self.store, &n.provider_type),
        };
        let http = crate::delivery::transport::Http {
            transport: &self.transport,
            classify: &|req, status, headers, body| n.provider.classify(req, status, headers, body),
            provider_name: &n.provider_name,
            policy,
            deadline: crate::delivery::transport::instant_after(
                crate::delivery::transport::seconds(policy.deadline_seconds),
            ),
            attempts: Default::default(),
            trace: trace.clone(),
        };
        match n.provider.deliver(&input, &http).await {
            Ok(detail) => Ok((!detail.is_empty()).then_some(detail)),
            Err(Verdict::Retryable {
                status,
                retry_after,
                message,
            }) => Err(Failure {
                retryable: true,
                status,
                // A provider's own hint too (a rate-limit reset it read from
                // a body) is held to the bound the transport applies.
                retry_after: Some(
                    retry_after
                        .unwrap_or(Duration::from_secs(1))
                        .min(crate::delivery::verdict::MAX_RETRY_AFTER),
                ),
                message,
                attempts: http.attempts(),
            }),
            Err(Verdict::Permanent { status, message }) => Err(Failure {
                retryable: false,
                status,
                retry_after: None,
                message,
                attempts: http.attempts(),
            }),
            Err(Verdict::Success) => Ok(None),
        }
    }
}

/// The event's span: a consumer of the event, under the context it carried
/// (a replay is a new span of the same trace).
fn event_span(
    ev: &RunEvent,
    parent: &opentelemetry::Context,
    mode: Mode<'_>,
) -> opentelemetry::Context {
    use opentelemetry::KeyValue;
    let mut attributes = vec![
        KeyValue::new("cloudevents.event_id", ev.event_id.clone()),
        KeyValue::new("cloudevents.event_type", ev.event_type.clone()),
        KeyValue::new("relay.run", ev.display_name()),
        KeyValue::new("relay.namespace", ev.namespace.clone()),
        KeyValue::new("relay.state", ev.state.to_string()),
    ];
    let name = match mode {
        Mode::Live => "process event",
        Mode::Replay { notification } => {
            attributes.push(KeyValue::new("relay.replay", notification.to_string()));
            "replay dead letter"
        }
        Mode::Redrive { notification, .. } => {
            attributes.push(KeyValue::new("relay.replay", notification.to_string()));
            "redrive dead letter"
        }
    };
    crate::delivery::otel::start(
        name,
        opentelemetry::trace::SpanKind::Consumer,
        parent,
        attributes,
    )
}

/// The failure of a delivery that panicked. The panic's text (which may
/// quote event data, or worse) stays in the process's log, where the panic
/// hook wrote it; the dead letter says only what failed.
fn panicked(n: &CompiledNotification) -> Failure {
    tracing::error!(notification = %n.name, provider = %n.provider_name,
        "internal error: the delivery panicked; failed without retrying");
    Failure {
        retryable: false,
        status: None,
        retry_after: None,
        message: format!(
            "internal error: the {} provider failed unexpectedly (see the relay's log)",
            n.provider_type
        ),
        attempts: 0,
    }
}

fn in_progress() -> Run {
    Run::Failed(Failure {
        retryable: true,
        status: None,
        retry_after: Some(Duration::from_secs(1)),
        message: "the same change is being delivered by another request".into(),
        attempts: 0,
    })
}

/// The single outcome of an event: the most consequential delivery's.
fn summarize(d: &[DeliveryReport]) -> Outcome {
    const ORDER: [Outcome; 8] = [
        Outcome::Failed,
        Outcome::Rejected,
        Outcome::DeadLettered,
        Outcome::Delivered,
        Outcome::Duplicate,
        Outcome::Stale,
        Outcome::Filtered,
        Outcome::Ignored,
    ];
    ORDER
        .into_iter()
        .find(|o| d.iter().any(|r| r.outcome == *o))
        .unwrap_or(Outcome::Filtered)
}

fn dead_letter(n: &CompiledNotification, f: &Failure, event: serde_json::Value) -> DeadLetterEntry {
    DeadLetterEntry {
        id: uuid::Uuid::new_v4().to_string(),
        failed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        notification: n.name.clone(),
        provider: n.provider_name.clone(),
        provider_type: n.provider_type.clone(),
        cause: Cause {
            kind: if f.retryable {
                CauseKind::RetriesExhausted
            } else {
                CauseKind::Permanent
            },
            status: f.status,
            message: f.message.clone(),
        },
        attempts: f.attempts,
        replays: 0,
        event,
        truncated: None,
        unknown_destination: false,
    }
}

/// The idempotency keys of one event for one Notification.
struct Keys {
    id: String,
    semantic: String,
    terminal: String,
}

impl Keys {
    /// A replayed dead letter's event has the live event's id, whose key
    /// is done once it was dead-lettered: a replay claims the id under a
    /// key of its own (two copies of one replay still post once).
    fn new(n: &CompiledNotification, ev: &RunEvent, mode: Mode<'_>) -> Keys {
        let semantic = match n.dedupe {
            Dedupe::Condition => {
                let digest = Sha256::digest(ev.condition_fingerprint().as_bytes());
                format!(
                    "n/{}/cond/{}/{}",
                    n.name,
                    ev.uid,
                    hex::encode(&digest[..16])
                )
            }
            Dedupe::State => format!("n/{}/state/{}/{}/{}", n.name, ev.uid, ev.phase, ev.state),
        };
        Keys {
            id: match mode {
                Mode::Live => format!("n/{}/id/{}", n.name, ev.event_id),
                Mode::Replay { .. } | Mode::Redrive { .. } => {
                    format!("n/{}/replay/{}", n.name, ev.event_id)
                }
            },
            semantic,
            terminal: format!("n/{}/terminal/{}", n.name, ev.uid),
        }
    }
}
