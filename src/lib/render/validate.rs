//! A job validated whole: the core's rules ([`JobSpec::validate`]) and its renderer's —
//! the renderer's typed settings, and for the builtin the layer names it can render — and
//! its scene as stored ([`stored_scene`]), for the planner. The
//! same settings types are parsed again by the renderer when a task runs, so a job that
//! passes here renders with exactly the values checked here.

use super::{blender, builtin, command, noop, povray};
use crate::core::job::{Job, JobSpec, RendererKind};
use crate::core::problem::{FieldError, Invalid};
use crate::store::package::{Manifest, sha256_hex};
use crate::store::{Store, StoreError, keys};

/// Validates `spec` with the core's rules and its renderer's, reporting every problem of
/// both at once.
pub fn validate(spec: JobSpec) -> Result<Job, Invalid> {
    let renderer = match spec.renderer.as_deref() {
        None => Some(RendererKind::Builtin),
        Some(name) => RendererKind::parse(name),
    };
    let own = renderer.map_or_else(Vec::new, |kind| renderer_problems(kind, &spec));
    match spec.validate() {
        Ok(job) if own.is_empty() => Ok(job),
        Ok(_) => Err(Invalid(own)),
        Err(Invalid(mut core)) => {
            core.extend(own);
            Err(Invalid(core))
        }
    }
}

