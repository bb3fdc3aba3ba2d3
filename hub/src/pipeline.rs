//! The sensor pipeline: MQTT messages → readings and findings in the database.
//!
//! ```text
//! MQTT consumer ──(bounded: pipeline.queue; sender waits)──▶ processor ──(bounded: 4 batches;
//!     sender waits)──▶ writer ──▶ one transaction per batch ──▶ outputs / events
//! offline monitor ─────────────────────────────────────────────▲
//! ```
//!
//! The processor takes whatever messages are queued (up to `pipeline.batch_max`), parses them,
//! runs the rules and the anomaly model (one batched run, off the async workers) and hands one
//! batch to the writer, which stores readings, findings and device state in one transaction.
//! Nothing is dropped inside the hub: every queue makes its sender wait, and the writer retries a
//! failed transaction until it succeeds or the process is stopped a second time. Because the
//! processor works on batch N+1 while the writer commits batch N, the two cores are both used.
//!
//! Shutdown drains: the MQTT consumer stops on the token, the processor ends when its queue is
//! empty and closed, the writer when the processor and monitor are gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::metrics::{Counter, Gauge, Histogram, Registry as Metrics, names};
use common::{Clock, Shutdown, UnixMs};
use inference::rules::{Engine, Hit, Outcome, Reading};
use ingest::topic::{self, Channel};
use ingest::{Inbound, telemetry};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::outputs::{FindingEvent, Outputs};
use crate::registry::{Device, Registry};
use crate::store::{Batch, FindingHit, ReadingRow, Store};

/// Batches queued between processor and writer.
pub const WRITER_QUEUE: usize = 4;

/// Readings deleted per retention statement.
const RETENTION_CHUNK: i64 = 5_000;

/// Logs at most once a second per reason, with the number suppressed in between.
#[derive(Debug, Default)]
struct Throttle {
    last: AtomicI64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// Some(suppressed count) when a line may be logged now.
    fn allow(&self, now: UnixMs) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if now - last >= 1000
            && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Rejection reasons that are not payload errors.
const REJECT_REASONS: &[&str] = &[
    "bad_topic",
    "unknown_device",
    "wrong_site",
    "bad_status",
    "bad_json",
    "not_an_object",
    "bad_timestamp",
    "not_numeric",
    "not_finite",
    "empty",
    "bad_metric_name",
    "too_many_values",
    "ts_out_of_window",
];

struct Rejects {
    counters: HashMap<&'static str, (Arc<Counter>, Throttle)>,
}

impl Rejects {
    fn new(m: &Metrics) -> Self {
        let counters = REJECT_REASONS
            .iter()
            .map(|r| {
                let c = m.counter(
                    names::READINGS_REJECTED,
                    "Device messages refused by the hub, by reason",
                    &[("reason", r)],
                );
                (*r, (c, Throttle::default()))
            })
            .collect();
        Self { counters }
    }

