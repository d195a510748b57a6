//! The packaging in `deploy/`, checked with the real tools that run here
//! (Docker, Kubernetes and the helm CLI do not):
//!
//! - the Dockerfile: hadolint and checkov's Dockerfile checks, with no
//!   finding; its stages, users, ports and health check;
//! - the images' entrypoint: it turns `*_FILE` secrets into variables;
//! - `docker-compose.yml`: the Compose Specification's JSON schema
//!   (check-jsonschema), yamllint, and what it must hold (two servers on one
//!   PostgreSQL, three agents, secrets from files, `/readyz` health checks);
//! - the Helm chart: linted (`--strict`) and rendered by Helm's own Go SDK
//!   (helm-python-sdk), the manifests validated against Kubernetes' API
//!   schemas (kubernetes-validate) and checked by checkov, whose findings must
//!   be exactly the allowed ones below;
//! - the `.deb` packages: built by cargo-deb from the debug binaries the
//!   suite already built, installed with `dpkg --root` into a scratch root
//!   (maintainer scripts included), the installed binaries run, then purged.
//!
//! The tools come from `scripts/lib.sh` (`ensure_deploy_tools`,
//! `ensure_cargo_deb`), which `scripts/test.sh` calls.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn root() -> PathBuf {
    PathBuf::from(ROOT).canonicalize().expect("repository root")
}

/// A tool of the deployment venv (`DROVER_DEPLOY_TOOLS`, by default
/// `.tools/deploy-venv/bin`).
fn deploy_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("DROVER_DEPLOY_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/deploy-venv/bin"));
    let tool = dir.join(name);
    assert!(
        tool.exists(),
        "{} is missing: install the deployment linters with \
         `source scripts/lib.sh && ensure_deploy_tools` (scripts/test.sh does)",
        tool.display()
    );
    tool
}

fn run(command: &mut Command) -> (Output, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("could not run {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// Runs a command that must succeed; returns its stdout and stderr.
fn run_ok(command: &mut Command) -> String {
    let shown = format!("{command:?}");
    let (out, text) = run(command);
    assert!(out.status.success(), "{shown} failed: {text}");
    text
}

fn yaml_file(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut value: Yaml =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    value.apply_merge().expect("YAML merge keys");
    value
}

fn yamllint(files: &[PathBuf]) {
    let mut command = Command::new(deploy_tool("yamllint"));
    command
        .arg("--strict")
        .arg("-c")
        .arg(root().join("deploy/.yamllint.yml"))
        .args(files);
    run_ok(&mut command);
}

/// checkov's JSON report of one framework: (failed check id, resource)
/// pairs and the number of passed checks.
fn checkov(args: &[&str], target: &Path) -> (BTreeSet<(String, String)>, u64) {
    let mut command = Command::new(deploy_tool("checkov"));
    command
        .args(args)
        .arg(target)
        // Offline: no Prisma Cloud guidelines or policies.
        .args(["--skip-download", "--quiet", "--output", "json"])
        .env("BC_SKIP_MAPPING", "TRUE");
    let (out, text) = run(&mut command);
    let json_start = text.find(['{', '[']).unwrap_or(0);
    let report: Json = serde_json::from_str(&String::from_utf8_lossy(&out.stdout))
        .or_else(|_| serde_json::from_str(&text[json_start..]))
        .unwrap_or_else(|e| panic!("checkov printed no JSON report ({e}): {text}"));
    // One framework gives an object, several an array of them.
    let reports = match report {
        Json::Array(items) => items,
        one => vec![one],
    };
    let mut failed = BTreeSet::new();
    let mut passed = 0;
    for report in &reports {
        passed += report["summary"]["passed"].as_u64().unwrap_or(0);
        for check in report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            failed.insert((
                check["check_id"].as_str().unwrap_or("?").to_string(),
                check["resource"].as_str().unwrap_or("?").to_string(),
            ));
        }
    }
    (failed, passed)
}

#[test]
fn the_dockerfile_passes_hadolint_and_checkov_and_runs_as_non_root() {
    let dockerfile = root().join("deploy/docker/Dockerfile");
    // hadolint's default rules; the file's inline ignores say why.
    run_ok(Command::new(deploy_tool("hadolint")).arg(&dockerfile));

    let (failed, passed) = checkov(&["--framework", "dockerfile", "-f"], &dockerfile);
    assert!(failed.is_empty(), "checkov findings: {failed:?}");
    assert!(passed >= 20, "checkov ran only {passed} Dockerfile checks");

    // Stage by stage: both runtime targets exist, run as a numeric non-root
    // user, and bake in no secret.
    let text = std::fs::read_to_string(&dockerfile).expect("Dockerfile");
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(from) = line.strip_prefix("FROM ") {
            let name = from.split(" AS ").nth(1).unwrap_or("").trim().to_string();
            stages.push((name, Vec::new()));
        } else if let Some((_, lines)) = stages.last_mut() {
            lines.push(line.to_string());
        }
    }
    for target in ["server", "agent"] {
        let (_, lines) = stages
            .iter()
            .find(|(name, _)| name == target)
            .unwrap_or_else(|| panic!("no `{target}` stage (docker build --target {target})"));
        let user = lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("stage {target} sets no USER"));
        let uid: u32 = user
            .split(':')
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or_else(|| panic!("stage {target}: USER {user} is not numeric"));
        assert!(uid >= 10000, "stage {target} runs as uid {uid}");
        assert!(
            lines.iter().any(|l| l.starts_with("HEALTHCHECK ")),
            "stage {target} says nothing about health"
        );
    }
    let server = &stages.iter().find(|(n, _)| n == "server").unwrap().1;
    assert!(server.iter().any(|l| l == "EXPOSE 8080"));
    assert!(server.iter().any(|l| l.contains("/readyz")));
    for line in text.lines() {
        let upper = line.to_uppercase();
        let sets = upper.trim_start().starts_with("ENV ")
            || upper.trim_start().starts_with("ARG ")
            || upper.trim_start().starts_with("DROVER_");
        assert!(
            !(sets && (upper.contains("TOKEN") || upper.contains("PASSWORD"))),
            "a secret in the image: {line}"
        );
    }
}

