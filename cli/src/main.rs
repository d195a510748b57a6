//! `drover`: the command line of a Drover server. Uploads workflow files,
//! starts runs and watches them to the end (the exit code follows the run's
//! outcome), sends the events waiting steps wait for, and lists and decides
//! approvals. It speaks only the public
//! REST API, so it works against any server it can reach.

mod client;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use drover_protocol::api::{AgentList, LogStream, TaskLogPage, TaskStatus};
use drover_protocol::credentials::{
    CreatedEnrollmentToken, EnrollmentTokenView, NewEnrollmentToken,
};
use drover_protocol::notification::{
    CreatedNotificationRule, DeliveryList, DeliveryStatus, DeliveryView, NotificationRuleList,
    NotificationRuleView,
};
use drover_protocol::schedule::{ScheduleList, ScheduleView};
use drover_protocol::workflow::{
    ApprovalList, EventDelivered, RunDetail, RunList, RunStatus, StepWait, UploadedWorkflow,
    WorkflowList,
};
use serde_json::{json, Map, Value};

use client::Client;

/// Exit codes: 0 the run succeeded (or the command worked), 1 the run
/// failed, 2 it was cancelled, 3 the command itself failed.
const EXIT_FAILED: u8 = 1;
const EXIT_CANCELLED: u8 = 2;
const EXIT_ERROR: u8 = 3;

