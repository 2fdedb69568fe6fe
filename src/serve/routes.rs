//! HTTP routes. Every error is a JSON object `{"error": "..."}` with a 4xx/5xx status; nothing a
//! client sends can panic the server.
use super::batcher::{BatchError, Batcher};
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use base64::Engine;
use image::{GrayImage, RgbImage};
use realnet_data::image_io::{load_rgb_from_bytes, DecodeOptions};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The OpenAPI 3 document, kept next to this file and served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the handlers share.
pub struct App {
    pub batcher: Batcher,
    /// The `/v1/model` answer, built once at start.
    pub model: serde_json::Value,
    pub image_size: u32,
    pub threshold: f64,
    pub decode: DecodeOptions,
    /// Largest request body in bytes.
    pub max_body: usize,
    pub timeout: Duration,
}

type Shared = Arc<App>;

/// Every route: path, method (as in the OpenAPI document) and handler. The router is built from
/// this list and a test checks it against `openapi.json`, so the two cannot drift apart.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<Shared>)> {
    vec![
        ("/v1/predict", "post", post(predict)),
        ("/v1/model", "get", get(model)),
        ("/healthz", "get", get(healthz)),
        ("/openapi.json", "get", get(openapi)),
    ]
}

pub fn router(app: Shared) -> Router {
    let mut r = Router::new();
    for (path, _, handler) in routes() {
        r = r.route(path, handler);
    }
    let timeout = app.timeout;
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        // Applies to the body extractors (raw bytes and multipart): over it they answer 413.
        .layer(axum::extract::DefaultBodyLimit::max(app.max_body))
        .with_state(app)
}

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        let status = match e {
            BatchError::Busy(_) | BatchError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            BatchError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Ends any request (reading the body included) that takes longer than `timeout`; dropping the
/// handler also withdraws its images from the worker's queue.
async fn with_timeout(timeout: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request took longer than {} s (--timeout-s)",
                timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {}; see /openapi.json",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}; see /openapi.json",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn model(State(app): State<Shared>) -> Json<serde_json::Value> {
    Json(app.model.clone())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// One image's answer; the keys match `realnet predict`'s JSON lines.
#[derive(Debug, Serialize)]
struct ImageAnswer {
    /// The multipart file name (or field name); "body" for a raw upload.
    name: String,
    score: f64,
    normalised_score: f64,
    label: &'static str,
    threshold: f64,
    /// With `?map=png`: the S×S anomaly map as an 8-bit grayscale PNG, base64; pixel = round(255·p).
    #[serde(skip_serializing_if = "Option::is_none")]
    map_png: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map_size: Option<u32>,
}

/// `POST /v1/predict`: one raw image (`image/*`, `application/octet-stream` or no content type) or
/// `multipart/form-data` with one or more image parts.
async fn predict(
    State(app): State<Shared>,
    req: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let PredictRequest { want_map, images } =
        parse_predict(req, app.image_size, app.decode).await?;
    let (names, images): (Vec<String>, Vec<RgbImage>) = images.into_iter().unzip();
    let preds = predict_all(&app.batcher, images).await?;
    let threshold = app.threshold;
    let answers = tokio::task::spawn_blocking(move || {
        names
            .into_iter()
            .zip(preds)
            .map(|(name, p)| {
                let map_png = want_map.then(|| map_png(&p.map, p.size)).transpose()?;
                Ok(ImageAnswer {
                    name,
                    score: p.score,
                    normalised_score: p.normalised,
                    label: if p.anomalous { "anomalous" } else { "normal" },
                    threshold,
                    map_size: map_png.as_ref().map(|_| p.size),
                    map_png,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(serde_json::json!({ "predictions": answers })))
}

/// A `/v1/predict` request as the model sees it.
#[derive(Debug)]
pub struct PredictRequest {
    pub want_map: bool,
    /// (part or file name, image resized to `size`×`size`).
    pub images: Vec<(String, RgbImage)>,
}

/// Everything a predict request goes through before the model: query, content type, raw or
/// multipart body, decoding and resizing. Public for the HTTP fuzz target; every failure is a
/// 4xx [`ApiError`] naming the fault.
pub async fn parse_predict(
    req: Request,
    size: u32,
    dec: DecodeOptions,
) -> Result<PredictRequest, ApiError> {
    let want_map = wants_map(req.uri().query())?;
    let uploads = read_uploads(req).await?;
    // Decoding and resizing are CPU work: off the async threads, in parallel with other requests.
    let images = tokio::task::spawn_blocking(move || decode_all(&uploads, size, &dec))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(PredictRequest { want_map, images })
}

/// Queues every image with the worker, then awaits all answers.
async fn predict_all(
    batcher: &Batcher,
    images: Vec<RgbImage>,
) -> Result<Vec<crate::infer::Prediction>, ApiError> {
    let pending = images
        .into_iter()
        .map(|img| batcher.submit(img))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        out.push(p.wait().await?);
    }
    Ok(out)
}

/// `?map=png` asks for the anomaly map; `?map=none` (the default) does not.
fn wants_map(query: Option<&str>) -> Result<bool, ApiError> {
    let mut want = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("map", "png") => want = true,
            ("map", "none") => want = false,
            ("map", other) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("map={other} is not supported: use map=png or map=none"),
                ))
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter '{k}': only map=png|none"),
                ))
            }
        }
    }
    Ok(want)
}

