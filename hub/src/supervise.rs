//! Supervision of the hub's long-lived tasks.
//!
//! Every stage (processor, writer, monitors, MQTT gateway and consumer, HTTP server, analysis
//! workers) runs under [`Supervisor::spawn`]. A task that panics, or ends while the hub is not
//! shutting down, is logged at ERROR, counted (`hub_task_failures_total{task}`), reported by
//! `/healthz` as down (503, naming it) and, where that is safe, started again after a backoff.
//! "Safe" means the task's state can be rebuilt: the processor and writer take their queue's
//! receiver from a shared slot (what was queued survives), the monitors hold nothing. Tasks that
//! own a socket or a thread pool they cannot rebuild alone (listeners, broker links, the
//! analysis threads) stay down and say so: the operator restarts the process.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Shutdown;
use common::metrics::{Counter, Gauge, Registry as Metrics, names};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{error, info};

/// Whether a failed task is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// After a backoff (0.5 s doubling to 10 s), for as long as it keeps failing.
    Always,
    /// Never: the task stays down, and `/healthz` says so, until the process restarts.
    Never,
}

/// A test seam: makes named tasks fail on demand (`fail`) until `heal`ed.
#[derive(Debug, Default, Clone)]
pub struct Faults(Arc<FaultsInner>);

#[derive(Debug, Default)]
struct FaultsInner {
    failing: Mutex<HashSet<String>>,
    changed: Notify,
}

impl Faults {
    /// Makes the running task `name` fail now, and every restart of it fail at once.
    pub fn fail(&self, name: &str) {
        self.set().insert(name.to_owned());
        self.0.changed.notify_waiters();
    }

    /// Lets `name` start again normally.
    pub fn heal(&self, name: &str) {
        self.set().remove(name);
        self.0.changed.notify_waiters();
    }

    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.failing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_failing(&self, name: &str) -> bool {
        self.set().contains(name)
    }

    async fn until_failing(&self, name: &str) {
        loop {
            let changed = self.0.changed.notified();
            if self.is_failing(name) {
                return;
            }
            changed.await;
        }
    }
}

/// Adapts a future that can run only once (it owns a listener, a broker link or threads) to
/// [`Supervisor::spawn`], for use with [`Restart::Never`].
pub fn once<Fut>(fut: Fut) -> impl FnMut() -> OnceRun + Send + 'static
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut slot: Option<BoxedTask> = Some(Box::pin(fut));
    move || OnceRun(slot.take())
}

type BoxedTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The future of [`once`]: the wrapped one the first time, nothing after.
pub struct OnceRun(Option<BoxedTask>);

impl Future for OnceRun {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        match self.0.as_mut() {
            Some(f) => f.as_mut().poll(cx),
            None => std::task::Poll::Ready(()),
        }
    }
}

/// The state of every supervised task.
pub struct Supervisor {
    /// Tasks down now, with why.
    down: Mutex<BTreeMap<&'static str, String>>,
    failures: Metrics,
    down_gauge: Arc<Gauge>,
    faults: Faults,
    shutdown: Shutdown,
}

impl Supervisor {
    pub fn new(metrics: &Metrics, faults: Faults, shutdown: Shutdown) -> Arc<Self> {
        Arc::new(Self {
            down: Mutex::new(BTreeMap::new()),
            failures: metrics.clone(),
            down_gauge: metrics.gauge(names::TASKS_DOWN, "Supervised tasks down now", &[]),
            faults,
            shutdown,
        })
    }

    fn counter(&self, name: &'static str) -> Arc<Counter> {
        self.failures.counter(
            names::TASK_FAILURES,
            "Supervised tasks that panicked or ended unexpectedly, by task",
            &[("task", name)],
        )
    }

    fn set_down(&self, name: &'static str, why: Option<String>) {
        let mut d = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match why {
            Some(w) => d.insert(name, w),
            None => d.remove(name),
        };
        self.down_gauge.set(d.len() as i64);
    }

    /// Tasks that are down now, with the reason: `/healthz` reports each.
    pub fn down(&self) -> BTreeMap<&'static str, String> {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `make()`'s future as the task `name`, supervised as described in the module docs.
    /// The returned handle ends when the task ends for good (shutdown, or a failure of a task
    /// that is not restarted).
    pub fn spawn<F, Fut>(
        self: &Arc<Self>,
        name: &'static str,
        restart: Restart,
        mut make: F,
    ) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let sup = self.clone();
        let failures = self.counter(name);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let why = if sup.faults.is_failing(name) {
                    "failed at start (injected fault)".to_owned()
                } else {
                    let mut task = tokio::spawn(make());
                    sup.set_down(name, None);
                    tokio::select! {
                        ended = &mut task => match ended {
                            Ok(()) if sup.shutdown.is_triggered() => {
                                sup.set_down(name, None);
                                return;
                            }
                            Ok(()) => "ended while the hub was running".to_owned(),
                            Err(e) if e.is_panic() => {
                                let msg = e.into_panic();
                                let text = msg
                                    .downcast_ref::<&str>()
                                    .map(|s| (*s).to_owned())
                                    .or_else(|| msg.downcast_ref::<String>().cloned())
                                    .unwrap_or_else(|| "a panic".into());
                                format!("panicked: {text}")
                            }
                            Err(_) => "cancelled".to_owned(),
                        },
                        _ = sup.faults.until_failing(name) => {
                            task.abort();
                            let _ = (&mut task).await;
                            "killed (injected fault)".to_owned()
                        }
                    }
                };
                failures.inc();
                sup.set_down(name, Some(why.clone()));
                if restart == Restart::Never {
                    error!(task = name, why, "task down; it is not restarted (restart the hub)");
                    return;
                }
                error!(task = name, why, retry_in = ?backoff, "task down; restarting");
                if !sup.pause(&mut backoff).await {
                    return;
                }
                info!(task = name, "restarting the task");
            }
        })
    }

    /// Waits `backoff` (then doubles it, at most 10 s); false when shutdown came first.
    async fn pause(&self, backoff: &mut Duration) -> bool {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(Duration::from_secs(10));
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_panicking_task_is_reported_down_and_restarted() {
        let m = Metrics::new();
        let shutdown = Shutdown::new();
        let sup = Supervisor::new(&m, Faults::default(), shutdown.clone());
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(4);
        let h = sup.spawn("flaky", Restart::Always, move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                if n == 0 {
                    panic!("first run fails");
                }
                let _ = tx.send(()).await;
                std::future::pending::<()>().await
            }
        });
        rx.recv().await.expect("second run started");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(sup.down().is_empty(), "back up after the restart");
        assert_eq!(m.counter(names::TASK_FAILURES, "", &[("task", "flaky")]).get(), 1);
        shutdown.trigger();
        h.abort();
    }

    #[tokio::test]
    async fn a_task_that_is_not_restarted_stays_down() {
        let m = Metrics::new();
        let sup = Supervisor::new(&m, Faults::default(), Shutdown::new());
        let h = sup.spawn("once", Restart::Never, || async {});
        h.await.unwrap();
        let down = sup.down();
        assert_eq!(down.get("once").map(String::as_str), Some("ended while the hub was running"));
    }
}
