//! One connection to the fleet's NATS servers as the CLI uses it: plain async-nats with the
//! operator's API and inbox prefixes, every request bounded by the timeout, and every
//! failure turned into a [`CliError`] — in particular a refused publish or subscription,
//! which the server reports on the side (an `-ERR 'Permissions Violation ...'` event) while
//! the request itself just never gets its answer. The session only reads buckets and
//! publishes; it never creates a stream or bucket.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind, KeyValueErrorKind, PublishErrorKind};
use async_nats::jetstream::kv::{self, Entry, Operation};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::DirectGetErrorKind;
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{ConnectErrorKind, ConnectOptions, Event, RequestErrorKind, ServerAddr, ServerError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;
use transport_nats::layout::Layout;
use transport_nats::nats::AuthError;

use super::args::Global;
use super::error::CliError;

/// A connected CLI session.
pub struct Session {
    js: jetstream::Context,
    layout: Layout,
    timeout: Duration,
    /// The first permissions violation the server reported on this connection.
    violations: watch::Receiver<Option<String>>,
    /// Appended to a refused `JetStream` API request or inbox subscription: with
    /// credentials but without an API prefix, the missing operator flags are the likely
    /// cause.
    hint: Option<String>,
    /// The fleet's number of lease shards.
    shards: u32,
}

impl Session {
    /// Connects, failing fast (one attempt per server, bounded by the request timeout)
    /// rather than retrying: an operator wants to know the server is unreachable.
    pub async fn connect(global: &Global) -> Result<Self, CliError> {
        let timeout = global.request_timeout();
        let (servers, settings) = global.connection().map_err(|e| settings_error(&e))?;
        let addrs = servers
            .iter()
            .map(|s| s.parse::<ServerAddr>().map_err(|e| CliError::Usage(format!("invalid server URL {s:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(CliError::Usage("no server URL given".into()));
        }
        let servers = servers.join(", ");
        let (tx, violations) = watch::channel(None);
        let tx = Arc::new(tx);
        let mut options = settings
            .apply(ConnectOptions::new())
            .map_err(|e| settings_error(&e))?
            .name("fusebox-cli")
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .event_callback(move |event| {
                let tx = Arc::clone(&tx);
                async move {
                    if let Event::ServerError(ServerError::Other(e)) = event
                        && e.contains("Permissions Violation")
                    {
                        // The first one is the one that explains what failed.
                        tx.send_if_modified(|first| {
                            if first.is_some() {
                                return false;
                            }
                            *first = Some(e);
                            true
                        });
                    }
                }
            });
        if let Some(prefix) = &global.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        let client = match tokio::time::timeout(timeout, options.connect(addrs)).await {
            Err(_) => {
                return Err(CliError::Unreachable { servers, detail: format!("no answer within {timeout:?}") });
            }
            Ok(Err(e)) => {
                let detail = e.to_string();
                return Err(match e.kind() {
                    ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                        let detail = if settings.auth.is_some() {
                            detail
                        } else {
                            format!("{detail} (no --user, --creds, --nkey or --token given)")
                        };
                        CliError::AuthenticationFailed { servers, detail }
                    }
                    // async-nats reports a refused certificate as an IO error of the handshake.
                    kind if kind == ConnectErrorKind::Tls || detail.contains("invalid peer certificate") => {
                        let detail = if settings.tls.ca.is_none() && detail.contains("UnknownIssuer") {
                            format!("{detail} (the server's certificate is not signed by a trusted CA: --tls-ca FILE?)")
                        } else {
                            detail
                        };
                        CliError::Tls { servers, detail }
                    }
                    ConnectErrorKind::ServerParse => CliError::Usage(format!("invalid server URL: {detail}")),
                    _ => CliError::Unreachable { servers, detail },
                });
            }
            Ok(Ok(client)) => client,
        };
        let mut js = match &global.js_api_prefix {
            Some(prefix) => jetstream::with_prefix(client, prefix),
            None => jetstream::new(client),
        };
        js.set_timeout(timeout);
        let layout = global.prefix.clone();
        let hint = (global.js_api_prefix.is_none() && settings.auth.is_some()).then(|| {
            format!(
                " (operators of docs/auth.md connect with --js-api-prefix '$JS.{p}.API' --inbox-prefix _INBOX_{p}_ops)",
                p = layout.prefix()
            )
        });
        Ok(Self { js, layout, timeout, violations, hint, shards: global.lease_shards })
    }

    /// The fleet's number of lease shards.
    pub fn lease_shards(&self) -> u32 {
        self.shards
    }

    /// The fleet's names.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// How long one request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits for `fut` at most the request timeout, and gives up as soon as the server
    /// reports a permissions violation (the request would only time out). The inner result
    /// is the operation's own, for callers that tell its errors apart.
    pub async fn guard<T>(&self, what: &str, fut: impl Future<Output = T>) -> Result<T, CliError> {
        let mut violations = self.violations.clone();
        tokio::select! {
            biased;
            Ok(violation) = violations.wait_for(Option::is_some) => Err(self.denied(what, (*violation).clone())),
            result = tokio::time::timeout(self.timeout, fut) => match result {
                Ok(result) => Ok(result),
                Err(_) => Err(self.fail(what, None::<String>)),
            },
        }
    }

    /// Resolves when the server reports a permissions violation, with the error to return.
    pub async fn violation(&self, what: &str) -> CliError {
        let mut violations = self.violations.clone();
        let violation = match violations.wait_for(Option::is_some).await {
            Ok(violation) => (*violation).clone(),
            // The connection is gone: no violation will ever come.
            Err(_) => return std::future::pending().await,
        };
        self.denied(what, violation)
    }

    /// The error for a failure of `what`: a permissions violation if the server reported
    /// one (the real cause of a request that failed or timed out), else `detail`, else a
    /// timeout.
    pub fn fail(&self, what: &str, detail: Option<impl ToString>) -> CliError {
        let violation = self.violations.borrow().clone();
        match (violation, detail) {
            (Some(violation), _) => self.denied(what, Some(violation)),
            (None, Some(detail)) => CliError::Nats { what: what.to_owned(), detail: detail.to_string() },
            (None, None) => CliError::TimedOut { what: what.to_owned(), after: self.timeout },
        }
    }

    fn denied(&self, what: &str, violation: Option<String>) -> CliError {
        let mut detail = violation.map_or_else(|| "refused by the server".to_owned(), |v| v.trim().to_owned());
        if let Some(hint) = &self.hint
            && (detail.contains("$JS.API.") || detail.contains("Subscription"))
        {
            detail += hint;
        }
        CliError::PermissionDenied { what: what.to_owned(), detail }
    }

    /// Opens a bucket of the fleet (a stream info request), never creating it.
    pub async fn bucket(&self, name: String) -> Result<kv::Store, CliError> {
        let what = format!("opening bucket {name}");
        match self.guard(&what, self.js.get_key_value(name.clone())).await? {
            Ok(store) => Ok(store),
            Err(e)
                if e.kind() == KeyValueErrorKind::GetBucket
                    && std::error::Error::source(&e)
                        .and_then(|s| s.downcast_ref::<GetStreamError>())
                        .is_some_and(stream_not_found) =>
            {
                Err(CliError::FleetMissing { prefix: self.layout.prefix().to_owned(), kind: "bucket", name })
            }
            Err(e) => Err(self.fail(&what, Some(e))),
        }
    }

    /// The latest entry of `key`, if it holds a value (not a delete or purge marker).
    pub async fn entry(&self, store: &kv::Store, key: &str) -> Result<Option<Entry>, CliError> {
        let what = format!("reading {key} from {}", store.name);
        match self.guard(&what, store.entry(key)).await? {
            Ok(entry) => Ok(entry.filter(|e| e.operation == Operation::Put)),
            Err(e) => Err(self.fail(&what, Some(e))),
        }
    }

    /// The last message of `key` with its headers (a direct get), if the key holds a
    /// value: `(revision, payload, whether it carries a TTL)`.
    pub async fn raw_entry(&self, store: &kv::Store, key: &str) -> Result<Option<(u64, Bytes, bool)>, CliError> {
        let what = format!("reading {key} from {}", store.name);
        let subject = format!("$KV.{}.{key}", store.name);
        match self.guard(&what, store.stream.direct_get_last_for_subject(subject)).await? {
            Ok(message) => {
                let marker = message.headers.get("KV-Operation").is_some_and(|v| v.as_str() != "PUT");
                let has_ttl = message.headers.get("Nats-TTL").is_some();
                Ok((!marker).then_some((message.sequence, message.payload, has_ttl)))
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail(&what, Some(e))),
        }
    }

    /// Writes `value` to `key` if the key is at `revision` (0: absent): `Ok(false)` if it
    /// has moved on.
    pub async fn update(&self, store: &kv::Store, key: &str, value: Bytes, revision: u64) -> Result<bool, CliError> {
        let what = format!("writing {key} to {}", store.name);
        let written = if revision == 0 {
            self.guard(&what, store.create(key, value)).await?.map(|_| ()).map_err(|e| e.to_string())
        } else {
            self.guard(&what, store.update(key, value, revision)).await?.map(|_| ()).map_err(|e| e.to_string())
        };
        match written {
            Ok(()) => Ok(true),
            Err(e) if e.contains("wrong last sequence") || e.contains("already exists") => Ok(false),
            Err(e) => Err(self.fail(&what, Some(e))),
        }
    }

    /// Deletes `key` if it is still at `revision`: `Ok(false)` if it has moved on.
    pub async fn delete_at(&self, store: &kv::Store, key: &str, revision: u64) -> Result<bool, CliError> {
        let what = format!("deleting {key} from {}", store.name);
        match self.guard(&what, store.delete_expect_revision(key, Some(revision))).await? {
            Ok(()) => Ok(true),
            Err(e) if e.to_string().contains("wrong last sequence") => Ok(false),
            Err(e) => Err(self.fail(&what, Some(e))),
        }
    }

    /// The keys of a bucket that hold a value.
    pub async fn keys(&self, store: &kv::Store) -> Result<Vec<String>, CliError> {
        let what = format!("listing the keys of {}", store.name);
        let keys = match self.guard(&what, store.keys()).await? {
            Ok(keys) => keys,
            Err(e) => return Err(self.fail(&what, Some(e))),
        };
        self.collect(&what, keys).await
    }

    /// Every entry kept for `key`, oldest first, markers included.
    pub async fn history(&self, store: &kv::Store, key: &str) -> Result<Vec<Entry>, CliError> {
        let what = format!("reading the history of {key} in {}", store.name);
        let history = match self.guard(&what, store.history(key)).await? {
            Ok(history) => history,
            Err(e) => return Err(self.fail(&what, Some(e))),
        };
        self.collect(&what, history).await
    }

    /// Changes to `key` (every key if `None`) from now on.
    pub async fn watch(&self, store: &kv::Store, key: Option<&str>) -> Result<kv::Watch, CliError> {
        let what = format!("watching {}/{}", store.name, key.unwrap_or(">"));
        let watch = match key {
            Some(key) => self.guard(&what, store.watch(key)).await?,
            None => self.guard(&what, store.watch_all()).await?,
        };
        watch.map_err(|e| self.fail(&what, Some(e)))
    }

    /// The entry a watch of [`Session::watch`] delivered next, or, if it failed or ended,
    /// the error that is for `what`.
    pub fn watched(&self, what: &str, change: Option<Result<Entry, kv::WatcherError>>) -> Result<Entry, CliError> {
        match change {
            Some(Ok(entry)) => Ok(entry),
            Some(Err(e)) => Err(self.fail(what, Some(e))),
            None => Err(self.fail(what, Some("the watch ended"))),
        }
    }

    /// The latest value of every key of `store`, then every change.
    pub async fn watch_with_history(&self, store: &kv::Store) -> Result<kv::Watch, CliError> {
        let what = format!("watching {}/> from the latest values", store.name);
        self.guard(&what, store.watch_with_history(">")).await?.map_err(|e| self.fail(&what, Some(e)))
    }

    async fn collect<T, E: ToString>(
        &self,
        what: &str,
        mut stream: impl Stream<Item = Result<T, E>> + Unpin,
    ) -> Result<Vec<T>, CliError> {
        let mut out = Vec::new();
        while let Some(item) = self.guard(what, stream.next()).await? {
            out.push(item.map_err(|e| self.fail(what, Some(e)))?);
        }
        Ok(out)
    }

    /// A `JetStream` publish, acknowledged by `stream`.
    pub async fn publish(
        &self,
        what: &str,
        subject: String,
        message: PublishMessage,
        stream: String,
    ) -> Result<PublishAck, CliError> {
        let sent = self
            .guard(what, async {
                let ack = self.js.send_publish(subject, message).await?;
                ack.await
            })
            .await?;
        match sent {
            Ok(ack) => Ok(ack),
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => match self.violations.borrow().clone() {
                Some(violation) => Err(self.denied(what, Some(violation))),
                None => Err(CliError::FleetMissing {
                    prefix: self.layout.prefix().to_owned(),
                    kind: "stream",
                    name: stream,
                }),
            },
            Err(e) => Err(self.fail(what, Some(e))),
        }
    }
}

/// A credentials or TLS file that cannot be used: a usage error, naming the flag.
fn settings_error(e: &AuthError) -> CliError {
    CliError::Usage(format!("{e} ({})", e.setting().flag()))
}

impl Session {
    /// A core NATS request on `subject`: the first answer within `wait`, or `None` if
    /// nobody answered in time (or nobody listens).
    pub async fn request(
        &self,
        what: &str,
        subject: String,
        payload: Bytes,
        wait: Duration,
    ) -> Result<Option<Bytes>, CliError> {
        let request = async_nats::Request::new().payload(payload).timeout(Some(wait));
        let client = self.js.client();
        let mut violations = self.violations.clone();
        let answer = tokio::select! {
            biased;
            Ok(violation) = violations.wait_for(Option::is_some) => return Err(self.denied(what, (*violation).clone())),
            answer = client.send_request(subject, request) => answer,
        };
        match answer {
            Ok(message) => Ok(Some(message.payload)),
            Err(e) if matches!(e.kind(), RequestErrorKind::TimedOut | RequestErrorKind::NoResponders) => Ok(None),
            Err(e) => Err(self.fail(what, Some(e))),
        }
    }
}

fn stream_not_found(e: &GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}
