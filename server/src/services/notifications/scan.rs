//! The leader's event scan: committed events → deliveries.
//!
//! Each pass, for each kind of event some enabled rule listens to, reads
//! the events after the kind's cursor (in `(time, id)` order, a page at a
//! time) and writes a delivery for each rule that matches, moving the
//! cursor in the same transaction. A rule hears of events from its
//! creation (or its last enabling) on, so a new rule never reads history.
//!
//! **Late commits.** An event's time is taken before its transaction
//! commits, so a row can become visible with a time the cursor has passed
//! (a slow PostgreSQL commit, another instance's clock a little behind).
//! Two measures: a pass reads only events at least [`SETTLE`] old, which
//! covers the ordinary commit; and every [`LATE_EVERY`] (and at the first
//! pass of a new leader) it reads the last [`LATE_WINDOW`] before the
//! cursor again. Deliveries are unique per rule and event, so reading an
//! event twice writes nothing twice.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_engine::notification::{matches, message, Event, Filter};
use drover_engine::store::{Cursor, NewDelivery, NotificationRuleRow, NotificationStore};
use drover_engine::time::now_us;
use drover_engine::Store;
use drover_protocol::notification::{DeliveryStatus, NotificationEvent};
use tokio::sync::Notify;

use super::EVENT_KIND;
use crate::services::events::EventBus;

/// Events younger than this wait for the next pass: their transaction may
/// not have committed yet.
pub const SETTLE: Duration = Duration::from_secs(1);
/// How far before the cursor the re-read for late commits looks.
pub const LATE_WINDOW: Duration = Duration::from_secs(600);
/// How often that re-read runs.
pub const LATE_EVERY: Duration = Duration::from_secs(30);
/// Events read per statement.
const PAGE: i64 = 500;

pub struct Scanner {
    pub store: Store,
    pub events: Arc<EventBus>,
    pub leader: Arc<AtomicBool>,
    /// Wakes the deliverer when deliveries were written.
    pub deliver_wake: Arc<Notify>,
    pub interval: Duration,
    /// The dashboard's address, for links (`DROVER_PUBLIC_URL`).
    pub public_url: Option<String>,
}

impl Scanner {
    /// Runs passes every interval while this instance leads, until
    /// `shutdown` resolves (a pass under way is abandoned: each of its
    /// transactions is whole, and a repeated pass writes nothing twice).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_late: Option<Instant> = None;
        loop {
            if self.leader.load(Ordering::SeqCst) {
                let late = last_late.is_none_or(|t| t.elapsed() >= LATE_EVERY);
                tokio::select! {
                    _ = &mut shutdown => break,
                    r = self.pass(late) => match r {
                        Ok(()) if late => last_late = Some(Instant::now()),
                        Ok(()) => {}
                        Err(e) => tracing::warn!(error = %e, "notification scan failed"),
                    },
                }
            } else {
                // The next leadership starts with the re-read.
                last_late = None;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One pass over every kind some enabled rule listens to.
    pub async fn pass(&self, late: bool) -> Result<(), drover_engine::StoreError> {
        let rules: Vec<NotificationRuleRow> = self
            .store
            .notification_rules()
            .await?
            .into_iter()
            .filter(|r| r.enabled)
            .collect();
        if rules.is_empty() {
            return Ok(());
        }
        let until = now_us() - SETTLE.as_micros() as i64;
        for kind in NotificationEvent::ALL {
            let listening: Vec<(&NotificationRuleRow, Vec<NotificationEvent>)> = rules
                .iter()
                .map(|r| (r, r.events()))
                .filter(|(_, events)| events.contains(&kind))
                .collect();
            let Some(since) = listening.iter().map(|(r, _)| r.enabled_at).min() else {
                continue;
            };
            // Nothing before the earliest listener's start concerns anyone.
            let floor = Cursor {
                at: since - 1,
                id: i64::MAX,
            };
            let cursor = self.store.notification_cursor(kind).await?;
            let from = cursor.unwrap_or_default().max(floor);
            self.read(kind, &listening, from, until, true).await?;
            if late {
                if let Some(c) = cursor {
                    let back = Cursor {
                        at: c.at - LATE_WINDOW.as_micros() as i64,
                        id: 0,
                    };
                    self.read(kind, &listening, back.max(floor), c.at, false)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Reads the events of `kind` after `from` up to `until`, a page at a
    /// time, and writes their deliveries; with `advance`, each page moves
    /// the cursor (the last page to `until`: everything up to it was read).
    async fn read(
        &self,
        kind: NotificationEvent,
        listening: &[(&NotificationRuleRow, Vec<NotificationEvent>)],
        mut from: Cursor,
        until: i64,
        advance: bool,
    ) -> Result<(), drover_engine::StoreError> {
        loop {
            let page = self
                .store
                .notification_events(kind, from, until, PAGE)
                .await?;
            let full = page.len() as i64 == PAGE;
            let deliveries: Vec<NewDelivery> = page
                .iter()
                .flat_map(|e| self.deliveries(e, listening))
                .collect();
            let to = match page.last() {
                Some(e) if full => Cursor {
                    at: e.at_us,
                    id: e.subject_id,
                },
                _ => Cursor {
                    at: until,
                    id: i64::MAX,
                },
            };
            if !deliveries.is_empty() || (advance && to > from) {
                let cursor = advance.then_some((kind, to));
                let written = self
                    .store
                    .enqueue_deliveries(&deliveries, cursor, now_us())
                    .await?;
                if !written.is_empty() {
                    tracing::info!(
                        event = kind.as_str(),
                        deliveries = written.len(),
                        late = !advance,
                        "notifications queued"
                    );
                    metrics::counter!("drover_notifications_queued_total")
                        .increment(written.len() as u64);
                    self.events.publish_many(
                        EVENT_KIND,
                        written
                            .iter()
                            .map(|id| (Some(*id), Some(DeliveryStatus::Pending.as_str()))),
                    );
                    self.deliver_wake.notify_one();
                }
            }
            if !full {
                return Ok(());
            }
            from = to;
        }
    }

    /// The deliveries one event makes: one per rule it matches.
    fn deliveries(
        &self,
        event: &Event,
        listening: &[(&NotificationRuleRow, Vec<NotificationEvent>)],
    ) -> Vec<NewDelivery> {
        listening
            .iter()
            .filter(|(rule, events)| {
                matches(
                    &Filter {
                        events,
                        workflow: rule.workflow.as_deref(),
                        task_type: rule.task_type.as_deref(),
                        since_us: rule.enabled_at,
                    },
                    event,
                )
            })
            .map(|(rule, _)| {
                let m = message(&rule.name, event, self.public_url.as_deref());
                NewDelivery {
                    rule_id: rule.id,
                    rule_name: rule.name.clone(),
                    event: event
                        .kind
                        .map(NotificationEvent::as_str)
                        .unwrap_or("event")
                        .to_string(),
                    event_key: event.key(),
                    event_at: event.at_us,
                    summary: m.summary,
                    payload: m.body,
                }
            })
            .collect()
    }
}