    fn reject(
        &self,
        reason: &'static str,
        now: UnixMs,
        topic: &[u8],
        detail: &dyn std::fmt::Display,
    ) {
        let Some((counter, throttle)) = self.counters.get(reason) else { return };
        counter.inc();
        if let Some(suppressed) = throttle.allow(now) {
            warn!(
                reason,
                topic = %String::from_utf8_lossy(topic),
                detail = %detail,
                suppressed,
                "device message refused"
            );
        }
    }
}

/// What the pipeline's stages share.
pub struct Ctx {
    pub registry: Arc<Registry>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub outputs: Outputs,
    /// Accepted `ts` around the hub's clock (`pipeline.max_clock_skew_ahead`, `max_reading_age`).
    pub ts_window: telemetry::TsWindow,
    rejects: Rejects,
    stored: Arc<Counter>,
    opened: Arc<Counter>,
    updated: Arc<Counter>,
    queue_depth: Arc<Gauge>,
    online: Arc<Gauge>,
    write_time: Arc<Histogram>,
    model_scores: Arc<Counter>,
    write_retries: Arc<Counter>,
    dead_letters: Arc<Counter>,
    spooled: Arc<Counter>,
}

impl Ctx {
    pub fn new(
        registry: Arc<Registry>,
        store: Store,
        clock: Arc<dyn Clock>,
        outputs: Outputs,
        ts_window: telemetry::TsWindow,
        m: &Metrics,
    ) -> Self {
        Self {
            registry,
            store,
            clock,
            outputs,
            ts_window,
            rejects: Rejects::new(m),
            stored: m.counter(names::READINGS_STORED, "Readings stored", &[]),
            opened: m.counter(names::FINDINGS_OPENED, "Findings opened", &[]),
            updated: m.counter(names::FINDINGS_UPDATED, "Repeats folded into open findings", &[]),
            queue_depth: m.gauge(
                names::PIPELINE_QUEUE_DEPTH,
                "Messages waiting for the processor",
                &[],
            ),
            online: m.gauge(names::DEVICES_ONLINE, "Devices online", &[]),
            write_time: m.histogram(names::BATCH_WRITE_SECONDS, "Time to store one batch", &[]),
            model_scores: m.counter(names::MODEL_SCORES, "Windows scored by sensor models", &[]),
            write_retries: m.counter(
                names::WRITE_RETRIES,
                "Failed batch writes retried (the database away, busy or locked)",
                &[],
            ),
            dead_letters: m.counter(
                names::DEAD_LETTERS,
                "Batches the database refused for good, kept in dead_letters",
                &[],
            ),
            spooled: m.counter(
                names::SPOOLED_BATCHES,
                "Batches written to data_dir/spool at shutdown with the database away",
                &[],
            ),
        }
    }
}

/// Collects finding hits of one batch, one entry per key, in first-seen order.
#[derive(Default)]
struct HitSet {
    hits: Vec<FindingHit>,
    index: HashMap<String, usize>,
}

impl HitSet {
    fn add(&mut self, h: FindingHit) {
        match self.index.get(&h.dedup_key) {
            Some(&i) => self.hits[i].merge(h),
            None => {
                self.index.insert(h.dedup_key.clone(), self.hits.len());
                self.hits.push(h);
            }
        }
    }
}

fn offline_hit(reg: &Registry, d: &Device, ts: UnixMs, reason: &str) -> FindingHit {
    let kind = reg.kinds.get(&d.kind);
    let site = reg.sites.get(d.site.as_str());
    FindingHit {
        dedup_key: FindingHit::key(d.site.as_str(), &d.id, "offline", "offline"),
        site_id: d.site.to_string(),
        device_id: Some(d.id.clone()),
        camera_id: None,
        rule: "offline".into(),
        kind: "offline".into(),
        severity: kind.map_or(common::Severity::Minor, |k| k.offline_severity),
        item_code: kind.and_then(|k| k.offline_item_code.clone()),
        region: site.map(|s| s.region.clone()),
        summary: format!("Device {} offline: {reason}", d.id),
        first_seen: ts,
        last_seen: ts,
        count: 1,
        last_value: None,
        details: serde_json::json!({ "reason": reason, "last_seen": d.last_seen() }).to_string(),
        evidence: Vec::new(),
    }
}

/// Notes that a device spoke at `now`, marking it online (once).
fn go_online(d: &Device, now: UnixMs, batch: &mut Batch) {
    d.last_rx.store(now, Ordering::Relaxed);
    if !d.online.swap(true, Ordering::Relaxed) {
        info!(device = %d.id, "device online");
        batch.status.push((d.id.clone(), true));
    }
}

/// Marks a device offline (once) and returns the finding to raise.
fn go_offline(
    reg: &Registry,
    d: &Device,
    now: UnixMs,
    reason: &str,
    batch: &mut Batch,
) -> Option<FindingHit> {
    if !d.online.swap(false, Ordering::Relaxed) {
        return None;
    }
    info!(device = %d.id, reason, "device offline");
    batch.status.push((d.id.clone(), false));
    Some(offline_hit(reg, d, now, reason))
}

/// What the processor builds from one batch of messages.
#[derive(Default)]
struct Work {
    /// The device of each reading evaluated; a hit's tag indexes it.
    tagged: Vec<Arc<Device>>,
    batch: Batch,
    set: HitSet,
    out: Outcome,
}

/// Runs until the inbound queue is closed and drained.
pub async fn run_processor(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Inbound>>>,
    mut engine: Engine,
    ctx: Arc<Ctx>,
    writer: mpsc::Sender<Batch>,
    batch_max: usize,
) {
    // Shared so that a restarted processor takes the same queue (crate::supervise).
    let mut rx = rx.lock().await;
    let mut msgs: Vec<Inbound> = Vec::with_capacity(batch_max);
    while let Some(first) = rx.recv().await {
        msgs.push(first);
        while msgs.len() < batch_max {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        ctx.queue_depth.set(rx.len() as i64);
        let mut w = Work::default();
        load_unknown_devices(&ctx.registry, &msgs).await;
        for m in msgs.drain(..) {
            process_one(&ctx, &mut engine, m, &mut w);
        }
        let scores = std::mem::take(&mut w.out.scores);
        if !scores.is_empty() {
            ctx.model_scores.add(scores.len() as u64);
            // Model runs are CPU work: off the async workers.
            match tokio::task::spawn_blocking(move || scores.run()).await {
                Ok(Ok(h)) => w.out.hits.extend(h),
                Ok(Err(e)) => {
                    error!(error = %e, "sensor model failed; windows of this batch not scored")
                }
                Err(e) => error!(error = %e, "sensor model task panicked"),
            }
        }
        for h in w.out.hits.drain(..) {
            w.set.add(rule_hit(&ctx.registry, engine.rules(), &w.tagged[h.tag], &h));
        }
        w.batch.findings = w.set.hits;
        if (!w.batch.is_empty() || !w.batch.acks.is_empty()) && writer.send(w.batch).await.is_err()
        {
            error!("writer stopped; processor exiting");
            return;
        }
    }
}

fn rule_hit(reg: &Registry, rules: &inference::rules::RuleSet, d: &Device, h: &Hit) -> FindingHit {
    let r = &rules.rules[h.rule];
    let details = match &r.check {
        inference::rules::Check::Model { model, .. } => serde_json::json!({
            "model": model.model.manifest.name, "metric": r.metric, "score": h.value,
            "threshold": model.spec.threshold,
        }),
        _ => serde_json::json!({ "metric": r.metric, "value": h.value }),
    };
    FindingHit {
        dedup_key: FindingHit::key(d.site.as_str(), &d.id, &r.id, r.kind),
        site_id: d.site.to_string(),
        device_id: Some(d.id.clone()),
        camera_id: None,
        rule: r.id.clone(),
        kind: r.kind.to_owned(),
        severity: r.severity,
        item_code: Some(r.item_code.clone()),
        region: reg.sites.get(d.site.as_str()).map(|s| s.region.clone()),
        summary: r.summary.clone(),
        first_seen: h.ts,
        last_seen: h.ts,
        count: 1,
        last_value: Some(h.value),
        details: details.to_string(),
        evidence: Vec::new(),
    }
}

/// Loads the batch's devices this hub does not know from the database (one query): another hub
/// on the same database may have registered them (external mode, one shared group).
async fn load_unknown_devices(registry: &Registry, msgs: &[Inbound]) {
    // `resolve` skips the ids it knows under one lock; only the others are looked up.
    let ids: Vec<&str> =
        msgs.iter().filter_map(|m| topic::parse(&m.topic).ok()).map(|t| t.device).collect();
    registry.resolve(&ids).await;
}

fn process_one(ctx: &Ctx, engine: &mut Engine, mut m: Inbound, w: &mut Work) {
    // Owed whatever becomes of the message (stored or refused), given after the commit.
    if let Some(ack) = m.ack.take() {
        w.batch.acks.push(ack);
    }
    let batch = &mut w.batch;
    let now = m.received_at;
    let r = &ctx.rejects;
    let t = match topic::parse(&m.topic) {
        Ok(t) => t,
        Err(e) => return r.reject("bad_topic", now, &m.topic, &format_args!("{e:?}")),
    };
    let Some(device) = ctx.registry.get(t.device) else {
        return r.reject("unknown_device", now, &m.topic, &"no such device is registered");
    };
    if device.site.as_str() != t.site {
        return r.reject(
            "wrong_site",
            now,
            &m.topic,
            &format_args!("device belongs to site {}", device.site),
        );
    }
    match t.channel() {
        Some(Channel::Telemetry) => {
            let tm = match telemetry::parse(&m.payload, now, ctx.ts_window) {
                Ok(tm) => tm,
                Err(e) => return r.reject(e.reason(), now, &m.topic, &e),
            };
            device.last_seen.fetch_max(tm.ts, Ordering::Relaxed);
            device.seen_dirty.store(true, Ordering::Relaxed);
            go_online(&device, now, batch);
            let vals: serde_json::Map<String, serde_json::Value> =
                tm.values.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(*v))).collect();
            batch.readings.push(ReadingRow {
                device_id: device.id.clone(),
                ts: tm.ts,
                received_at: now,
                vals: serde_json::Value::Object(vals).to_string(),
                device_clock: tm.device_clock,
            });
            let reading = Reading {
                tag: w.tagged.len(),
                device: &device.id,
                kind: &device.kind,
                ts: tm.ts,
                values: &tm.values,
            };
            engine.evaluate(reading, &mut w.out);
            w.tagged.push(device);
        }
        Some(Channel::Status) => {
            let p = String::from_utf8_lossy(&m.payload);
            match p.trim().to_ascii_lowercase().as_str() {
                "online" => go_online(&device, now, batch),
                "offline" => {
                    let reason =
                        "the device reported offline or its connection dropped (last will)";
                    if let Some(h) = go_offline(&ctx.registry, &device, now, reason, batch) {
                        w.set.add(h);
                    }
                }
                _ => r.reject(
                    "bad_status",
                    now,
                    &m.topic,
                    &"status payload must be online or offline",
                ),
            }
        }
        // Other topics a device owns (e.g. its own command replies) are not readings.
        None => {}
    }
}

