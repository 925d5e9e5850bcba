//! The orchestrator's internal HTTP API, in OpenFaaS's `/system/...` shapes (documented in
//! `orchestrator/openapi.yaml`). The gateway forwards `/system/*` here.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_common::registry;

pub mod auth;
mod keys;
mod secrets;

use crate::error::{Error, ErrorKind};
use crate::functions::actor::FunctionStatus;
use crate::functions::Supervisor;
use crate::reload::Reloader;
use crate::state::Source;

#[derive(Clone)]
pub struct Api {
    pub sup: Arc<Supervisor>,
    pub reloader: Arc<Reloader>,
    /// The MDF pool as last observed (None: no pool).
    pub mdf: Option<tokio::sync::watch::Receiver<crate::mdf::PoolView>>,
    /// Credentials of every `/system` route, and the API keys.
    pub guard: Arc<auth::Guard>,
}

pub fn router(api: Api) -> Router {
    let guard = api.guard.clone();
    let system = Router::new()
        .route("/system/info", get(info))
        .route(
            "/system/functions",
            get(list).post(deploy).put(update).delete(delete),
        )
        .route("/system/function/{name}", get(get_one))
        .route("/system/scale-function/{name}", post(scale))
        .route("/system/registry", get(registry_status))
        .route("/system/registry/reload", post(reload))
        .route("/system/mdf", get(mdf_pool))
        .route("/system/keys", get(keys::list).post(keys::create))
        .route("/system/keys/{id}", axum::routing::delete(keys::revoke))
        .route(
            "/system/secrets",
            get(secrets::list)
                .post(secrets::create)
                .put(secrets::update)
                .delete(secrets::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            guard.clone(),
            auth::require,
        ))
        .with_state(api.clone());
    // Reached by control-plane services only, never forwarded by the gateway.
    let internal = Router::new()
        .route(
            sluice_common::auth::VERIFY_INVOKE_PATH,
            post(auth::verify_invoke),
        )
        .with_state(guard)
        .merge(
            Router::new()
                .route(
                    &format!("{}/{{name}}", sluice_common::auth::WAKE_PATH),
                    post(wake),
                )
                .route("/healthz", get(healthz))
                .with_state(api),
        );
    system.merge(internal)
}

/// An API error as JSON `{"error": ..., "function": ...}`.
struct ApiError {
    status: StatusCode,
    error: String,
    function: Option<String>,
    details: Option<Vec<String>>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>, function: Option<&str>) -> Self {
        ApiError {
            status,
            error: error.into(),
            function: function.map(str::to_string),
            details: None,
        }
    }

    fn from_error(e: Error, function: Option<&str>) -> Self {
        let status = match e.kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::InvalidRequest | ErrorKind::Registry => StatusCode::BAD_REQUEST,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.message, function)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error });
        if let Some(f) = self.function {
            body["function"] = Value::String(f);
        }
        if let Some(d) = self.details {
            body["errors"] = json!(d);
        }
        (self.status, Json(body)).into_response()
    }
}

/// A JSON body whose rejection (missing, malformed, wrong types) is a JSON 400 like every
/// other API error.
struct JsonBody<T>(T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        // The body is read as JSON whatever its Content-Type says: `curl -d '{...}'` (which
        // sends a form type) works as a JSON client does.
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text(), None))?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not the JSON expected: {e}"),
                None,
            )
        })
    }
}

/// The OpenFaaS function shape plus Sluice's own fields.
fn function_json(s: &FunctionStatus) -> Value {
    let spec = &s.spec;
    json!({
        "name": spec.name,
        "image": s.build.image,
        "replicas": s.desired,
        "availableReplicas": s.ready,
        "startingReplicas": s.starting,
        "pooledReplicas": s.pooled,
        "envVars": spec.env,
        "labels": { "sluice.function": spec.name, "sluice.version": spec.version },
        "limits": {
            "memory": spec.limits.memory_bytes.to_string(),
            "cpu": spec.limits.cpus.to_string(),
        },
        "version": spec.version,
        "language": spec.language,
        "mode": spec.mode,
        "auth": spec.auth,
        "source": s.source,
        "removing": s.removing,
        "build": s.build,
        "crashLoop": s.crash_loop,
        "replicaList": s.replicas,
        "spec": spec,
    })
}

async fn healthz(State(api): State<Api>) -> Response {
    let ctx = api.sup.ctx();
    let (docker, redis) = tokio::join!(ctx.engine.ping(), ctx.store.ping());
    let ok = docker.is_ok() && redis.is_ok();
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "docker": docker.err().map(|e| e.to_string()),
        "redis": redis.err().map(|e| e.to_string()),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn info() -> Json<Value> {
    Json(json!({
        "provider": { "provider": "sluice", "orchestration": "docker", "version": sluice_common::SLUICE_VERSION },
        "version": { "release": sluice_common::SLUICE_VERSION },
    }))
}

async fn list(State(api): State<Api>) -> Json<Value> {
    let all = api.sup.list().await;
    Json(Value::Array(all.iter().map(function_json).collect()))
}

async fn get_one(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match api.sup.status(&name).await {
        Some(s) => Ok(Json(function_json(&s))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("function `{name}` not found"),
            Some(&name),
        )),
    }
}

