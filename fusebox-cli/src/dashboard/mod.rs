//! `fusebox dashboard`: a live web page of every breaker of the fleet. This module owns the
//! process side: one watch of the state bucket for the whole process (started again, from
//! the latest values, whenever it ends), folded into the [`model::Model`] and fanned out to
//! the browsers through a bounded broadcast channel, and the server's lifetime. The page
//! and its routes are in `http.rs`; the page's assets are embedded in the binary (no CDN, no
//! build step). `docs/dashboard.md` is the user's guide.

pub mod model;

mod http;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv;
use breaker_actors::machine::BreakerName;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast, watch};

use self::model::{Change, Model, Update};
use super::error::CliError;
use super::session::Session;

/// Where the dashboard listens unless `--listen` says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8089";
/// Browsers connected to the event feed at once; more are answered 503.
pub const MAX_CLIENTS: usize = 64;
/// Changes queued per browser; one that falls further behind gets a fresh snapshot.
pub const QUEUE: usize = 256;
/// How long to wait before watching again after the watch ended or the bucket was missing.
const RETRY: Duration = Duration::from_millis(500);

/// One event for the browsers: its SSE name and its JSON.
#[derive(Debug, Clone)]
struct Message {
    event: &'static str,
    data: Arc<str>,
}

/// Whether the dashboard is following the bucket, for the page's banner.
#[derive(Debug, Clone, Default, Serialize)]
struct Status {
    watching: bool,
    problem: Option<String>,
}

/// The model and the watch's status, changed and read under one lock, so that a browser
/// subscribing sees every change either in its snapshot or after it.
#[derive(Debug, Default)]
struct Board {
    model: Model,
    status: Status,
}

/// What the watcher and the HTTP handlers share.
struct Shared {
    board: Mutex<Board>,
    updates: broadcast::Sender<Message>,
    clients: Arc<Semaphore>,
    session: Session,
    /// The state bucket, once it could be opened (for a breaker's history).
    state_store: OnceLock<kv::Store>,
    stopping: watch::Sender<bool>,
}

#[derive(Serialize)]
struct SnapshotJson<'a> {
    #[serde(flatten)]
    model: model::Snapshot<'a>,
    #[serde(flatten)]
    status: &'a Status,
    /// The dashboard's clock (ms since the Unix epoch), so the page can measure ages on it.
    now_ms: i64,
}

impl Shared {
    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        // A panic elsewhere cannot leave the board half-changed: every change is one insert.
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn knows(&self, breaker: &BreakerName) -> bool {
        self.board().model.row(breaker.as_str()).is_some()
    }

    fn snapshot_json(&self) -> String {
        snapshot_of(&self.board())
    }

    /// A receiver of every change from now on, and the snapshot they start from.
    fn subscribe(&self) -> (broadcast::Receiver<Message>, Message) {
        let board = self.board();
        let changes = self.updates.subscribe();
        (changes, Message { event: "snapshot", data: snapshot_of(&board).into() })
    }

    fn apply(&self, change: Change) {
        let mut board = self.board();
        let Some(update) = board.model.apply(change) else { return };
        let message = match update {
            Update::Row(row) => Message { event: "row", data: to_json(&row).into() },
            Update::Removed(breaker) => Message { event: "removed", data: to_json(&breaker).into() },
        };
        // No browser connected is no error.
        let _ = self.updates.send(message);
    }

    fn set_status(&self, watching: bool, problem: Option<String>) {
        let mut board = self.board();
        let status = Status { watching, problem };
        if board.status.watching == status.watching && board.status.problem == status.problem {
            return;
        }
        board.status = status;
        let _ = self.updates.send(Message { event: "status", data: to_json(&board.status).into() });
    }
}

fn snapshot_of(board: &Board) -> String {
    let now_ms = model::unix_ms(time::OffsetDateTime::now_utc());
    to_json(&SnapshotJson { model: board.model.snapshot(), status: &board.status, now_ms })
}

