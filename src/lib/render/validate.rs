//! A job validated whole: the core's rules ([`JobSpec::validate`]) and its renderer's —
//! the renderer's typed settings, and for the builtin the layer names it can render. The
//! same settings types are parsed again by the renderer when a task runs, so a job that
//! passes here renders with exactly the values checked here.

use super::{blender, builtin, command, noop, povray};
use crate::core::job::{Job, JobSpec, RendererKind};
use crate::core::problem::{FieldError, Invalid};

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
    if matches!(kind, RendererKind::Povray | RendererKind::Blender)
        && spec.scene.is_none()
        && spec.scene_manifest.is_none()
    {
        let example = if kind == RendererKind::Povray {
            "scene.pov"
        } else {
            "scene.blend"
        };
        problems.push(FieldError::new(
            "scene",
            format!("{kind} renders a scene file: set scene = \"{example}\""),
        ));
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
        check_invalid(
            "renderer = \"povray\"",
            "scene",
            "set scene = \"scene.pov\"",
        );
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
