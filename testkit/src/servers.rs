//! Real nats-server processes for tests: a single server or a 3-node `JetStream` cluster on
//! free loopback ports, each with its own store directory, ready only when `/healthz`
//! answers 200 (and, for a cluster, `/jsz` shows one meta leader on every node), killable and
//! restartable node by node, and killed by PID when dropped, also when a test panics.
//!
//! A single server can also be started with extra configuration text appended to the one the
//! harness writes ([`NatsServer::start_with`]): the auth test passes the accounts, users and
//! permissions of `docs/nats-accounts.conf` verbatim, so it tests the documented ones.
//!
//! [`credentials`] generates what servers with TLS, nkeys, tokens or operator JWTs need, and
//! the configuration text that sets them up.
//!
//! The binary is the pinned one `make test` installs (`.tools/bin/nats-server`), or
//! `FUSEBOX_NATS_SERVER`. Nothing here is a stand-in: tests talk to the real server.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub mod credentials;

/// How long a server or cluster may take to become ready (measured on 2-core machines: 0.2-0.5 s fresh,
/// 5-7 s after a restart with existing data).
pub const READY_DEADLINE: Duration = Duration::from_secs(20);

/// Why a test server could not be had.
#[derive(Debug)]
pub enum ServerError {
    /// No nats-server binary at any of these paths.
    BinaryNotFound {
        /// Where it was looked for.
        looked: Vec<PathBuf>,
    },
    /// Starting, configuring or stopping a process failed.
    Io {
        /// What was being done.
        doing: String,
        /// The error.
        error: std::io::Error,
    },
    /// Not ready within the deadline.
    NotReady {
        /// Which server.
        server: String,
        /// What was last seen.
        last: String,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BinaryNotFound { looked } => {
                write!(f, "no nats-server binary (run `make tools`, or set FUSEBOX_NATS_SERVER); looked at {looked:?}")
            }
            Self::Io { doing, error } => write!(f, "{doing}: {error}"),
            Self::NotReady { server, last } => {
                write!(f, "{server} not ready within {READY_DEADLINE:?}; last seen: {last}")
            }
        }
    }
}

impl std::error::Error for ServerError {}

fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let doing = doing.into();
    move |error| ServerError::Io { doing, error }
}

