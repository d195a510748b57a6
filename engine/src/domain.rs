//! Domain types parsed once at the edge: past [`TaskSpec::parse`], a task is
//! known to be valid, so the store never sees an out-of-range priority.

use drover_protocol::api::NewTask;
use serde_json::Value;

use crate::error::FieldError;

/// The weights α, β, γ of `P = α·urgency + β·time_sensitivity + γ·importance`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorityWeights {
    pub urgency: f64,
    pub time_sensitivity: f64,
    pub importance: f64,
}

impl Default for PriorityWeights {
    fn default() -> Self {
        Self {
            urgency: 1.0,
            time_sensitivity: 1.0,
            importance: 1.0,
        }
    }
}

impl PriorityWeights {
    pub fn priority(&self, urgency: i64, time_sensitivity: i64, importance: i64) -> f64 {
        self.urgency * urgency as f64
            + self.time_sensitivity * time_sensitivity as f64
            + self.importance * importance as f64
    }

    /// Parses `"α,β,γ"` (the `DROVER_PRIORITY_WEIGHTS` form).
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.len() != 3 {
            return Err(format!(
                "expected three comma-separated weights like \"1,1,1\", got {s:?}"
            ));
        }
        let mut w = [0.0; 3];
        for (slot, part) in w.iter_mut().zip(&parts) {
            let v: f64 = part
                .parse()
                .map_err(|_| format!("weight {part:?} is not a number"))?;
            if !v.is_finite() || v < 0.0 {
                return Err(format!("weight {part:?} must be a finite number >= 0"));
            }
            *slot = v;
        }
        Ok(Self {
            urgency: w[0],
            time_sensitivity: w[1],
            importance: w[2],
        })
    }

    pub fn as_array(&self) -> [f64; 3] {
        [self.urgency, self.time_sensitivity, self.importance]
    }
}

/// How the engine makes tasks. Starvation control: a queued task gains
/// `points_per_minute` of priority for every minute it waits. Stored as a
/// static rank (see [`Scheduling::rank`]), so the claim stays one index scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scheduling {
    pub weights: PriorityWeights,
    pub aging_points_per_minute: f64,
    /// Most tasks one `for_each` step may fan out to; a run whose list is
    /// longer fails (`DROVER_MAX_FOR_EACH_ITEMS`).
    pub max_for_each_items: usize,
    /// Per task type concurrency limits (`DROVER_TYPE_CONCURRENCY`).
    pub type_limits: &'static TypeLimits,
}

/// Concurrency limits per task type: a task of a listed type without a
/// concurrency key of its own takes the key `type:<task type>` with the
/// type's limit, so the keys' admission enforces it fleet-wide. Set once at
/// start (hence `'static`, which keeps [`Scheduling`] `Copy`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeLimits(pub std::collections::BTreeMap<String, i64>);

/// No per-type limits.
pub const NO_TYPE_LIMITS: &TypeLimits = &TypeLimits(std::collections::BTreeMap::new());

/// The key prefix of per-type limits.
pub const TYPE_KEY_PREFIX: &str = "type:";

impl TypeLimits {
    /// Parses `resize=4,email=10`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut limits = std::collections::BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, n) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not <task type>=<limit>"))?;
            check_name("task type", name.trim()).map_err(|e| e.message)?;
            let n: i64 = n
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the limit is not a number"))?;
            if !(1..=drover_protocol::limits::MAX_CONCURRENCY_LIMIT).contains(&n) {
                return Err(format!(
                    "{part:?}: the limit must be between 1 and {}",
                    drover_protocol::limits::MAX_CONCURRENCY_LIMIT
                ));
            }
            limits.insert(name.trim().to_string(), n);
        }
        Ok(Self(limits))
    }
}

impl Scheduling {
    /// A task's concurrency key and limit: its own, else its type's
    /// (`type:<task type>`) when the type has a limit.
    pub fn concurrency_of(&self, spec: &TaskSpec) -> Option<(String, i64)> {
        spec.concurrency.clone().or_else(|| {
            self.type_limits
                .0
                .get(&spec.task_type)
                .map(|limit| (format!("{TYPE_KEY_PREFIX}{}", spec.task_type), *limit))
        })
    }

    /// `rank = P − k·t_enqueued` orders tasks exactly as the aged priority
    /// `P + k·(now − t_enqueued)` does at every instant, because the `k·now`
    /// term is the same for all tasks. So aging needs no periodic rewrite and
    /// the claim reads the `(rank DESC, id)` index in order.
    pub fn rank(&self, priority: f64, enqueued_at_us: i64) -> f64 {
        priority - self.aging_points_per_minute * (enqueued_at_us as f64 / 60_000_000.0)
    }

