//! Live updates: one event stream per page, one counter per topic. A view's
//! data is a resource keyed on its topics' counters, so an event for a topic
//! refetches exactly the views that show it.

use leptos::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Tasks,
    Agents,
    Runs,
    Approvals,
    Workflows,
    Schedules,
    Notifications,
}

impl Topic {
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

#[derive(Clone, Copy)]
pub struct Live {
    counters: [RwSignal<u64>; 7],
    /// Whether the event stream is connected (shown in the header).
    pub connected: RwSignal<bool>,
    /// The server stopped answering: the event stream dropped or a request
    /// could not reach it. Cleared when the stream opens again. The page
    /// says so, since actions taken meanwhile fail.
    pub lost: RwSignal<bool>,
    /// The clock relative times are shown against, ticking each second.
    pub now_us: RwSignal<i64>,
    /// The tasks whose logs grew since the last tick, set at most every
    /// tick (100 ms); `None` when any may have (the stream reconnected or
    /// fell behind). Log views fetch their new lines on it.
    pub logs: RwSignal<Option<Vec<i64>>>,
}

impl Live {
    /// Tracks a topic: a resource source that calls this refetches on its events.
    pub fn watch(&self, topic: Topic) -> u64 {
        self.counters[topic as usize].get()
    }

    /// A topic's counter that stands still while `paused`: a list keyed on
    /// it keeps its rows where they are under the reader's pointer, while
    /// the stream stays open. Resuming reads the counter again, so the
    /// list refetches once if anything changed meanwhile.
    pub fn watch_unless(self, topic: Topic, paused: RwSignal<bool>) -> Memo<u64> {
        Memo::new(move |held: Option<&u64>| match held {
            Some(held) if paused.get() => *held,
            _ => self.watch(topic),
        })
    }

    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub fn bump(&self, bits: u32) {
        for (i, counter) in self.counters.iter().enumerate() {
            if bits & (1 << i) != 0 {
                counter.update(|n| *n += 1);
            }
        }
    }
}

/// A counter that moves when a page's figures should be fetched again:
/// after events of `topics`, at most every `min_us` (on a busy queue every
/// claim is an event), and every `poll_us` without events (ages grow,
/// windows slide), on the page's one-second clock. A resource source that
/// reads it refetches then.
pub fn paced_refresh(live: Live, topics: [Topic; 2], min_us: i64, poll_us: i64) -> RwSignal<u64> {
    let stale = RwSignal::new(false);
    Effect::new(move |ran: Option<()>| {
        let _ = topics.map(|t| live.watch(t));
        if ran.is_some() {
            stale.set(true);
        }
    });
    let refresh = RwSignal::new(0u64);
    let last = StoredValue::new(live.now_us.get_untracked());
    Effect::new(move |_| {
        let now = live.now_us.get();
        let since = now - last.get_value();
        if (stale.get_untracked() && since >= min_us) || since >= poll_us {
            stale.set(false);
            last.set_value(now);
            refresh.update(|n| *n += 1);
        }
    });
    refresh
}

pub fn provide_live() -> Live {
    let live = Live {
        counters: std::array::from_fn(|_| RwSignal::new(0)),
        connected: RwSignal::new(false),
        lost: RwSignal::new(false),
        now_us: RwSignal::new(now_us()),
        logs: RwSignal::new(Some(Vec::new())),
    };
    provide_context(live);
    // The sign-in page has no one to stream events to (and would be refused).
    #[cfg(feature = "hydrate")]
    if !crate::components::on_sign_in_page() {
        Effect::new(move |_| crate::browser::connect_events(live));
    }
    live
}

pub fn use_live() -> Live {
    expect_context::<Live>()
}

#[cfg(feature = "ssr")]
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
fn now_us() -> i64 {
    crate::browser::now_us()
}

#[cfg(not(any(feature = "ssr", feature = "hydrate")))]
fn now_us() -> i64 {
    0
}
