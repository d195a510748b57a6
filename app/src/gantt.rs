//! The run page's Gantt chart: one row per step, each generation of the
//! step (a retry is a new one) a bar from its start to its end as the
//! run's events tell them, and under it a thinner bar for each attempt at
//! its tasks, from the claim to the end. Times run left to right from the
//! run's start. Pure and in whole SVG units, like `load_chart`.

use std::collections::BTreeMap;

use drover_protocol::workflow::{RunAttempt, RunEvent, RunEventKind};

use crate::format::{duration_us, span};

/// The step names' column, the plot area right of it, and the rows.
pub const LABEL_W: i64 = 150;
pub const PLOT_W: i64 = 640;
pub const TOP: i64 = 6;
pub const ROW_H: i64 = 30;
/// Below the rows: the axis, its labels and its title.
pub const AXIS_H: i64 = 38;
pub const WIDTH: i64 = LABEL_W + PLOT_W + 24;
/// A bar is at least this wide, so that an instant is still seen.
const MIN_BAR: i64 = 2;

/// What a bar stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// A generation of the step (0, then one per retry).
    Step { generation: i64 },
    /// An attempt at one of the step's tasks.
    Attempt {
        task_id: i64,
        attempt: i64,
        generation: i64,
        item_index: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The step's row.
    pub row: usize,
    pub what: What,
    pub start_us: i64,
    pub end_us: i64,
    /// Not ended yet: drawn to the chart's end.
    pub open: bool,
    /// How it ended (or where it is): a status or an attempt's outcome.
    pub status: String,
}

impl Bar {
    /// Where the bar sits and how wide it is: `(x, width)`.
    pub fn x_span(&self, c: &Chart) -> (i64, i64) {
        let x1 = c.x_of(self.start_us);
        let x2 = c.x_of(self.end_us);
        (x1, (x2 - x1).max(MIN_BAR))
    }

    /// The bar in words: "charge, retry 1: succeeded after 1.2 s".
    pub fn describe(&self, step: &str) -> String {
        let what = match &self.what {
            What::Step { generation: 0 } => format!("step {step}"),
            What::Step { generation } => format!("step {step}, retry {generation}"),
            What::Attempt {
                task_id, attempt, ..
            } => format!("step {step}, task {task_id} attempt {attempt}"),
        };
        let took = duration_us(self.end_us - self.start_us);
        if self.open {
            format!(
                "{what}: {} for {took} so far",
                self.status.replace('_', " ")
            )
        } else {
            format!("{what}: {} after {took}", self.status.replace('_', " "))
        }
    }
}

/// The chart: rows (step ids), bars, and the time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub rows: Vec<String>,
    pub bars: Vec<Bar>,
    pub start_us: i64,
    pub end_us: i64,
    /// `(x, label)` of the axis' ticks.
    pub ticks: Vec<(i64, String)>,
}

impl Chart {
    pub fn height(&self) -> i64 {
        TOP + self.rows.len() as i64 * ROW_H + AXIS_H
    }

    /// Where a time sits horizontally (clamped to the plot).
    pub fn x_of(&self, t_us: i64) -> i64 {
        x_at(t_us, self.start_us, self.end_us)
    }

    /// The top of a row.
    pub fn y_of(row: usize) -> i64 {
        TOP + row as i64 * ROW_H
    }
}

/// Where `t_us` sits horizontally on a plot from `start_us` to `end_us`.
fn x_at(t_us: i64, start_us: i64, end_us: i64) -> i64 {
    let window = (end_us - start_us).max(1);
    let dt = (t_us - start_us).clamp(0, window);
    LABEL_W + ((dt as i128 * PLOT_W as i128) / window as i128) as i64
}