#[test]
fn the_images_entrypoint_reads_secrets_from_files() {
    let scripts = [
        "deploy/docker/entrypoint.sh",
        "deploy/docker/make-secrets.sh",
        "deploy/debian/drover-server/postinst",
        "deploy/debian/drover-agent/postinst",
    ];
    run_ok(
        Command::new(deploy_tool("shellcheck"))
            .args(["--shell=sh", "--severity=style"])
            .args(scripts.iter().map(|s| root().join(s))),
    );

    let entrypoint = root().join("deploy/docker/entrypoint.sh");
    let dir = tempfile::tempdir().expect("scratch");
    let token = dir.path().join("api_token");
    std::fs::write(&token, "s3cret-token\n").expect("write");
    let agent_token = dir.path().join("enrollment");
    std::fs::write(&agent_token, "enroll\n").expect("write");
    // `sh` is dash on Debian, like the images' /bin/sh.
    let env = run_ok(
        Command::new("sh")
            .arg(&entrypoint)
            .arg("env")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("DROVER_API_TOKEN_FILE", &token)
            .env("DROVER_TOKEN_FILE", &agent_token),
    );
    let vars: BTreeSet<&str> = env.lines().collect();
    assert!(vars.contains("DROVER_API_TOKEN=s3cret-token"), "{env}");
    assert!(
        !env.contains("DROVER_API_TOKEN_FILE="),
        "the _FILE variable stays: {env}"
    );
    // The agent reads DROVER_TOKEN_FILE itself: left as it is, never
    // turned into a variable.
    assert!(
        vars.contains(format!("DROVER_TOKEN_FILE={}", agent_token.display()).as_str()),
        "{env}"
    );
    assert!(!env.contains("DROVER_TOKEN=enroll"), "{env}");

    let (out, text) = run(Command::new("sh")
        .arg(&entrypoint)
        .arg("true")
        .env("DROVER_API_TOKEN", "inline")
        .env("DROVER_API_TOKEN_FILE", &token));
    assert_eq!(out.status.code(), Some(64), "both set must fail: {text}");
    let (out, text) = run(Command::new("sh")
        .arg(&entrypoint)
        .arg("true")
        .env_remove("DROVER_API_TOKEN")
        .env("DROVER_DATABASE_URL_FILE", dir.path().join("missing")));
    assert_eq!(
        out.status.code(),
        Some(66),
        "a missing file must fail: {text}"
    );
}

