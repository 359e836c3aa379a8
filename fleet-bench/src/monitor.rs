//! The nats-server monitoring endpoints, read over plain HTTP/1.0 on loopback: `/varz`
//! (messages in, memory), `/jsz` (API request totals, streams with their message counts and
//! every consumer with its config), `/connz?subs=1` (every client connection: name, messages
//! in, its subscriptions). A cluster is read node by node and merged ([`ServerView::merge`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::{BenchError, Context};

/// The most a monitoring answer may be (a `/jsz` with thousands of consumers and their
/// configs runs to megabytes).
const MAX_BODY: u64 = 256 << 20;

/// One client connection as the server sees it.
#[derive(Debug, Clone, Default)]
pub struct ConnView {
    /// The name the client gave (`fusebox-<node>` for Fusebox nodes).
    pub name: String,
    /// Messages the client sent.
    pub in_msgs: u64,
    /// Subscriptions it holds.
    pub subscriptions: u64,
    /// Their subjects.
    pub subjects: Vec<String>,
}

/// One `JetStream` consumer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsumerView {
    /// Its stream.
    pub stream: String,
    /// Its name.
    pub name: String,
    /// Where a push consumer delivers (`None`: a pull consumer).
    pub deliver_subject: Option<String>,
}

/// One stream's state.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamView {
    /// Messages it holds.
    pub messages: u64,
    /// Its last sequence: messages ever stored (retention does not lower it).
    pub last_seq: u64,
}

/// What the server (or the whole cluster) shows at one moment.
#[derive(Debug, Clone, Default)]
pub struct ServerView {
    /// Messages received from clients and routes.
    pub in_msgs: u64,
    /// Resident memory in bytes (summed over a cluster).
    pub mem: u64,
    /// `JetStream` API requests handled (summed over a cluster).
    pub api_total: u64,
    /// Streams by name.
    pub streams: BTreeMap<String, StreamView>,
    /// Every consumer (deduplicated across a cluster's nodes).
    pub consumers: Vec<ConsumerView>,
    /// Client connections.
    pub connections: Vec<ConnView>,
}

/// One HTTP/1.0 GET of `path` on a monitoring `port`; the body of a 200 answer.
pub fn http_get(port: u16, path: &str) -> Result<String, BenchError> {
    let doing = format!("GET {path} on monitoring port {port}");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).doing(&doing)?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).doing(&doing)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").doing(&doing)?;
    let mut response = String::new();
    stream.take(MAX_BODY).read_to_string(&mut response).doing(&doing)?;
    let status: u16 = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status != 200 {
        return crate::fail(doing, format!("status {status}"));
    }
    Ok(response.split_once("\r\n\r\n").map_or(String::new(), |(_, body)| body.to_owned()))
}

fn get_json(port: u16, path: &str) -> Result<Value, BenchError> {
    serde_json::from_str(&http_get(port, path)?).doing(format!("parsing {path}"))
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl ServerView {
    /// Reads one server.
    pub fn read(port: u16) -> Result<Self, BenchError> {
        let varz = get_json(port, "/varz")?;
        let jsz = get_json(port, "/jsz?accounts=true&streams=true&consumers=true&config=true")?;
        let connz = get_json(port, "/connz?subs=1&limit=100000")?;
        let mut view = Self { in_msgs: u(&varz, "in_msgs"), mem: u(&varz, "mem"), ..Self::default() };
        view.api_total = jsz.get("api").map_or(0, |api| u(api, "total"));
        for account in jsz.get("account_details").and_then(Value::as_array).into_iter().flatten() {
            for stream in account.get("stream_detail").and_then(Value::as_array).into_iter().flatten() {
                let name = stream.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let state = stream.get("state").cloned().unwrap_or(Value::Null);
                view.streams.insert(
                    name.clone(),
                    StreamView { messages: u(&state, "messages"), last_seq: u(&state, "last_seq") },
                );
                for consumer in stream.get("consumer_detail").and_then(Value::as_array).into_iter().flatten() {
                    let deliver = consumer
                        .get("config")
                        .and_then(|c| c.get("deliver_subject"))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned);
                    view.consumers.push(ConsumerView {
                        stream: name.clone(),
                        name: consumer.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        deliver_subject: deliver,
                    });
                }
            }
        }
        for conn in connz.get("connections").and_then(Value::as_array).into_iter().flatten() {
            view.connections.push(ConnView {
                name: conn.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                in_msgs: u(conn, "in_msgs"),
                subscriptions: u(conn, "subscriptions"),
                subjects: conn
                    .get("subscriptions_list")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            });
        }
        Ok(view)
    }

    /// Reads every server of a cluster (or the one server) and merges what they show:
    /// counters summed, streams at their furthest replica, consumers deduplicated (a
    /// replicated consumer shows on every node that hosts it), connections concatenated.
    pub fn read_all(ports: &[u16]) -> Result<Self, BenchError> {
        let mut merged = Self::default();
        for port in ports {
            merged.merge(Self::read(*port)?);
        }
        merged.consumers.sort();
        merged.consumers.dedup();
        Ok(merged)
    }

    /// Folds another server's view into this one.
    pub fn merge(&mut self, other: Self) {
        self.in_msgs += other.in_msgs;
        self.mem += other.mem;
        self.api_total += other.api_total;
        for (name, stream) in other.streams {
            let mine = self.streams.entry(name).or_default();
            mine.messages = mine.messages.max(stream.messages);
            mine.last_seq = mine.last_seq.max(stream.last_seq);
        }
        self.consumers.extend(other.consumers);
        self.connections.extend(other.connections);
    }

    /// Reads on a blocking thread, for callers inside a runtime.
    pub async fn read_all_async(ports: Vec<u16>) -> Result<Self, BenchError> {
        tokio::task::spawn_blocking(move || Self::read_all(&ports)).await.doing("reading the monitoring endpoints")?
    }
}
