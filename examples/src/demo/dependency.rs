//! The demo's scripted dependency: a tiny HTTP/1.0 server on loopback whose health the
//! orchestrator sets (healthy: 200, failing: 500), and which logs the requests that reach it:
//! the honest measure of what a breaker let through. Each entry is the arrival time (wall
//! clock, ms) and, for a call an instance admitted as a half-open probe, the half-open phase
//! the instance says it probed under (`GET /probe?phase=<term>.<seq>`), and the caller's node
//! id (`node=<id>`) when it gives one. The orchestrator
//! attributes requests afterwards, from the decisions' own timestamps in the state bucket:
//! probes by the phase they name (never by which round the orchestrator happens to have seen
//! last, which lags whenever its own server dies), other calls by the fleet state stored when
//! they arrived (calls while open).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(serving.clone(), stream));
            }
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

async fn answer(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut request = [0u8; 512];
    // One read is a whole request on loopback; a client that sends nothing gets dropped.
    let n = match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut request)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return,
    };
    let (kind, node) = parse_request(request.get(..n).unwrap_or_default());
    let arrival = Arrival { at_ms: now_ms(), kind, node };
    {
        let mut log = shared.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() < MAX_LOGGED {
            log.push(arrival);
        } else {
            shared.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }
    let response: &[u8] = if shared.healthy.load(Ordering::SeqCst) {
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    } else {
        b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail"
    };
    let _ = stream.write_all(response).await;
}

/// What a request line says: `GET /probe?phase=T.S` is a probe of phase `(T, S)`, any other
/// `/probe...` a probe of no known phase, anything else an ordinary call; `node=ID` (1 to 32
/// of `[A-Za-z0-9_-]`) names the caller. Whatever the bytes, this never fails.
fn parse_request(request: &[u8]) -> (CallKind, Option<String>) {
    let line = request.split(|b| *b == b'\r' || *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let Some(target) = line.split(' ').nth(1) else { return (CallKind::Call, None) };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
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

fn request_line(node: &str, kind: CallKind) -> String {
    match kind {
        CallKind::Call => format!("GET /?node={node} HTTP/1.0\r\n\r\n"),
        CallKind::Probe(None) => format!("GET /probe?node={node} HTTP/1.0\r\n\r\n"),
        CallKind::Probe(Some((term, seq))) => format!("GET /probe?phase={term}.{seq}&node={node} HTTP/1.0\r\n\r\n"),
    }
}

/// One GET against the dependency from `node`, saying what it is: `true` for a 2xx answer
/// within `timeout`.
pub async fn call(addr: SocketAddr, timeout: Duration, node: &str, kind: CallKind) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(request_line(node, kind).as_bytes()).await.ok()?;
        let mut response = Vec::with_capacity(64);
        stream.read_to_end(&mut response).await.ok()?;
        Some(response.starts_with(b"HTTP/1.0 2"))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn answers_by_health_and_logs_what_each_request_says_it_is() {
        let dep = Dependency::start().await.unwrap();
        let before = now_ms();
        assert!(call(dep.addr(), Duration::from_secs(2), "i1", CallKind::Call).await);
        dep.set_healthy(false);
        assert!(!call(dep.addr(), Duration::from_secs(2), "i2", CallKind::Probe(Some((24, 3)))).await);
        assert!(!call(dep.addr(), Duration::from_secs(2), "py1", CallKind::Probe(None)).await);
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

    #[test]
    fn any_request_bytes_parse_to_a_kind() {
        let kind = |r: &[u8]| parse_request(r).0;
        assert_eq!(kind(b"GET /probe?phase=7.12 HTTP/1.0\r\n\r\n"), CallKind::Probe(Some((7, 12))));
        assert_eq!(kind(b"GET /probe?node=i1&phase=7.12 HTTP/1.0\r\n\r\n"), CallKind::Probe(Some((7, 12))));
        assert_eq!(kind(b"GET /probe?phase=7 HTTP/1.0\r\n\r\n"), CallKind::Probe(None));
        assert_eq!(kind(b"GET /probe?phase=x.1 HTTP/1.0\r\n\r\n"), CallKind::Probe(None));
        assert_eq!(kind(b"GET /probe?phase=99999999999999999999.1 HTTP/1.0"), CallKind::Probe(None));
        assert_eq!(kind(b"GET /probes HTTP/1.0"), CallKind::Call);
        assert_eq!(kind(b"GET / HTTP/1.0\r\n\r\n"), CallKind::Call);
        assert_eq!(kind(b""), CallKind::Call);
        assert_eq!(kind(&[0xff, 0xfe, b' ', b'/', b'p']), CallKind::Call);
        assert_eq!(parse_request(b"GET /?node=i1 HTTP/1.0").1.as_deref(), Some("i1"));
        assert_eq!(parse_request(b"GET /?node=a%20b HTTP/1.0").1, None);
        assert_eq!(parse_request(b"GET /?node= HTTP/1.0").1, None);
        assert_eq!(parse_request(format!("GET /?node={} HTTP/1.0", "x".repeat(33)).as_bytes()).1, None);
        for kind in [CallKind::Call, CallKind::Probe(None), CallKind::Probe(Some((u64::MAX, 0)))] {
            assert_eq!(parse_request(request_line("py1", kind).as_bytes()), (kind, Some("py1".to_owned())));
        }
    }
}
