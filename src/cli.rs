//! Command-line interface: subcommands and the flags that override `FLOTILLA_*` variables.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use flotilla_runtime::config::{self, ConfigError, Env, RuntimeConfig};
use flotilla_runtime::db::{Db, Migrations, PoolSettings, sqlite_url_in};

use crate::{embedded, probe, services};

#[derive(Parser, Debug)]
#[command(name = "flotilla", version, about = "Flotilla: a task manager you drive by clicks or chat")]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Flags that override the variable of the same name.
#[derive(Args, Debug)]
struct Global {
    /// Address:port to listen on [FLOTILLA_LISTEN]
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Directory of the embedded SQLite files [FLOTILLA_DATA_DIR]
    #[arg(long, global = true)]
    data_dir: Option<String>,
    /// A single service's database URL [FLOTILLA_DATABASE_URL]
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Log filter [FLOTILLA_LOG]
    #[arg(long, global = true)]
    log: Option<String>,
    /// json, human or auto [FLOTILLA_LOG_FORMAT]
    #[arg(long, global = true)]
    log_format: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every service in one process on SQLite (the default)
    All,
    /// Run the accounts service alone (users, tokens, signing keys)
    Accounts,
    /// Run the tasks service alone (needs FLOTILLA_ACCOUNTS_URL for token keys)
    Tasks,
    /// Run the audit service alone (needs FLOTILLA_NATS_URL for events, FLOTILLA_ACCOUNTS_URL for token keys)
    Audit,
    /// Run the assistant alone (needs FLOTILLA_TASKS_URL for its tools, FLOTILLA_NATS_URL, FLOTILLA_ACCOUNTS_URL)
    Assistant,
    /// Run the web UI alone, in front of the gateway at FLOTILLA_GATEWAY_URL
    Web,
    /// Run the gateway alone, in front of FLOTILLA_ACCOUNTS_URL, FLOTILLA_TASKS_URL, FLOTILLA_AUDIT_URL,
    /// FLOTILLA_ASSISTANT_URL (and FLOTILLA_WEB_URL for the UI)
    Gateway,
    /// Apply database migrations (all embedded databases, or one service's FLOTILLA_DATABASE_URL)
    Migrate {
        /// accounts, tasks, audit, assistant, or all (embedded data dir only)
        #[arg(long, default_value = "all")]
        service: String,
    },
    /// Health check for images without a shell or HTTP client: GET PATH on this service's own
    /// port (FLOTILLA_LISTEN, --listen; loopback when it listens on every address) within 2 s;
    /// exit 0 on a 2xx answer, 1 otherwise
    Probe {
        /// The path to ask: /ready (readiness), /health (liveness; the gateway's is /livez)
        #[arg(default_value = flotilla_runtime::http::READY_PATH)]
        path: String,
        /// Ask this http:// URL instead
        #[arg(long, conflicts_with = "path")]
        url: Option<String>,
    },
    /// Manage users from the command line
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create an administrator (or promote the existing user with that email). The password is
    /// read from FLOTILLA_ADMIN_PASSWORD or, with --password-stdin, from standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Administrator")]
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give an existing user the admin role
    Promote {
        #[arg(long)]
        email: String,
    },
    /// Add a new token-signing key; the previous one stays published until tokens it signed expire
    RotateKey,
}

impl Cli {
    /// The process environment with flags applied on top.
    pub fn env(&self) -> Env {
        let mut env = Env::from_process();
        let g = &self.global;
        for (name, value) in [
            (config::LISTEN, &g.listen),
            (config::DATA_DIR, &g.data_dir),
            (config::DATABASE_URL, &g.database_url),
            (config::LOG, &g.log),
            (config::LOG_FORMAT, &g.log_format),
        ] {
            if let Some(v) = value {
                env.set(name, v.clone());
            }
        }
        env
    }
}