/// Builds the chart of a run: `steps` in the order to draw them, its
/// `events` and `attempts` as `GET /runs/{id}` gives them, from
/// `start_us` (the run's start) to `end_us` (its end, or the latest thing
/// known of it while it runs: bars still open reach it).
pub fn chart(
    steps: &[String],
    events: &[RunEvent],
    attempts: &[RunAttempt],
    start_us: i64,
    end_us: i64,
) -> Chart {
    let end_us = end_us.max(start_us + 1);
    let row_of: BTreeMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut bars = Vec::new();
    // Generations started and not yet ended: (step, generation) -> (bar start, status).
    let mut open: BTreeMap<(usize, i64), (i64, String)> = BTreeMap::new();
    let close = |bars: &mut Vec<Bar>,
                 (row, generation): (usize, i64),
                 start: i64,
                 at: i64,
                 status: &str| {
        bars.push(Bar {
            row,
            what: What::Step { generation },
            start_us: start,
            end_us: at,
            open: false,
            status: status.to_string(),
        })
    };
    for e in events {
        let key = e
            .step_id
            .as_deref()
            .and_then(|s| row_of.get(s))
            .map(|&row| (row, e.generation.unwrap_or(0)));
        match (e.kind, key) {
            (RunEventKind::StepStarted | RunEventKind::CompensationStarted, Some(key)) => {
                let status = e.status.clone().unwrap_or_else(|| "running".into());
                open.insert(key, (e.at_us, status));
            }
            (kind, Some(key)) if kind.ends_step() => {
                if let Some((start, _)) = open.remove(&key) {
                    let status = match (kind, e.status.as_deref()) {
                        (RunEventKind::ApprovalDecided, Some("approved")) => "succeeded",
                        (RunEventKind::ApprovalDecided, _) => "failed",
                        (_, Some(status)) => status,
                        (RunEventKind::StepSucceeded, None) => "succeeded",
                        (RunEventKind::StepSkipped, None) => "skipped",
                        _ => "failed",
                    };
                    close(&mut bars, key, start, e.at_us, status);
                }
            }
            // A cancel ends whatever ran; so does the run's end for a
            // branch still going (its tasks run out, the step is over).
            (RunEventKind::RunCancelled | RunEventKind::RunFinished, _) => {
                for (key, (start, _)) in std::mem::take(&mut open) {
                    close(&mut bars, key, start, e.at_us, "cancelled");
                }
            }
            _ => {}
        }
    }
    for ((row, generation), (start, status)) in open {
        bars.push(Bar {
            row,
            what: What::Step { generation },
            start_us: start,
            end_us,
            open: true,
            status,
        });
    }
    for a in attempts {
        let Some(&row) = row_of.get(a.step_id.as_str()) else {
            continue;
        };
        bars.push(Bar {
            row,
            what: What::Attempt {
                task_id: a.task_id,
                attempt: a.attempt,
                generation: a.generation,
                item_index: a.item_index,
            },
            start_us: a.claimed_at_us,
            end_us: a.finished_at_us.unwrap_or(end_us),
            open: a.finished_at_us.is_none(),
            status: a.outcome.clone(),
        });
    }
    bars.sort_by_key(|b| (b.start_us, b.row, matches!(b.what, What::Attempt { .. })));
    Chart {
        rows: steps.to_vec(),
        bars,
        start_us,
        end_us,
        ticks: ticks(start_us, end_us),
    }
}

/// Round steps for the axis, the first that needs at most five ticks.
const STEPS_US: [i64; 22] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    15_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
    600_000_000,
    1_800_000_000,
    3_600_000_000,
    21_600_000_000,
];

