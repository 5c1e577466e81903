//! The house rules a reviewer would otherwise have to remember, checked on every
//! `cargo test` (rust-analyzer's `tidy.rs`):
//!
//! - every source file starts with a `//!` comment that says what it is for;
//! - subjects are built only in the protocol module: no string literal starting with
//!   `tessera.` elsewhere in `src/`;
//! - the pure core (`src/lib/core/`) imports no tokio, async-nats, object_store, renderer or
//!   any module above it;
//! - a role never imports another role, and nothing below the roles imports one.
//!
//! Each rule is a function over a file's path and text, so the tests at the bottom plant
//! one violation of each kind and watch the rule catch it.

use std::path::{Path, PathBuf};

/// Where subjects may be built.
const PROTOCOL: &str = "src/lib/bus/protocol/";
/// The pure core.
const CORE: &str = "src/lib/core/";
/// The roles.
const ROLES: &str = "src/lib/roles/";
/// What a core file may not name: I/O crates and every module above the core.
const NOT_IN_CORE: [&str; 12] = [
    "tokio",
    "async_nats",
    "object_store",
    "crate::render",
    "crate::bus",
    "crate::store",
    "crate::roles",
    "crate::config",
    "crate::lifecycle",
    "crate::farm",
    "crate::bench",
    "crate::web",
];
/// Files above the roles, which may start them.
const ABOVE_ROLES: [&str; 3] = ["src/lib/farm.rs", "src/lib/bench/", "src/lib/web/"];

/// A file's code split into what the rules look at: the code with comments and string
/// contents blanked out, and the string literals themselves.
struct Lexed {
    code: String,
    strings: Vec<String>,
}

/// Separates code, comments and string literals (plain, byte and raw strings; char
/// literals and lifetimes are told apart). Comments are dropped; string contents are
/// collected and blanked from the code, so a rule about imports never matches inside a
/// string or a comment, and a rule about literals never matches code.
fn lex(text: &str) -> Lexed {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut strings = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
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
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && is_raw_start(&chars, i) {
            let mut j = i + 1;
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            let start = j;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    break;
                }
                j += 1;
            }
            strings.push(chars[start..j.min(chars.len())].iter().collect());
            code.push_str("\"\"");
            i = j + 1 + hashes;
        } else if c == '"' {
            let mut j = i + 1;
            let mut literal = String::new();
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                if let Some(&ch) = chars.get(j) {
                    literal.push(ch);
                }
                j += 1;
            }
            strings.push(literal);
            code.push_str("\"\"");
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\'') or a lifetime ('a).
            let close = if next == Some('\\') {
                (i + 2..chars.len().min(i + 12)).find(|&j| chars[j] == '\'')
            } else {
                (chars.get(i + 2) == Some(&'\'')).then_some(i + 2)
            };
            match close {
                Some(j) => {
                    code.push_str("' '");
                    i = j + 1;
                }
                None => {
                    code.push(c);
                    i += 1;
                }
            }
        } else {
            code.push(c);
            i += 1;
        }
    }
    Lexed { code, strings }
}

/// Whether `r` at `i` opens a raw string rather than ending an identifier.
fn is_raw_start(chars: &[char], i: usize) -> bool {
    // `r` ends an identifier (`for"`, `bar#`) unless it follows a lone `b` (`br"…"`).
    let before = i.checked_sub(1).map(|j| chars[j]);
    let lone_b = before == Some('b') && !preceded_by_ident(chars, i - 1);
    if before.is_some_and(is_ident) && !lone_b {
        return false;
    }
    let mut j = i + 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    chars.get(j) == Some(&'"')
}

fn preceded_by_ident(chars: &[char], i: usize) -> bool {
    i.checked_sub(1)
        .map(|j| chars[j])
        .is_some_and(|b| b.is_alphanumeric() || b == '_')
}

/// The paths a file names, `a::b::c`, with `use` groups expanded one level
/// (`crate::bus::{publish, streams}` gives `crate::bus::publish` and `crate::bus::streams`).
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let starts = (c.is_alphabetic() || c == '_') && (i == 0 || !is_ident(bytes[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut path = String::new();
        loop {
            while j < bytes.len() && is_ident(bytes[j]) {
                path.push(bytes[j]);
                j += 1;
            }
            if bytes.get(j) == Some(&':') && bytes.get(j + 1) == Some(&':') {
                path.push_str("::");
                j += 2;
                if bytes.get(j) == Some(&'{') {
                    let end = (j..bytes.len())
                        .find(|&k| bytes[k] == '}')
                        .unwrap_or(bytes.len());
                    let group: String = bytes[j + 1..end].iter().collect();
                    for item in group.split(',') {
                        let item = item.trim();
                        if !item.is_empty() {
                            out.push(format!("{path}{item}"));
                        }
                    }
                    j = end;
                    path.clear();
                    break;
                }
            } else {
                break;
            }
        }
        if path.contains("::") {
            out.push(path);
        }
        i = j.max(i + 1);
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `path` names `prefix` or something inside it.
fn names(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with("::"))
}

/// The role a file belongs to (`src/lib/roles/worker/pull.rs` → `worker`).
fn role_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(ROLES)?;
    let first = rest.split('/').next()?;
    Some(first.strip_suffix(".rs").unwrap_or(first))
}

/// Every rule broken by the file at `path` (relative, with `/`) whose text is `text`.
fn violations(path: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if !first.starts_with("//!") {
        found.push(format!(
            "{path}: starts without a `//!` comment saying what it is for"
        ));
    }
    let lexed = lex(text);
    if path.starts_with("src/") && !path.starts_with(PROTOCOL) {
        for literal in lexed.strings.iter().filter(|s| s.starts_with("tessera.")) {
            found.push(format!(
                "{path}: the literal {literal:?} builds a subject outside {PROTOCOL}"
            ));
        }
    }
    let named = paths(&lexed.code);
    if path.starts_with(CORE) {
        for p in &named {
            if let Some(bad) = NOT_IN_CORE.iter().find(|bad| names(p, bad)) {
                found.push(format!(
                    "{path}: the pure core names `{p}` ({bad} is I/O or above the core)"
                ));
            }
        }
    }
    let own = role_of(path);
    let above_roles =
        ABOVE_ROLES.iter().any(|a| path.starts_with(a)) || path.starts_with("src/bin/");
    if path.starts_with("src/lib/") && !above_roles {
        for p in named.iter().filter(|p| names(p, "crate::roles")) {
            let target = p
                .trim_start_matches("crate::roles")
                .trim_start_matches("::");
            let target = target.split("::").next().unwrap_or("");
            if own.is_none() {
                found.push(format!(
                    "{path}: names `{p}`, but only the roles and what runs them may"
                ));
            } else if Some(target) != own {
                found.push(format!(
                    "{path}: the {} role names `{p}`; what two roles share lives below them",
                    own.unwrap_or("?")
                ));
            }
        }
    }
    found
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_tree_keeps_the_house_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(file).unwrap();
        found.extend(violations(&relative, &text));
    }
    assert!(
        found.is_empty(),
        "house rules broken:\n{}",
        found.join("\n")
    );
}

