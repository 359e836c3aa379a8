//! `axum-guide`: the code of `docs/guide-axum.md`, run. An axum storefront calls a prices
//! service (another axum app, on loopback) through reqwest behind a Fusebox breaker, with
//! tower's retry, concurrency limit and timeout around it in the order the guide explains;
//! one of its own routes sits behind a breaker of its own. The script: healthy, the prices
//! service failing with 503s until the breaker opens, the async fallback then serving from
//! the cache by request, and the guarded route shedding load once its breaker opens. Exits
//! non-zero if any step does not happen, so the guide's test can hold it to what it prints.

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use fusebox::config::{OpenPolicy, TripPolicy, WindowConfig};
use fusebox::http::ServerErrorsAsFailures;
use fusebox::tower::{FuseboxError, FuseboxLayer};
use fusebox::{Breaker, BreakerConfig, Registry, Rejected, StateLabel};
use tower::retry::Policy;
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// What the storefront served before, by request path: what a rejected request gets (an
/// async lock standing for a cache elsewhere).
type Cache = Arc<tokio::sync::RwLock<HashMap<String, String>>>;

// guide: retry policy
/// Retries a failed attempt (an error or a 5xx answer) up to `attempts_left` more times,
/// and never a rejection: the breaker answered at once, and would answer the same again.
#[derive(Clone)]
struct RetryFailures {
    attempts_left: u32,
}

impl<B> Policy<reqwest::Request, http::Response<B>, FuseboxError<BoxError>> for RetryFailures {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _: &mut reqwest::Request,
        result: &mut Result<http::Response<B>, FuseboxError<BoxError>>,
    ) -> Option<Self::Future> {
        let failed = match result {
            Ok(response) => response.status().is_server_error(),
            Err(FuseboxError::Failed(_)) => true,
            Err(FuseboxError::Rejected(_)) => false,
        };
        if !failed || self.attempts_left == 0 {
            return None;
        }
        self.attempts_left -= 1;
        Some(std::future::ready(()))
    }

    fn clone_request(&mut self, request: &reqwest::Request) -> Option<reqwest::Request> {
        request.try_clone()
    }
}
// end

// guide: fallback
/// Answers a rejected request from the cache, by its path; a miss gives the rejection back.
async fn serve_cached(
    cache: Cache,
    request: reqwest::Request,
    rejected: Rejected,
) -> Result<http::Response<reqwest::Body>, FuseboxError<BoxError>> {
    let cached = cache.read().await.get(request.url().path()).cloned();
    match cached {
        Some(body) => {
            let mut response = http::Response::new(reqwest::Body::from(body));
            response.headers_mut().insert("x-served-from", http::HeaderValue::from_static("cache"));
            Ok(response)
        }
        None => Err(FuseboxError::Rejected(rejected)),
    }
}
// end

/// The storefront's state: the prices client (behind its breaker) and the cache.
#[derive(Clone)]
struct Storefront<S> {
    prices: S,
    prices_url: String,
    cache: Cache,
}

/// `GET /price/{item}`: the item's price, from the prices service or, while its breaker
/// is open, from the cache.
async fn price<S>(State(app): State<Storefront<S>>, uri: Uri) -> (StatusCode, String)
where
    S: tower::Service<reqwest::Request, Response = http::Response<reqwest::Body>, Error = FuseboxError<BoxError>>
        + Clone,
{
    let path = uri.path().to_owned();
    let request = match reqwest::Url::parse(&format!("{}{path}", app.prices_url)) {
        Ok(url) => reqwest::Request::new(reqwest::Method::GET, url),
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()),
    };
    match app.prices.clone().oneshot(request).await {
        Ok(response) => {
            let from_cache = response.headers().contains_key("x-served-from");
            let status = response.status();
            let body = reqwest::Response::from(response).text().await.unwrap_or_default();
            if status.is_success() && !from_cache {
                app.cache.write().await.insert(path, body.clone());
            }
            let source = if from_cache { "from the cache" } else { "from the prices service" };
            (status, format!("{body} ({source})"))
        }
        Err(FuseboxError::Rejected(rejected)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not now: {rejected}")),
        Err(FuseboxError::Failed(error)) => (StatusCode::BAD_GATEWAY, format!("prices failed: {error}")),
    }
}

/// `GET /report`: a route whose work always fails here (its database is down).
async fn report() -> (StatusCode, &'static str) {
    (StatusCode::INTERNAL_SERVER_ERROR, "report generation failed")
}

/// The prices service: answers `GET /price/{item}` while healthy, 503 otherwise, and
/// counts the requests that reach it.
#[derive(Clone, Default)]
struct Prices {
    down: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
}

async fn price_list(State(prices): State<Prices>, uri: Uri) -> (StatusCode, String) {
    prices.requests.fetch_add(1, Ordering::Relaxed);
    if prices.down.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "prices are down".to_owned());
    }
    let item = uri.path().trim_start_matches("/price/");
    (StatusCode::OK, format!("{item}: {}", item.len() * 6))
}

/// Serves `router` on a free loopback port; its base URL.
async fn serve(router: Router) -> Result<String, std::io::Error> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(format!("http://{addr}"))
}

