//! The files a POV-Ray scene refers to, found at submit time: `#include` files (followed
//! recursively) and the files of image maps, height fields, bump and material maps, fonts
//! and density files. A reference that names no file of the scene folder (nor one of
//! POV-Ray's standard include files) is refused with the file and line that make it.
//!
//! This reads the scene's text as POV-Ray's tokenizer would for these forms: comments
//! skipped, a string literal right after `#include`, after a file type keyword (`png`,
//! `jpeg`, `ttf`, …), or first inside `image_map {` and its kin. A name computed by the
//! scene (`concat`, a macro parameter) cannot be known before parsing and is not checked.

use std::collections::BTreeSet;

use crate::core::paths::check_relative_path;
use crate::core::problem::{Invalid, Problems};

/// What kind of reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `#include "…"`.
    Include,
    /// A data file: an image map, height field, font, density file.
    Data,
}

/// One reference in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// 1-based line of the referring file.
    pub line: u32,
    /// What it is.
    pub kind: Kind,
    /// The keyword before the name (`#include`, `png`, `image_map`, …).
    pub keyword: String,
    /// The file named.
    pub name: String,
}

/// Keywords a file name string follows directly.
const FILE_TYPES: [&str; 14] = [
    "png", "jpeg", "jpg", "tga", "gif", "iff", "ppm", "pgm", "sys", "hdr", "exr", "tiff", "bmp",
    "ttf",
];

/// Blocks whose first string may be a file name without a type keyword.
const MAP_BLOCKS: [&str; 6] = [
    "image_map",
    "bump_map",
    "material_map",
    "height_field",
    "image_pattern",
    "normal_map",
];

/// The include and data files of POV-Ray 3.7's standard library, found on its library path
/// whatever the scene folder holds.
const STANDARD: &[&str] = &[
    "Mount1.png",
    "Mount2.png",
    "arrays.inc",
    "ash.map",
    "benediti.map",
    "bubinga.map",
    "bumpmap_.png",
    "cedar.map",
    "chars.inc",
    "colors.inc",
    "consts.inc",
    "crystal.ttf",
    "cyrvetic.ttf",
    "debug.inc",
    "finish.inc",
    "fract003.png",
    "functions.inc",
    "glass.inc",
    "glass_old.inc",
    "golds.inc",
    "ior.inc",
    "logo.inc",
    "makegrass.inc",
    "marbteal.map",
    "math.inc",
    "meshmaker.inc",
    "metals.inc",
    "mtmand.pot",
    "mtmandj.png",
    "orngwood.map",
    "pinkmarb.map",
    "plasma2.png",
    "plasma3.png",
    "povlogo.ttf",
    "povmap.png",
    "rad_def.inc",
    "rand.inc",
    "rdgranit.map",
    "screen.inc",
    "shapes.inc",
    "shapes2.inc",
    "shapes3.inc",
    "shapes_old.inc",
    "shapesq.inc",
    "skies.inc",
    "spiral.df3",
    "stage1.inc",
    "stars.inc",
    "stdcam.inc",
    "stdinc.inc",
    "stoneold.inc",
    "stones.inc",
    "stones1.inc",
    "stones2.inc",
    "strings.inc",
    "sunpos.inc",
    "teak.map",
    "test.png",
    "textures.inc",
    "timrom.ttf",
    "transforms.inc",
    "ttffonts.cat",
    "whiteash.map",
    "woodmaps.inc",
    "woods.inc",
];

/// A token of the scene text, with its line.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Punct(char),
}

fn tokens(text: &str) -> Vec<(u32, Token)> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line) = (0, 1u32);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                // POV-Ray's block comments nest.
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '"' => {
                let start_line = line;
                let mut value = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '"' && chars[i] != '\n' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        value.push(chars[i + 1]);
                        i += 2;
                    } else {
                        value.push(chars[i]);
                        i += 1;
                    }
                }
                i += 1;
                out.push((start_line, Token::Text(value)));
            }
            c if c.is_alphanumeric() || c == '_' || c == '#' => {
                let mut word = String::new();
                word.push(c);
                i += 1;
                // `# include` is the same directive as `#include`.
                if c == '#' {
                    while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                        i += 1;
                    }
                }
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    word.push(chars[i]);
                    i += 1;
                }
                out.push((line, Token::Word(word)));
            }
            c if c.is_whitespace() => i += 1,
            c => {
                out.push((line, Token::Punct(c)));
                i += 1;
            }
        }
    }
    out
}