/// A file that keeps every rule, for the planted violations below to break one at a time.
const GOOD: &str = "//! A module.\n\nuse crate::core::job::Job;\n";

fn check(path: &str, text: &str, needle: &str) {
    let found = violations(path, text);
    assert!(
        found.iter().any(|v| v.contains(needle)),
        "{path}: expected a violation with {needle:?}, got {found:?}"
    );
}

#[test]
fn a_file_without_its_doc_comment_is_caught() {
    assert!(violations("src/lib/core/x.rs", GOOD).is_empty());
    check("src/lib/core/x.rs", "use std::fmt;\n", "`//!`");
    check("tests/it/x.rs", "// a plain comment\nfn f() {}\n", "`//!`");
    check("src/lib/core/x.rs", "/// an item doc\nfn f() {}\n", "`//!`");
}

#[test]
fn a_subject_literal_outside_the_protocol_is_caught() {
    let planted = format!("{GOOD}fn f() -> &'static str {{ \"tessera.control.*\" }}\n");
    check(
        "src/lib/roles/worker/listen.rs",
        &planted,
        "builds a subject",
    );
    let raw = format!("{GOOD}const S: &str = r#\"tessera.jobs.submit\"#;\n");
    check("src/lib/bus/publish.rs", &raw, "builds a subject");
    assert!(violations("src/lib/bus/protocol/subjects.rs", &planted).is_empty());
    // Mentions in comments and other literals are not subjects.
    let fine = format!("{GOOD}// see tessera.control.<job>\nconst F: &str = \"a tessera.x\";\n");
    assert!(violations("src/lib/roles/worker/listen.rs", &fine).is_empty());
}

#[test]
fn a_core_module_that_imports_io_or_a_renderer_is_caught() {
    check(
        "src/lib/core/plan.rs",
        &format!("{GOOD}use tokio::fs;\n"),
        "`tokio::fs`",
    );
    check(
        "src/lib/core/job/validate.rs",
        &format!("{GOOD}fn f() {{ crate::render::builtin::Pass::from_layer(None); }}\n"),
        "crate::render",
    );
    check(
        "src/lib/core/raster.rs",
        &format!("{GOOD}use crate::{{core::tiles, store::keys}};\n"),
        "crate::store",
    );
    check(
        "src/lib/core/x.rs",
        &format!("{GOOD}use async_nats::jetstream;\n"),
        "async_nats",
    );
    check(
        "src/lib/core/x.rs",
        &format!("{GOOD}fn f(s: object_store::path::Path) {{}}\n"),
        "object_store",
    );
    // The same names in a string or a comment import nothing.
    let fine = format!("{GOOD}// tokio::spawn is not used here\nconst T: &str = \"tokio::fs\";\n");
    assert!(violations("src/lib/core/x.rs", &fine).is_empty());
}

#[test]
fn a_role_that_imports_another_is_caught() {
    check(
        "src/lib/roles/client/mod.rs",
        &format!("{GOOD}fn f() {{ crate::roles::collector::run; }}\n"),
        "the client role names `crate::roles::collector",
    );
    check(
        "src/lib/roles/collector/events.rs",
        &format!("{GOOD}use crate::roles::{{collector::x, planner}};\n"),
        "`crate::roles::planner`",
    );
    check(
        "src/lib/lifecycle.rs",
        &format!("{GOOD}use crate::roles::worker::WorkerConfig;\n"),
        "only the roles and what runs them",
    );
    // A role naming itself, and what runs the roles, are fine.
    let own = format!("{GOOD}use crate::roles::worker::pick::Queue;\n");
    assert!(violations("src/lib/roles/worker/pull.rs", &own).is_empty());
    let runner = format!("{GOOD}use crate::roles::worker::WorkerConfig;\n");
    assert!(violations("src/lib/farm.rs", &runner).is_empty());
}

#[test]
fn the_lexer_tells_code_strings_and_comments_apart() {
    let lexed =
        lex("let a = 'x'; let b = \"q\\\"r\"; /* c::d */ let e: &'static str = br\"tessera.z\";");
    assert_eq!(lexed.strings, ["q\"r", "tessera.z"]);
    assert!(!lexed.code.contains("c::d"));
    assert!(lexed.code.contains("&'static str"));
}