/// Validates a deploy body: the registry entry's fields as JSON, named by `name` (or
/// OpenFaaS's `service`).
fn parse_deploy(api: &Api, body: &Value) -> Result<registry::FunctionSpec, ApiError> {
    let name = body
        .get("name")
        .or_else(|| body.get("service"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "`name` is required", None))?
        .to_string();
    let mut entry = body.clone();
    if let Some(obj) = entry.as_object_mut() {
        obj.remove("service");
        obj.entry("name").or_insert(Value::String(name.clone()));
    }
    registry::parse_entry_json(&name, &entry, Some(&api.sup.ctx().functions_dir)).map_err(|errs| {
        let lines: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid function definition ({} error(s))", lines.len()),
            Some(&name),
        );
        e.details = Some(lines);
        e
    })
}

/// The platform's ceilings for a function deployed alone: its own, and the total with every
/// other function's `max_replicas`.
async fn check_ceilings(api: &Api, spec: &registry::FunctionSpec) -> Result<(), ApiError> {
    let others: u64 = api
        .sup
        .sources()
        .await
        .iter()
        .filter(|(n, _)| **n != spec.name)
        .map(|(_, (_, s))| u64::from(s.scaling.max_replicas))
        .sum();
    api.sup
        .ctx()
        .ceilings
        .check_spec(&spec.name, spec, others)
        .map_err(|errs| {
            let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            let mut e = ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("above the platform's ceilings ({} error(s))", lines.len()),
                Some(&spec.name),
            );
            e.details = Some(lines);
            e
        })
}

/// Every secret a deployed function lists exists (its replicas could not start otherwise).
async fn check_secrets(api: &Api, spec: &registry::FunctionSpec) -> Result<(), ApiError> {
    let missing = api
        .sup
        .ctx()
        .secrets
        .missing(&spec.secrets)
        .await
        .map_err(|e| ApiError::from_error(e, Some(&spec.name)))?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        format!(
            "secrets: {} not found; create them with POST /system/secrets first",
            missing.join(", ")
        ),
        Some(&spec.name),
    ))
}

async fn deploy(
    State(api): State<Api>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let spec = parse_deploy(&api, &body)?;
    check_ceilings(&api, &spec).await?;
    check_secrets(&api, &spec).await?;
    let name = spec.name.clone();
    if let Some(s) = api.sup.status(&name).await {
        if s.source == Source::File && !s.removing {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "function is defined in the registry file; change it there",
                Some(&name),
            ));
        }
    }
    api.sup.upsert(spec, Source::Api).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "function": name, "status": "deploying" })),
    )
        .into_response())
}

async fn update(
    State(api): State<Api>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let spec = parse_deploy(&api, &body)?;
    check_ceilings(&api, &spec).await?;
    check_secrets(&api, &spec).await?;
    let name = spec.name.clone();
    match api.sup.status(&name).await {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("function `{name}` not found"),
            Some(&name),
        )),
        Some(s) if s.source == Source::File => Err(ApiError::new(
            StatusCode::CONFLICT,
            "function is defined in the registry file; change it there",
            Some(&name),
        )),
        Some(_) => {
            api.sup.upsert(spec, Source::Api).await;
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "function": name, "status": "updating" })),
            )
                .into_response())
        }
    }
}

#[derive(Deserialize)]
struct DeleteBody {
    #[serde(rename = "functionName")]
    function_name: String,
}

async fn delete(
    State(api): State<Api>,
    JsonBody(body): JsonBody<DeleteBody>,
) -> Result<Response, ApiError> {
    let name = body.function_name;
    match api.sup.status(&name).await {
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("function `{name}` not found"),
                Some(&name),
            ))
        }
        Some(s) if s.source == Source::File => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "function is defined in the registry file; remove it there",
                Some(&name),
            ))
        }
        Some(_) => {}
    }
    api.sup
        .begin_remove(&name)
        .await
        .map_err(|e| ApiError::from_error(e, Some(&name)))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "function": name, "status": "removing" })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ScaleBody {
    replicas: i64,
}

async fn scale(
    State(api): State<Api>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ScaleBody>,
) -> Result<Response, ApiError> {
    let replicas = u32::try_from(body.replicas).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "replicas must be a non-negative integer, got {}",
                body.replicas
            ),
            Some(&name),
        )
    })?;
    api.sup
        .scale(&name, replicas)
        .await
        .map_err(|e| ApiError::from_error(e, Some(&name)))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "function": name, "replicas": replicas })),
    )
        .into_response())
}

/// Scale-from-zero, called by the gateway when a request arrives for a function with no
/// ready replica. Never lowers the desired count.
async fn wake(State(api): State<Api>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let desired = api
        .sup
        .wake(&name)
        .await
        .map_err(|e| ApiError::from_error(e, Some(&name)))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "function": name, "replicas": desired })),
    )
        .into_response())
}

async fn mdf_pool(State(api): State<Api>) -> Response {
    match &api.mdf {
        Some(view) => Json(json!(*view.borrow())).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "no MDF pool (SLUICE_MDF_POOL_MAX is 0)",
            None,
        )
        .into_response(),
    }
}

async fn registry_status(State(api): State<Api>) -> Json<Value> {
    let st = api.reloader.status.lock().await.clone();
    Json(json!(st))
}

async fn reload(State(api): State<Api>) -> Response {
    match api.reloader.reload().await {
        Ok(()) => {
            let st = api.reloader.status.lock().await.clone();
            (StatusCode::OK, Json(json!(st))).into_response()
        }
        Err(errors) => {
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "registry rejected ({} error(s)); the previous one stays in force",
                    errors.len()
                ),
                None,
            );
            e.details = Some(errors);
            e.into_response()
        }
    }
}
