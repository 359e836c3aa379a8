//! The dashboard's HTTP side: the embedded page and its assets, the server-sent event feed
//! (a full snapshot, then every change; a fresh snapshot for a browser that fell behind),
//! the snapshot and a breaker's history as JSON. Names in paths are checked (400 for a
//! malformed one, 404 for one the bucket does not hold) before anything is read; nothing a
//! request carries can panic the server.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use breaker_actors::machine::BreakerName;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};

use super::{Message, Shared};
use crate::render::DecisionRow;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Every route of the dashboard.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/events", get(events))
        .route("/api/breakers", get(breakers))
        .route("/api/breakers/{name}/history", get(history))
        .route("/breaker/{name}", get(breaker_page))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "no such page".to_owned()) })
        .with_state(shared)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// Why a path's breaker is not shown: its status and the words for it.
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

/// The breaker `name` names, if the page may show it: 400 for a malformed name, 404 for a
/// breaker the state bucket does not hold.
fn shown(shared: &Shared, name: &str) -> Result<BreakerName, Refused> {
    let breaker =
        BreakerName::new(name).map_err(|e| Refused(StatusCode::BAD_REQUEST, format!("not a breaker name: {e}")))?;
    if !shared.knows(&breaker) {
        return Err(Refused(StatusCode::NOT_FOUND, format!("no breaker {breaker} in the state bucket")));
    }
    Ok(breaker)
}

/// A breaker's page is the same page: the script shows the history when the path names one.
async fn breaker_page(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match shown(&shared, &name) {
        Ok(_) => index().await,
        Err(refused) => refused.into_response(),
    }
}

async fn breakers(State(shared): State<Arc<Shared>>) -> Response {
    json(shared.snapshot_json())
}

async fn history(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let breaker = match shown(&shared, &name) {
        Ok(breaker) => breaker,
        Err(refused) => return refused.into_response(),
    };
    let Some(store) = shared.state_store.get() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "the state bucket is not open yet".to_owned());
    };
    // The bucket keeps a bounded history per key, so this is bounded too.
    match shared.session.history(store, breaker.as_str()).await {
        Ok(entries) => {
            let rows: Vec<DecisionRow> = entries.iter().map(DecisionRow::new).collect();
            match serde_json::to_string(&rows) {
                Ok(body) => json(body),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        Err(e) => text(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// One browser's feed: what it has not been sent yet, and its place among the clients.
struct Feed {
    pending: Option<Message>,
    changes: broadcast::Receiver<Message>,
    stopping: watch::Receiver<bool>,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
}

async fn events(State(shared): State<Arc<Shared>>) -> Response {
    let Ok(slot) = Arc::clone(&shared.clients).try_acquire_owned() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("at most {} browsers at a time", super::MAX_CLIENTS));
    };
    let (changes, snapshot) = shared.subscribe();
    let stopping = shared.stopping.subscribe();
    let feed = Feed { pending: Some(snapshot), changes, stopping, shared, _slot: slot };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        if let Some(message) = feed.pending.take() {
            return Some((Ok::<_, Infallible>(event(&message)), feed));
        }
        let received = tokio::select! {
            _ = feed.stopping.wait_for(|stopping| *stopping) => return None,
            received = feed.changes.recv() => received,
        };
        match received {
            Ok(message) => Some((Ok(event(&message)), feed)),
            // Fell behind the bounded queue: start again from a fresh snapshot rather than
            // keep an unbounded backlog for it.
            Err(RecvError::Lagged(_)) => {
                let (changes, snapshot) = feed.shared.subscribe();
                feed.changes = changes;
                Some((Ok(event(&snapshot)), feed))
            }
            Err(RecvError::Closed) => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn event(message: &Message) -> Event {
    Event::default().event(message.event).data(&*message.data)
}
