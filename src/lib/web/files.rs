//! A job's pictures for the page: its outputs (whole, or as a thumbnail), and the previews
//! the collector writes of a tiled frame as its tiles land (the live mosaic). Names come
//! from the URL and are checked before they make a key: no `..`, no absolute path, nothing
//! outside the job's folders.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::api::{job_id, planned};
use super::{ApiError, ApiResult, Web};
use crate::core::job::JobId;
use crate::core::raster;
use crate::store::keys;

/// A thumbnail's object key and width.
type ThumbKey = (String, u32);

/// Thumbnails made lately, by key and size; the oldest is dropped past [`THUMBS_KEPT`].
#[derive(Default)]
pub(super) struct Thumbs {
    made: Mutex<(HashMap<ThumbKey, Bytes>, VecDeque<ThumbKey>)>,
}

/// Thumbnails kept in memory.
const THUMBS_KEPT: usize = 512;

/// The widest thumbnail asked for.
const THUMB_MAX: u32 = 1024;

impl Thumbs {
    fn get(&self, key: &ThumbKey) -> Option<Bytes> {
        let made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        made.0.get(key).cloned()
    }

    fn put(&self, key: ThumbKey, png: Bytes) {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if made.0.insert(key.clone(), png).is_none() {
            made.1.push_back(key);
        }
        while made.1.len() > THUMBS_KEPT {
            if let Some(old) = made.1.pop_front() {
                made.0.remove(&old);
            }
        }
    }
}

/// Whether `name` is a relative path of plain segments (no `..`, `.`, empty segment,
/// backslash or control character).
pub(super) fn is_plain_path(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 512
        && !name.starts_with('/')
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && !seg.chars().any(|c| c.is_control() || c == '\\')
        })
}

/// The content type of a file by its extension.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "json" => "application/json",
        "txt" | "log" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// One stored file.
#[derive(Debug, Serialize)]
pub(super) struct FileView {
    /// Its name within the folder.
    name: String,
    /// When it was written (ms since the epoch).
    modified_ms: u64,
    /// Whether a browser shows it as a picture (else it is offered as a download).
    picture: bool,
}

fn ms(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The outputs folder of a known job.
async fn outputs_folder(web: &Web, id: &JobId) -> ApiResult<String> {
    let (record, _) = planned(web, id).await?;
    Ok(keys::outputs_folder(
        id,
        record.spec.output.as_deref(),
        record.version,
    ))
}

/// `GET /api/jobs/{id}/outputs`: the job's outputs stored so far (frames appear as they
/// are assembled), in name order.
pub(super) async fn outputs(
    State(web): State<Web>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<FileView>>> {
    let id = job_id(&id)?;
    let folder = outputs_folder(&web, &id).await?;
    let listed = web
        .deps
        .store
        .list_dated(&folder)
        .await
        .map_err(anyhow::Error::from)?;
    Ok(Json(
        listed
            .into_iter()
            .filter(|(key, _)| !keys::is_version_record(&folder, key))
            .filter_map(|(key, at)| {
                let name = key.strip_prefix(&folder)?.to_string();
                Some(FileView {
                    picture: is_picture(&name),
                    name,
                    modified_ms: ms(at),
                })
            })
            .collect(),
    ))
}

/// Whether the image crate of this build reads it, to make a thumbnail.
fn is_picture(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".png") || lower.ends_with(".exr")
}

/// `?w=`: a thumbnail this wide (a PNG) instead of the file.
#[derive(Debug, Deserialize)]
pub(super) struct ThumbQuery {
    w: Option<String>,
}

/// `GET /api/jobs/{id}/outputs/{name}[?w=320]`: one output, or a PNG thumbnail of it.
pub(super) async fn output(
    State(web): State<Web>,
    Path((id, name)): Path<(String, String)>,
    Query(query): Query<ThumbQuery>,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    if !is_plain_path(&name) {
        return Err(ApiError::bad(format!(
            "output name {name:?} is not a plain relative path"
        )));
    }
    let width = match query.w.as_deref() {
        None => None,
        Some(text) => match text.parse::<u32>() {
            Ok(w) if (1..=THUMB_MAX).contains(&w) => Some(w),
            _ => {
                return Err(ApiError::bad(format!(
                    "w {text:?}: a thumbnail is 1 to {THUMB_MAX} pixels wide"
                )));
            }
        },
    };
    let folder = outputs_folder(&web, &id).await?;
    let key = keys::in_folder(&folder, &name);
    if keys::is_version_record(&folder, &key) {
        return Err(ApiError::not_found(format!(
            "{name} is not an output of {id}"
        )));
    }
    let bytes = read(&web, &key, || {
        format!("job {id} has no output {name} (yet)")
    })
    .await?;
    match width {
        None => Ok(([(header::CONTENT_TYPE, content_type(&name))], bytes).into_response()),
        Some(w) => {
            if !is_picture(&name) {
                return Err(ApiError::bad(format!(
                    "{name} is not a picture this dashboard makes thumbnails of (PNG or EXR)"
                )));
            }
            let png = thumbnail(&web, key, bytes, w).await?;
            Ok(png_response(png))
        }
    }
}

fn png_response(png: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        png,
    )
        .into_response()
}