/// Why the process stops: bad configuration (exit 2) or a failure (exit 1).
#[derive(Debug)]
pub enum Failure {
    Config(ConfigError),
    Other(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) => 2,
            Failure::Other(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Config(e) => write!(f, "{e}"),
            Failure::Other(e) => write!(f, "{e}"),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

/// Any other error, flattened to its message chain on one line.
pub fn fail(context: &str, e: impl fmt::Display) -> Failure {
    Failure::Other(format!("{context}: {e}").replace('\n', " "))
}

pub async fn run(cli: Cli, env: Env) -> Result<(), Failure> {
    let command = cli.command.unwrap_or(Command::All);
    if let Command::Probe { path, url } = &command {
        // Before logging and the rest of the configuration: a health check prints one line, and
        // any failure exits 1 (Failure::Other; Docker reserves a health check's exit status 2).
        let line = probe::run(&env, path, url.as_deref()).await.map_err(Failure::Other)?;
        eprintln!("flotilla: {line}");
        return Ok(());
    }
    let rt = RuntimeConfig::from_env(&env)?;
    flotilla_runtime::telemetry::init_logging(&rt);
    flotilla_runtime::telemetry::metrics_handle();
    let unknown = env.unknown();
    if !unknown.is_empty() {
        tracing::warn!(variables = ?unknown, "ignoring unknown FLOTILLA_* variables (typo?)");
    }
    match command {
        Command::All => embedded::run(&env, rt).await,
        Command::Accounts => services::accounts(&env, rt).await,
        Command::Tasks => services::tasks(&env, rt).await,
        Command::Audit => services::audit(&env, rt).await,
        Command::Assistant => services::assistant(&env, rt).await,
        Command::Web => services::web(&env, rt).await,
        Command::Gateway => services::gateway(&env, rt).await,
        Command::Migrate { service } => migrate(&env, &rt, &service).await,
        Command::Admin { command } => admin(&env, &rt, command).await,
        Command::Probe { .. } => unreachable!("answered above"),
    }
}

/// How often the tasks reminder scheduler ticks (FLOTILLA_REMINDER_INTERVAL_MS).
pub fn reminder_interval(env: &Env) -> Result<std::time::Duration, ConfigError> {
    env.millis(config::REMINDER_INTERVAL_MS, 10, 3_600_000)
}

/// The NATS URL of distributed mode; accounts and tasks refuse to start without it (their events
/// would pile up in the outbox with nobody to publish them), and so does audit (it would record
/// nothing).
pub fn nats_url(env: &Env, service: &str) -> Result<String, ConfigError> {
    let raw = env.get(config::NATS_URL).ok_or_else(|| {
        ConfigError::new(
            config::NATS_URL,
            "",
            format!("required by `flotilla {service}`: its events go to NATS JetStream (e.g. nats://127.0.0.1:4222)"),
        )
    })?;
    let url = raw.trim();
    if !(url.starts_with("nats://") || url.starts_with("tls://")) || url.len() <= "nats://".len() {
        return Err(ConfigError::new(config::NATS_URL, raw, "expected nats://HOST:PORT or tls://HOST:PORT"));
    }
    Ok(url.to_owned())
}

pub fn data_dir(env: &Env) -> PathBuf {
    PathBuf::from(env.string(config::DATA_DIR))
}

pub fn pool_settings(rt: &RuntimeConfig) -> PoolSettings {
    PoolSettings { max_connections: rt.db_max_connections, acquire_timeout: rt.db_acquire_timeout }
}

/// A single service's database: FLOTILLA_DATABASE_URL, or its SQLite file in the data dir.
pub fn service_db_url(env: &Env, service: &str) -> String {
    env.get(config::DATABASE_URL).map(str::to_owned).unwrap_or_else(|| sqlite_url_in(&data_dir(env), service))
}

pub async fn open_db(
    service: &'static str,
    url: &str,
    migrations: Migrations,
    rt: &RuntimeConfig,
) -> Result<Db, Failure> {
    Db::open_and_migrate(service, url, migrations, pool_settings(rt)).await.map_err(|e| fail(service, e))
}

async fn migrate(env: &Env, rt: &RuntimeConfig, service: &str) -> Result<(), Failure> {
    let all: [(&'static str, Migrations); 4] = [
        (flotilla_accounts::SERVICE, flotilla_accounts::MIGRATIONS),
        (flotilla_tasks::SERVICE, flotilla_tasks::MIGRATIONS),
        (flotilla_audit::SERVICE, flotilla_audit::MIGRATIONS),
        (flotilla_assistant::SERVICE, flotilla_assistant::MIGRATIONS),
    ];
    let chosen: Vec<_> = all.iter().filter(|(name, _)| service == "all" || service == *name).collect();
    if chosen.is_empty() {
        return Err(Failure::Other(format!(
            "unknown service {service:?}: expected accounts, tasks, audit, assistant or all"
        )));
    }
    if chosen.len() > 1 && env.get(config::DATABASE_URL).is_some() {
        return Err(Failure::Other("FLOTILLA_DATABASE_URL names one service's database: add --service".into()));
    }
    for (name, migrations) in chosen {
        let url = service_db_url(env, name);
        let db = open_db(name, &url, *migrations, rt).await?;
        db.close().await;
        println!("{name}: migrations applied");
    }
    Ok(())
}

async fn admin(env: &Env, rt: &RuntimeConfig, command: AdminCommand) -> Result<(), Failure> {
    let url = service_db_url(env, flotilla_accounts::SERVICE);
    let db = open_db(flotilla_accounts::SERVICE, &url, flotilla_accounts::MIGRATIONS, rt).await?;
    let store = flotilla_accounts::Store::new(db.clone());
    let outcome = match command {
        AdminCommand::Create { email, name, password_stdin } => {
            let password = if password_stdin {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).map_err(|e| fail("reading the password from stdin", e))?;
                s.trim_end_matches(['\n', '\r']).to_owned()
            } else {
                env.get(config::ADMIN_PASSWORD).map(str::to_owned).ok_or_else(|| {
                    Failure::Other(
                        "set FLOTILLA_ADMIN_PASSWORD or pass --password-stdin (never a flag: it shows in ps)".into(),
                    )
                })?
            };
            flotilla_accounts::ensure_admin(&store, &email, &name, &password)
                .await
                .map(|o| format!("{email}: {o:?}"))
                .map_err(|e| fail("admin create", e))
        }
        AdminCommand::Promote { email } => flotilla_accounts::promote(&store, &email)
            .await
            .map(|_| format!("{email}: now an admin"))
            .map_err(|e| fail("admin promote", e)),
        AdminCommand::RotateKey => flotilla_accounts::rotate_signing_key(&store)
            .await
            .map(|kid| format!("new signing key {kid}; restart or roll accounts to sign with it"))
            .map_err(|e| fail("admin rotate-key", e)),
    };
    db.close().await;
    println!("{}", outcome?);
    Ok(())
}