/// What the writer is doing, for `/healthz`: a write that fails or hangs makes the hub report
/// its database as unhealthy within a second, while the writer keeps retrying.
#[derive(Debug, Default)]
pub struct WriterStatus(std::sync::Mutex<WriterState>);

#[derive(Debug, Default, Clone)]
struct WriterState {
    /// When the write in progress began; None while idle.
    writing_since: Option<Instant>,
    /// The last error of the current run of failed attempts (cleared by a commit).
    failing: Option<String>,
}

impl WriterStatus {
    fn state(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why writes are not getting through, or None: the last attempt failed, or a write has
    /// been waiting for longer than `stall` (a lock held elsewhere, a database that hangs).
    pub fn problem(&self, stall: Duration) -> Option<String> {
        let st = self.state();
        if let Some(e) = &st.failing {
            return Some(format!("writes failing, retrying: {e}"));
        }
        match st.writing_since {
            Some(t) if t.elapsed() > stall => {
                Some(format!("a write has been waiting for {} ms", t.elapsed().as_millis()))
            }
            _ => None,
        }
    }
}

/// Where the writer keeps batches it could not store before shutdown.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// `data_dir/spool`: batches written as JSON files when the hub is stopped while the
    /// database is away; stored at the next start ([`replay_spool`]).
    pub spool_dir: std::path::PathBuf,
    /// `data_dir/evidence`: the files of a batch that can be neither stored nor spooled are
    /// removed. Those of a dead letter or a spooled batch are kept: the rows refer to them.
    pub evidence_dir: std::path::PathBuf,
    pub shutdown: Shutdown,
}

