//! `streamfs-buildd`: the build service.
//!
//! - `serve --store DIR [--db sqlite:PATH | --db postgres://…] [--listen ADDR]`
//! - `worker --server URL --arch ARCH --token-file FILE`
//! - `token create --role submit|worker`
//!
//! State and queue live in the database (SQLite in the store by default,
//! PostgreSQL for several servers); workers reach the server over HTTP only.

mod api;
mod commit;
mod db;
mod email;
mod intake;
mod notify;
mod outbox;
mod server;
mod web;
mod worker;
mod worker_api;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "streamfs-buildd",
    version,
    about = "The streamfs build service: server, worker and tokens"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: REST API, web page, job queue, artifact intake.
    Serve(ServeArgs),
    /// Run a worker: take builds of one arch from a server and run them.
    Worker(WorkerArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Args)]
struct DbArgs {
    /// The store builds are inserted into (its builds.db is the default database).
    #[arg(long, value_name = "DIR", env = "STREAMFS_STORE")]
    store: PathBuf,
    /// `sqlite:PATH` or `postgres://…` (default: sqlite:STORE/builds.db).
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

impl DbArgs {
    fn url(&self) -> String {
        self.db
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.store.join("builds.db").display()))
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8470")]
    listen: String,
    /// How long a worker's build survives without a heartbeat, in seconds.
    #[arg(long, default_value_t = 10.0)]
    lease: f64,
    /// After losing its worker this many times a build fails.
    #[arg(long, default_value_t = 3)]
    max_losses: i64,
    /// Largest artifact blob accepted, in bytes.
    #[arg(long, default_value_t = 64 << 30)]
    max_blob: u64,
    /// POST each build reaching a terminal state to this URL (JSON).
    #[arg(long, value_name = "URL", requires = "webhook_secret_file")]
    webhook: Option<String>,
    /// The HMAC-SHA256 key of the webhook's X-Streamfs-Signature header.
    #[arg(long, value_name = "FILE")]
    webhook_secret_file: Option<PathBuf>,
    /// Mail each build reaching a terminal state through this SMTP server.
    #[arg(long, value_name = "HOST:PORT", requires_all = ["smtp_from", "smtp_to"])]
    smtp: Option<String>,
    /// The mails' sender.
    #[arg(long, value_name = "ADDRESS", requires = "smtp")]
    smtp_from: Option<String>,
    /// A recipient of the mails (repeatable).
    #[arg(long, value_name = "ADDRESS", requires = "smtp")]
    smtp_to: Vec<String>,
    /// Upgrade the SMTP connection with STARTTLS, the server's certificate
    /// checked against the webpki roots (refused if the server cannot).
    #[arg(long, requires = "smtp")]
    smtp_starttls: bool,
    /// A file with the SMTP user on its first line and its password on the
    /// second (credentials only go over STARTTLS).
    #[arg(long, value_name = "FILE", requires = "smtp_starttls")]
    smtp_auth_file: Option<PathBuf>,
    /// PEM certificates of CAs trusted for the SMTP server's certificate
    /// besides the webpki roots (a site's own CA).
    #[arg(long, value_name = "FILE", requires = "smtp_starttls")]
    smtp_ca: Option<PathBuf>,
}

#[derive(Args)]
struct WorkerArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8470
    #[arg(long)]
    server: String,
    /// The architecture this worker builds for.
    #[arg(long)]
    arch: String,
    /// A file holding a worker token.
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// This worker's id (default: HOSTNAME-ARCH).
    #[arg(long)]
    id: Option<String>,
    /// Builds run at once.
    #[arg(long, default_value_t = 1)]
    capacity: usize,
    /// The build command, split on spaces; the worker appends
    /// `[--config F] ARCH RELEASE VERSION SOURCE OUT`.
    #[arg(long, default_value = "mountctl build")]
    build_cmd: String,
    /// Where builds run.
    #[arg(long, default_value = "/var/tmp/streamfs-buildd-worker")]
    work_dir: PathBuf,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token, print it once; only its hash is stored.
    Create(TokenCreateArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    Submit,
    Worker,
}

#[derive(Args)]
struct TokenCreateArgs {
    #[command(flatten)]
    db: DbArgs,
    #[arg(long, value_enum)]
    role: Role,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamfs-buildd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(a) => {
            // Fail early on a missing store rather than at the first build.
            streamfs_core::store::Store::open(&a.db.store)
                .with_context(|| format!("opening the store {}", a.db.store.display()))?;
            let db = db::Db::open(&a.db.url()).await?;
            let webhook = match (&a.webhook, &a.webhook_secret_file) {
                (Some(url), Some(f)) => Some(notify::Webhook {
                    url: url.clone(),
                    secret: std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?
                        .trim()
                        .as_bytes()
                        .to_vec(),
                }),
                _ => None,
            };
            let email = match (&a.smtp, &a.smtp_from) {
                (Some(relay), Some(from)) => Some(email::Email::new(&email::EmailSettings {
                    relay,
                    from,
                    to: &a.smtp_to,
                    starttls: a.smtp_starttls,
                    auth_file: a.smtp_auth_file.as_deref(),
                    ca_file: a.smtp_ca.as_deref(),
                })?),
                _ => None,
            };
            if !(a.lease > 0.0 && a.lease < 86_400.0) {
                anyhow::bail!("--lease {}: expected seconds between 0 and 86400", a.lease);
            }
            let settings = server::Settings {
                store: a.db.store.clone(),
                lease: Duration::from_secs_f64(a.lease),
                max_losses: a.max_losses.max(1),
                max_blob: a.max_blob,
                webhook,
                email,
            };
            server::serve(db, settings, &a.listen).await
        }
        Command::Worker(a) => {
            let token = std::fs::read_to_string(&a.token_file)
                .with_context(|| format!("reading the token file {}", a.token_file.display()))?
                .trim()
                .to_string();
            let build_cmd: Vec<String> = a.build_cmd.split_whitespace().map(String::from).collect();
            if build_cmd.is_empty() {
                anyhow::bail!("--build-cmd: empty");
            }
            if !(1..=256).contains(&a.capacity) {
                anyhow::bail!("--capacity {}: expected 1-256", a.capacity);
            }
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "worker".into());
            let id =
                a.id.unwrap_or_else(|| format!("{}-{}", host.trim(), a.arch));
            std::fs::create_dir_all(&a.work_dir)
                .with_context(|| format!("creating {}", a.work_dir.display()))?;
            worker::run(worker::WorkerOptions {
                server: a.server,
                arch: a.arch,
                token,
                id,
                capacity: a.capacity,
                build_cmd,
                work_dir: a.work_dir,
            })
            .await
        }
        Command::Token(TokenCommand::Create(a)) => {
            let db = db::Db::open(&a.db.url()).await?;
            let bytes: [u8; 32] = rand::random();
            let token = hex::encode(bytes);
            let role = match a.role {
                Role::Submit => "submit",
                Role::Worker => "worker",
            };
            db.add_token(&server::token_hash(&token), role).await?;
            println!("{token}");
            Ok(())
        }
    }
}
