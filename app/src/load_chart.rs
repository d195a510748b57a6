//! The geometry of the agent page's load chart: load L (0 to 1) over the
//! window, each bucket drawn as a step at its mean, under a band up to its
//! peak. A bucket without samples breaks the line rather than bridging it,
//! so an agent that was away shows a gap, not a made-up slope. Pure and
//! in whole SVG units (no float formatting in the browser build).

use drover_protocol::api::LoadBucket;

/// The plot area inside the SVG, and the margins for the axes' labels.
pub const LEFT: i64 = 44;
pub const TOP: i64 = 10;
pub const PLOT_W: i64 = 720;
pub const PLOT_H: i64 = 180;
pub const WIDTH: i64 = LEFT + PLOT_W + 16;
pub const HEIGHT: i64 = TOP + PLOT_H + 34;

/// One unbroken run of buckets: the mean as a polyline, the band between
/// mean and peak as a polygon (SVG `points`).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub mean: String,
    pub band: String,
}

/// Where a load sits vertically; loads past 1 (a capacity lowered under
/// running work) are drawn at the top.
pub fn y_of(load: f64) -> i64 {
    let l = if load.is_finite() {
        load.clamp(0.0, 1.0)
    } else {
        0.0
    };
    TOP + PLOT_H - (l * PLOT_H as f64).round() as i64
}

/// Where a time sits horizontally in `since_us ..= since_us + window_us`.
pub fn x_of(t_us: i64, since_us: i64, window_us: i64) -> i64 {
    let window = window_us.max(1);
    let dt = (t_us - since_us).clamp(0, window);
    LEFT + ((dt as i128 * PLOT_W as i128) / window as i128) as i64
}

/// The chart's segments: consecutive buckets (`bucket_us` apart) join,
/// a missing bucket starts a new segment.
pub fn segments(
    buckets: &[LoadBucket],
    since_us: i64,
    window_us: i64,
    bucket_us: i64,
) -> Vec<Segment> {
    let mut runs: Vec<Vec<&LoadBucket>> = Vec::new();
    for b in buckets {
        match runs.last_mut() {
            Some(run)
                if run
                    .last()
                    .is_some_and(|p| p.start_us + bucket_us == b.start_us) =>
            {
                run.push(b)
            }
            _ => runs.push(vec![b]),
        }
    }
    runs.into_iter()
        .map(|run| {
            let steps = |value: fn(&LoadBucket) -> f64| -> Vec<(i64, i64)> {
                run.iter()
                    .flat_map(|b| {
                        let y = y_of(value(b));
                        [
                            (x_of(b.start_us, since_us, window_us), y),
                            (x_of(b.start_us + bucket_us, since_us, window_us), y),
                        ]
                    })
                    .collect()
            };
            let mean = steps(|b| b.mean_load);
            let peak = steps(|b| b.max_load);
            let band: Vec<(i64, i64)> = peak.iter().chain(mean.iter().rev()).copied().collect();
            Segment {
                mean: points(&mean),
                band: points(&band),
            }
        })
        .collect()
}

fn points(p: &[(i64, i64)]) -> String {
    p.iter()
        .map(|(x, y)| format!("{x},{y}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The mean load over all the buckets' samples, and the peak.
pub fn summary(buckets: &[LoadBucket]) -> Option<(f64, f64)> {
    let samples: i64 = buckets.iter().map(|b| b.samples).sum();
    if samples == 0 {
        return None;
    }
    let mean = buckets
        .iter()
        .map(|b| b.mean_load * b.samples as f64)
        .sum::<f64>()
        / samples as f64;
    let peak = buckets.iter().map(|b| b.max_load).fold(0.0, f64::max);
    Some((mean, peak))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(start_us: i64, mean_load: f64, max_load: f64) -> LoadBucket {
        LoadBucket {
            start_us,
            samples: 2,
            mean_load,
            max_load,
            mean_running: mean_load * 4.0,
            max_running: (max_load * 4.0) as i64,
            capacity: 4,
        }
    }

    #[test]
    fn buckets_step_at_their_mean_and_a_missing_one_breaks_the_line() {
        // A 100 s window of 10 s buckets: two adjacent, a gap, one more.
        let s = 1_000_000;
        let buckets = [
            bucket(0, 0.5, 0.75),
            bucket(10 * s, 0.25, 0.5),
            bucket(40 * s, 1.5, 2.0),
        ];
        let segs = segments(&buckets, 0, 100 * s, 10 * s);
        assert_eq!(segs.len(), 2);
        let (mid, top, bottom) = (TOP + PLOT_H / 2, TOP, TOP + PLOT_H);
        assert_eq!(
            segs[0].mean,
            format!(
                "44,{mid} 116,{mid} 116,{q} 188,{q}",
                q = bottom - PLOT_H / 4
            )
        );
        // The band runs along the peaks, then back along the means.
        assert!(segs[0]
            .band
            .starts_with(&format!("44,{} 116,", bottom - PLOT_H * 3 / 4)));
        assert!(segs[0].band.ends_with(&format!("116,{mid} 44,{mid}")));
        // Past 1 is drawn at the top.
        assert_eq!(segs[1].mean, format!("332,{top} 404,{top}"));
        assert_eq!(y_of(f64::NAN), bottom);
        // Times outside the window stay on the plot.
        assert_eq!(x_of(-5 * s, 0, 100 * s), LEFT);
        assert_eq!(x_of(500 * s, 0, 100 * s), LEFT + PLOT_W);
    }

    #[test]
    fn the_summary_weighs_buckets_by_their_samples() {
        assert_eq!(summary(&[]), None);
        let mut a = bucket(0, 0.0, 0.0);
        a.samples = 3;
        let b = bucket(1, 1.0, 1.0);
        assert_eq!(summary(&[a, b]), Some((0.4, 1.0)));
    }
}