    /// The priority a task of `rank` has at `now_us`, aged by its wait
    /// (the inverse of [`Scheduling::rank`]).
    pub fn aged(&self, rank: f64, now_us: i64) -> f64 {
        rank + self.aging_points_per_minute * (now_us as f64 / 60_000_000.0)
    }
}

/// Bounds of a task's settings: the one list is `drover_protocol::limits`.
pub use drover_protocol::limits::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BACKOFF_MS, DEFAULT_TIMEOUT_MS, MAX_AGENT_CAPACITY,
    MAX_ATTEMPTS_LIMIT, MAX_LABELS, MAX_PAYLOAD_BYTES, MAX_RETRY_BACKOFF_MS, MAX_TIMEOUT_MS,
    PRIORITY_INPUT_MAX,
};
use drover_protocol::limits::{
    HOOK_KEY_PREFIX, MAX_AGENT_TEXT_LEN, MAX_CONCURRENCY_LIMIT, MAX_IDEMPOTENCY_KEY_LEN,
    MAX_TIMESTAMP_US, RESERVED_KEY_PREFIX, SCHEDULE_KEY_PREFIX,
};

/// A validated task, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub task_type: String,
    pub payload: Value,
    pub urgency: i64,
    pub time_sensitivity: i64,
    pub importance: i64,
    pub priority: f64,
    pub max_attempts: i64,
    pub timeout_ms: i64,
    pub retry_backoff_ms: i64,
    pub required_labels: Vec<String>,
    pub idempotency_key: Option<String>,
    pub run_after_us: Option<i64>,
    /// A named semaphore and its limit (both or neither).
    pub concurrency: Option<(String, i64)>,
}

/// A name a task type or label may have (`limits::name_problem`): names are
/// safe in URLs, logs and metrics.
pub fn check_name(field: &str, value: &str) -> Result<(), FieldError> {
    match drover_protocol::limits::name_problem(value) {
        None => Ok(()),
        Some(problem) => Err(FieldError::new(field, problem)),
    }
}

/// An idempotency key a client may use (on a task or a run): bounded, no
/// control characters (PostgreSQL text cannot hold NUL), and not in the
/// spaces reserved for workflow steps and schedule ticks, whose keys make
/// them happen once.
/// Why an event's correlation key is refused, if it is: empty, longer than
/// [`drover_protocol::limits::MAX_EVENT_KEY_BYTES`], or with control characters.
pub fn check_event_key(key: &str) -> Result<(), String> {
    let max = drover_protocol::limits::MAX_EVENT_KEY_BYTES;
    if key.is_empty() || key.len() > max {
        return Err(format!("must be 1 to {max} bytes long"));
    }
    if key.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

pub fn check_idempotency_key(field: &str, key: &str) -> Result<(), FieldError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters long"),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    for (prefix, owner) in [
        (RESERVED_KEY_PREFIX, "the tasks of workflow steps"),
        (SCHEDULE_KEY_PREFIX, "the ticks of schedules"),
        (HOOK_KEY_PREFIX, "webhook deliveries"),
    ] {
        if key.starts_with(prefix) {
            return Err(FieldError::new(
                field,
                format!("must not start with {prefix:?}: that prefix is reserved for {owner}"),
            ));
        }
    }
    Ok(())
}

fn in_range(
    field: &str,
    value: Option<i64>,
    min: i64,
    max: i64,
    default: i64,
) -> Result<i64, FieldError> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(FieldError::new(
            field,
            format!("must be between {min} and {max}, got {v}"),
        ));
    }
    Ok(v)
}

