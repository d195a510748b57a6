//! A chart of figures per time bucket, for the overview: stacked bars or
//! lines over the same plot area and time axis as the agent page's load
//! chart (`load_chart`), with a title, a unit on each axis, a legend, and
//! the same figures as a table for those who do not see the drawing (its
//! buckets with figures). A bucket without a figure breaks a line rather
//! than bridging it.

use leptos::prelude::*;

use crate::format::utc;
use crate::load_chart::{self, HEIGHT, LEFT, PLOT_H, PLOT_W, TOP, WIDTH};

/// How the series are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Bars per bucket, the series stacked in order from the bottom.
    Stacked,
    /// A line per series through the buckets' middles.
    Lines,
}

/// One named series: a figure per bucket, `None` where there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// Everything one chart shows.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Names the chart's test ids and heading id (`throughput`).
    pub key: &'static str,
    pub title: String,
    /// What the vertical axis counts, with its unit (`tasks per 1 min`).
    pub unit: String,
    /// What the drawing shows, for screen readers and the tooltip.
    pub summary: String,
    /// Under the chart: how the figures are made.
    pub note: String,
    pub kind: Kind,
    pub since_us: i64,
    pub bucket_us: i64,
    /// The range's name for the time axis (`1 h`), and its middle (`30 min`).
    pub range: String,
    pub half: String,
    /// The top of the vertical axis, and the labelled values on it.
    pub max: f64,
    pub ticks: Vec<(f64, String)>,
    pub series: Vec<Series>,
    /// A figure as the table shows it.
    pub cell: fn(f64) -> String,
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (1 for nothing), so the
/// axis ends on a round number.
pub fn nice_max(v: f64) -> f64 {
    if !(v.is_finite() && v > 1.0) {
        return 1.0;
    }
    let mut p = 1.0;
    while p * 10.0 < v {
        p *= 10.0;
    }
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|m| *m >= v)
        .unwrap_or(10.0 * p)
}

/// The buckets' middles as x, and where `value` of `max` sits as y.
fn x_mid(c: &Chart, i: usize) -> i64 {
    let window = c.bucket_us * bucket_count(c) as i64;
    load_chart::x_of(
        c.since_us + c.bucket_us * i as i64 + c.bucket_us / 2,
        c.since_us,
        window,
    )
}

fn y_at(value: f64, max: f64) -> i64 {
    load_chart::y_of(value / max.max(f64::MIN_POSITIVE))
}

fn bucket_count(c: &Chart) -> usize {
    c.series.iter().map(|s| s.values.len()).max().unwrap_or(0)
}

