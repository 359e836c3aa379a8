//! The demo's scripted dependency: a tiny HTTP/1.0 server on loopback whose health the
//! orchestrator sets (healthy: 200, failing: 500), and which counts the requests that reach
//! it: the honest measure of what a breaker let through. Calls count by the fleet state the
//! orchestrator last saw (calls while open); a call an instance admitted as a probe says so
//! (`GET /probe`) and counts towards the newest half-open round the orchestrator has seen, so
//! a round's count is not inflated by ordinary calls of instances that already applied the
//! next decision while the orchestrator's watch still shows the round.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fleet looked like (to the orchestrator) when a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FleetView {
    /// Closed or any state that lets calls through.
    Flowing,
    /// Open: nothing should arrive but calls already in flight.
    Open,
    /// Half-open round `n` (by phase): only probes should arrive.
    HalfOpen(u64),
}

#[derive(Debug)]
struct Shared {
    healthy: AtomicBool,
    view: Mutex<FleetView>,
    counts: Mutex<BTreeMap<FleetView, u64>>,
    /// Probe requests by half-open round (`None`: before any round was seen).
    probes: Mutex<BTreeMap<Option<u64>, u64>>,
    /// The newest half-open round the orchestrator has seen.
    last_round: Mutex<Option<u64>>,
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
            view: Mutex::new(FleetView::Flowing),
            counts: Mutex::new(BTreeMap::new()),
            probes: Mutex::new(BTreeMap::new()),
            last_round: Mutex::new(None),
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

    /// Records how the fleet looks now, for the requests that arrive from now on.
    pub fn set_view(&self, view: FleetView) {
        if let FleetView::HalfOpen(round) = view {
            *self.shared.last_round.lock().unwrap_or_else(PoisonError::into_inner) = Some(round);
        }
        *self.shared.view.lock().unwrap_or_else(PoisonError::into_inner) = view;
    }

    /// Probe requests received, by half-open round (`None`: before any round was seen).
    pub fn probes(&self) -> BTreeMap<Option<u64>, u64> {
        self.shared.probes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Requests received, by fleet view.
    pub fn counts(&self) -> BTreeMap<FleetView, u64> {
        self.shared.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

async fn answer(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut request = [0u8; 512];
    // One read is a whole request on loopback; a client that sends nothing gets dropped.
    if !matches!(tokio::time::timeout(Duration::from_secs(2), stream.read(&mut request)).await, Ok(Ok(n)) if n > 0) {
        return;
    }
    if request.starts_with(PROBE_REQUEST) {
        let round = *shared.last_round.lock().unwrap_or_else(PoisonError::into_inner);
        *shared.probes.lock().unwrap_or_else(PoisonError::into_inner).entry(round).or_default() += 1;
    } else {
        let view = *shared.view.lock().unwrap_or_else(PoisonError::into_inner);
        *shared.counts.lock().unwrap_or_else(PoisonError::into_inner).entry(view).or_default() += 1;
    }
    let response: &[u8] = if shared.healthy.load(Ordering::SeqCst) {
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    } else {
        b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail"
    };
    let _ = stream.write_all(response).await;
}

const PROBE_REQUEST: &[u8] = b"GET /probe HTTP/1.0\r\n\r\n";
const CALL_REQUEST: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

/// One GET against the dependency, saying whether it is a probe: `true` for a 2xx answer
/// within `timeout`.
pub async fn call(addr: SocketAddr, timeout: Duration, probe: bool) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(if probe { PROBE_REQUEST } else { CALL_REQUEST }).await.ok()?;
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
    async fn answers_by_health_and_counts_by_view() {
        let dep = Dependency::start().await.unwrap();
        assert!(call(dep.addr(), Duration::from_secs(2), false).await);
        dep.set_healthy(false);
        dep.set_view(FleetView::HalfOpen(7));
        assert!(!call(dep.addr(), Duration::from_secs(2), false).await);
        assert!(!call(dep.addr(), Duration::from_secs(2), true).await);
        // A late probe of round 7 still counts there once the view has moved on.
        dep.set_view(FleetView::Flowing);
        assert!(!call(dep.addr(), Duration::from_secs(2), true).await);
        let counts = dep.counts();
        assert_eq!(counts.get(&FleetView::Flowing), Some(&1));
        assert_eq!(counts.get(&FleetView::HalfOpen(7)), Some(&1));
        assert_eq!(dep.probes(), BTreeMap::from([(Some(7), 2)]));
    }
}