impl TaskSpec {
    /// Validates a submitted task. `is_known_type` says whether some agent
    /// (or the server's configuration) handles a task type: work nobody can
    /// run is refused at the door instead of waiting forever. An
    /// `idempotency_key` may not start with the prefix reserved for workflow
    /// steps; the store gives step tasks theirs after parsing.
    pub fn parse(
        mut new: NewTask,
        weights: &PriorityWeights,
        is_known_type: impl Fn(&str) -> bool,
    ) -> Result<Self, FieldError> {
        check_name("task_type", &new.task_type)?;
        if !is_known_type(&new.task_type) {
            return Err(FieldError::new(
                "task_type",
                format!(
                    "unknown task type {:?}: no registered agent handles it and it is not in DROVER_TASK_TYPES",
                    new.task_type
                ),
            ));
        }
        let urgency = in_range("urgency", new.urgency, 0, PRIORITY_INPUT_MAX, 0)?;
        let time_sensitivity = in_range(
            "time_sensitivity",
            new.time_sensitivity,
            0,
            PRIORITY_INPUT_MAX,
            0,
        )?;
        let importance = in_range("importance", new.importance, 0, PRIORITY_INPUT_MAX, 0)?;
        let max_attempts = in_range(
            "max_attempts",
            new.max_attempts,
            1,
            MAX_ATTEMPTS_LIMIT,
            DEFAULT_MAX_ATTEMPTS,
        )?;
        let timeout_ms = in_range(
            "timeout_ms",
            new.timeout_ms,
            1,
            MAX_TIMEOUT_MS,
            DEFAULT_TIMEOUT_MS,
        )?;
        let retry_backoff_ms = in_range(
            "retry_backoff_ms",
            new.retry_backoff_ms,
            0,
            MAX_RETRY_BACKOFF_MS,
            DEFAULT_RETRY_BACKOFF_MS,
        )?;
        if new.required_labels.len() > MAX_LABELS {
            return Err(FieldError::new(
                "required_labels",
                format!("at most {MAX_LABELS} labels"),
            ));
        }
        for (i, label) in new.required_labels.iter().enumerate() {
            check_name(&format!("required_labels[{i}]"), label)?;
        }
        if let Some(key) = &new.idempotency_key {
            check_idempotency_key("idempotency_key", key)?;
        }
        if let Some(t) = new.run_after_us {
            if !(0..=MAX_TIMESTAMP_US).contains(&t) {
                return Err(FieldError::new(
                    "run_after_us",
                    format!("must be between 0 and {MAX_TIMESTAMP_US} (microseconds since 1970), got {t}"),
                ));
            }
        }
        let concurrency = match (new.concurrency_key.take(), new.concurrency_limit) {
            (None, None) => None,
            (Some(key), Some(limit)) => {
                if key.is_empty()
                    || key.len() > MAX_IDEMPOTENCY_KEY_LEN
                    || key.chars().any(char::is_control)
                {
                    return Err(FieldError::new(
                        "concurrency_key",
                        format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters long, without control characters"),
                    ));
                }
                if !(1..=MAX_CONCURRENCY_LIMIT).contains(&limit) {
                    return Err(FieldError::new(
                        "concurrency_limit",
                        format!("must be between 1 and {MAX_CONCURRENCY_LIMIT}, got {limit}"),
                    ));
                }
                Some((key, limit))
            }
            (Some(_), None) => {
                return Err(FieldError::new(
                    "concurrency_limit",
                    "is required with concurrency_key: how many tasks of the key may run at once",
                ))
            }
            (None, Some(_)) => {
                return Err(FieldError::new(
                    "concurrency_key",
                    "is required with concurrency_limit: the name the limit applies to",
                ))
            }
        };
        let payload_len = serde_json::to_string(&new.payload)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        if payload_len > MAX_PAYLOAD_BYTES {
            return Err(FieldError::new(
                "payload",
                format!("is {payload_len} bytes; the limit is {MAX_PAYLOAD_BYTES}"),
            ));
        }
        let mut required_labels = new.required_labels;
        required_labels.sort();
        required_labels.dedup();
        Ok(Self {
            priority: weights.priority(urgency, time_sensitivity, importance),
            task_type: new.task_type,
            payload: new.payload,
            urgency,
            time_sensitivity,
            importance,
            max_attempts,
            timeout_ms,
            retry_backoff_ms,
            required_labels,
            idempotency_key: new.idempotency_key,
            run_after_us: new.run_after_us,
            concurrency,
        })
    }
}

/// What an agent declares when it registers, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    pub name: String,
    pub hostname: String,
    pub version: String,
    pub task_types: Vec<String>,
    pub labels: Vec<String>,
    pub capacity: i64,
}