/// Trips at half of 10 calls failing; stays open for the rest of the run.
fn trip_config(calls: u32) -> BreakerConfig {
    BreakerConfig {
        trip: TripPolicy {
            window: WindowConfig::Count { calls },
            minimum_calls: calls,
            failure_rate: Some(0.5),
            ..TripPolicy::default()
        },
        open: OpenPolicy::Fixed { duration_ms: 60_000 },
        ..BreakerConfig::default()
    }
}

/// GETs `url` with a plain client (the storefront's own users): status and body.
async fn get_text(client: &reqwest::Client, url: &str) -> Result<(StatusCode, String), reqwest::Error> {
    let response = client.get(url).send().await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

/// Calls `url` until `breaker` is open (at most 10 s): how many calls that took.
async fn until_open(client: &reqwest::Client, url: &str, breaker: &Breaker) -> Result<u32, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut calls = 0;
    while breaker.state() != StateLabel::Open {
        if Instant::now() > deadline {
            return Err(format!("{} never opened", breaker.name()));
        }
        let (status, body) = get_text(client, url).await.map_err(|e| e.to_string())?;
        // A success only once the breaker opened mid-request (a retry rejected, the
        // fallback serving it).
        if status.is_success() && breaker.state() != StateLabel::Open {
            return Err(format!("{url} answered {status} while failing: {body}"));
        }
        calls += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(calls)
}

async fn run() -> Result<(), String> {
    let prices_state = Prices::default();
    let prices_url = serve(Router::new().fallback(price_list).with_state(prices_state.clone()))
        .await
        .map_err(|e| format!("prices service: {e}"))?;
    let registry = Registry::local().await.map_err(|e| e.to_string())?;
    let breaker = registry.breaker("prices", trip_config(10)).await.map_err(|e| e.to_string())?;
    let reports = registry.breaker("reports", trip_config(4)).await.map_err(|e| e.to_string())?;
    let cache = Cache::default();

    // guide: client stack
    let fallback_cache = cache.clone();
    let prices = ServiceBuilder::new()
        // Outermost: every attempt goes through the breaker and is counted; a rejection is
        // answered at once and not retried.
        .retry(RetryFailures { attempts_left: 2 })
        // The breaker: 5xx answers are failures; a rejected request is served from the cache.
        .layer(
            FuseboxLayer::new(breaker.clone())
                .classify_results_with(ServerErrorsAsFailures::new())
                .with_async_fallback(move |request, rejected| serve_cached(fallback_cache.clone(), request, rejected)),
        )
        // Bounds the calls in flight to the dependency; the fallback's answers wait for no slot.
        .concurrency_limit(64)
        // Inside the breaker: a call that times out is an error, which it counts as a failure.
        .timeout(Duration::from_secs(2))
        .map_response(http::Response::from)
        .service(reqwest::Client::new());
    // end

    // guide: routes
    let storefront =
        Router::new().route("/price/{item}", get(price)).with_state(Storefront { prices, prices_url, cache }).route(
            "/report",
            get(report).route_layer(
                ServiceBuilder::new()
                    // Turns the breaker's rejection into a response: axum routes do not fail.
                    .layer(HandleErrorLayer::new(|error: FuseboxError<Infallible>| async move {
                        (StatusCode::SERVICE_UNAVAILABLE, error.to_string())
                    }))
                    .layer(FuseboxLayer::new(reports.clone()).classify_results_with(ServerErrorsAsFailures::new())),
            ),
        );
    // end
    let storefront_url = serve(storefront).await.map_err(|e| format!("storefront: {e}"))?;
    let users = reqwest::Client::new();
    let apple = format!("{storefront_url}/price/apple");
    let get = |url: String| {
        let users = users.clone();
        async move { get_text(&users, &url).await.map_err(|e| format!("GET {url}: {e}")) }
    };

    let (status, body) = get(apple.clone()).await?;
    println!("healthy: {status} {body}");
    if status != StatusCode::OK {
        return Err("the healthy call failed".into());
    }

    prices_state.down.store(true, Ordering::Relaxed);
    let before = prices_state.requests.load(Ordering::Relaxed);
    let calls = until_open(&users, &apple, &breaker).await?;
    let attempts = prices_state.requests.load(Ordering::Relaxed) - before;
    println!("prices failing: the breaker opened after {calls} storefront requests, {attempts} attempts (503s)");

    let before = prices_state.requests.load(Ordering::Relaxed);
    let (status, body) = get(apple.clone()).await?;
    let reached = prices_state.requests.load(Ordering::Relaxed) - before;
    println!("open: {status} {body}; requests reaching the prices service: {reached}");
    if status != StatusCode::OK || !body.contains("from the cache") || reached != 0 {
        return Err("the open breaker's fallback did not serve from the cache".into());
    }
    let (status, body) = get(format!("{storefront_url}/price/pear")).await?;
    println!("open, not cached: {status} {body}");
    if status != StatusCode::SERVICE_UNAVAILABLE {
        return Err("a cache miss while open should be a 503".into());
    }

    let report_url = format!("{storefront_url}/report");
    let calls = until_open(&users, &report_url, &reports).await?;
    let (status, body) = get(report_url).await?;
    println!("/report after {calls} failures: {status} {body}");
    if status != StatusCode::SERVICE_UNAVAILABLE {
        return Err("the route's open breaker should shed with a 503".into());
    }
    registry.shutdown().await.map_err(|e| e.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("axum-guide: {error}");
            ExitCode::FAILURE
        }
    }
}
