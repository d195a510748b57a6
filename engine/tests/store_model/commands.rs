//! The commands a sequence is made of, and the strategies that generate
//! and shrink them.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::KINDS;

#[derive(Debug, Clone)]
pub(crate) struct NewT {
    pub(crate) ty: usize,
    /// Requires the label `gpu`.
    pub(crate) gpu: bool,
    pub(crate) urgency: i64,
    pub(crate) max_attempts: i64,
    pub(crate) short_timeout: bool,
    pub(crate) backoff: bool,
    pub(crate) delayed: bool,
}

/// A lease named in a heartbeat or a result.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pick {
    /// One the sending agent holds now (none if it holds none).
    Own(Index),
    /// Any lease ever handed out in the case: current, stale or another
    /// agent's.
    Any(Index),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Out {
    Succeed,
    Fail,
    FailFinal,
    Release,
}

/// Time jumps: a tick, less than the renewal threshold, past it, past a
/// whole lease (and a short task's timeout), and over a minute (a point of
/// aging).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Jump {
    Tick,
    Short,
    PastRenew,
    PastLease,
    Minutes,
}

impl Jump {
    pub(crate) fn us(self) -> i64 {
        match self {
            Jump::Tick => 1_000,
            Jump::Short => 2_500_000,
            Jump::PastRenew => 6_000_000,
            Jump::PastLease => 11_000_000,
            Jump::Minutes => 70_000_000,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Cmd {
    Submit(Vec<NewT>),
    Claim {
        agent: Index,
        max: i64,
    },
    /// The agents of one kind claim together, listed from `first` on; each
    /// asks for `maxes[i % len]`.
    ClaimGroup {
        kind: usize,
        first: Index,
        maxes: Vec<i64>,
    },
    /// `all`: every lease the agent holds, then `extra`.
    Heartbeat {
        agent: Index,
        all: bool,
        extra: Vec<Pick>,
    },
    /// From one of the agents holding leases, if any.
    Complete {
        agent: Index,
        results: Vec<(Pick, Out)>,
    },
    /// Every agent still registered heartbeats the leases it holds.
    HeartbeatAll,
    Cancel(Index),
    ExpireLeases,
    Advance(Jump),
    MarkSilentOffline,
    Drain {
        agent: Index,
        on: bool,
    },
    Deregister(Index),
    /// The agent's process restarts: it registers again with its key,
    /// listing the leases it still has results for.
    Restart {
        agent: Index,
        keep: Vec<Pick>,
    },
    Revoke(Index),
}

#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    /// (kind, capacity) of each agent.
    pub(crate) agents: Vec<(usize, i64)>,
    pub(crate) cmds: Vec<Cmd>,
}

fn new_task() -> impl Strategy<Value = NewT> {
    (
        prop_oneof![4 => Just(0usize), 2 => Just(1), 1 => Just(2)],
        prop::bool::weighted(0.25),
        0..=3i64,
        1..=3i64,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(ty, gpu, urgency, max_attempts, short_timeout, backoff, delayed)| NewT {
                ty,
                gpu,
                urgency,
                max_attempts,
                short_timeout,
                backoff,
                delayed,
            },
        )
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        3 => any::<Index>().prop_map(Pick::Own),
        1 => any::<Index>().prop_map(Pick::Any),
    ]
}

fn outcome() -> impl Strategy<Value = Out> {
    prop_oneof![
        3 => Just(Out::Succeed),
        3 => Just(Out::Fail),
        1 => Just(Out::FailFinal),
        1 => Just(Out::Release),
    ]
}

fn jump() -> impl Strategy<Value = Jump> {
    prop_oneof![
        Just(Jump::Tick),
        Just(Jump::Short),
        Just(Jump::PastRenew),
        Just(Jump::PastLease),
        Just(Jump::Minutes),
    ]
}

fn command() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        6 => vec(new_task(), 1..=4).prop_map(Cmd::Submit),
        6 => (any::<Index>(), 0..=4i64).prop_map(|(agent, max)| Cmd::Claim { agent, max }),
        4 => (0..KINDS.len(), any::<Index>(), vec(0..=4i64, 1..=3))
            .prop_map(|(kind, first, maxes)| Cmd::ClaimGroup { kind, first, maxes }),
        6 => (any::<Index>(), prop::bool::weighted(0.8), vec(pick(), 0..=2))
            .prop_map(|(agent, all, extra)| Cmd::Heartbeat { agent, all, extra }),
        8 => (any::<Index>(), vec((pick(), outcome()), 1..=3))
            .prop_map(|(agent, results)| Cmd::Complete { agent, results }),
        3 => Just(Cmd::HeartbeatAll),
        2 => any::<Index>().prop_map(Cmd::Cancel),
        3 => Just(Cmd::ExpireLeases),
        5 => jump().prop_map(Cmd::Advance),
        2 => Just(Cmd::MarkSilentOffline),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(agent, on)| Cmd::Drain { agent, on }),
        1 => any::<Index>().prop_map(Cmd::Deregister),
        2 => (any::<Index>(), vec(pick(), 0..=2))
            .prop_map(|(agent, keep)| Cmd::Restart { agent, keep }),
        1 => any::<Index>().prop_map(Cmd::Revoke),
    ]
}

pub(crate) fn scenario(steps: usize) -> impl Strategy<Value = Scenario> {
    (
        vec((0..KINDS.len(), 1..=3i64), 1..=4),
        vec(command(), 1..=steps.max(1)),
    )
        .prop_map(|(agents, cmds)| Scenario { agents, cmds })
}
