//! The optional config file (`--config`, `DROVER_CONFIG`): a TOML table of
//! settings keyed by their long flag names.
//!
//! The file's values become the settings' defaults in clap's command, so
//! they go through the same value parsers as flags and environment
//! variables, and the order of precedence (flag, environment variable,
//! file, built-in default) is clap's own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use super::Config;

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Bad flags or environment variables, or `--help` and `--version`:
    /// clap prints these itself ([`clap::Error::exit`]).
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// The config file cannot be used.
    #[error("config file {}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
}

/// The settings, and warnings to log once logging has started (it is set
/// up from the settings, so it cannot run before them).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Settings that carry a secret: a file holding one should be readable by
/// the server's user alone.
const SECRET_SETTINGS: [&str; 5] = [
    "api_token",
    "enrollment_token",
    "metrics_token",
    "admin_password",
    "database_url",
];

/// One setting of the file.
#[derive(Debug)]
struct Setting {
    /// clap's id of the setting (the field's name).
    id: String,
    /// The key as the file spells it, for messages.
    key: String,
    /// Its value(s) as the flag would take them.
    values: Vec<String>,
}

/// Reads the settings from `args`, the environment and the config file
/// named by `--config` or `DROVER_CONFIG`, if any.
pub(super) fn load(args: Vec<OsString>) -> Result<Loaded, LoadError> {
    let Some(path) = config_path(&args) else {
        let matches = Config::command().try_get_matches_from(args)?;
        let config = Config::from_arg_matches(&matches)?;
        return Ok(Loaded {
            config,
            warnings: Vec::new(),
        });
    };
    let settings = read_settings(&path).map_err(|problem| LoadError::File {
        path: path.clone(),
        problem,
    })?;
    let config = parse_over(args, &settings)?;
    Ok(Loaded {
        config,
        warnings: secret_warnings(&path, &settings),
    })
}

/// Where the file is, found by a forgiving first pass of clap's own parser
/// (so `--config=F`, `--config F` and `DROVER_CONFIG` mean what they will
/// mean in the real parse). Errors are left for the real parse to report;
/// so are `--help` and `--version`, which therefore show the built-in
/// defaults, never the file's values (nor its secrets).
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    Config::command()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok()?
        .get_one::<PathBuf>("config")
        .cloned()
}

/// The file's settings, each checked by its value parser.
fn read_settings(path: &Path) -> Result<Vec<Setting>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| e.to_string())?;
    let mut cmd = Config::command();
    cmd.build();
    let mut settings: Vec<Setting> = Vec::new();
    for (key, value) in &table {
        let arg = setting_arg(&cmd, key)?;
        let id = arg.get_id().as_str();
        if let Some(same) = settings.iter().find(|s| s.id == id) {
            return Err(format!(
                "`{}` and `{key}` are the same setting: keep one",
                same.key
            ));
        }
        let values = texts(arg, value).map_err(|e| format!("`{key}`: {e}"))?;
        check_values(id, &values).map_err(|e| format!("`{key}`: {e}"))?;
        settings.push(Setting {
            id: id.to_string(),
            key: key.clone(),
            values,
        });
    }
    check_conflicts(&cmd, &settings)?;
    Ok(settings)
}

/// Whether `arg` is a setting the file may hold: not `--help`,
/// `--version` or `--config` itself.
fn is_setting(arg: &Arg) -> bool {
    let meta = matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    );
    !meta && arg.get_long().is_some() && arg.get_id() != "config"
}

/// The setting `key` names (`snake_case` or `kebab-case`), or why it
/// names none.
fn setting_arg<'a>(cmd: &'a Command, key: &str) -> Result<&'a Arg, String> {
    let long = key.replace('_', "-");
    if long == "config" {
        return Err("`config`: a config file cannot name another one".into());
    }
    if cmd.get_subcommands().any(|s| s.get_name() == long) {
        return Err(format!(
            "`{key}` is a command, not a setting (`drover-server {long} …`)"
        ));
    }
    match cmd.get_arguments().find(|a| a.get_long() == Some(&long)) {
        Some(arg) if is_setting(arg) => Ok(arg),
        Some(_) => Err(format!("`{key}` is not a setting")),
        None => Err(unknown_key(cmd, key)),
    }
}