impl AgentSpec {
    pub fn parse(req: drover_protocol::agent::RegisterRequest) -> Result<Self, FieldError> {
        if req.protocol != drover_protocol::PROTOCOL_VERSION {
            return Err(FieldError::new(
                "protocol",
                format!(
                    "agent speaks protocol {}, this server speaks {}",
                    req.protocol,
                    drover_protocol::PROTOCOL_VERSION
                ),
            ));
        }
        for (field, value) in [
            ("name", &req.name),
            ("hostname", &req.hostname),
            ("version", &req.version),
        ] {
            if value.is_empty() || value.len() > MAX_AGENT_TEXT_LEN {
                return Err(FieldError::new(
                    field,
                    format!("must be 1 to {MAX_AGENT_TEXT_LEN} characters long"),
                ));
            }
        }
        if req.capacity == 0 || req.capacity > MAX_AGENT_CAPACITY {
            return Err(FieldError::new(
                "capacity",
                format!(
                    "must be between 1 and {MAX_AGENT_CAPACITY}, got {}",
                    req.capacity
                ),
            ));
        }
        if req.task_types.is_empty() {
            return Err(FieldError::new(
                "task_types",
                "an agent must handle at least one task type",
            ));
        }
        for (i, t) in req.task_types.iter().enumerate() {
            check_name(&format!("task_types[{i}]"), t)?;
        }
        if req.labels.len() > MAX_LABELS {
            return Err(FieldError::new(
                "labels",
                format!("at most {MAX_LABELS} labels"),
            ));
        }
        for (i, l) in req.labels.iter().enumerate() {
            check_name(&format!("labels[{i}]"), l)?;
        }
        let mut task_types = req.task_types;
        task_types.sort();
        task_types.dedup();
        let mut labels = req.labels;
        labels.sort();
        labels.dedup();
        Ok(Self {
            name: req.name,
            hostname: req.hostname,
            version: req.version,
            task_types,
            labels,
            capacity: i64::from(req.capacity),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(t: &str) -> NewTask {
        NewTask {
            task_type: t.into(),
            ..Default::default()
        }
    }

    #[test]
    fn priority_is_the_weighted_sum() {
        let w = PriorityWeights::parse("2, 1.5,0.5").unwrap();
        assert_eq!(w.priority(3, 2, 4), 2.0 * 3.0 + 1.5 * 2.0 + 0.5 * 4.0);
    }

    #[test]
    fn bad_weights_are_refused() {
        assert!(PriorityWeights::parse("1,1").is_err());
        assert!(PriorityWeights::parse("1,x,1").is_err());
        assert!(PriorityWeights::parse("1,-1,1").is_err());
    }

    #[test]
    fn out_of_range_priority_inputs_name_the_field() {
        let mut t = task("echo");
        t.importance = Some(11);
        let err = TaskSpec::parse(t, &PriorityWeights::default(), |_| true).unwrap_err();
        assert_eq!(err.field, "importance");
    }

    #[test]
    fn unknown_task_type_is_refused() {
        let err = TaskSpec::parse(task("nope"), &PriorityWeights::default(), |t| t == "echo")
            .unwrap_err();
        assert_eq!(err.field, "task_type");
        assert!(err.message.contains("unknown task type"));
    }

    #[test]
    fn settings_over_the_limits_name_the_field() {
        let parse = |t: NewTask| TaskSpec::parse(t, &PriorityWeights::default(), |_| true);
        let mut t = task("echo");
        t.max_attempts = Some(MAX_ATTEMPTS_LIMIT + 1);
        assert_eq!(parse(t).unwrap_err().field, "max_attempts");
        let mut t = task("echo");
        t.timeout_ms = Some(MAX_TIMEOUT_MS + 1);
        assert_eq!(parse(t).unwrap_err().field, "timeout_ms");
        let mut t = task("echo");
        t.run_after_us = Some(i64::MAX);
        assert_eq!(parse(t).unwrap_err().field, "run_after_us");
    }

    #[test]
    fn the_workflow_key_prefix_is_reserved() {
        let mut t = task("echo");
        t.idempotency_key = Some("run:1:charge:0:g0".into());
        let err = TaskSpec::parse(t, &PriorityWeights::default(), |_| true).unwrap_err();
        assert_eq!(err.field, "idempotency_key");
        assert!(err.message.contains("reserved"), "{err}");
        let mut t = task("echo");
        t.idempotency_key = Some("a\u{0}b".into());
        let err = TaskSpec::parse(t.clone(), &PriorityWeights::default(), |_| true).unwrap_err();
        assert_eq!(err.field, "idempotency_key");
        assert!(err.message.contains("control"), "{err}");
        t.idempotency_key = Some("rerun:1".into());
        assert!(TaskSpec::parse(t, &PriorityWeights::default(), |_| true).is_ok());
    }

    #[test]
    fn aged_rank_lets_an_old_low_priority_task_overtake_new_high_ones() {
        let s = Scheduling {
            weights: PriorityWeights::default(),
            aging_points_per_minute: 1.0,
            max_for_each_items: drover_protocol::limits::DEFAULT_MAX_FOR_EACH_ITEMS,
            type_limits: NO_TYPE_LIMITS,
        };
        let old_low = s.rank(0.0, 0);
        let fresh_high_after_29_min = s.rank(30.0, 29 * 60_000_000);
        let fresh_high_after_31_min = s.rank(30.0, 31 * 60_000_000);
        assert!(fresh_high_after_29_min > old_low);
        assert!(old_low > fresh_high_after_31_min);
        // FIFO among equals: same P, earlier enqueue ranks higher.
        assert!(s.rank(5.0, 1) > s.rank(5.0, 2));
    }
}