/// The request's images as (name, bytes), by content type.
async fn read_uploads(req: Request) -> Result<Vec<(String, Bytes)>, ApiError> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("").to_ascii_lowercase());
    let essence = ctype
        .as_deref()
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string());
    match essence.as_deref() {
        Some("multipart/form-data") => read_multipart(req).await,
        // No content type: the bytes are sniffed like any file.
        None | Some("application/octet-stream") => read_raw(req).await,
        Some(c) if c.starts_with("image/") => read_raw(req).await,
        Some(c) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type '{c}' is not accepted: send the image bytes as image/* or \
                 application/octet-stream, or several images as multipart/form-data \
                 (with curl: --data-binary @x.png -H 'Content-Type: image/png', or -F image=@x.png)"
            ),
        )),
    }
}

async fn read_raw(req: Request) -> Result<Vec<(String, Bytes)>, ApiError> {
    let body = Bytes::from_request(req, &())
        .await
        .map_err(|r| ApiError::new(r.status(), body_error(r.status(), r.body_text())))?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty body: send the image file's bytes",
        ));
    }
    Ok(vec![("body".into(), body)])
}

async fn read_multipart(req: Request) -> Result<Vec<(String, Bytes)>, ApiError> {
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    let mut out = Vec::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(ApiError::new(
                    e.status(),
                    body_error(e.status(), e.body_text()),
                ))
            }
        };
        let name = field
            .file_name()
            .or(field.name())
            .map(str::to_string)
            .unwrap_or_else(|| format!("part {}", out.len() + 1));
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::new(e.status(), body_error(e.status(), e.body_text())))?;
        if bytes.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{name}: empty part"),
            ));
        }
        out.push((name, bytes));
    }
    if out.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "multipart body without parts: add one part per image",
        ));
    }
    Ok(out)
}

/// axum's rejection text, with the flag to change when the body was too large.
fn body_error(status: StatusCode, text: String) -> String {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("{text} (the server's --max-body-mb)")
    } else {
        text
    }
}

/// Decodes and resizes with the same loader as `realnet predict`; the first bad image fails the
/// request (422) and is named.
fn decode_all(
    uploads: &[(String, Bytes)],
    size: u32,
    opts: &DecodeOptions,
) -> Result<Vec<(String, RgbImage)>, ApiError> {
    uploads
        .iter()
        .map(|(name, bytes)| {
            load_rgb_from_bytes(bytes, Path::new(name), Some((size, size)), opts)
                .map(|img| (name.clone(), img))
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
        })
        .collect()
}

/// The [0, 1] map as an 8-bit grayscale PNG (round(255·p)), base64.
fn map_png(map: &[f32], size: u32) -> Result<String, ApiError> {
    let px = map
        .iter()
        .map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let internal = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
    let img = GrayImage::from_raw(size, size, px)
        .ok_or_else(|| internal(format!("map has {} values, not {size}²", map.len())))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| internal(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document_and_back() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        let routes = routes();
        for (path, method, _) in &routes {
            assert!(
                paths.get(*path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} is not in openapi.json"
            );
        }
        for (path, ops) in paths {
            for method in ops.as_object().unwrap().keys() {
                assert!(
                    routes.iter().any(|(p, m, _)| p == path && m == method),
                    "openapi.json has {method} {path}, which the server does not route"
                );
            }
        }
    }

    #[test]
    fn query_parsing() {
        assert!(!wants_map(None).unwrap());
        assert!(wants_map(Some("map=png")).unwrap());
        assert!(!wants_map(Some("map=none")).unwrap());
        assert_eq!(wants_map(Some("map=jpg")).unwrap_err().status, 400);
        assert_eq!(wants_map(Some("foo=1")).unwrap_err().status, 400);
    }

    #[test]
    fn map_png_round_trips() {
        let map = vec![0.0, 0.5, 1.0, 2.0];
        let b64 = map_png(&map, 2).unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let img = image::load_from_memory(&png).unwrap().to_luma8();
        assert_eq!(img.as_raw(), &[0, 128, 255, 255]);
        assert!(map_png(&map, 3).is_err());
    }
}
