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
}

impl Topic {
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

#[derive(Clone, Copy)]
pub struct Live {
    counters: [RwSignal<u64>; 6],
    /// Whether the event stream is connected (shown in the header).
    pub connected: RwSignal<bool>,
    /// The clock relative times are shown against, ticking each second.
    pub now_us: RwSignal<i64>,
}

impl Live {
    /// Tracks a topic: a resource source that calls this refetches on its events.
    pub fn watch(&self, topic: Topic) -> u64 {
        self.counters[topic as usize].get()
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

pub fn provide_live() -> Live {
    let live = Live {
        counters: std::array::from_fn(|_| RwSignal::new(0)),
        connected: RwSignal::new(false),
        now_us: RwSignal::new(now_us()),
    };
    provide_context(live);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| crate::browser::connect_events(live));
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
