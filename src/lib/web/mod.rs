//! `tessera web`: the dashboard. An HTTP server (axum) that reads what the other roles
//! keep (the ledger, the worker registry, the task queues, previews and outputs in the
//! store) and pushes the job events it follows in `TESSERA_EVENTS` to the page as
//! server-sent events. It keeps nothing of its own, so several may run.
//!
//! The page (`assets/`: one HTML file, one script, one style sheet, no build step) is
//! compiled into the binary. Every route is in `router`; who may call them is in
//! [`access`].

pub mod access;
mod api;
mod files;
mod live;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::config::Deps;
use access::Token;

/// Where the dashboard listens unless told otherwise.
pub const LISTEN: &str = "127.0.0.1:8080";

/// The flags of `tessera web` (and of `tessera up`'s dashboard).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WebArgs {
    /// Where the dashboard listens (default 127.0.0.1:8080; `tessera up` takes a free
    /// port when that one is taken). Beyond loopback it needs a token.
    #[arg(long = "listen", env = "TESSERA_WEB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Accepted tokens, comma-separated, each `NAME:SECRET` (the name is logged with the
    /// actions it takes) or a bare secret of 16 characters or more. Prefer the environment
    /// variable: a flag shows in the process list.
    #[arg(long = "token", env = "TESSERA_WEB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl WebArgs {
    /// The tokens given, checked.
    pub fn tokens(&self) -> anyhow::Result<Vec<Token>> {
        self.token
            .as_deref()
            .map_or(Ok(Vec::new()), access::parse_tokens)
            .map_err(|e| anyhow::anyhow!("--token: {e}"))
    }

    /// The dashboard's configuration: listening where given, else on [`LISTEN`].
    pub fn config(&self) -> anyhow::Result<WebConfig> {
        Ok(WebConfig {
            listen: self
                .listen
                .unwrap_or_else(|| LISTEN.parse().expect("a valid address")),
            tokens: self.tokens()?,
        })
    }
}

/// How the dashboard is served.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Address to listen on (port 0: any free one).
    pub listen: SocketAddr,
    /// Accepted tokens; none: loopback only.
    pub tokens: Vec<Token>,
}

/// What every handler is given.
#[derive(Clone)]
struct Web {
    deps: Deps,
    tokens: Arc<Vec<Token>>,
    thumbs: Arc<files::Thumbs>,
}

/// An error as the page and any HTTP client read it: a status and `{"error": "…"}`.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, message.into())
    }

    fn conflict(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::CONFLICT, message.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        tracing::warn!(error = format!("{e:#}"), "a dashboard request failed");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Every route of the dashboard.
fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/api/farm", get(api::farm))
        .route("/api/workers/{id}", get(api::worker))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/tasks", get(api::tasks))
        .route("/api/jobs/{id}/tasks/{index}", get(api::task))
        .route("/api/jobs/{id}/tasks/{index}/log", get(api::log))
        .route("/api/jobs/{id}/tasks/{index}/log/live", get(live::log))
        .route("/api/jobs/{id}/outputs", get(files::outputs))
        .route("/api/jobs/{id}/outputs/{*name}", get(files::output))
        .route("/api/jobs/{id}/previews", get(files::previews))
        .route("/api/jobs/{id}/previews/{name}", get(files::preview))
        .route("/api/jobs/{id}/{action}", post(api::act))
        .route("/api/events", get(live::events))
        .fallback(|| async { ApiError::not_found("no such page or endpoint") })
        .layer(axum::middleware::from_fn_with_state(web.clone(), admit))
        .with_state(web)
}

/// Who is calling, once admitted (`local` on a dashboard without tokens).
#[derive(Debug, Clone)]
struct Who(String);

/// Admits a request (see [`access`]); a page opened with a valid `?token=` gets the
/// cookie and is sent on without it.
async fn admit(State(web): State<Web>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let query_token = request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let presented = access::Presented {
        authorization: text(header::AUTHORIZATION),
        cookie: text(header::COOKIE),
        query: query_token.as_deref(),
        host: text(header::HOST),
        origin: text(header::ORIGIN),
    };
    let action = request.method() == axum::http::Method::POST;
    match access::admit(&web.tokens, presented, action) {
        Ok(who) => {
            if let Some(token) = query_token.filter(|t| access::is_token(&web.tokens, t))
                && request.uri().path() == "/"
            {
                let cookie = format!(
                    "{}={token}; Path=/; HttpOnly; SameSite=Strict",
                    access::COOKIE
                );
                return (
                    StatusCode::SEE_OTHER,
                    [(header::SET_COOKIE, cookie), (header::LOCATION, "/".into())],
                )
                    .into_response();
            }
            request.extensions_mut().insert(Who(who));
            next.run(request).await
        }
        Err(refusal) => {
            let from = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.to_string())
                .unwrap_or_default();
            tracing::info!(%from, path = request.uri().path(), refused = ?refusal, "dashboard request refused");
            let status = match refusal {
                access::Refusal::Token => StatusCode::UNAUTHORIZED,
                _ => StatusCode::FORBIDDEN,
            };
            ApiError(status, refusal.message().into()).into_response()
        }
    }
}

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// Pages are stored with each release: no cache between two versions of the dashboard.
fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// Serves the dashboard until `shutdown`; returns the address bound once listening, and
/// the server's task. Refuses to listen beyond loopback without a token.
pub async fn serve(
    deps: Deps,
    config: WebConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    access::check_listen(&config.listen, &config.tokens).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen", config.listen))?;
    let bound = listener.local_addr()?;
    let web = Web {
        deps,
        tokens: Arc::new(config.tokens),
        thumbs: Arc::new(files::Thumbs::default()),
    };
    let app = router(web).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        let stopped = shutdown.cancelled_owned();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %e, "the dashboard stopped");
        }
    });
    tracing::info!(%bound, "dashboard at http://{bound}/");
    Ok((bound, task))
}

/// Runs `tessera web` until `shutdown`; `ready` is called with the dashboard's URL.
pub async fn run(
    deps: Deps,
    config: WebConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(&str),
) -> anyhow::Result<()> {
    let (bound, task) = serve(deps, config, shutdown).await?;
    ready(&format!("http://{bound}/"));
    task.await.context("the dashboard's task")?;
    Ok(())
}
