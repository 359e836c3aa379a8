//! One measurement window: the servers' view and the tap's counts at its start and end,
//! turned into per-node figures. A node is every connection named `fusebox-<node>` or
//! `fusebox-<node>-<anything>` (a transport may open a second connection, e.g. for lease
//! upkeep). A tapped message belongs to the node named in its subject, or to the connection
//! subscribed to its reply subject. A push consumer belongs to the connection subscribed to
//! its deliver subject; a pull consumer to the node that sent it pull requests in the window.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::monitor::{ConnView, ServerView};
use crate::tap::{Kind, Origin, Tap, TapCounts};

/// Streams the bench itself creates start with this.
pub const BENCH_STREAMS: &str = "KV_fleet_bench";

/// What the window's figures are about: the nodes (by id), the layout's prefix and the
/// monitoring ports of every server.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Node ids, in order.
    pub nodes: Vec<String>,
    /// The layout prefix (`fusebox`).
    pub prefix: String,
    /// Monitoring ports.
    pub ports: Vec<u16>,
}

impl Scope {
    /// The outcome stream's name.
    pub fn outcome_stream(&self) -> String {
        format!("{}_OUTCOMES", self.prefix.to_ascii_uppercase())
    }

    /// The state bucket's stream.
    pub fn state_stream(&self) -> String {
        format!("KV_{}_state", self.prefix)
    }

    /// The node a connection belongs to.
    pub fn node_of(&self, connection: &str) -> Option<usize> {
        self.nodes.iter().position(|n| {
            let own = format!("{}-{n}", self.prefix);
            connection == own || connection.starts_with(&format!("{own}-"))
        })
    }
}

/// A window's start.
#[derive(Debug)]
pub struct Mark {
    at: Instant,
    view: ServerView,
    counts: TapCounts,
}

/// One node's figures over a window.
#[derive(Debug, Clone, Default)]
pub struct NodeFigures {
    /// Its connections at the end.
    pub connections: usize,
    /// Messages its connections sent (`/connz` `in_msgs`), everything included.
    pub in_msgs: u64,
    /// Subscriptions held at the end.
    pub subscriptions: u64,
    /// Messages into the outcome stream (reports and batches).
    pub outcome_msgs: u64,
    /// Every tapped message: stream publishes, KV writes, `JetStream` API requests, pulls.
    pub jetstream_msgs: u64,
    /// Gets on the state bucket's stream (direct or API): the resync reads.
    pub resync_gets: u64,
    /// `JetStream` API requests other than gets and pulls.
    pub api_requests: u64,
    /// KV writes by bucket.
    pub kv_writes: BTreeMap<String, u64>,
    /// Consumers it holds at the end.
    pub consumers: u64,
}

/// A window's figures.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Its length.
    pub elapsed: Duration,
    /// Per node, in the scope's order.
    pub nodes: Vec<NodeFigures>,
    /// Consumers per stream at the end.
    pub consumers_per_stream: BTreeMap<String, u64>,
    /// Consumers no node could be found for (a pull consumer nobody pulled from in the window).
    pub consumers_unattributed: u64,
    /// Tapped messages no node could be found for.
    pub tapped_unattributed: u64,
    /// Messages stored in the outcome stream (its last sequence moved by this much).
    pub outcome_stream_stored: u64,
    /// Messages stored in the state bucket's stream.
    pub state_stream_stored: u64,
    /// `JetStream` API requests the servers counted (`/jsz`, summed over a cluster's nodes).
    pub server_api_requests: u64,
    /// Messages the servers received (`/varz`).
    pub server_in_msgs: u64,
    /// Server memory at the end (`/varz`).
    pub server_mem: u64,
    /// The nodes' requests other than outcomes, by kind (`Get KV_fusebox_config`,
    /// `Api CONSUMER.CREATE`, `KvWrite fusebox_leases`, ...): where the traffic goes.
    pub requests_by_kind: BTreeMap<String, u64>,
}

impl Figures {
    /// Per-second rate of `count` over the window.
    pub fn rate(&self, count: u64) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let count = count as f64;
        count / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Subjects to connections: exact subscriptions and `<prefix>.*`/`<prefix>.>` ones.
struct Subscribers {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl Subscribers {
    fn new(scope: &Scope, connections: &[&ConnView]) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for conn in connections {
            let Some(node) = scope.node_of(&conn.name) else { continue };
            for subject in &conn.subjects {
                if let Some(prefix) = subject.strip_suffix(".*").or_else(|| subject.strip_suffix(".>")) {
                    wildcard.insert(prefix.to_owned(), node);
                } else {
                    exact.insert(subject.clone(), node);
                }
            }
        }
        Self { exact, wildcard }
    }

    fn node(&self, origin: &Origin, scope: &Scope) -> Option<usize> {
        match origin {
            Origin::Node(n) => scope.nodes.iter().position(|x| x == n),
            Origin::Reply(r) => self.exact.get(r).or_else(|| self.wildcard.get(r)).copied(),
            Origin::Unknown => None,
        }
    }