/// Stores batches until every sender is gone. The receiver is shared so that a supervisor can
/// restart the writer after a panic without losing the queue.
pub async fn run_writer(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Batch>>>,
    ctx: Arc<Ctx>,
    status: Arc<WriterStatus>,
    opts: WriterOptions,
) {
    let mut rx = rx.lock().await;
    while let Some(mut batch) = rx.recv().await {
        // Under load batches queue up while one is written: fold them into one transaction,
        // so the per-transaction cost is paid once and the queue drains instead of growing.
        while let Ok(more) = rx.try_recv() {
            merge(&mut batch, more);
        }
        store_batch(&ctx, &status, &opts, batch).await;
    }
}

/// Stores one batch: retries transient failures with backoff and jitter until the database
/// is back; keeps a batch the database refuses for good in `dead_letters`; on shutdown, spools
/// what cannot be stored to a file. Acknowledgements are given only once the batch is stored.
async fn store_batch(ctx: &Ctx, status: &WriterStatus, opts: &WriterOptions, mut batch: Batch) {
    let acks = std::mem::take(&mut batch.acks);
    if batch.is_empty() {
        // Only refusals: nothing to store, the refusal is counted; acknowledge.
        acks.into_iter().for_each(ingest::ack::Ack::done);
        return;
    }
    let started = Instant::now();
    status.state().writing_since = Some(started);
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0u32;
    let written = loop {
        let e = match ctx.store.write_batch(&batch, ctx.clock.now_ms()).await {
            Ok(w) => break Some(w),
            Err(e) => e,
        };
        attempts += 1;
        if crate::store::classify(&e) == crate::store::Failure::Permanent {
            error!(error = %e, readings = batch.readings.len(), findings = batch.findings.len(), "the database refused a batch; keeping it in dead_letters for an operator");
            match ctx.store.dead_letter(&batch, &e.to_string(), ctx.clock.now_ms()).await {
                Ok(id) => {
                    ctx.dead_letters.inc();
                    error!(dead_letter = id, "batch kept in dead_letters (see docs/guide.md)");
                    break None;
                }
                // Even the dead letter failed: the database is away after all; retry.
                Err(e2) => status.state().failing = Some(e2.to_string()),
            }
        } else {
            status.state().failing = Some(e.to_string());
        }
        ctx.write_retries.inc();
        if attempts == 1 || attempts.is_multiple_of(10) {
            error!(error = %e, attempts, retry_in = ?backoff, readings = batch.readings.len(), findings = batch.findings.len(), "storing a batch failed; retrying (nothing is acknowledged until it is stored)");
        }
        if opts.shutdown.is_triggered() {
            spool(ctx, opts, &batch);
            let mut st = status.state();
            st.writing_since = None;
            return;
        }
        let jitter = rand::random::<u64>() % (backoff.as_millis() as u64 / 5 + 1);
        tokio::select! {
            biased;
            // Shutdown while waiting: one more attempt, then the spool.
            _ = opts.shutdown.cancelled() => {}
            _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    };
    {
        let mut st = status.state();
        st.writing_since = None;
        st.failing = None;
    }
    // Stored (or kept as a dead letter): now, and only now, the senders hear so.
    acks.into_iter().for_each(ingest::ack::Ack::done);
    let Some(written) = written else { return };
    ctx.write_time.observe(started.elapsed().as_secs_f64());
    ctx.stored.add(written.readings);
    for (f, c) in batch.findings.iter().zip(&written.changes) {
        if c.opened {
            ctx.opened.inc()
        } else {
            ctx.updated.inc()
        }
        ctx.outputs.emit(&FindingEvent {
            id: c.id,
            change: if c.opened { "opened" } else { "updated" },
            count: c.count,
            site_id: &f.site_id,
            device_id: f.device_id.as_deref(),
            rule: &f.rule,
            kind: &f.kind,
            severity: f.severity,
            summary: &f.summary,
            first_seen: f.first_seen,
            last_seen: f.last_seen,
            last_value: f.last_value,
        });
    }
}

/// Writes a batch that could not be stored before shutdown to `spool_dir` (not acknowledged:
/// devices send their readings again; findings wait in the file for the next start).
fn spool(ctx: &Ctx, opts: &WriterOptions, batch: &Batch) {
    let name = format!("batch-{}-{:08x}.json", ctx.clock.now_ms(), rand::random::<u32>());
    let path = opts.spool_dir.join(name);
    let r = std::fs::create_dir_all(&opts.spool_dir).and_then(|()| {
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, serde_json::to_vec(batch).unwrap_or_default())?;
        std::fs::rename(&tmp, &path)
    });
    match r {
        Ok(()) => {
            ctx.spooled.inc();
            error!(file = %path.display(), readings = batch.readings.len(), findings = batch.findings.len(), "shutting down with the database away: batch spooled to a file; it is stored at the next start")
        }
        Err(e) => {
            error!(file = %path.display(), error = %e, readings = batch.readings.len(), findings = batch.findings.len(), "shutting down with the database away and the spool unwritable: this batch is lost (its readings were not acknowledged)");
            let rows: Vec<_> = batch.findings.iter().flat_map(|f| f.evidence.clone()).collect();
            crate::evidence::discard(&opts.evidence_dir, &rows);
        }
    }
}