#[test]
fn the_compose_file_follows_the_compose_spec_with_secrets_from_files() {
    let compose = root().join("deploy/docker-compose.yml");
    run_ok(
        Command::new(deploy_tool("check-jsonschema"))
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(&compose),
    );
    yamllint(std::slice::from_ref(&compose));

    let file = yaml_file(&compose);
    let services = file["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    let expected: BTreeSet<&str> = [
        "postgres", "server-1", "server-2", "agent-1", "agent-2", "agent-3",
    ]
    .into();
    assert_eq!(names, expected);

    let secret_files: BTreeSet<&str> = file["secrets"]
        .as_mapping()
        .expect("secrets")
        .values()
        .map(|s| s["file"].as_str().expect("a secret is a file"))
        .collect();
    assert!(
        secret_files.iter().all(|f| f.starts_with("./secrets/")),
        "{secret_files:?}"
    );

    for (name, service) in services {
        let name = name.as_str().unwrap();
        for (key, value) in service["environment"].as_mapping().into_iter().flatten() {
            let key = key.as_str().unwrap();
            let secret_like = ["TOKEN", "PASSWORD", "DATABASE_URL"]
                .iter()
                .any(|s| key.contains(s));
            assert!(
                !secret_like || key.ends_with("_FILE"),
                "{name}: {key}={value:?} inline; secrets come from files"
            );
        }
        if name.starts_with("server-") {
            let test = serde_yaml_ng::to_string(&service["healthcheck"]["test"]).unwrap();
            assert!(test.contains("/readyz"), "{name} health check: {test}");
            assert_eq!(
                service["environment"]["DROVER_DATABASE_URL_FILE"].as_str(),
                Some("/run/secrets/database_url"),
                "{name}: both servers share the one PostgreSQL"
            );
            assert_eq!(
                service["depends_on"]["postgres"]["condition"].as_str(),
                Some("service_healthy")
            );
        }
        if name.starts_with("agent-") {
            assert_eq!(
                service["environment"]["DROVER_TOKEN_FILE"].as_str(),
                Some("/run/secrets/enrollment_token"),
                "{name}"
            );
            assert_eq!(service["build"]["target"].as_str(), Some("agent"));
        }
    }
}

/// checkov findings on the rendered chart that are accepted, and why.
const ALLOWED_K8S_FINDINGS: &[(&str, &str, &str)] = &[
    (
        "CKV_K8S_8",
        "Deployment.drover.drover-agent",
        "liveness probe: the agent serves nothing to probe; it exits when it cannot work",
    ),
    (
        "CKV_K8S_9",
        "Deployment.drover.drover-agent",
        "readiness probe: no Service routes to agents, so readiness means nothing",
    ),
];

/// Renders the chart with `values` into `out`; Err(output) when lint or
/// rendering fails.
fn render_chart(values: &Path, out: &Path) -> Result<String, String> {
    let (status, text) = run(Command::new(deploy_tool("python"))
        .arg(root().join("deploy/helm/render.py"))
        .arg(root().join("deploy/helm/drover"))
        .arg(values)
        .arg(out));
    if status.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn rendered(dir: &Path) -> Vec<(PathBuf, Yaml)> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("rendered")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("manifest");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = <Yaml as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{file:?}: {e}"));
            if !value.is_null() {
                docs.push((file.clone(), value));
            }
        }
    }
    docs
}