/// The axis' ticks: 0, then every round step, labelled with their unit.
fn ticks(start_us: i64, end_us: i64) -> Vec<(i64, String)> {
    let window = (end_us - start_us).max(1);
    let step = STEPS_US
        .into_iter()
        .find(|s| window / s <= 5)
        .unwrap_or_else(|| (window / 5).max(1));
    (0..=window / step)
        .map(|i| {
            let dt = i * step;
            let label = if dt == 0 { "0".to_string() } else { span(dt) };
            (x_at(start_us + dt, start_us, end_us), label)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn event(
        seq: i64,
        at_s: i64,
        kind: RunEventKind,
        step: Option<&str>,
        generation: i64,
    ) -> RunEvent {
        RunEvent {
            seq,
            at_us: at_s * S,
            kind,
            step_id: step.map(String::from),
            generation: step.map(|_| generation),
            actor: None,
            status: None,
            detail: None,
        }
    }

    fn attempt(
        step: &str,
        generation: i64,
        from_s: i64,
        to_s: Option<i64>,
        outcome: &str,
    ) -> RunAttempt {
        RunAttempt {
            task_id: 7,
            step_id: step.into(),
            generation,
            item_index: 0,
            attempt: 1,
            agent_id: 1,
            claimed_at_us: from_s * S,
            started_at_us: Some(from_s * S),
            finished_at_us: to_s.map(|t| t * S),
            outcome: outcome.into(),
        }
    }

    #[test]
    fn a_retried_step_has_a_bar_per_generation_and_its_attempts_under_them() {
        use RunEventKind as K;
        let steps = vec![
            "charge".to_string(),
            "ship".to_string(),
            "refund".to_string(),
        ];
        let mut refunded = event(5, 3, K::CompensationFinished, Some("refund"), 0);
        refunded.status = Some("succeeded".into());
        let events = vec![
            event(1, 0, K::RunStarted, None, 0),
            event(2, 0, K::StepStarted, Some("charge"), 0),
            event(3, 2, K::StepFailed, Some("charge"), 0),
            event(4, 2, K::CompensationStarted, Some("refund"), 0),
            refunded,
            event(6, 3, K::StepSkipped, Some("ship"), 0),
            event(7, 3, K::RunFinished, None, 0),
            event(8, 6, K::StepRetried, Some("charge"), 1),
            event(9, 6, K::StepStarted, Some("charge"), 1),
            event(10, 8, K::StepSucceeded, Some("charge"), 1),
            event(11, 8, K::StepStarted, Some("ship"), 0),
        ];
        let attempts = vec![
            attempt("charge", 0, 0, Some(2), "failed"),
            attempt("refund", 0, 2, Some(3), "succeeded"),
            attempt("charge", 1, 6, Some(8), "succeeded"),
            attempt("ship", 0, 8, None, "running"),
        ];
        let c = chart(&steps, &events, &attempts, 0, 10 * S);
        let steps_of = |row: usize| -> Vec<(i64, i64, bool, &str)> {
            c.bars
                .iter()
                .filter(|b| b.row == row && matches!(b.what, What::Step { .. }))
                .map(|b| (b.start_us / S, b.end_us / S, b.open, b.status.as_str()))
                .collect()
        };
        assert_eq!(
            steps_of(0),
            vec![(0, 2, false, "failed"), (6, 8, false, "succeeded")]
        );
        // The step the failed run never reached has no bar until the retry starts it.
        assert_eq!(steps_of(1), vec![(8, 10, true, "running")]);
        assert_eq!(steps_of(2), vec![(2, 3, false, "succeeded")]);
        let attempts_of_charge = c
            .bars
            .iter()
            .filter(|b| b.row == 0 && matches!(b.what, What::Attempt { .. }))
            .count();
        assert_eq!(attempts_of_charge, 2);
        // The open attempt reaches the chart's end.
        let open = c
            .bars
            .iter()
            .find(|b| b.open && matches!(b.what, What::Attempt { .. }))
            .unwrap();
        assert_eq!(open.x_span(&c), (c.x_of(8 * S), PLOT_W * 2 / 10));
        assert!(c.bars[0]
            .describe("charge")
            .starts_with("step charge: failed after 2.0 s"));
    }

    #[test]
    fn the_axis_has_round_ticks_with_units() {
        let ticks = ticks(0, 12 * S);
        let labels: Vec<&str> = ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0", "5 s", "10 s"]);
        assert_eq!(ticks[0].0, LABEL_W);
        assert_eq!(ticks[2].0, LABEL_W + PLOT_W * 10 / 12);
        let short: Vec<String> = super::ticks(0, 900_000).into_iter().map(|t| t.1).collect();
        assert_eq!(short, ["0", "200 ms", "400 ms", "600 ms", "800 ms"]);
        let long: Vec<String> = super::ticks(0, 50 * 60 * S)
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(
            long,
            ["0", "10 min", "20 min", "30 min", "40 min", "50 min"]
        );
    }

    #[test]
    fn a_cancel_ends_the_bars_still_open() {
        use RunEventKind as K;
        let steps = vec!["wait".to_string()];
        let events = vec![
            event(1, 0, K::StepStarted, Some("wait"), 0),
            event(2, 4, K::RunCancelled, None, 0),
        ];
        let c = chart(&steps, &events, &[], 0, 5 * S);
        assert_eq!(c.bars.len(), 1);
        assert_eq!(
            (c.bars[0].end_us, c.bars[0].open, c.bars[0].status.as_str()),
            (4 * S, false, "cancelled")
        );
    }
}