/// Checks a validated job's scene in the store, for a job submitted by any NATS client: the
/// manifest must be there, and a POV-Ray scene's includes and data files must be among its
/// files (as `tessera submit` checks them in the folder). `Ok(Err(_))` is the job's fault;
/// `Err(_)` is the store's (try again).
pub async fn stored_scene(store: &Store, job: &Job) -> anyhow::Result<Result<(), Invalid>> {
    let Some(hex) = &job.scene_manifest else {
        return Ok(Ok(()));
    };
    let bytes = match store.get(&keys::manifest(hex)).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound(_)) => {
            return Ok(Err(Invalid::one(
                "scene_manifest",
                format!(
                    "no scene sha256:{hex} in the object store: upload the scene first (`tessera submit` does)"
                ),
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let manifest = match Manifest::parse(&bytes) {
        Ok(manifest) if sha256_hex(&bytes) == *hex => manifest,
        Ok(_) => {
            return Ok(Err(Invalid::one(
                "scene_manifest",
                format!("the stored scene sha256:{hex} does not match its hash"),
            )));
        }
        Err(e) => return Ok(Err(Invalid::one("scene_manifest", e.to_string()))),
    };
    if job.renderer != RendererKind::Povray {
        return Ok(Ok(()));
    }
    // The scene's text files, to follow its includes; data files need only exist.
    let mut texts = std::collections::HashMap::new();
    let mut read_bytes = 0usize;
    for (path, blob) in &manifest.files {
        let text = [".pov", ".inc", ".mcr"]
            .iter()
            .any(|ext| path.ends_with(ext));
        if text && read_bytes < MAX_SCENE_TEXT {
            let bytes = store.get(&keys::blob(blob)).await?;
            read_bytes += bytes.len();
            texts.insert(path.clone(), bytes.to_vec());
        }
    }
    let read = |path: &str| {
        manifest
            .files
            .contains_key(path)
            .then(|| texts.get(path).cloned().unwrap_or_default())
    };
    Ok(povray::scan::check(&manifest.entry, &read))
}

/// Most bytes of scene text the planner reads to follow a POV-Ray scene's includes.
const MAX_SCENE_TEXT: usize = 64 << 20;

/// What renderer `kind` finds wrong with `spec`'s settings and layers.
fn renderer_problems(kind: RendererKind, spec: &JobSpec) -> Vec<FieldError> {
    let settings = &spec.settings;
    let mut problems = match kind {
        RendererKind::Builtin => builtin::Settings::parse(settings).err(),
        RendererKind::Noop => noop::Settings::parse(settings).err(),
        RendererKind::Command => command::Settings::parse(settings).err(),
        RendererKind::Povray => povray::Settings::parse(settings).err(),
        RendererKind::Blender => blender::Settings::parse(settings).err(),
    }
    .map_or_else(Vec::new, |invalid| invalid.0);
    if kind == RendererKind::Blender
        && settings.get("multilayer") == Some(&serde_json::Value::Bool(true))
    {
        let exr = spec.image.as_ref().and_then(|i| i.format.as_deref()) == Some("exr");
        if !exr || spec.tiles.is_some() {
            problems.push(FieldError::new(
                "settings.multilayer",
                "multilayer EXR needs [image] format = \"exr\" and no [tiles] (tiles are stitched as single-layer images)",
            ));
        }
    }
    if kind == RendererKind::Povray
        && let Some(format) = spec.image.as_ref().and_then(|i| i.format.as_deref())
        && format != "png"
    {
        problems.push(FieldError::new(
            "image.format",
            format!("povray writes PNG, not {format:?}: set format = \"png\""),
        ));
    }
    if kind == RendererKind::Builtin {
        for (i, layer) in spec.layers.iter().enumerate() {
            if let Err(e) = builtin::Pass::from_layer(Some(&layer.name)) {
                problems.push(FieldError::new(format!("layers[{i}].name"), e.to_string()));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::from_toml;

    fn check_invalid(toml_text: &str, field: &str, needle: &str) {
        let spec = from_toml(&format!("id = \"j\"\n{toml_text}")).unwrap();
        let err = validate(spec).expect_err(toml_text);
        assert!(
            err.says(field, needle),
            "{toml_text}: {err} lacks {field}: …{needle}…"
        );
    }

    #[test]
    fn names_the_field_of_each_renderer_problem() {
        check_invalid(
            "[[layers]]\nname = \"beauty\"\n[[layers]]\nname = \"cryptomatte\"",
            "layers[1].name",
            "not a pass of the builtin renderer",
        );
        check_invalid(
            "[settings]\nbounces = 65",
            "settings.bounces",
            "from 0 to 64",
        );
        check_invalid(
            "[settings]\nsamples = 0",
            "settings.samples",
            "whole number",
        );
        check_invalid(
            "renderer = \"noop\"\n[settings]\nsleep_ms = -5",
            "settings.sleep_ms",
            "up to one day",
        );
        check_invalid(
            "renderer = \"noop\"\n[settings]\nfail = \"yes\"",
            "settings.fail",
            "true or false",
        );
        check_invalid("renderer = \"povray\"", "scene", "needs a scene");
        check_invalid(
            "renderer = \"povray\"\nscene = \"s.pov\"\n[image]\nformat = \"exr\"",
            "image.format",
            "povray writes PNG",
        );
        check_invalid(
            "renderer = \"povray\"\nscene = \"s.pov\"\n[settings]\nantialias = 9",
            "settings.antialias",
            "threshold",
        );
        check_invalid(
            "renderer = \"blender\"\nscene = \"s.blend\"\n[settings]\nsamples = 0",
            "settings.samples",
            "whole number",
        );
        check_invalid(
            "renderer = \"blender\"\nscene = \"s.blend\"\n[settings]\nmultilayer = true",
            "settings.multilayer",
            "needs [image] format = \"exr\"",
        );
        check_invalid(
            "renderer = \"command\"",
            "settings.command",
            "needs an argument list",
        );
        check_invalid(
            "renderer = \"command\"\n[settings]\ncommand = [\"r\", \"{frames}\"]",
            "settings.command",
            "not a placeholder",
        );
    }

    #[test]
    fn reports_core_and_renderer_problems_together() {
        let spec = from_toml("id = \"j\"\npriority = \"x\"\n[settings]\nsamples = 0").unwrap();
        let err = validate(spec).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["priority", "settings.samples"], "{err}");
    }

    #[test]
    fn accepts_what_the_renderer_takes() {
        let spec = from_toml(
            "id = \"j\"\n[[layers]]\nname = \"beauty\"\n[[layers]]\nname = \"depth\"\n[settings]\nsamples = 4\nbounces = 0",
        )
        .unwrap();
        assert_eq!(validate(spec).unwrap().layers.len(), 2);
    }
}