/// The references made by one file's text.
pub fn references(text: &str) -> Vec<Reference> {
    let tokens = tokens(text);
    let mut out = Vec::new();
    for (i, (line, token)) in tokens.iter().enumerate() {
        let Token::Text(name) = token else { continue };
        let before = |back: usize| i.checked_sub(back).map(|j| &tokens[j].1);
        let (kind, keyword) = match (before(1), before(2)) {
            (Some(Token::Word(w)), _) if w == "#include" => (Kind::Include, w.clone()),
            (Some(Token::Word(w)), _) if FILE_TYPES.contains(&w.as_str()) => {
                (Kind::Data, w.clone())
            }
            (Some(Token::Punct('{')), Some(Token::Word(w))) if MAP_BLOCKS.contains(&w.as_str()) => {
                (Kind::Data, w.clone())
            }
            _ => continue,
        };
        out.push(Reference {
            line: *line,
            kind,
            keyword,
            name: name.clone(),
        });
    }
    out
}

/// Checks every file `entry` refers to, following includes: `read` gives the text of a
/// scene file by its path relative to the scene folder, `None` when the folder has no such
/// file. Every missing or outside file is one problem, under `scene`.
pub fn check(entry: &str, read: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<(), Invalid> {
    let mut problems = Problems::default();
    let mut seen = BTreeSet::from([entry.to_string()]);
    let mut queue = vec![entry.to_string()];
    while let Some(file) = queue.pop() {
        let Some(bytes) = read(&file) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        for reference in references(&text) {
            let what = format!(
                "{file} line {}: {} \"{}\"",
                reference.line, reference.keyword, reference.name
            );
            if check_relative_path(&reference.name).is_err() {
                problems.add(
                    "scene",
                    format!("{what} names a file outside the scene folder; put it in the folder and name it relative to it"),
                );
                continue;
            }
            // POV-Ray tries the name as given, then with `.inc` for an include.
            let candidates = match reference.kind {
                Kind::Include => vec![reference.name.clone(), format!("{}.inc", reference.name)],
                Kind::Data => vec![reference.name.clone()],
            };
            let found = candidates.iter().find(|c| read(c).is_some());
            match found {
                Some(name) => {
                    if reference.kind == Kind::Include && seen.insert(name.clone()) {
                        queue.push(name.clone());
                    }
                }
                None if STANDARD.contains(&reference.name.as_str()) => {}
                None => problems.add(
                    "scene",
                    format!(
                        "{what}: no such file in the scene folder (nor a POV-Ray standard include)"
                    ),
                ),
            }
        }
    }
    problems.into_result(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_includes_and_data_files_but_not_comments_or_other_strings() {
        let text = r#"#include "colors.inc"
// #include "commented.inc"
/* a /* nested */ comment "x.png" */
# include "spaced.inc"
plane { y, 0 pigment { image_map { png "tex/checker.png" } } }
height_field { "hf.png" }
text { ttf "font.ttf" "Hello" 0.1, 0 }
#declare Name = "not a file";
"#;
        let found = references(text);
        let found: Vec<(u32, Kind, &str, &str)> = found
            .iter()
            .map(|r| (r.line, r.kind, r.keyword.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (1, Kind::Include, "#include", "colors.inc"),
                (4, Kind::Include, "#include", "spaced.inc"),
                (5, Kind::Data, "png", "tex/checker.png"),
                (6, Kind::Data, "height_field", "hf.png"),
                (7, Kind::Data, "ttf", "font.ttf"),
            ]
        );
    }

    #[test]
    fn follows_includes_and_names_every_missing_file_with_its_line() {
        let files = [
            (
                "scene.pov",
                "#include \"colors.inc\"\n#include \"lights\"\n#include \"gone.inc\"\n",
            ),
            (
                "lights.inc",
                "\n\nsphere { 0, 1 pigment { image_map { png \"missing.png\" } } }\n#include \"scene.pov\"\n",
            ),
        ];
        let read = |name: &str| {
            files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.as_bytes().to_vec())
        };
        let err = check("scene.pov", &read).unwrap_err();
        let messages: Vec<&str> = err.0.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{err}");
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("scene.pov line 3: #include \"gone.inc\": no such file")),
            "{err}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("lights.inc line 3: png \"missing.png\": no such file")),
            "{err}"
        );
        let outside = |name: &str| (name == "s.pov").then(|| b"#include \"../x.inc\"".to_vec());
        let err = check("s.pov", &outside).unwrap_err();
        assert!(
            err.to_string().contains("outside the scene folder"),
            "{err}"
        );
    }
}
