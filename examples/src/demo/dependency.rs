//! The demo's scripted dependency: an axum server on loopback whose health the orchestrator
//! sets (healthy: 200, failing: 500), and which logs the requests that reach it:
//! the honest measure of what a breaker let through. Each entry is the arrival time (wall
//! clock, ms) and, for a call an instance admitted as a half-open probe, the half-open phase
//! the instance says it probed under (`GET /probe?phase=<term>.<seq>`), and the caller's node
//! id (`node=<id>`) when it gives one. The orchestrator
//! attributes requests afterwards, from the decisions' own timestamps in the state bucket:
//! probes by the phase they name (never by which round the orchestrator happens to have seen
//! last, which lags whenever its own server dies), other calls by the fleet state stored when
//! they arrived (calls while open). [`client`] is how the Rust instances reach it: reqwest,
//! as a tower service of [`Call`]s, for them to put behind their breaker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder};

use super::now_ms;

/// A half-open phase as the demo names it: the `(term, seq)` of the decision that started it.
pub type Phase = (u64, u64);

/// What a request said it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// An ordinary call.
    Call,
    /// A half-open probe, under the phase its caller names (`None`: the caller could not
    /// tell, or the request named none or a malformed one).
    Probe(Option<Phase>),
}

/// One request that reached the dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// Wall-clock ms since the Unix epoch (the same clock the servers stamp decisions with).
    pub at_ms: u64,
    /// What it said it was.
    pub kind: CallKind,
    /// The node that says it sent it (`None`: it did not say, or not as a node id).
    pub node: Option<String>,
}

/// The most requests logged (a demo run makes a few tens of thousands); beyond it they are
/// only counted, in [`Dependency::unlogged`].
const MAX_LOGGED: usize = 1_000_000;

#[derive(Debug)]
struct Shared {
    healthy: AtomicBool,
    log: Mutex<Vec<Arrival>>,
    unlogged: AtomicU64,
}

/// The dependency: see the module documentation.
#[derive(Debug, Clone)]
pub struct Dependency {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Dependency {
    /// Starts serving on a free loopback port, healthy.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            log: Mutex::new(Vec::new()),
            unlogged: AtomicU64::new(0),
        });
        let router = Router::new().fallback(answer).with_state(Arc::clone(&shared));
        tokio::spawn(async move {
            // Serves until the process ends; an accept error ends the demo's dependency only.
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { shared, addr })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets its health.
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Whether it is healthy.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::SeqCst)
    }

    /// Every request logged so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.shared.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Requests that arrived after the log was full.
    pub fn unlogged(&self) -> u64 {
        self.shared.unlogged.load(Ordering::Relaxed)
    }
}

/// Logs what a request says it is, and answers by the dependency's health.
async fn answer(State(shared): State<Arc<Shared>>, uri: Uri) -> (StatusCode, &'static str) {
    let (kind, node) = parse_target(uri.path(), uri.query().unwrap_or_default());
    let arrival = Arrival { at_ms: now_ms(), kind, node };
    {
        let mut log = shared.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() < MAX_LOGGED {
            log.push(arrival);
        } else {
            shared.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }
    if shared.healthy.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "fail")
    }
}