/// Stores the batches a previous run spooled ([`WriterOptions::spool_dir`]), oldest first;
/// a file is removed once its batch is committed. Returns how many were stored.
pub async fn replay_spool(store: &Store, dir: &std::path::Path, now: UnixMs) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut n = 0;
    for f in files {
        let batch: Batch = match std::fs::read(&f)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(b) => b,
            Err(e) => {
                error!(file = %f.display(), error = %e, "spooled batch unreadable; left in place");
                continue;
            }
        };
        match store.write_batch(&batch, now).await {
            Ok(_) => {
                n += 1;
                info!(file = %f.display(), readings = batch.readings.len(), findings = batch.findings.len(), "spooled batch stored");
                let _ = std::fs::remove_file(&f);
            }
            Err(e) => {
                error!(file = %f.display(), error = %e, "spooled batch not stored yet; kept for the next start");
                break;
            }
        }
    }
    n
}

/// Appends `more` to `batch`, folding findings of the same key.
fn merge(batch: &mut Batch, more: Batch) {
    batch.readings.extend(more.readings);
    batch.status.extend(more.status);
    batch.seen.extend(more.seen);
    batch.acks.extend(more.acks);
    let mut set = HitSet::default();
    for f in std::mem::take(&mut batch.findings).into_iter().chain(more.findings) {
        set.add(f);
    }
    batch.findings = set.hits;
}