/// "unknown key", with the closest setting's name when one is close.
fn unknown_key(cmd: &Command, key: &str) -> String {
    let kebab = key.contains('-');
    let closest = cmd
        .get_arguments()
        .filter(|a| is_setting(a))
        .filter_map(Arg::get_long)
        .map(|long| match kebab {
            true => long.to_string(),
            false => long.replace('-', "_"),
        })
        .map(|name| (edit_distance(key, &name), name))
        .min();
    match closest {
        Some((distance, name)) if distance <= (key.len() / 3).max(2) => {
            format!("unknown key `{key}`: did you mean `{name}`?")
        }
        _ => format!(
            "unknown key `{key}`: the keys are the long flags of `drover-server --help` \
             (docs/CONFIGURATION.md)"
        ),
    }
}

/// Levenshtein distance, for the suggestion of [`unknown_key`].
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The value(s) as a flag would take them: a list only where the setting
/// takes several values (each item one of them).
fn texts(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    match value {
        toml::Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => {
            items.iter().map(|item| scalar(arg, item)).collect()
        }
        toml::Value::Array(_) => Err("takes one value, not a list".into()),
        one => Ok(vec![scalar(arg, one)?]),
    }
}

/// One value as text, if its TOML type suits the setting: booleans only
/// for on/off settings, numbers not for text and paths.
fn scalar(arg: &Arg, value: &toml::Value) -> Result<String, String> {
    let parses = arg.get_value_parser().type_id();
    let switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
        || parses == std::any::TypeId::of::<bool>();
    let text =
        parses == std::any::TypeId::of::<String>() || parses == std::any::TypeId::of::<PathBuf>();
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Boolean(b) if switch => Ok(b.to_string()),
        toml::Value::Integer(i) if !text && !switch => Ok(i.to_string()),
        toml::Value::Float(f) if !text && !switch => Ok(f.to_string()),
        other => {
            let expected = match (switch, text) {
                (true, _) => "true or false",
                (_, true) => "a string",
                _ => "a string or a number",
            };
            Err(format!("expected {expected}, found {}", other.type_str()))
        }
    }
}

/// Runs `values` through the setting's own value parser, the way the real
/// parse will (as its default; no environment to hide it), so a bad value
/// fails with the message the flag would get.
fn check_values(id: &str, values: &[String]) -> Result<(), String> {
    Config::command()
        .mut_args(|a| a.env(None::<&'static str>))
        .mut_arg(id, |a| a.default_values(values))
        .try_get_matches_from(["drover-server"])
        .map(drop)
        .map_err(|e| clap_message(&e))
}

/// The first line of clap's message, without its `error: `.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Whether settings `a` and `b` exclude each other (`api_token` and
/// `api_token_file`), declared on either.
fn conflict(cmd: &Command, a: &str, b: &str) -> bool {
    let excludes = |x: &str, y: &str| {
        cmd.get_arguments()
            .find(|arg| arg.get_id() == x)
            .is_some_and(|arg| {
                cmd.get_arg_conflicts_with(arg)
                    .iter()
                    .any(|c| c.get_id() == y)
            })
    };
    excludes(a, b) || excludes(b, a)
}

/// Refuses a file that sets two settings which exclude each other, as
/// clap refuses the two flags.
fn check_conflicts(cmd: &Command, settings: &[Setting]) -> Result<(), String> {
    for (i, a) in settings.iter().enumerate() {
        if let Some(b) = settings[i + 1..]
            .iter()
            .find(|b| conflict(cmd, &a.id, &b.id))
        {
            return Err(format!(
                "`{}` and `{}` cannot both be set: keep one",
                a.key, b.key
            ));
        }
    }
    Ok(())
}

/// `Config::command()` with the file's values as defaults.
fn command_over<'a>(settings: impl IntoIterator<Item = &'a Setting>) -> Command {
    settings.into_iter().fold(Config::command(), |cmd, s| {
        cmd.mut_arg(&s.id, |a| a.default_values(&s.values))
    })
}

/// The real parse. A file value yields to a setting it excludes that is
/// given by flag or environment variable (the file's `api_token_file`, and
/// `DROVER_API_TOKEN` set: the variable's token), as the precedence says;
/// clap checks exclusions between explicit values only.
fn parse_over(args: Vec<OsString>, settings: &[Setting]) -> Result<Config, clap::Error> {
    let matches = command_over(settings).try_get_matches_from(&args)?;
    let yielding = yielding(&matches, settings);
    if yielding.is_empty() {
        return Config::from_arg_matches(&matches);
    }
    let kept = settings
        .iter()
        .filter(|s| !yielding.contains(&s.id.as_str()));
    let matches = command_over(kept).try_get_matches_from(args)?;
    Config::from_arg_matches(&matches)
}

/// The ids of file settings that exclude a setting given explicitly.
fn yielding<'a>(matches: &ArgMatches, settings: &'a [Setting]) -> Vec<&'a str> {
    let mut cmd = Config::command();
    cmd.build();
    let explicit = |id: &str| {
        matches
            .value_source(id)
            .is_some_and(|source| source != ValueSource::DefaultValue)
    };
    settings
        .iter()
        .filter(|s| {
            cmd.get_arguments()
                .filter(|a| is_setting(a) && explicit(a.get_id().as_str()))
                .any(|a| conflict(&cmd, &s.id, a.get_id().as_str()))
        })
        .map(|s| s.id.as_str())
        .collect()
}

