//! Hot reload (HTTP mode): the config file is re-read when it changes and on
//! SIGHUP. The new config is compiled whole before anything is swapped; if it
//! is invalid the old engine keeps serving. Both outcomes are counted in
//! `relay_config_reloads_total{result="applied"|"rejected"}`.
//!
//! The file is polled (its resolved path, inode, size and mtime) rather than
//! watched with inotify: a Kubernetes ConfigMap mount changes by swapping the
//! `..data` symlink, which an inotify watch on the file itself never sees,
//! and a poll of one `stat` a second costs nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::delivery::assemble::build_engine;
use crate::delivery::provider::Registry;
use crate::event::config::{ConfigErrors, RelayConfig, apply_env_overrides};
use crate::host::server::{App, SharedApp};

/// How often the config file is checked for a change.
pub const POLL: Duration = Duration::from_secs(1);

/// What identifies one version of the config file. The resolved path moves
/// on a symlink swap, the inode on a rename over it, size and mtime on an
/// in-place write.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    resolved: PathBuf,
    inode: (u64, u64),
    len: u64,
    modified: Option<SystemTime>,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let resolved = std::fs::canonicalize(path).ok()?;
    let md = std::fs::metadata(&resolved).ok()?;
    #[cfg(unix)]
    let inode = {
        use std::os::unix::fs::MetadataExt;
        (md.dev(), md.ino())
    };
    #[cfg(not(unix))]
    let inode = (0, 0);
    Some(Fingerprint {
        resolved,
        inode,
        len: md.len(),
        modified: md.modified().ok(),
    })
}

/// Re-reads `path` and makes its Notifications current. On any error the old
/// engine stays. Events already in flight finish on the engine they started
/// with (each request holds its own `Arc`); the store, dead-letter sink and
/// metrics carry over unless their settings changed.
pub async fn reload(app: &App, path: &Path, registry: &Registry) -> Result<usize, ConfigErrors> {
    reload_with(app, RelayConfig::load(path), registry).await
}

/// [`reload`] of a config already read (`loaded`, before the deployment's
/// overrides), wherever it came from (a file, SSM, S3).
pub async fn reload_with(
    app: &App,
    loaded: Result<RelayConfig, ConfigErrors>,
    registry: &Registry,
) -> Result<usize, ConfigErrors> {
    let current = app.engine();
    let result = async {
        let mut cfg = loaded?;
        apply_env_overrides(&mut cfg, |k| std::env::var(k).ok())?;
        let engine = build_engine(&cfg, registry, Some(&current)).await?;
        // A reload must not open the door the start kept closed.
        app.admits(&engine.plan.settings).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push(&cfg.settings_document, "spec.inboundAuth", e);
            errs
        })?;
        Ok(engine)
    }
    .await;
    let reloads = &current.metrics.config_reloads;
    match result {
        Ok(engine) => {
            let n = engine.plan.notifications.len();
            app.swap(engine);
            reloads.with_label_values(&["applied"]).inc();
            Ok(n)
        }
        Err(e) => {
            reloads.with_label_values(&["rejected"]).inc();
            Err(e)
        }
    }
}

/// Reloads the config file on change and on SIGHUP, for the life of the
/// process.
pub struct Watcher {
    path: PathBuf,
    seen: Option<Fingerprint>,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Watcher {
    /// Create it before reading the config: a change made while the function
    /// starts is then still seen, and from here on SIGHUP reloads rather than
    /// terminates. Needs a Tokio runtime.
    pub fn new(path: PathBuf) -> Watcher {
        #[cfg(unix)]
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP; reloading on file changes only");
                None
            }
        };
        Watcher {
            seen: fingerprint(&path),
            path,
            #[cfg(unix)]
            hangup,
        }
    }

    /// Starts watching in the background for `app`.
    pub fn start(self, app: SharedApp, registry: Registry) {
        let reloads = &app.engine().metrics.config_reloads;
        for result in ["applied", "rejected"] {
            // Present at 0, so a dashboard sees the series before the first reload.
            reloads.with_label_values(&[result]);
        }
        tracing::info!(path = %self.path.display(), "watching the config file; SIGHUP reloads it");
        tokio::spawn(self.run(app, registry));
    }

    async fn run(mut self, app: SharedApp, registry: Registry) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hangup = async {
                match self.hangup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let trigger = tokio::select! {
                () = hangup => "SIGHUP",
                _ = tick.tick() => {
                    if fingerprint(&self.path) == self.seen {
                        continue;
                    }
                    "file changed"
                }
            };
            // Taken before reading, so a write during the read is seen next time.
            self.seen = fingerprint(&self.path);
            match reload(&app, &self.path, &registry).await {
                Ok(n) => tracing::info!(trigger, notifications = n, "config reloaded"),
                Err(e) => tracing::error!(
                    trigger,
                    "config reload rejected; the previous config stays:\n{e}"
                ),
            }
        }
    }
}