    fn deliver_node(&self, subject: &str) -> Option<usize> {
        self.exact.get(subject).or_else(|| subject.rsplit_once('.').and_then(|(p, _)| self.wildcard.get(p))).copied()
    }
}

/// Starts a window.
pub async fn mark(scope: &Scope, tap: &Tap) -> Result<Mark, BenchError> {
    let view = ServerView::read_all_async(scope.ports.clone()).await?;
    Ok(Mark { at: Instant::now(), view, counts: tap.counts() })
}

/// Ends a window begun at `start`.
pub async fn finish(scope: &Scope, tap: &Tap, start: &Mark) -> Result<Figures, BenchError> {
    let counts = tap.counts();
    let elapsed = start.at.elapsed();
    let view = ServerView::read_all_async(scope.ports.clone()).await?;
    Ok(figures(scope, start, &view, &counts, elapsed))
}

fn figures(scope: &Scope, start: &Mark, end: &ServerView, counts: &TapCounts, elapsed: Duration) -> Figures {
    // Subscriptions of both ends: a reply subject subscribed at either belongs to its connection.
    let connections: Vec<&ConnView> = start.view.connections.iter().chain(&end.connections).collect();
    let subscribers = Subscribers::new(scope, &connections);
    let mut nodes = vec![NodeFigures::default(); scope.nodes.len()];
    let delta = counts.since(&start.counts);
    let mut tapped_unattributed = delta.overflow;
    let mut pulled_by: HashMap<String, usize> = HashMap::new();
    let mut requests_by_kind = BTreeMap::new();
    let state_stream = scope.state_stream();
    for ((kind, origin), count) in &delta.by_key {
        let Some(node) = subscribers.node(origin, scope) else {
            tapped_unattributed += count;
            continue;
        };
        let label = match kind {
            Kind::Outcome => None,
            Kind::Command => Some("Command".to_owned()),
            Kind::KvWrite(b) => Some(format!("KvWrite {b}")),
            Kind::Get(stream) => Some(format!("Get {stream}")),
            Kind::Pull(consumer) => Some(format!("Pull {}", consumer.split('.').next().unwrap_or_default())),
            Kind::Api(verb) => Some(format!("Api {verb}")),
        };
        if let Some(label) = label {
            *requests_by_kind.entry(label).or_default() += count;
        }
        let figures = &mut nodes[node];
        figures.jetstream_msgs += count;
        match kind {
            Kind::Outcome => figures.outcome_msgs += count,
            Kind::Get(stream) if *stream == state_stream => figures.resync_gets += count,
            Kind::Pull(consumer) => {
                pulled_by.insert(consumer.clone(), node);
            }
            Kind::KvWrite(bucket) => *figures.kv_writes.entry(bucket.clone()).or_default() += count,
            Kind::Api(_) | Kind::Get(_) => figures.api_requests += count,
            Kind::Command => {}
        }
    }
    let in_before: HashMap<&str, u64> = start.view.connections.iter().map(|c| (c.name.as_str(), c.in_msgs)).collect();
    for conn in &end.connections {
        let Some(node) = scope.node_of(&conn.name) else { continue };
        let figures = &mut nodes[node];
        figures.connections += 1;
        figures.subscriptions += conn.subscriptions;
        figures.in_msgs += conn.in_msgs.saturating_sub(in_before.get(conn.name.as_str()).copied().unwrap_or(0));
    }
    let mut consumers_per_stream = BTreeMap::new();
    let mut consumers_unattributed = 0;
    // The bench's own scratch bucket (raw KV watch) is nobody's cost.
    for consumer in end.consumers.iter().filter(|c| !c.stream.starts_with(BENCH_STREAMS)) {
        *consumers_per_stream.entry(consumer.stream.clone()).or_default() += 1;
        let owner = match &consumer.deliver_subject {
            Some(subject) => subscribers.deliver_node(subject),
            None => pulled_by.get(&format!("{}.{}", consumer.stream, consumer.name)).copied(),
        };
        match owner {
            Some(node) => nodes[node].consumers += 1,
            None => consumers_unattributed += 1,
        }
    }
    let stored = |stream: &str| {
        let at = |v: &ServerView| v.streams.get(stream).map_or(0, |s| s.last_seq);
        at(end).saturating_sub(at(&start.view))
    };
    Figures {
        elapsed,
        nodes,
        consumers_per_stream,
        consumers_unattributed,
        tapped_unattributed,
        outcome_stream_stored: stored(&scope.outcome_stream()),
        state_stream_stored: stored(&state_stream),
        server_api_requests: end.api_total.saturating_sub(start.view.api_total),
        server_in_msgs: end.in_msgs.saturating_sub(start.view.in_msgs),
        server_mem: end.mem,
        requests_by_kind,
    }
}