/// The nats-server binary: `FUSEBOX_NATS_SERVER`, else the workspace's `.tools/bin/nats-server`.
pub fn binary() -> Result<PathBuf, ServerError> {
    let mut looked = Vec::new();
    if let Some(explicit) = std::env::var_os("FUSEBOX_NATS_SERVER") {
        let path = PathBuf::from(explicit);
        if path.is_file() {
            return Ok(path);
        }
        looked.push(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    let pinned = workspace.join(".tools/bin/nats-server");
    if pinned.is_file() {
        return Ok(pinned);
    }
    looked.push(pinned);
    Err(ServerError::BinaryNotFound { looked })
}

/// Ports handed out to servers are taken from here, below Linux's ephemeral range
/// (32768-60999): a client's outgoing connection can never take a port a server is about to
/// bind (or to bind again after a restart), which the kernel's "port 0" choice allows.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port nobody listens on, never handed out before in this process (a killed
/// server's port stays its own for its restart). Processes running at the same time start
/// at different points of the range.
fn free_port() -> Result<u16, ServerError> {
    static GIVEN: std::sync::Mutex<Option<std::collections::HashSet<u16>>> = std::sync::Mutex::new(None);
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    let start = std::process::id().wrapping_mul(7919) % span;
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let given = given.get_or_insert_with(std::collections::HashSet::new);
    for i in 0..span {
        let port = PORT_RANGE.start + u16::try_from((start + i) % span).unwrap_or(0);
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    Err(ServerError::Io {
        doing: "finding a free port".to_owned(),
        error: std::io::Error::new(std::io::ErrorKind::AddrInUse, "every port of the test range is taken"),
    })
}

/// One HTTP/1.0 GET against a monitoring port: `(status, body)`.
fn http_get(port: u16, path: &str) -> Result<(u16, String), std::io::Error> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.take(4 << 20).read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
    Ok((status, body))
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// One nats-server process with `JetStream`, on loopback.
#[derive(Debug)]
pub struct NatsServer {
    name: String,
    dir: PathBuf,
    config: PathBuf,
    client_port: u16,
    http_port: u16,
    child: Option<Child>,
}

struct Ports {
    client: u16,
    http: u16,
    cluster: u16,
}

impl NatsServer {
    /// A single server, ready.
    pub fn start() -> Result<Self, ServerError> {
        Self::start_with("")
    }

    /// A single server whose configuration is the harness's own (name, loopback ports,
    /// `JetStream` with a fresh store) followed by `extra`, verbatim: for example an
    /// `accounts { ... }` or `authorization { ... }` block. `extra` must not set what the harness sets (`listen`,
    /// `http`, `jetstream`, `server_name`); a server that refuses the configuration is
    /// reported as [`ServerError::NotReady`] with the last line of its log (its complaint).
    pub fn start_with(extra: &str) -> Result<Self, ServerError> {
        let ports = Ports { client: free_port()?, http: free_port()?, cluster: 0 };
        let mut server = Self::configure("single", &ports, None, extra)?;
        server.spawn()?;
        server.wait_healthy()?;
        Ok(server)
    }

    fn configure(name: &str, ports: &Ports, cluster: Option<&[u16]>, extra: &str) -> Result<Self, ServerError> {
        let unique = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fusebox-nats-{}-{unique}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let store = dir.join("store");
        let mut text = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
             jetstream {{ store_dir: \"{}\", max_memory_store: 256MB, max_file_store: 1GB }}\n",
            ports.client,
            ports.http,
            store.display()
        );
        if let Some(routes) = cluster {
            let routes: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
            let cluster = format!(
                "cluster {{ name: fusebox-test, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                ports.cluster,
                routes.join(", ")
            );
            text += &cluster;
        }
        if !extra.is_empty() {
            text += "\n# Extra configuration given to the harness.\n";
            text += extra;
            text += "\n";
        }
        let config = dir.join("nats.conf");
        std::fs::write(&config, text).map_err(io(format!("writing {}", config.display())))?;
        Ok(Self { name: name.to_owned(), dir, config, client_port: ports.client, http_port: ports.http, child: None })
    }

    fn spawn(&mut self) -> Result<(), ServerError> {
        let log = std::fs::File::create(self.dir.join("server.log")).map_err(io("creating the server log"))?;
        let err = log.try_clone().map_err(io("sharing the server log"))?;
        let child = Command::new(binary()?)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting nats-server {}", self.name)))?;
        self.child = Some(child);
        Ok(())
    }

    /// The client URL (`nats://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// What the server has logged so far (empty if the log cannot be read), e.g. to find the
    /// `Publish Violation` lines of a refused publish.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The monitoring port (`/varz`, `/jsz`, `/connz`, ...), for tools that measure the
    /// server from the outside (`fleet-bench`).
    pub fn monitor_port(&self) -> u16 {
        self.http_port
    }

    /// The names of the clients connected now (`/connz`; unnamed ones as empty strings),
    /// sorted.
    pub fn connection_names(&self) -> Result<Vec<String>, ServerError> {
        let (status, body) = http_get(self.http_port, "/connz?limit=1024").map_err(io("reading /connz"))?;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let Some(connections) = json.get("connections").and_then(serde_json::Value::as_array).filter(|_| status == 200)
        else {
            return Err(ServerError::NotReady { server: self.name.clone(), last: format!("/connz answered {status}") });
        };
        let mut names: Vec<String> = connections
            .iter()
            .map(|c| c.get("name").and_then(serde_json::Value::as_str).unwrap_or("").to_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether `/healthz` answers 200 now.
    pub fn is_healthy(&self) -> bool {
        self.child.is_some() && matches!(http_get(self.http_port, "/healthz"), Ok((200, _)))
    }

    /// The `JetStream` meta leader this server sees (`/jsz`), if any.
    pub fn meta_leader(&self) -> Option<String> {
        let (status, body) = http_get(self.http_port, "/jsz").ok()?;
        if status != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json.get("meta_cluster")?.get("leader")?.as_str().filter(|l| !l.is_empty()).map(str::to_owned)
    }

    fn wait_healthy(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if self.is_healthy() {
                return Ok(());
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                    let said = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
                    let last = format!("exited with {status}: {said}");
                    return Err(ServerError::NotReady { server: self.name.clone(), last });
                }
            }
            if Instant::now() >= deadline {
                return Err(ServerError::NotReady { server: self.name.clone(), last: "/healthz not 200".into() });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL by PID) and reaps it; its store stays for a restart.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already gone is fine: the goal is that it is not running.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process where it is (SIGSTOP): a hung server, whose sockets stay open and
    /// whose clients notice nothing until their pings go unanswered. [`Self::thaw`] lets it
    /// run again; a kill (or drop) ends it frozen or not.
    pub fn freeze(&self) -> Result<(), ServerError> {
        self.signal("-STOP")
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) -> Result<(), ServerError> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), ServerError> {
        let Some(pid) = self.pid() else { return Ok(()) };
        let doing = format!("kill {signal} {pid} ({})", self.name);
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .map_err(|error| ServerError::Io { doing: doing.clone(), error })?;
        if status.success() {
            Ok(())
        } else {
            Err(ServerError::Io { doing, error: std::io::Error::other(format!("exited with {status}")) })
        }
    }

    /// Starts the process again on the same ports and store, and waits until healthy.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        self.spawn()?;
        self.wait_healthy()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `JetStream` cluster of nats-server processes routed to each other on loopback.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// A cluster of `size` nodes (3 for the usual tests), ready: every node healthy and all
    /// of them agreeing on one `JetStream` meta leader.
    pub fn start(size: usize) -> Result<Self, ServerError> {
        let ports: Vec<Ports> = (0..size)
            .map(|_| Ok(Ports { client: free_port()?, http: free_port()?, cluster: free_port()? }))
            .collect::<Result<_, ServerError>>()?;
        let routes: Vec<u16> = ports.iter().map(|p| p.cluster).collect();
        let mut nodes = Vec::with_capacity(size);
        for (i, p) in ports.iter().enumerate() {
            nodes.push(NatsServer::configure(&format!("n{}", i + 1), p, Some(&routes), "")?);
        }
        let mut cluster = Self { nodes };
        for node in &mut cluster.nodes {
            node.spawn()?;
        }
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// The nodes.
    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    /// Every running node's client URL (connect with all of them for failover).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(NatsServer::url).collect()
    }

    /// Waits until every running node is healthy and they agree on one meta leader that is
    /// itself running.
    pub fn wait_ready(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let running: Vec<&NatsServer> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
            let healthy = running.iter().all(|n| n.is_healthy());
            let leaders: Vec<Option<String>> = running.iter().map(|n| n.meta_leader()).collect();
            // Right after a node dies the others still name it leader until Raft times out
            // (4-9 s): ready means agreeing on a leader that is running.
            let alive = |leader: &str| running.iter().any(|n| n.name == leader);
            let agreed =
                leaders.first().is_some_and(|l| l.as_deref().is_some_and(alive) && leaders.iter().all(|x| x == l));
            if healthy && agreed {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let last = format!("healthy: {healthy}, meta leaders seen: {leaders:?}");
                return Err(ServerError::NotReady { server: "cluster".into(), last });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills node `i` (by PID, no graceful shutdown).
    pub fn kill(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.kill();
        }
    }

    /// Freezes node `i` (SIGSTOP; see [`NatsServer::freeze`]).
    pub fn freeze(&self, i: usize) -> Result<(), ServerError> {
        self.nodes.get(i).map_or(Ok(()), NatsServer::freeze)
    }

    /// Restarts node `i` on its ports and store and waits for the cluster to be ready.
    pub fn restart(&mut self, i: usize) -> Result<(), ServerError> {
        if let Some(node) = self.nodes.get_mut(i) {
            node.kill();
            node.spawn()?;
        }
        self.wait_ready()
    }
}