#[test]
fn the_helm_chart_lints_renders_validates_and_passes_checkov() {
    let chart = root().join("deploy/helm/drover");
    yamllint(&[
        chart.join("Chart.yaml"),
        chart.join("values.yaml"),
        root().join("deploy/helm/test-values.yaml"),
    ]);

    // Not tempfile's default `.tmp…`: checkov skips hidden directories.
    let scratch = tempfile::Builder::new()
        .prefix("drover-chart-")
        .tempdir()
        .expect("scratch");
    // Without the shared tokens the chart refuses to render: each replica
    // would otherwise generate its own.
    let bare = scratch.path().join("bare.yaml");
    std::fs::write(&bare, "{}\n").expect("values");
    let refused = render_chart(&bare, &scratch.path().join("bare"))
        .expect_err("rendered without secrets.databaseUrl");
    assert!(refused.contains("secrets.databaseUrl"), "{refused}");

    let out = scratch.path().join("manifests");
    let log = render_chart(&root().join("deploy/helm/test-values.yaml"), &out)
        .unwrap_or_else(|e| panic!("helm lint/render failed: {e}"));
    let docs = rendered(&out);
    let kinds: BTreeSet<String> = docs
        .iter()
        .map(|(_, d)| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "Deployment/drover-server",
        "Deployment/drover-agent",
        "Service/drover-server",
        "Secret/drover-secrets",
        "ConfigMap/drover-agent",
        "Ingress/drover",
        "ServiceMonitor/drover",
        "PodDisruptionBudget/drover-server",
    ] {
        assert!(
            kinds.contains(expected),
            "{expected} not rendered: {kinds:?}\n{log}"
        );
    }

    // Kubernetes' own API schemas, strict (no unknown fields). The
    // ServiceMonitor is the Prometheus Operator's CRD, not in them.
    let files: Vec<PathBuf> = docs.iter().map(|(f, _)| f.clone()).collect();
    let files: BTreeSet<PathBuf> = files.into_iter().collect();
    let (out_v, text) = run(Command::new(deploy_tool("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .args(&files));
    assert!(out_v.status.success(), "kubernetes-validate: {text}");
    for (file, doc) in &docs {
        let kind = doc["kind"].as_str().unwrap();
        let name = doc["metadata"]["name"].as_str().unwrap();
        let passed = format!("passed for resource {}/{name}", kind.to_lowercase());
        assert!(
            kind == "ServiceMonitor" || text.contains(&passed),
            "{file:?} {kind}/{name} not validated: {text}"
        );
    }

    let (failed, passed) = checkov(&["--framework", "kubernetes", "-d"], &out);
    let allowed: BTreeSet<(String, String)> = ALLOWED_K8S_FINDINGS
        .iter()
        .map(|(id, resource, _)| (id.to_string(), resource.to_string()))
        .collect();
    let unexpected: Vec<_> = failed.difference(&allowed).collect();
    assert!(unexpected.is_empty(), "checkov findings: {unexpected:?}");
    assert!(passed >= 100, "checkov ran only {passed} Kubernetes checks");

    // What the issue asks of the chart, on the rendered objects.
    let find = |kind: &str, name: &str| {
        docs.iter()
            .map(|(_, d)| d)
            .find(|d| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("{kind}/{name}"))
    };
    let server = find("Deployment", "drover-server");
    assert_eq!(server["spec"]["replicas"].as_u64(), Some(2));
    let container = &server["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    for deployment in [server, find("Deployment", "drover-agent")] {
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
        for c in pod["containers"].as_sequence().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
            assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
            assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
            assert!(c["resources"]["limits"]["memory"].is_string());
            // Secrets reach the pods as files, never as values in the spec.
            for env in c["env"].as_sequence().unwrap() {
                let name = env["name"].as_str().unwrap();
                assert!(
                    !(name.contains("TOKEN")
                        || name.contains("PASSWORD")
                        || name.contains("DATABASE_URL"))
                        || name.ends_with("_FILE"),
                    "{name} in the pod spec"
                );
            }
        }
    }
    let secret = find("Secret", "drover-secrets");
    assert!(secret["stringData"]["database-url"]
        .as_str()
        .unwrap()
        .starts_with("postgres://"));
    let ingress = find("Ingress", "drover");
    assert_eq!(
        ingress["spec"]["tls"][0]["secretName"].as_str(),
        Some("drover-tls")
    );
}

fn build_deb(package: &str, out: &Path) -> PathBuf {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_drover-server"));
    let target_dir = built
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    // The debug binaries the suite already built (`cargo build --workspace
    // --bins`): cargo-deb warns that dev builds are for testing only, which
    // is what this is; a release package is `cargo deb` alone.
    let text = run_ok(
        Command::new("cargo")
            .args([
                "deb",
                "--no-build",
                "--profile",
                "dev",
                "--fast",
                "-p",
                package,
            ])
            .arg("--output")
            .arg(out)
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(root()),
    );
    let deb = std::fs::read_dir(out)
        .expect("output dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .unwrap_or_else(|| panic!("cargo deb made no {package} package: {text}"));
    deb
}

/// A dpkg database in `root` that knows this machine's installed packages,
/// so the packages' Depends are checked against what is really here.
fn dpkg_root(root: &Path) {
    let admin = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(dir)).expect("dpkg dirs");
    }
    std::fs::copy("/var/lib/dpkg/status", admin.join("status")).expect("dpkg status");
    std::fs::write(admin.join("available"), "").expect("available");
    std::fs::create_dir_all(root.join("etc")).expect("etc");
}

fn dpkg(root: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            // Maintainer scripts run here with DPKG_ROOT set (they honour
            // it), instead of chrooting into a root that has no shell.
            .arg("--force-script-chrootless")
            .arg("--log=/dev/null")
            .args(args),
    )
}