/// A warning when the file holds a secret and others than its owner may
/// read it. Not refused: the operator may have reasons (a group of
/// administrators), but should know.
fn secret_warnings(path: &Path, settings: &[Setting]) -> Vec<String> {
    let secrets: Vec<&str> = settings
        .iter()
        .filter(|s| holds_secret(s))
        .map(|s| s.key.as_str())
        .collect();
    match (secrets.is_empty(), readable_by_others(path)) {
        (false, Some(mode)) => vec![format!(
            "config file {} holds {} and is readable by its group or others \
             (mode {mode:03o}): `chmod 600` it, or move the secret to a file \
             of its own (`*_file` settings)",
            path.display(),
            secrets.join(", ")
        )],
        _ => Vec::new(),
    }
}

/// Whether the setting holds a secret; a SQLite URL only names a file.
fn holds_secret(setting: &Setting) -> bool {
    SECRET_SETTINGS.contains(&setting.id.as_str())
        && !(setting.id == "database_url"
            && setting.values.iter().all(|v| v.starts_with("sqlite:")))
}

/// The file's permission bits when its group or others may read it.
#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    fn days(n: u64) -> Duration {
        Duration::from_secs(n * 86_400)
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[cfg(not(unix))]
    fn set_mode(_path: &Path, _mode: u32) {}

    /// `text` as a config file (mode 0600) in a scratch directory.
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("scratch");
        let path = dir.path().join("server.toml");
        std::fs::write(&path, text).expect("write");
        set_mode(&path, 0o600);
        (dir, path)
    }

    fn load_with(path: &Path, extra: &[&str]) -> Result<Loaded, LoadError> {
        let mut args: Vec<OsString> = vec!["drover-server".into(), "--config".into(), path.into()];
        args.extend(extra.iter().map(OsString::from));
        Config::load(args)
    }

    fn config(text: &str, extra: &[&str]) -> Config {
        let (_dir, path) = file(text);
        match load_with(&path, extra) {
            Ok(loaded) => loaded.config,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    /// What is wrong with a file of `text`, checking the message names it.
    fn problem(text: &str) -> String {
        let (_dir, path) = file(text);
        match load_with(&path, &[]) {
            Err(e @ LoadError::File { .. }) => {
                let shown = e.to_string();
                assert!(shown.contains(&path.display().to_string()), "{shown}");
                shown
            }
            other => panic!("{text:?} was taken: {other:?}"),
        }
    }

    #[test]
    fn the_file_beats_the_defaults_and_a_flag_beats_the_file() {
        let c = config(
            "retention = \"5days\"\n\
             session-ttl = \"6days\"\n\
             listen = \"127.0.0.1:9999\"\n\
             log_json = true\n\
             notify_allow_private = true\n\
             db_max_connections = 4\n\
             aging_points_per_minute = 0.5\n",
            &["--retention=4days"],
        );
        assert_eq!(c.retention, days(4));
        assert_eq!(c.session_ttl, days(6));
        assert_eq!(c.listen.port(), 9999);
        assert!(c.log_json && c.notify_allow_private);
        assert_eq!(c.db_max_connections, 4);
        assert_eq!(c.aging_points_per_minute, 0.5);
        assert_eq!(c.audit_retention, days(365), "a built-in default");
        assert!(c.config.is_some());
        assert!(c.validate().is_ok());
    }

    const CHILD: &str = "DROVER_CONFIG_TEST_CHILD";

    /// clap reads the process environment itself, so this runs in a child
    /// process (this test binary again, this test alone) that is the only
    /// one with the variables set: no other test can see them.
    #[test]
    fn the_environment_beats_the_file_and_a_flag_beats_the_environment() {
        if std::env::var_os(CHILD).is_none() {
            let (_dir, path) = file(
                "retention = \"5days\"\n\
                 session_ttl = \"6days\"\n\
                 notify_retention = \"7days\"\n\
                 api_token_file = \"/nonexistent/token\"\n",
            );
            let name = concat!(
                module_path!(),
                "::the_environment_beats_the_file_and_a_flag_beats_the_environment"
            );
            let name = name.split_once("::").map_or(name, |(_, rest)| rest);
            let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args([name, "--exact", "--nocapture", "--test-threads=1"])
                .env_clear()
                .env(CHILD, "1")
                .env("DROVER_CONFIG", &path)
                .env("DROVER_RETENTION", "3days")
                .env("DROVER_SESSION_TTL", "2days")
                .env("DROVER_API_TOKEN", "from-env")
                .output()
                .expect("run the child");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let c = Config::load(["drover-server", "--retention=4days"])
            .expect("loads")
            .config;
        assert!(c.config.is_some(), "DROVER_CONFIG names the file");
        assert_eq!(c.retention, days(4), "the flag beats the variable");
        assert_eq!(c.session_ttl, days(2), "the variable beats the file");
        assert_eq!(c.notify_retention, days(7), "the file beats the default");
        assert_eq!(c.api_token.as_deref(), Some("from-env"));
        assert_eq!(c.api_token_file, None, "the file's token file yields");
    }

    #[test]
    fn keys_are_snake_or_kebab_case_but_not_both() {
        let url = "postgres://drover@db/drover";
        let snake = config(&format!("database_url = \"{url}\""), &[]);
        let kebab = config(&format!("database-url = \"{url}\""), &[]);
        assert_eq!(snake.database_url.as_deref(), Some(url));
        assert_eq!(kebab.database_url.as_deref(), Some(url));
        let both = problem(&format!(
            "database_url = \"{url}\"\ndatabase-url = \"{url}\""
        ));
        assert!(both.contains("same setting"), "{both}");
    }

    #[test]
    fn list_settings_take_arrays_or_comma_separated_text() {
        let c = config(
            "task_types = [\"resize\", \"report\"]\ntrusted_proxies = \"10.0.0.1,10.0.0.2\"",
            &[],
        );
        assert_eq!(c.task_types, ["resize", "report"]);
        assert_eq!(c.trusted_proxies.len(), 2);
        let c = config(
            "trusted-proxies = [\"10.0.0.1\"]",
            &["--trusted-proxies=10.0.0.9"],
        );
        assert_eq!(
            c.trusted_proxies,
            ["10.0.0.9".parse::<std::net::IpAddr>().unwrap()]
        );

        let bad = problem("trusted_proxies = [\"10.0.0.1\", \"nope\"]");
        assert!(
            bad.contains("`trusted_proxies`") && bad.contains("'nope'"),
            "{bad}"
        );
        let one = problem("retention = [\"1day\"]");
        assert!(one.contains("`retention`: takes one value"), "{one}");
    }

    #[test]
    fn unknown_keys_are_refused_with_the_closest_setting() {
        let typo = problem("listn = \"127.0.0.1:1\"");
        assert!(
            typo.contains("unknown key `listn`: did you mean `listen`?"),
            "{typo}"
        );
        let kebab = problem("databse-url = \"sqlite://x\"");
        assert!(kebab.contains("did you mean `database-url`?"), "{kebab}");
        let snake = problem("retention_by_typ = \"\"");
        assert!(
            snake.contains("did you mean `retention_by_type`?"),
            "{snake}"
        );
        let far = problem("frobnicate = 1");
        assert!(far.contains("unknown key `frobnicate`") && !far.contains("did you mean"));
        // A subcommand's flag is not a setting of the server.
        assert!(problem("to = \"x\"").contains("unknown key `to`"));
    }

    #[test]
    fn keys_that_are_not_settings_are_refused() {
        for (key, says) in [
            ("help", "not a setting"),
            ("version", "not a setting"),
            ("config", "cannot name another"),
            ("backup", "is a command"),
            ("user", "is a command"),
        ] {
            let text = problem(&format!("{key} = true"));
            assert!(
                text.contains(&format!("`{key}`")) && text.contains(says),
                "{text}"
            );
        }
    }

    #[test]
    fn a_bad_value_fails_as_the_flag_would_naming_the_key() {
        for (setting, bad) in [
            ("retention", "soon"),
            ("group_commit_max", "0"),
            ("listen", "8080"),
            ("notify_allow_private", "maybe"),
        ] {
            let flag = format!("--{}={bad}", setting.replace('_', "-"));
            let from_flag = match Config::try_parse_from(["drover-server", &flag]) {
                Err(e) => clap_message(&e),
                Ok(_) => panic!("{flag} was taken"),
            };
            let from_file = problem(&format!("{setting} = \"{bad}\""));
            assert!(
                from_file.ends_with(&format!("`{setting}`: {from_flag}")),
                "{from_file} / {from_flag}"
            );
            assert!(!from_flag.contains('\u{1b}'), "styled: {from_flag:?}");
        }
        // An on/off setting takes no value as a flag: as its variable would.
        let switch = problem("log_json = \"maybe\"");
        assert!(
            switch.contains("`log_json`: invalid value 'maybe' for '--log-json'"),
            "{switch}"
        );
        // Numbers go through the same parsers.
        assert!(problem("group_commit_max = 2000").contains("2000 is not in 1..=1024"));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused() {
        for (text, says) in [
            (
                "data_dir = 5",
                "`data_dir`: expected a string, found integer",
            ),
            (
                "log_json = 1",
                "`log_json`: expected true or false, found integer",
            ),
            (
                "retention = true",
                "`retention`: expected a string or a number, found boolean",
            ),
            ("retention_by_type = { resize = \"7days\" }", "found table"),
            (
                "task_types = [1]",
                "`task_types`: expected a string, found integer",
            ),
        ] {
            let shown = problem(text);
            assert!(shown.contains(says), "{text}: {shown}");
        }
    }

    #[test]
    fn an_unreadable_or_broken_file_is_named() {
        let missing = Path::new("/nonexistent/drover/server.toml");
        match load_with(missing, &[]) {
            Err(e @ LoadError::File { .. }) => {
                let shown = e.to_string();
                assert!(shown.contains("/nonexistent/drover/server.toml"), "{shown}");
                assert!(shown.contains("cannot be read"), "{shown}");
            }
            other => panic!("a missing file was taken: {other:?}"),
        }
        let broken = problem("listen = \"127.0.0.1:1\"\nretention = 30days\n");
        assert!(broken.contains("line 2"), "{broken}");
    }

    #[test]
    fn a_setting_and_its_file_are_refused_together_in_the_file() {
        let both = problem("api_token = \"a\"\napi_token_file = \"/run/secrets/t\"");
        assert!(both.contains("cannot both be set"), "{both}");
        let c = config("api_token_file = \"/run/secrets/t\"", &[]);
        assert!(c.api_token.is_none() && c.api_token_file.is_some());
        // A flag given for the other of the pair wins, as the precedence says.
        let c = config("api_token_file = \"/run/secrets/t\"", &["--api-token=flag"]);
        assert_eq!(c.api_token.as_deref(), Some("flag"));
        assert!(c.api_token_file.is_none());
    }

    #[test]
    fn commands_run_with_the_file_applying_to_the_server_settings() {
        let c = config(
            "data_dir = \"/var/lib/drover\"",
            &["backup", "--to", "/tmp/copy.db"],
        );
        assert_eq!(c.data_dir, Path::new("/var/lib/drover"));
        match c.command {
            Some(super::super::Command::Backup { to }) => assert_eq!(to, Path::new("/tmp/copy.db")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_in_a_file_others_may_read_are_warned_about() {
        let warnings = |text: &str, mode: u32| {
            let (_dir, path) = file(text);
            set_mode(&path, mode);
            load_with(&path, &[]).expect("loads").warnings
        };
        let open = warnings("api_token = \"s3cret\"", 0o644);
        if cfg!(unix) {
            assert!(open.len() == 1 && open[0].contains("api_token"), "{open:?}");
            assert!(open[0].contains("644"), "{open:?}");
        }
        assert!(warnings("api_token = \"s3cret\"", 0o600).is_empty());
        assert!(warnings("listen = \"127.0.0.1:1\"", 0o644).is_empty());
        assert!(warnings("database_url = \"sqlite:///var/lib/drover/x.db\"", 0o644).is_empty());
        let postgres = warnings("database_url = \"postgres://u:pw@db/drover\"", 0o640);
        assert_eq!(postgres.len(), usize::from(cfg!(unix)), "{postgres:?}");
    }

    #[test]
    fn help_shows_the_built_in_defaults_never_the_files_secrets() {
        let (_dir, path) = file("listen = \"127.0.0.1:7777\"\nmetrics_token = \"s3cret\"");
        match load_with(&path, &["--help"]) {
            Err(LoadError::Args(e)) => {
                assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
                let help = e.to_string();
                assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
                assert!(!help.contains("7777") && !help.contains("s3cret"), "{help}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_example_file_is_a_valid_config() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/server.toml"
        ));
        let loaded = load_with(path, &[]).expect("examples/server.toml loads");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config;
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        assert_eq!(c.listen.port(), 8443);
        assert!(c.tls_cert.is_some() && c.database_url_file.is_some());
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(!c.retention_by_type.0.is_empty());
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("listn", "listen"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