/// A series' unbroken runs as SVG `points`; a run of one point is drawn
/// as a dot instead.
fn runs(c: &Chart, s: &Series) -> (Vec<String>, Vec<(i64, i64)>) {
    let mut lines = Vec::new();
    let mut dots = Vec::new();
    let mut run: Vec<(i64, i64)> = Vec::new();
    let mut flush = |run: &mut Vec<(i64, i64)>| {
        match run.len() {
            0 => {}
            1 => dots.push(run[0]),
            _ => lines.push(
                run.iter()
                    .map(|(x, y)| format!("{x},{y}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
        run.clear();
    };
    for (i, v) in s.values.iter().enumerate() {
        match v {
            Some(v) => run.push((x_mid(c, i), y_at(*v, c.max))),
            None => flush(&mut run),
        }
    }
    flush(&mut run);
    (lines, dots)
}

#[component]
pub fn TimeChart(chart: Chart) -> impl IntoView {
    let c = chart;
    let key = c.key;
    let title_id = format!("chart-{key}-title");
    let n = bucket_count(&c);
    let bottom = TOP + PLOT_H;
    let right = LEFT + PLOT_W;
    let slot = PLOT_W / n.max(1) as i64;
    let grid = c
        .ticks
        .iter()
        .map(|(v, text)| {
            let y = y_at(*v, c.max);
            view! {
                <line x1=LEFT y1=y x2=right y2=y></line>
                <text x=LEFT - 6 y=y + 4 text-anchor="end">{text.clone()}</text>
            }
        })
        .collect_view();
    let marks = match c.kind {
        Kind::Stacked => (0..n)
            .flat_map(|i| {
                let mut base = 0.0;
                c.series
                    .iter()
                    .enumerate()
                    .filter_map(|(k, s)| {
                        let v = s.values.get(i).copied().flatten().unwrap_or(0.0);
                        if v <= 0.0 {
                            return None;
                        }
                        let (y0, y1) = (y_at(base, c.max), y_at(base + v, c.max));
                        base += v;
                        let x = x_mid(&c, i) - slot / 2 + 1;
                        Some(view! {
                            <rect class=format!("s{k}") x=x y=y1 width=(slot - 2).max(1) height=(y0 - y1).max(1)></rect>
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect_view()
            .into_any(),
        Kind::Lines => c
            .series
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let (lines, dots) = runs(&c, s);
                view! {
                    <g class=format!("s{k}")>
                        {lines.into_iter().map(|p| view! { <polyline points=p></polyline> }).collect_view()}
                        {dots.into_iter().map(|(x, y)| view! { <circle cx=x cy=y r="3"></circle> }).collect_view()}
                    </g>
                }
            })
            .collect_view()
            .into_any(),
    };
    let legend = c
        .series
        .iter()
        .enumerate()
        .map(|(k, s)| {
            view! { <li><span class=format!("swatch s{k}") aria-hidden="true"></span>{s.name.clone()}</li> }
        })
        .collect_view();
    let header = c
        .series
        .iter()
        .map(|s| view! { <th scope="col">{s.name.clone()}</th> })
        .collect_view();
    // Buckets with nothing in them are left out: a quiet range is a
    // short table, not sixty rows of zeros.
    let shown: Vec<usize> = (0..n)
        .rev()
        .filter(|&i| {
            c.series
                .iter()
                .any(|s| s.values.get(i).copied().flatten().is_some_and(|v| v != 0.0))
        })
        .collect();
    let count = shown.len();
    let rows = shown
        .into_iter()
        .map(|i| {
            let cells = c
                .series
                .iter()
                .map(|s| {
                    let text = s
                        .values
                        .get(i)
                        .copied()
                        .flatten()
                        .map(c.cell)
                        .unwrap_or_else(|| "—".to_string());
                    view! { <td class="n">{text}</td> }
                })
                .collect_view();
            view! {
                <tr data-testid=format!("{key}-row")>
                    <th scope="row" class="nowrap">{utc(c.since_us + c.bucket_us * i as i64)}</th>
                    {cells}
                </tr>
            }
        })
        .collect_view();
    let (summary, label) = (c.summary.clone(), c.summary.clone());
    let labelled_by = title_id.clone();
    view! {
        <section class="card chart-card" aria-labelledby=labelled_by data-testid=format!("chart-{key}")>
            <h2 id=title_id>{c.title.clone()}</h2>
            <svg class="time-chart" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img"
                aria-label=label data-testid=format!("{key}-svg")>
                <title>{summary}</title>
                <g class="grid">{grid}</g>
                <text class="axis-title" data-testid=format!("{key}-y-axis")
                    transform=format!("translate(10 {}) rotate(-90)", TOP + PLOT_H / 2)
                    text-anchor="middle">{c.unit.clone()}</text>
                <g class="axis">
                    <line x1=LEFT y1=bottom x2=right y2=bottom></line>
                    <text x=LEFT y=bottom + 16 text-anchor="start">"−" {c.range.clone()}</text>
                    <text x=LEFT + PLOT_W / 2 y=bottom + 16 text-anchor="middle">"−" {c.half.clone()}</text>
                    <text x=right y=bottom + 16 text-anchor="end">"now"</text>
                    <text class="axis-title" x=LEFT + PLOT_W / 2 y=bottom + 30 text-anchor="middle"
                        data-testid=format!("{key}-x-axis")>"time (UTC)"</text>
                </g>
                <g class=if c.kind == Kind::Stacked { "bars" } else { "lines" }>{marks}</g>
            </svg>
            <ul class="legend" data-testid=format!("{key}-legend")>{legend}</ul>
            <p class="muted small">{c.note.clone()}</p>
            <details data-testid=format!("{key}-table")>
                <summary>
                    {c.title.clone()} " as a table (" {count} {if count == 1 { " bucket" } else { " buckets" }}
                    " with figures)"
                </summary>
                <div class="table-wrap">
                    <table class="data compact">
                        <caption class="muted small">{c.unit.clone()} "; buckets with no figure other than zero are left out"</caption>
                        <thead><tr><th scope="col">"From (UTC)"</th>{header}</tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
            </details>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(11.0), 20.0);
        assert_eq!(nice_max(480.0), 500.0);
        assert_eq!(nice_max(501.0), 1000.0);
    }

    #[test]
    fn a_line_breaks_where_a_bucket_has_no_figure() {
        let c = Chart {
            key: "k",
            title: String::new(),
            unit: String::new(),
            summary: String::new(),
            note: String::new(),
            kind: Kind::Lines,
            since_us: 0,
            bucket_us: 10,
            range: String::new(),
            half: String::new(),
            max: 10.0,
            ticks: vec![],
            series: vec![Series {
                name: "a".into(),
                values: vec![Some(0.0), Some(10.0), None, Some(5.0)],
            }],
            cell: |v| v.to_string(),
        };
        let (lines, dots) = runs(&c, &c.series[0]);
        // Four buckets over 720 units: middles at 90, 270, 450, 630.
        assert_eq!(
            lines,
            vec![format!(
                "{},{} {},{}",
                LEFT + 90,
                TOP + PLOT_H,
                LEFT + 270,
                TOP
            )]
        );
        assert_eq!(dots, vec![(LEFT + 630, TOP + PLOT_H / 2)]);
    }
}