/// Settings of the monitor.
#[derive(Debug, Clone, Copy)]
pub struct MonitorConfig {
    pub tick: Duration,
    pub retention: Duration,
    /// Login sessions past these are deleted (they are refused on use already).
    pub session_idle: Duration,
    pub session_lifetime: Duration,
}

/// Marks silent devices offline, flushes last-seen times, applies readings retention.
pub async fn run_monitor(
    ctx: Arc<Ctx>,
    writer: mpsc::Sender<Batch>,
    cfg: MonitorConfig,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(cfg.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        n += 1;
        let now = ctx.clock.now_ms();
        let mut batch = Batch::default();
        let mut set = HitSet::default();
        let flush_seen = n.is_multiple_of(5);
        for d in ctx.registry.all() {
            let Some(kind) = ctx.registry.kinds.get(&d.kind) else { continue };
            let last_rx = d.last_rx.load(Ordering::Relaxed);
            let timeout = kind.inactivity_timeout.as_millis() as i64;
            if d.is_online() && last_rx > 0 && now - last_rx > timeout {
                let reason =
                    format!("no data for {}", humantime::format_duration(kind.inactivity_timeout));
                if let Some(h) = go_offline(&ctx.registry, &d, now, &reason, &mut batch) {
                    set.add(h);
                }
            }
            if flush_seen
                && d.seen_dirty.swap(false, Ordering::Relaxed)
                && let Some(seen) = d.last_seen()
            {
                batch.seen.push((d.id.clone(), seen));
            }
        }
        ctx.online.set(ctx.registry.online_count());
        batch.findings = set.hits;
        if !batch.is_empty() && writer.send(batch).await.is_err() {
            break;
        }
        if let Err(e) = ctx.store.checkpoint().await {
            warn!(error = %e, "checkpoint failed; will retry");
        }
        // Hourly, and once shortly after start.
        if n % 3600 == 10 {
            let cutoff = now - cfg.retention.as_millis() as i64;
            // In bounded chunks: the writer gets the database between two of them.
            let mut deleted = 0;
            loop {
                match ctx.store.delete_readings_before(cutoff, RETENTION_CHUNK).await {
                    Ok(k) => {
                        deleted += k;
                        if k < RETENTION_CHUNK as u64 || shutdown.is_triggered() {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    Err(e) => {
                        warn!(error = %e, "readings retention failed; will retry");
                        break;
                    }
                }
            }
            if deleted > 0 {
                info!(deleted, "readings retention applied");
            }
            let idle = now - cfg.session_idle.as_millis() as i64;
            let created = now - cfg.session_lifetime.as_millis() as i64;
            if let Err(e) = ctx.store.expire_sessions(idle, created).await {
                warn!(error = %e, "deleting expired sessions failed; will retry");
            }
        }
    }
}