#[derive(Debug, Parser)]
#[command(name = "drover", version, about = "Command line for a Drover server")]
struct Cli {
    /// The server's base URL.
    #[arg(
        long,
        env = "DROVER_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// An API token (see `drover login`); default: the server's local
    /// `drover-data/api-token` when it exists.
    #[arg(long, env = "DROVER_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// PEM file of CA certificates to trust for an https server, besides the
    /// system's roots.
    #[arg(long, env = "DROVER_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tasks: what their handlers print.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Workflow definitions.
    #[command(subcommand)]
    Workflow(WorkflowCmd),
    /// Workflow runs.
    #[command(subcommand)]
    Run(RunCmd),
    /// Workflows and tasks started by cron or once at a time.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Incoming webhooks that start a workflow (admin).
    #[command(subcommand)]
    Trigger(TriggerCmd),
    /// Outgoing notifications: webhook rules (admin) and their deliveries.
    #[command(subcommand)]
    Notify(NotifyCmd),
    /// Approvals waiting for you, and deciding them.
    #[command(subcommand)]
    Approvals(ApprovalCmd),
    /// Events for the workflow steps waiting on a key.
    #[command(subcommand)]
    Event(EventCmd),
    /// Exchange a user name and password (DROVER_PASSWORD) for an API token
    /// (it expires after 30 days unless --expires-in says otherwise).
    Login {
        name: String,
        /// Lifetime of the token: seconds or a duration such as 90d.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Your API tokens: list, create, revoke.
    #[command(subcommand)]
    Tokens(TokenCmd),
    /// The agents and their state; revoking one (admin).
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Enrollment tokens, the credentials agents register with (admin).
    #[command(subcommand, name = "enrollment-token")]
    EnrollmentToken(EnrollmentCmd),
}

#[derive(Debug, Subcommand)]
enum EventCmd {
    /// Resume every step waiting for KEY (a `wait` step's rendered
    /// `event.key`), with the data as its output's `data`; prints the steps
    /// it resumed. Nothing is kept for steps that start waiting later.
    Send {
        key: String,
        /// The event's data as JSON (default `{}`).
        #[arg(long, conflicts_with = "data_file")]
        data: Option<String>,
        /// Read the data (JSON) from this file; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        data_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TaskCmd {
    /// Print what the task's handlers printed: their stdout lines to
    /// stdout, their stderr lines (and Drover's notes) to stderr.
    Logs {
        id: i64,
        /// Keep printing new lines as they arrive until the task has
        /// finished (succeeded, failed for good or cancelled), then exit 0.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AgentCmd {
    List,
    /// Refuse the agent's session from now on and requeue its tasks; it may
    /// rejoin only with a usable enrollment token.
    Revoke {
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum EnrollmentCmd {
    List,
    /// Create one; the token is printed once, on its own line.
    Create {
        name: String,
        /// Only agents handling these task types may use it (repeat the flag).
        #[arg(long = "task-type")]
        task_types: Vec<String>,
        /// Only these labels may be declared with it (repeat the flag).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// e.g. 30d or 12h; default: until revoked.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Stop it enrolling agents and revoke the agents it enrolled.
    Revoke {
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Your tokens (prefix only); --all lists everyone's (admin).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Create a named token and print it once.
    Create {
        name: String,
        /// Lifetime: seconds or a duration such as 30d; none: no expiry.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Revoke a token by id.
    Revoke { id: i64 },
}

#[derive(Debug, Subcommand)]
enum WorkflowCmd {
    /// Upload a definition (YAML or JSON); a changed one becomes a new version.
    Upload { file: PathBuf },
    /// The latest version of each workflow.
    List,
}

#[derive(Debug, Subcommand)]
enum RunCmd {
    /// Start a run; `--input key=value` (values are read as JSON when they parse, else as text).
    Start {
        workflow: String,
        #[arg(long)]
        version: Option<i64>,
        #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        /// Starting again with the same key returns the same run.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Watch the run until it ends; the exit code follows its outcome.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Print step transitions until the run ends; the exit code follows its outcome.
    Watch {
        id: i64,
    },
    /// A run with its steps, as JSON.
    Get {
        id: i64,
    },
    /// Recent runs.
    List {
        #[arg(long)]
        status: Option<String>,
    },
    Cancel {
        id: i64,
    },
    /// Retry a failed step; the run continues from there.
    Retry {
        id: i64,
        step: String,
    },
}

#[derive(Debug, Subcommand)]
enum ScheduleCmd {
    /// Every schedule with its next tick and what its last tick did.
    List,
    /// One schedule, as JSON.
    Get {
        id: i64,
    },
    /// Create one: a target (--workflow or --task-type) and a timing
    /// (--cron or --at).
    Create {
        name: String,
        #[command(flatten)]
        target: ScheduleTarget,
        #[command(flatten)]
        timing: ScheduleTiming,
        /// Start paused.
        #[arg(long)]
        paused: bool,
    },
    /// Change a schedule: the options given replace what they name.
    Edit {
        id: i64,
        #[command(flatten)]
        target: ScheduleTarget,
        #[command(flatten)]
        timing: ScheduleTiming,
    },
    /// Stop firing until resumed.
    Pause {
        id: i64,
    },
    /// Fire again from the next tick (the ticks of the pause do not fire).
    Resume {
        id: i64,
    },
    Delete {
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum TriggerCmd {
    /// Every trigger, with where to send deliveries.
    List,
    /// Create one; its secret is printed once, on its own line.
    Create {
        name: String,
        #[arg(long)]
        workflow: String,
        #[arg(long)]
        version: Option<i64>,
        /// An input taken from the delivery's JSON body: `input=/json/pointer`.
        #[arg(long = "input", short = 'i', value_name = "INPUT=/POINTER")]
        inputs: Vec<String>,
        /// hmac (signed deliveries; default) or bearer.
        #[arg(long, default_value = "hmac")]
        auth: String,
    },
    Delete {
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum NotifyCmd {
    /// Notification rules (admin).
    #[command(subcommand)]
    Rules(RulesCmd),
    /// Recent deliveries, newest first, with their status (operator).
    Deliveries {
        /// Only this rule's (id or name).
        #[arg(long)]
        rule: Option<String>,
        /// pending, delivered or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCmd {
    /// Every rule, with its events, filters and where it posts (origin only).
    List,
    /// Create one; a signed rule's secret is printed once, on its own line.
    Create {
        name: String,
        /// Where to POST (http or https); a Slack incoming webhook works as is.
        #[arg(long)]
        url: String,
        /// run_failed, approval_waiting, task_failed or agent_offline; repeat for several.
        #[arg(long = "event", short = 'e', required = true)]
        events: Vec<String>,
        /// Only events of this workflow's runs.
        #[arg(long)]
        workflow: Option<String>,
        /// Only tasks of this type, or agents handling it.
        #[arg(long)]
        task_type: Option<String>,
        /// Send without an X-Drover-Signature (no secret is made).
        #[arg(long)]
        unsigned: bool,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Start sending again (events from now on).
    Enable { rule: String },
    /// Stop sending for new events.
    Disable { rule: String },
    /// Delete a rule; its pending deliveries fail, its history stays.
    Delete { rule: String },
    /// Send a test delivery and wait for its outcome.
    Test { rule: String },
}

#[derive(Debug, clap::Args)]
struct ScheduleTarget {
    /// Start a run of this workflow.
    #[arg(long, conflicts_with = "task_type")]
    workflow: Option<String>,
    /// Its version (default: the latest at each tick).
    #[arg(long, requires = "workflow")]
    version: Option<i64>,
    /// Run inputs, `key=value` (JSON when it parses, else text).
    #[arg(
        long = "input",
        short = 'i',
        value_name = "KEY=VALUE",
        requires = "workflow"
    )]
    inputs: Vec<String>,
    /// Or submit a task of this type.
    #[arg(long)]
    task_type: Option<String>,
    /// The task's payload, as JSON.
    #[arg(long, requires = "task_type")]
    payload: Option<String>,
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ScheduleTiming {
    /// Cron: five fields (minute first) or six (second first), or @daily etc.
    #[arg(long, conflicts_with = "at")]
    cron: Option<String>,
    /// The time zone the cron fields are read in (IANA name; default UTC).
    #[arg(long = "tz")]
    time_zone: Option<String>,
    /// Or once, at this RFC 3339 time (2026-12-24T18:00:00+01:00).
    #[arg(long)]
    at: Option<String>,
    /// Ticks missed while no server ran: skip or run_once.
    #[arg(long)]
    missed: Option<String>,
    /// While the previous tick's run is active: allow, skip or cancel_previous.
    #[arg(long)]
    overlap: Option<String>,
}

impl ScheduleTarget {
    fn into_json(self, body: &mut Map<String, Value>) -> Result<()> {
        if let Some(w) = self.workflow {
            body.insert("workflow".into(), json!(w));
            if let Some(v) = self.version {
                body.insert("version".into(), json!(v));
            }
            body.insert("inputs".into(), Value::Object(parse_inputs(&self.inputs)?));
        }
        if let Some(t) = self.task_type {
            let payload: Value = match self.payload {
                Some(p) => serde_json::from_str(&p).context("--payload is not JSON")?,
                None => json!({}),
            };
            body.insert("task".into(), json!({ "task_type": t, "payload": payload }));
        }
        if let Some(d) = self.description {
            body.insert("description".into(), json!(d));
        }
        Ok(())
    }
}

impl ScheduleTiming {
    fn into_json(self, body: &mut Map<String, Value>) {
        for (key, value) in [
            ("cron", self.cron),
            ("time_zone", self.time_zone),
            ("at", self.at),
            ("missed", self.missed),
            ("overlap", self.overlap),
        ] {
            if let Some(v) = value {
                body.insert(key.into(), json!(v));
            }
        }
    }
}

#[derive(Debug, Subcommand)]
enum ApprovalCmd {
    /// Pending approvals you may decide.
    List,
    Approve {
        id: i64,
        #[arg(long, short = 'm')]
        comment: Option<String>,
    },
    Reject {
        id: i64,
        #[arg(long, short = 'm')]
        comment: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("drover: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    let token = cli.token.or_else(|| {
        std::fs::read_to_string("drover-data/api-token")
            .ok()
            .map(|t| t.trim().to_string())
    });
    let client = Client::new(&cli.server, token, cli.ca_file.as_deref())?;
    match cli.command {
        Command::Task(TaskCmd::Logs { id, follow }) => task_logs(&client, id, follow).await?,
        Command::Workflow(WorkflowCmd::Upload { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let up: UploadedWorkflow = client.post_text("/api/v1/workflows", text).await?;
            let what = if up.created { "uploaded" } else { "unchanged" };
            println!(
                "{what}: {} version {}",
                up.workflow.name, up.workflow.version
            );
            for w in &up.warnings {
                eprintln!("warning: {w}");
            }
        }
        Command::Schedule(cmd) => schedule(&client, cmd).await?,
        Command::Trigger(cmd) => trigger(&client, cmd).await?,
        Command::Notify(cmd) => notify(&client, cmd).await?,
        Command::Workflow(WorkflowCmd::List) => {
            let list: WorkflowList = client.get("/api/v1/workflows").await?;
            for w in list.workflows {
                println!(
                    "{}\tv{}\t{}",
                    w.name,
                    w.version,
                    w.description.unwrap_or_default()
                );
            }
        }
        Command::Run(RunCmd::Start {
            workflow,
            version,
            inputs,
            idempotency_key,
            watch,
        }) => {
            let inputs = parse_inputs(&inputs)?;
            let body = json!({ "workflow": workflow, "version": version, "inputs": inputs, "idempotency_key": idempotency_key });
            let run: RunDetail = client.post("/api/v1/runs", &body).await?;
            println!(
                "run {} started ({} v{})",
                run.run.id, run.run.workflow, run.run.version
            );
            if watch {
                return watch_run(&client, run.run.id).await;
            }
        }
        Command::Run(RunCmd::Watch { id }) => return watch_run(&client, id).await,
        Command::Run(RunCmd::Get { id }) => {
            let run: Value = client.get(&format!("/api/v1/runs/{id}")).await?;
            println!("{}", serde_json::to_string_pretty(&run)?);
        }
        Command::Run(RunCmd::List { status }) => {
            let path = match status {
                Some(s) => format!("/api/v1/runs?status={s}"),
                None => "/api/v1/runs".into(),
            };
            let list: RunList = client.get(&path).await?;
            for r in list.runs {
                let parent = match (r.parent_run_id, &r.parent_step_id) {
                    (Some(p), Some(s)) => format!("\tchild of run {p} (step {s})"),
                    (Some(p), None) => format!("\tchild of run {p}"),
                    _ => String::new(),
                };
                println!(
                    "{}\t{} v{}\t{}\tby {}{parent}",
                    r.id,
                    r.workflow,
                    r.version,
                    r.status.as_str(),
                    r.started_by
                );
            }
        }
        Command::Run(RunCmd::Cancel { id }) => {
            let run: RunDetail = client
                .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
                .await?;
            println!("run {} {}", id, run.run.status.as_str());
        }
        Command::Run(RunCmd::Retry { id, step }) => {
            let run: RunDetail = client
                .post(&format!("/api/v1/runs/{id}/steps/{step}/retry"), &json!({}))
                .await?;
            println!(
                "run {} {} (step {step} retried)",
                id,
                run.run.status.as_str()
            );
        }
        Command::Event(EventCmd::Send {
            key,
            data,
            data_file,
        }) => send_event(&client, key, data, data_file).await?,
        Command::Approvals(ApprovalCmd::List) => {
            let list: ApprovalList = client.get("/api/v1/approvals").await?;
            if list.approvals.is_empty() {
                println!("nothing waits for you");
            }
            for a in list.approvals {
                println!(
                    "{}\trun {} step {}\t{}\t(started by {})",
                    a.id, a.run_id, a.step_id, a.message, a.requested_by
                );
            }
        }
        Command::Approvals(ApprovalCmd::Approve { id, comment }) => {
            decide(&client, id, "approve", comment).await?
        }
        Command::Approvals(ApprovalCmd::Reject { id, comment }) => {
            decide(&client, id, "reject", comment).await?
        }
        Command::Login { name, expires_in } => {
            let password =
                std::env::var("DROVER_PASSWORD").context("set DROVER_PASSWORD to the password")?;
            let r: Value = client
                .post(
                    "/api/v1/tokens",
                    &json!({ "user": name, "password": password, "name": "drover login", "expires_in": expires_in }),
                )
                .await?;
            println!("{}", r["token"].as_str().unwrap_or_default());
        }
        Command::Agent(cmd) => agents(&client, cmd).await?,
        Command::EnrollmentToken(cmd) => enrollment_tokens(&client, cmd).await?,
        Command::Tokens(TokenCmd::List { all }) => {
            let path = if all {
                "/api/v1/tokens?all=true"
            } else {
                "/api/v1/tokens"
            };
            let r: Value = client.get(path).await?;
            println!("ID\tUSER\tNAME\tPREFIX\tEXPIRES\tSTATE");
            for t in r["tokens"].as_array().into_iter().flatten() {
                let state = if t["revoked_at_us"].is_null() {
                    "live"
                } else {
                    "revoked"
                };
                let expires = t["expires_at_us"]
                    .as_i64()
                    .map(|us| us.to_string())
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{}\t{}\t{}\t{}…\t{expires}\t{state}",
                    t["id"],
                    t["user_name"].as_str().unwrap_or(""),
                    t["name"].as_str().unwrap_or(""),
                    t["prefix"].as_str().unwrap_or("")
                );
            }
        }
        Command::Tokens(TokenCmd::Create { name, expires_in }) => {
            let r: Value = client
                .post(
                    "/api/v1/tokens",
                    &json!({ "name": name, "expires_in": expires_in }),
                )
                .await?;
            eprintln!("token {} (shown once):", r["id"]);
            println!("{}", r["token"].as_str().unwrap_or_default());
        }
        Command::Tokens(TokenCmd::Revoke { id }) => {
            client
                .delete::<Value>(&format!("/api/v1/tokens/{id}"))
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(0)
}

async fn agents(client: &Client, cmd: AgentCmd) -> Result<()> {
    match cmd {
        AgentCmd::List => {
            let list: AgentList = client.get("/api/v1/agents").await?;
            for a in list.agents {
                println!(
                    "{}\t{}\t{}\t{}\t{}/{}\t{}",
                    a.id,
                    a.name,
                    a.hostname,
                    a.status.as_str(),
                    a.running,
                    a.capacity,
                    a.task_types.join(",")
                );
            }
        }
        AgentCmd::Revoke { id } => {
            let r: Value = client
                .post(&format!("/api/v1/agents/{id}/revoke"), &json!({}))
                .await?;
            println!("agent {id} revoked; {} task(s) requeued", r["requeued"]);
        }
    }
    Ok(())
}

async fn enrollment_tokens(client: &Client, cmd: EnrollmentCmd) -> Result<()> {
    match cmd {
        EnrollmentCmd::List => {
            let list: Value = client.get("/api/v1/enrollment-tokens").await?;
            let tokens: Vec<EnrollmentTokenView> = serde_json::from_value(list["tokens"].clone())?;
            for t in tokens {
                let state = if t.revoked_at_us.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let scope =
                    |l: &Option<Vec<String>>| l.as_ref().map_or("any".into(), |l| l.join(","));
                println!(
                    "{}\t{}\t{}…\t{state}\ttypes: {}\tlabels: {}",
                    t.id,
                    t.name,
                    t.prefix,
                    scope(&t.task_types),
                    scope(&t.labels)
                );
            }
        }
        EnrollmentCmd::Create {
            name,
            task_types,
            labels,
            expires_in,
        } => {
            let body = NewEnrollmentToken {
                name,
                task_types: (!task_types.is_empty()).then_some(task_types),
                labels: (!labels.is_empty()).then_some(labels),
                expires_in,
            };
            let created: CreatedEnrollmentToken = client
                .post("/api/v1/enrollment-tokens", &serde_json::to_value(&body)?)
                .await?;
            eprintln!(
                "enrollment token {} ({}) created; it is shown this once:",
                created.view.id, created.view.name
            );
            println!("{}", created.token);
        }
        EnrollmentCmd::Revoke { id } => {
            let r: Value = client
                .delete(&format!("/api/v1/enrollment-tokens/{id}"))
                .await?;
            println!(
                "enrollment token {id} revoked; agents revoked with it: {}",
                r["agents_revoked"]
            );
        }
    }
    Ok(())
}

/// `drover event send`: the data from `--data`, `--data-file` or `{}`.
async fn send_event(
    client: &Client,
    key: String,
    data: Option<String>,
    data_file: Option<PathBuf>,
) -> Result<()> {
    let (text, source) = match (data, data_file) {
        (Some(text), _) => (text, "--data".to_string()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the data from standard input")?;
            (text, "the data on standard input".to_string())
        }
        (None, Some(path)) => (
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read --data-file {}", path.display()))?,
            format!("--data-file {}", path.display()),
        ),
        (None, None) => ("{}".to_string(), String::new()),
    };
    let data: Value =
        serde_json::from_str(&text).with_context(|| format!("{source} is not JSON"))?;
    let answer: EventDelivered = client
        .post("/api/v1/events", &json!({ "key": key, "data": data }))
        .await?;
    match answer.resumed.len() {
        0 => println!("event {key}: no step was waiting for it (events are not kept for later)"),
        1 => println!("event {key} resumed 1 step:"),
        n => println!("event {key} resumed {n} steps:"),
    }
    for r in &answer.resumed {
        println!("  run {}\tstep {}", r.run_id, r.step_id);
    }
    Ok(())
}

async fn decide(client: &Client, id: i64, decision: &str, comment: Option<String>) -> Result<()> {
    let a: Value = client
        .post(
            &format!("/api/v1/approvals/{id}/decision"),
            &json!({ "decision": decision, "comment": comment }),
        )
        .await?;
    println!("approval {id}: {}", a["status"].as_str().unwrap_or("?"));
    Ok(())
}

/// `key=value` pairs; a value that parses as JSON keeps its type (`10`,
/// `true`, `["a"]`), anything else is text.
async fn schedule(client: &Client, cmd: ScheduleCmd) -> Result<()> {
    let print =
        |s: &ScheduleView| println!("schedule {} {:?}: {}", s.id, s.name, describe_schedule(s));
    match cmd {
        ScheduleCmd::List => {
            let list: ScheduleList = client.get("/api/v1/schedules").await?;
            println!("ID\tNAME\tTARGET\tWHEN\tNEXT\tLAST\tSTATE");
            for s in &list.schedules {
                let target = match (&s.workflow, &s.task) {
                    (Some(w), _) => format!("workflow {w}"),
                    (None, Some(t)) => format!("task {}", t.task_type),
                    _ => "-".into(),
                };
                let when = match (&s.cron, s.at_us) {
                    (Some(c), _) => format!("{c} ({})", s.time_zone),
                    (None, Some(_)) => "once".into(),
                    _ => "-".into(),
                };
                let last = match (&s.last_outcome, s.last_run_id, s.last_task_id) {
                    (Some(o), Some(r), _) => format!("{o} run {r}"),
                    (Some(o), None, Some(t)) => format!("{o} task {t}"),
                    (Some(o), None, None) => o.clone(),
                    _ => "-".into(),
                };
                println!(
                    "{}\t{}\t{target}\t{when}\t{}\t{last}\t{}",
                    s.id,
                    s.name,
                    s.next_fire_at_us
                        .map(from_now)
                        .unwrap_or_else(|| "-".into()),
                    s.state
                );
            }
        }
        ScheduleCmd::Get { id } => {
            let s: Value = client.get(&format!("/api/v1/schedules/{id}")).await?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        ScheduleCmd::Create {
            name,
            target,
            timing,
            paused,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("paused".into(), json!(paused));
            target.into_json(&mut body)?;
            timing.into_json(&mut body);
            let s: ScheduleView = client
                .post("/api/v1/schedules", &Value::Object(body))
                .await?;
            print(&s);
        }
        ScheduleCmd::Edit { id, target, timing } => {
            let mut body = Map::new();
            target.into_json(&mut body)?;
            timing.into_json(&mut body);
            let path = format!("/api/v1/schedules/{id}");
            let s: ScheduleView = client.patch(&path, &Value::Object(body)).await?;
            print(&s);
        }
        ScheduleCmd::Pause { id } | ScheduleCmd::Resume { id } => {
            let verb = if matches!(cmd, ScheduleCmd::Pause { .. }) {
                "pause"
            } else {
                "resume"
            };
            let s: ScheduleView = client
                .post(&format!("/api/v1/schedules/{id}/{verb}"), &json!({}))
                .await?;
            print(&s);
        }
        ScheduleCmd::Delete { id } => {
            let _: Value = client.delete(&format!("/api/v1/schedules/{id}")).await?;
            println!("schedule {id} deleted");
        }
    }
    Ok(())
}

async fn trigger(client: &Client, cmd: TriggerCmd) -> Result<()> {
    match cmd {
        TriggerCmd::List => {
            let list: Value = client.get("/api/v1/triggers").await?;
            println!("ID\tNAME\tWORKFLOW\tAUTH\tPATH\tFIRED");
            for t in list["triggers"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    t["id"],
                    t["name"].as_str().unwrap_or(""),
                    t["workflow"].as_str().unwrap_or(""),
                    t["auth"].as_str().unwrap_or(""),
                    t["path"].as_str().unwrap_or(""),
                    t["fired_count"]
                );
            }
        }
        TriggerCmd::Create {
            name,
            workflow,
            version,
            inputs,
            auth,
        } => {
            let mut map = Map::new();
            for pair in &inputs {
                let Some((input, pointer)) = pair.split_once('=') else {
                    bail!("--input {pair:?}: expected INPUT=/json/pointer");
                };
                map.insert(input.to_string(), json!(pointer));
            }
            let body = json!({ "name": name, "workflow": workflow, "version": version, "inputs": map, "auth": auth });
            let created: Value = client.post("/api/v1/triggers", &body).await?;
            eprintln!(
                "trigger {} created: deliveries go to {} ({}); its secret, shown once:",
                created["id"],
                created["path"].as_str().unwrap_or(""),
                auth
            );
            println!("{}", created["secret"].as_str().unwrap_or(""));
        }
        TriggerCmd::Delete { id } => {
            let _: Value = client.delete(&format!("/api/v1/triggers/{id}")).await?;
            println!("trigger {id} deleted");
        }
    }
    Ok(())
}

/// A rule's id, from its id or its name.
async fn rule_id(client: &Client, rule: &str) -> Result<i64> {
    if let Ok(id) = rule.parse::<i64>() {
        return Ok(id);
    }
    let list: NotificationRuleList = client.get("/api/v1/notifications/rules").await?;
    list.rules
        .iter()
        .find(|r| r.name == rule)
        .map(|r| r.id)
        .with_context(|| format!("no notification rule named {rule:?}"))
}

fn delivery_line(d: &DeliveryView) -> String {
    let when = match (d.status, d.next_attempt_at_us, d.delivered_at_us) {
        (DeliveryStatus::Pending, Some(next), _) => format!("next attempt {}", from_now(next)),
        (DeliveryStatus::Delivered, _, Some(at)) => match from_now(at) {
            just if just.starts_with("in ") => "delivered just now".into(),
            ago => format!("delivered {ago}"),
        },
        _ => String::new(),
    };
    format!(
        "{}\t{}\t{}\t{}\t{}/{}\t{}\t{}\t{}",
        d.id,
        d.rule,
        d.event,
        d.status.as_str(),
        d.attempts,
        d.max_attempts,
        d.last_error.as_deref().unwrap_or(""),
        when,
        d.summary
    )
}

async fn notify(client: &Client, cmd: NotifyCmd) -> Result<()> {
    const RULES: &str = "/api/v1/notifications/rules";
    match cmd {
        NotifyCmd::Rules(RulesCmd::List) => {
            let list: NotificationRuleList = client.get(RULES).await?;
            println!("ID\tNAME\tEVENTS\tFILTER\tURL\tSIGNED\tENABLED");
            for r in list.rules {
                let events: Vec<&str> = r.events.iter().map(|e| e.as_str()).collect();
                let filter = [
                    r.workflow.as_ref().map(|w| format!("workflow={w}")),
                    r.task_type.as_ref().map(|t| format!("task_type={t}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(",");
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.id,
                    r.name,
                    events.join(","),
                    if filter.is_empty() {
                        "-".into()
                    } else {
                        filter
                    },
                    r.url,
                    r.signed,
                    r.enabled
                );
            }
        }
        NotifyCmd::Rules(RulesCmd::Create {
            name,
            url,
            events,
            workflow,
            task_type,
            unsigned,
            disabled,
        }) => {
            let body = json!({
                "name": name, "url": url, "events": events, "workflow": workflow,
                "task_type": task_type, "sign": !unsigned, "enabled": !disabled,
            });
            let created: CreatedNotificationRule = client.post(RULES, &body).await?;
            match created.secret {
                Some(secret) => {
                    eprintln!(
                        "rule {} ({}) created: deliveries to {} are signed with this secret, shown once:",
                        created.rule.id, created.rule.name, created.rule.url
                    );
                    println!("{secret}");
                }
                None => println!(
                    "rule {} ({}) created: deliveries go to {}, unsigned",
                    created.rule.id, created.rule.name, created.rule.url
                ),
            }
        }
        NotifyCmd::Rules(RulesCmd::Enable { rule }) => {
            let id = rule_id(client, &rule).await?;
            let r: NotificationRuleView = client
                .patch(&format!("{RULES}/{id}"), &json!({ "enabled": true }))
                .await?;
            println!("rule {} ({}) enabled", r.id, r.name);
        }
        NotifyCmd::Rules(RulesCmd::Disable { rule }) => {
            let id = rule_id(client, &rule).await?;
            let r: NotificationRuleView = client
                .patch(&format!("{RULES}/{id}"), &json!({ "enabled": false }))
                .await?;
            println!("rule {} ({}) disabled", r.id, r.name);
        }
        NotifyCmd::Rules(RulesCmd::Delete { rule }) => {
            let id = rule_id(client, &rule).await?;
            let _: Value = client.delete(&format!("{RULES}/{id}")).await?;
            println!("rule {id} deleted");
        }
        NotifyCmd::Rules(RulesCmd::Test { rule }) => {
            let id = rule_id(client, &rule).await?;
            let sent: DeliveryView = client
                .post(&format!("{RULES}/{id}/test"), &json!({}))
                .await?;
            eprintln!(
                "test delivery {} queued; waiting for its first outcome…",
                sent.id
            );
            // Its first attempt starts at once; later ones follow the backoff.
            for _ in 0..60 {
                let list: DeliveryList = client
                    .get(&format!(
                        "/api/v1/notifications/deliveries?rule={id}&limit=20"
                    ))
                    .await?;
                if let Some(d) = list.deliveries.iter().find(|d| d.id == sent.id) {
                    // Delivered, failed, or its first attempt failed (it is retried).
                    let answered = d.status != DeliveryStatus::Pending || d.last_error.is_some();
                    if answered {
                        println!("{}", delivery_line(d));
                        if d.status != DeliveryStatus::Delivered {
                            bail!(
                                "the test delivery was not delivered (yet): {}",
                                d.last_error.as_deref().unwrap_or(d.status.as_str())
                            );
                        }
                        return Ok(());
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            bail!("no outcome after 30 s: see `drover notify deliveries --rule {id}`");
        }
        NotifyCmd::Deliveries {
            rule,
            status,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            if let Some(r) = rule {
                query.push(format!("rule={}", urlencode(&r)));
            }
            if let Some(s) = status {
                query.push(format!("status={}", urlencode(&s)));
            }
            let list: DeliveryList = client
                .get(&format!(
                    "/api/v1/notifications/deliveries?{}",
                    query.join("&")
                ))
                .await?;
            println!("ID\tRULE\tEVENT\tSTATUS\tATTEMPTS\tLAST ERROR\tWHEN\tTEXT");
            for d in &list.deliveries {
                println!("{}", delivery_line(d));
            }
        }
    }
    Ok(())
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn describe_schedule(s: &ScheduleView) -> String {
    match s.next_fire_at_us {
        Some(next) => format!("{}, next tick {}", s.state, from_now(next)),
        None => s.state.clone(),
    }
}

/// A time as "in 3 min" (or "2 h ago") from now: the CLI has no date library.
fn from_now(us: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let secs = (us - now) / 1_000_000;
    let (n, unit) = match secs.abs() {
        s if s < 120 => (s, "s"),
        s if s < 7_200 => (s / 60, "min"),
        s if s < 172_800 => (s / 3_600, "h"),
        s => (s / 86_400, "d"),
    };
    if secs >= 0 {
        format!("in {n} {unit}")
    } else {
        format!("{n} {unit} ago")
    }
}

fn parse_inputs(pairs: &[String]) -> Result<Map<String, Value>> {
    let mut inputs = Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--input {pair:?}: expected KEY=VALUE");
        };
        let value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        inputs.insert(key.trim().to_string(), value);
    }
    Ok(inputs)
}

/// What a waiting step waits for, and what ends the wait, for `run watch`.
fn wait_words(w: &StepWait) -> String {
    match w.kind.as_str() {
        "sleep" => match w.wake_at_us {
            Some(t) => format!("sleeping, wakes {}", from_now(t)),
            None => "sleeping".into(),
        },
        "event" => {
            let key = w.event_key.as_deref().unwrap_or_default();
            let deadline = w
                .wake_at_us
                .map(|t| format!(", times out {}", from_now(t)))
                .unwrap_or_default();
            format!(
                "for event {key}{deadline} (drover event send {})",
                shell_word(key)
            )
        }
        "workflow" => match w.child_run_id {
            Some(c) => format!("for child run {c} (drover run watch {c})"),
            None => "for a child run".into(),
        },
        other => format!("for {other}"),
    }
}

/// A word as a POSIX shell reads it back: quoted unless it is plain.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_-./@%+=,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// How often `task logs --follow` asks for new lines.
const LOG_POLL: Duration = Duration::from_millis(300);

/// Prints a task's log; with `follow`, until the task has finished. A
/// finished task takes no more lines, so once a page read after seeing it
/// finished is not full, the log is complete.
async fn task_logs(client: &Client, id: i64, follow: bool) -> Result<()> {
    use std::io::Write;
    let mut after = -1;
    let mut attempt = None;
    loop {
        let page: TaskLogPage = client
            .get(&format!("/api/v1/tasks/{id}/logs?after={after}&limit=5000"))
            .await?;
        {
            let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
            for line in &page.lines {
                if attempt.is_some_and(|a| a != line.attempt) {
                    writeln!(err, "--- attempt {} ---", line.attempt)?;
                }
                attempt = Some(line.attempt);
                match line.stream {
                    LogStream::Stdout => writeln!(out, "{}", line.line)?,
                    LogStream::Stderr => writeln!(err, "{}", line.line)?,
                    LogStream::Note => writeln!(err, "[drover] {}", line.line)?,
                }
            }
            out.flush()?;
        }
        after = page.last_seq;
        if page.more {
            continue;
        }
        let finished = !matches!(page.status, TaskStatus::Queued | TaskStatus::Running);
        if !follow || finished {
            if follow {
                eprintln!("[drover] task {id} {}", page.status.as_str());
            }
            return Ok(());
        }
        tokio::time::sleep(LOG_POLL).await;
    }
}

/// Prints each step's transitions until the run ends.
async fn watch_run(client: &Client, id: i64) -> Result<u8> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut last_status = None;
    loop {
        let run: RunDetail = client.get(&format!("/api/v1/runs/{id}")).await?;
        if last_status.is_none() {
            if let Some(parent) = run.run.parent_run_id {
                let step = run
                    .run
                    .parent_step_id
                    .as_deref()
                    .map(|s| format!(", step {s}"))
                    .unwrap_or_default();
                println!("run {id} was started by run {parent}{step}");
            }
        }
        for step in &run.steps {
            if seen.get(&step.step_id) != Some(&step.status) {
                let wait = step.wait.as_ref();
                let extra = match (step.error.as_deref(), wait) {
                    (Some(e), _) => format!(" — {e}"),
                    (None, Some(w)) if step.status == "waiting" => {
                        format!(" — {}", wait_words(w))
                    }
                    (None, Some(w)) if w.status == "timed_out" => {
                        " — no event came in time; continued".to_string()
                    }
                    _ => String::new(),
                };
                println!("  {:<24} {}{extra}", step.step_id, step.status);
                seen.insert(step.step_id.clone(), step.status.clone());
            }
        }
        if last_status != Some(run.run.status) {
            if run.run.status == RunStatus::WaitingApproval {
                for a in run.approvals.iter().filter(|a| a.status == "pending") {
                    println!(
                        "  waiting for approval {} ({}): drover approvals approve {}",
                        a.id, a.message, a.id
                    );
                }
            }
            last_status = Some(run.run.status);
        }
        match run.run.status {
            RunStatus::Succeeded => {
                println!("run {id} succeeded");
                return Ok(0);
            }
            RunStatus::Failed => {
                println!("run {id} failed: {}", run.run.error.unwrap_or_default());
                return Ok(EXIT_FAILED);
            }
            RunStatus::Cancelled => {
                println!("run {id} cancelled");
                return Ok(EXIT_CANCELLED);
            }
            RunStatus::Running | RunStatus::WaitingApproval => {
                tokio::time::sleep(Duration::from_millis(300)).await
            }
        }
    }
}