/// What a request's target says: `/probe?phase=T.S` is a probe of phase `(T, S)`, `/probe`
/// with no or another phase a probe of no known phase, anything else an ordinary call;
/// `node=ID` (1 to 32 of `[A-Za-z0-9_-]`) names the caller. Whatever the target, this never
/// fails.
fn parse_target(path: &str, query: &str) -> (CallKind, Option<String>) {
    let param = |name: &str| query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='));
    let node = param("node")
        .filter(|n| {
            (1..=32).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .map(str::to_owned);
    if path != "/probe" {
        return (CallKind::Call, node);
    }
    let phase = param("phase").and_then(|p| {
        let (term, seq) = p.split_once('.')?;
        Some((term.parse().ok()?, seq.parse().ok()?))
    });
    (CallKind::Probe(phase), node)
}

/// One call an instance makes: who makes it, and what it says it is (an instance's breaker
/// marks a probe as one on its way out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The caller's node id.
    pub node: String,
    /// What the call says it is.
    pub kind: CallKind,
}

/// The path and query a call is sent to.
fn target(call: &Call) -> (&'static str, String) {
    let node = &call.node;
    match call.kind {
        CallKind::Call => ("/", format!("node={node}")),
        CallKind::Probe(None) => ("/probe", format!("node={node}")),
        CallKind::Probe(Some((term, seq))) => ("/probe", format!("phase={term}.{seq}&node={node}")),
    }
}

/// The dependency at `addr` as a tower service of [`Call`]s: reqwest's client (a tower
/// service itself), each answer given back as an `http::Response` (so an HTTP classifier can
/// judge it), every call given up after `timeout`.
pub fn client(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<
    impl Service<Call, Response = http::Response<reqwest::Body>, Error = reqwest::Error, Future: Send> + Clone + Send,
    String,
> {
    let base = reqwest::Url::parse(&format!("http://{addr}/")).map_err(|e| format!("dependency {addr}: {e}"))?;
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| format!("HTTP client: {e}"))?;
    Ok(ServiceBuilder::new()
        .map_response(http::Response::from)
        .map_request(move |call: Call| {
            let (path, query) = target(&call);
            let mut url = base.clone();
            url.set_path(path);
            url.set_query(Some(&query));
            reqwest::Request::new(reqwest::Method::GET, url)
        })
        .service(client))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use tower::ServiceExt;

    /// One call through `client`: whether it got a 2xx answer.
    async fn answered_2xx(addr: SocketAddr, node: &str, kind: CallKind) -> bool {
        let client = client(addr, Duration::from_secs(2)).unwrap();
        let call = Call { node: node.to_owned(), kind };
        client.oneshot(call).await.is_ok_and(|response| response.status().is_success())
    }

    #[tokio::test]
    async fn answers_by_health_and_logs_what_each_request_says_it_is() {
        let dep = Dependency::start().await.unwrap();
        let before = now_ms();
        assert!(answered_2xx(dep.addr(), "i1", CallKind::Call).await);
        dep.set_healthy(false);
        assert!(!answered_2xx(dep.addr(), "i2", CallKind::Probe(Some((24, 3)))).await);
        assert!(!answered_2xx(dep.addr(), "py1", CallKind::Probe(None)).await);
        let log = dep.arrivals();
        let seen: Vec<(CallKind, Option<&str>)> = log.iter().map(|a| (a.kind, a.node.as_deref())).collect();
        assert_eq!(
            seen,
            [
                (CallKind::Call, Some("i1")),
                (CallKind::Probe(Some((24, 3))), Some("i2")),
                (CallKind::Probe(None), Some("py1"))
            ]
        );
        assert!(log.iter().all(|a| a.at_ms >= before && a.at_ms <= now_ms()));
    }

    /// The Python instance speaks HTTP/1.0 over a bare socket and reads to the end: the
    /// server answers it in kind and closes.
    #[tokio::test]
    async fn a_bare_http_1_0_request_gets_an_http_1_0_answer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dep = Dependency::start().await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(dep.addr()).await.unwrap();
        stream.write_all(b"GET /probe?phase=3.4&node=py1 HTTP/1.0\r\n\r\n").await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await.unwrap().unwrap();
        assert!(response.starts_with(b"HTTP/1.0 200"), "{}", String::from_utf8_lossy(&response));
        assert_eq!(dep.arrivals()[0].kind, CallKind::Probe(Some((3, 4))));
    }

    #[test]
    fn any_target_parses_to_a_kind() {
        let kind = |path: &str, query: &str| parse_target(path, query).0;
        assert_eq!(kind("/probe", "phase=7.12"), CallKind::Probe(Some((7, 12))));
        assert_eq!(kind("/probe", "node=i1&phase=7.12"), CallKind::Probe(Some((7, 12))));
        assert_eq!(kind("/probe", "phase=7"), CallKind::Probe(None));
        assert_eq!(kind("/probe", "phase=x.1"), CallKind::Probe(None));
        assert_eq!(kind("/probe", "phase=99999999999999999999.1"), CallKind::Probe(None));
        assert_eq!(kind("/probes", ""), CallKind::Call);
        assert_eq!(kind("/", ""), CallKind::Call);
        assert_eq!(kind("", "&&=="), CallKind::Call);
        assert_eq!(parse_target("/", "node=i1").1.as_deref(), Some("i1"));
        assert_eq!(parse_target("/", "node=a%20b").1, None);
        assert_eq!(parse_target("/", "node=").1, None);
        assert_eq!(parse_target("/", &format!("node={}", "x".repeat(33))).1, None);
        for kind in [CallKind::Call, CallKind::Probe(None), CallKind::Probe(Some((u64::MAX, 0)))] {
            let call = Call { node: "py1".to_owned(), kind };
            let (path, query) = target(&call);
            assert_eq!(parse_target(path, &query), (kind, Some("py1".to_owned())));
        }
    }
}