/// Reads `key`, or a 404 saying `missing`.
async fn read(web: &Web, key: &str, missing: impl FnOnce() -> String) -> ApiResult<Bytes> {
    match web.deps.store.get(key).await {
        Ok(bytes) => Ok(bytes),
        Err(crate::store::StoreError::NotFound(_)) => Err(ApiError::not_found(missing())),
        Err(e) => Err(anyhow::Error::from(e).into()),
    }
}

/// A PNG of `bytes` (a PNG or EXR) `width` wide, made once per key and width.
async fn thumbnail(web: &Web, key: String, bytes: Bytes, width: u32) -> ApiResult<Bytes> {
    let cached = (key, width);
    if let Some(png) = web.thumbs.get(&cached) {
        return Ok(png);
    }
    let made = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let image = raster::decode(&bytes).map_err(|e| e.to_string())?;
        let (w, h) = crate::core::post::fit_width(image.width(), image.height(), width);
        let small = image
            .resize_exact(w, h, image::imageops::FilterType::Triangle)
            .to_rgba8();
        // Float (EXR) pictures are shown as stored, clipped to 0..1.
        raster::encode_image(
            &image::DynamicImage::ImageRgba8(small),
            crate::core::job::ImageFormat::Png,
        )
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| anyhow::anyhow!("making a thumbnail: {e}"))?
    .map_err(|e| ApiError::conflict(format!("{} cannot be read as a picture: {e}", cached.0)))?;
    let png = Bytes::from(made);
    web.thumbs.put(cached, png.clone());
    Ok(png)
}

/// `GET /api/jobs/{id}/previews`: the previews of the job's tiled frames, newest first.
pub(super) async fn previews(
    State(web): State<Web>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<FileView>>> {
    let id = job_id(&id)?;
    planned(&web, &id).await?;
    let folder = keys::previews_prefix(&id);
    let folder = folder.as_str();
    let mut listed: Vec<FileView> = web
        .deps
        .store
        .list_dated(folder)
        .await
        .map_err(anyhow::Error::from)?
        .into_iter()
        .filter_map(|(key, at)| {
            let name = key.strip_prefix(folder)?.strip_suffix(".png")?.to_string();
            Some(FileView {
                name,
                modified_ms: ms(at),
                picture: true,
            })
        })
        .collect();
    listed.sort_by(|a, b| b.modified_ms.cmp(&a.modified_ms).then(a.name.cmp(&b.name)));
    Ok(Json(listed))
}

/// `GET /api/jobs/{id}/previews/{name}`: one preview (a PNG, at most 1024 pixels a side).
pub(super) async fn preview(
    State(web): State<Web>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let name = name.strip_suffix(".png").unwrap_or(&name).to_string();
    if !is_plain_path(&name) {
        return Err(ApiError::bad(format!(
            "preview name {name:?} is not a plain name"
        )));
    }
    let key = keys::preview(&id, &name);
    let png = read(&web, &key, || {
        format!("job {id} has no preview {name} (yet)")
    })
    .await?;
    Ok(png_response(png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_make_keys() {
        let cases = [
            ("frame_0001.png", true),
            ("beauty/frame_0001.exr", true),
            ("", false),
            ("/etc/passwd", false),
            ("../other/output/x.png", false),
            ("a/../../b", false),
            ("a//b", false),
            ("./a", false),
            ("a\\..\\b", false),
            ("a\nb", false),
        ];
        for (name, plain) in cases {
            assert_eq!(is_plain_path(name), plain, "{name:?}");
        }
    }

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(content_type("a/B.PNG"), "image/png");
        assert_eq!(content_type("x.exr"), "application/octet-stream");
        assert_eq!(content_type("movie.mp4"), "video/mp4");
    }
}