#[test]
fn the_debs_install_with_dpkg_and_their_binaries_and_units_work() {
    let scratch = tempfile::tempdir().expect("scratch");
    let debs = scratch.path().join("debs");
    std::fs::create_dir_all(&debs).expect("debs");
    let server_deb = build_deb("drover-server", &debs);
    let agent_deb = build_deb("drover-agent", &debs);

    // The control files: dependencies found by cargo-deb, and a postinst
    // that creates the service's user.
    for (deb, user) in [(&server_deb, "drover-server"), (&agent_deb, "drover-agent")] {
        let info = run_ok(Command::new("dpkg-deb").arg("--info").arg(deb));
        assert!(info.contains("Depends: libc6"), "{deb:?}: {info}");
        let control = scratch.path().join(format!("control-{user}"));
        run_ok(
            Command::new("dpkg-deb")
                .arg("--control")
                .arg(deb)
                .arg(&control),
        );
        let postinst = std::fs::read_to_string(control.join("postinst")).expect("postinst");
        assert!(
            postinst.contains(&format!(
                "systemd-sysusers ${{DPKG_ROOT:+--root=\"$DPKG_ROOT\"}} {user}.conf"
            )),
            "{postinst}"
        );
    }

    let root = scratch.path().join("root");
    dpkg_root(&root);
    dpkg(
        &root,
        &[
            "--install",
            server_deb.to_str().unwrap(),
            agent_deb.to_str().unwrap(),
        ],
    );
    let status = dpkg(&root, &["--status", "drover-server", "drover-agent"]);
    assert_eq!(
        status.matches("Status: install ok installed").count(),
        2,
        "{status}"
    );

    // The binaries it placed run.
    for (binary, name) in [
        ("usr/bin/drover-server", "drover-server"),
        ("usr/bin/drover", "drover"),
        ("usr/bin/drover-agent", "drover-agent"),
    ] {
        let version = run_ok(Command::new(root.join(binary)).arg("--version"));
        assert!(
            version.starts_with(&format!("{name} {}", env!("CARGO_PKG_VERSION"))),
            "{binary}: {version}"
        );
    }
    let help = run_ok(Command::new(root.join("usr/bin/drover-server")).arg("--help"));
    assert!(help.contains("DROVER_DATABASE_URL"), "{help}");

    // The units where systemd looks for packaged units, as in deploy/systemd.
    let paths = run_ok(Command::new("systemd-analyze").args(["--system", "unit-paths"]));
    assert!(
        paths.lines().any(|l| l.trim() == "/usr/lib/systemd/system"),
        "systemd does not look in /usr/lib/systemd/system: {paths}"
    );
    for unit in ["drover-server.service", "drover-agent.service"] {
        let installed = std::fs::read_to_string(root.join("usr/lib/systemd/system").join(unit))
            .unwrap_or_else(|e| panic!("{unit} not installed: {e}"));
        let source =
            std::fs::read_to_string(self::root().join("deploy/systemd").join(unit)).expect("unit");
        assert_eq!(installed, source, "{unit} differs from deploy/systemd");
    }
    // ... and they verify (`systemd-analyze verify`) with the binaries the
    // package placed: the scratch root has no systemd of its own to verify
    // in, so the installed units are verified here with their ExecStart
    // pointed into it.
    let verify_dir = scratch.path().join("verify");
    std::fs::create_dir_all(&verify_dir).expect("verify dir");
    for name in ["drover-server", "drover-agent"] {
        let unit = std::fs::read_to_string(
            root.join("usr/lib/systemd/system")
                .join(format!("{name}.service")),
        )
        .expect("unit");
        let binary = root.join("usr/bin").join(name);
        let unit = unit.replace(&format!("/usr/bin/{name}"), &binary.display().to_string());
        std::fs::write(verify_dir.join(format!("{name}.service")), unit).expect("unit");
    }
    let (out, text) = run(Command::new("systemd-analyze")
        .args([
            "verify",
            "./drover-server.service",
            "./drover-agent.service",
        ])
        .current_dir(&verify_dir));
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );

    // The maintainer scripts made the users the units run as, and /etc/drover.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    for user in ["drover", "drover-agent"] {
        let entry = passwd
            .lines()
            .find(|l| l.starts_with(&format!("{user}:")))
            .unwrap_or_else(|| panic!("no user {user}: {passwd}"));
        assert!(entry.ends_with(":/usr/sbin/nologin"), "{entry}");
    }
    assert!(root.join("etc/drover").is_dir());

    dpkg(&root, &["--purge", "drover-server", "drover-agent"]);
    assert!(!root.join("usr/bin/drover-server").exists());
    assert!(!root
        .join("usr/lib/systemd/system/drover-agent.service")
        .exists());
}