fn to_json(value: &impl Serialize) -> String {
    // The view model has only strings, numbers and options: it always serialises.
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

/// A dashboard bound to its address, not yet serving.
pub struct Dashboard {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Dashboard {
    /// Binds `listen` (port 0: any free port) for the fleet `session` reaches.
    pub async fn bind(session: Session, listen: SocketAddr) -> Result<Self, CliError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| CliError::Serve { addr: listen.to_string(), detail: e.to_string() })?;
        let (updates, _) = broadcast::channel(QUEUE);
        let shared = Arc::new(Shared {
            board: Mutex::default(),
            updates,
            clients: Arc::new(Semaphore::new(MAX_CLIENTS)),
            session,
            state_store: OnceLock::new(),
            stopping: watch::Sender::new(false),
        });
        Ok(Self { listener, shared })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, CliError> {
        self.listener.local_addr().map_err(|e| CliError::Serve { addr: "its socket".to_owned(), detail: e.to_string() })
    }

    /// Follows the state bucket and serves the page until `shutdown` resolves; then ends the
    /// browsers' feeds and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), CliError> {
        let Self { listener, shared } = self;
        let addr = listener.local_addr().map_or_else(|_| "its socket".to_owned(), |a| a.to_string());
        let follower = tokio::spawn(follow(Arc::clone(&shared)));
        let stopping = Arc::clone(&shared);
        let app = http::router(Arc::clone(&shared));
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                // Event feeds never end on their own: tell them to.
                stopping.stopping.send_replace(true);
            })
            .await;
        follower.abort();
        served.map_err(|e| CliError::Serve { addr, detail: e.to_string() })
    }
}

/// The one watch: the latest value of every key, then every change, folded into the board;
/// started again from the latest values whenever it fails (the model skips what it has).
async fn follow(shared: Arc<Shared>) {
    let session = &shared.session;
    loop {
        let store = match session.bucket(session.layout().state_bucket()).await {
            Ok(store) => store,
            Err(e) => {
                shared.set_status(false, Some(e.to_string()));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let _ = shared.state_store.set(store.clone());
        let mut changes = match session.watch_with_history(&store).await {
            Ok(changes) => changes,
            Err(e) => {
                shared.set_status(false, Some(e.to_string()));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        shared.set_status(true, None);
        let problem = loop {
            match changes.next().await {
                Some(Ok(entry)) => shared.apply(Change::of(&entry)),
                Some(Err(e)) => break format!("the watch of {} failed: {e}", store.name),
                None => break format!("the watch of {} ended", store.name),
            }
        };
        shared.set_status(false, Some(problem));
        tokio::time::sleep(RETRY).await;
    }
}

/// A dashboard for the fleet at `servers`, with every other option at its default (and the
/// environment's credentials, as the binary reads them): for a program that embeds the
/// page, such as the cluster demo.
pub async fn for_servers(servers: &[String], listen: SocketAddr) -> Result<Dashboard, CliError> {
    let mut args = vec!["fusebox".to_owned()];
    for server in servers {
        args.extend(["--server".to_owned(), server.clone()]);
    }
    args.extend(["dashboard".to_owned(), "--listen".to_owned(), listen.to_string()]);
    let cli = <super::Cli as clap::Parser>::try_parse_from(args).map_err(|e| CliError::Usage(e.to_string()))?;
    Dashboard::bind(Session::connect(&cli.global).await?, listen).await
}

/// `fusebox dashboard`: binds, prints the address, serves until Ctrl-C.
pub async fn run(session: Session, listen: SocketAddr, out: &mut impl Write) -> Result<(), CliError> {
    let dashboard = Dashboard::bind(session, listen).await?;
    writeln!(out, "dashboard: http://{}", dashboard.local_addr()?)?;
    out.flush()?;
    dashboard
        .serve(async {
            // Without a signal handler the dashboard serves until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await
}
