//! Style checks as tests (in the spirit of TigerBeetle's `tidy.zig` and glommio's
//! `tests/linters.rs`): the layer rule, file length and function length.
//!
//! - Nothing under `src/proto/` (outside its `#[cfg(test)]` modules) names glommio, sockets,
//!   threads or reads the clock: the core is sans-IO and runs in the simulation.
//! - No file in `src/` is longer than `FILE_LINES_MAX`.
//! - No function in `src/` (outside tests) is longer than `FN_LINES_MAX`, except those in
//!   `LONG_FNS`, each with the reason it may be. That list is a ratchet: an entry whose
//!   function got short again (or disappeared) fails the test until it is removed, so the
//!   list only shrinks.

use std::path::{Path, PathBuf};

const FILE_LINES_MAX: usize = 900;
const FN_LINES_MAX: usize = 80;

/// Functions allowed past `FN_LINES_MAX`: (file, function name, why).
const LONG_FNS: &[(&str, &str, &str)] = &[(
    "src/proto/stats.rs",
    "render_prometheus",
    "the table of metric families, one entry each, in /metrics order",
)];

/// What `src/proto/` must not mention (outside comments and test modules).
const PROTO_FORBIDDEN: &[(&str, &str)] = &[
    ("glommio", "the runtime"),
    ("std::net", "sockets"),
    ("socket2", "sockets"),
    ("libc::", "system calls"),
    ("std::thread", "threads"),
    ("thread::spawn", "threads"),
    ("Instant::now", "a clock read: time comes in as `now`"),
    ("SystemTime::now", "a clock read: time comes in as `now`"),
    ("std::fs", "files"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src dir").map(|e| e.expect("dir entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether the parent module declares `path` under `#[cfg(test)]` (a test-only file).
fn test_only(path: &Path) -> bool {
    let (Some(stem), Some(dir)) = (path.file_stem().and_then(|s| s.to_str()), path.parent()) else { return false };
    let parent = [dir.join("mod.rs"), dir.with_extension("rs")].into_iter().find(|p| p.is_file() && p != path);
    let Some(text) = parent.and_then(|p| std::fs::read_to_string(p).ok()) else { return false };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines.iter().enumerate().any(|(i, l)| {
        i > 0 && lines[i - 1] == "#[cfg(test)]" && l.ends_with(&format!("mod {stem};"))
    })
}

/// Every `.rs` file under `src/` with its text, test-only files left out.
fn src_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files
        .into_iter()
        .filter(|p| !test_only(p))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read source file");
            let name = p.strip_prefix(root).expect("under the root").to_string_lossy().into_owned();
            (name, text)
        })
        .collect()
}

/// The lines of a file before its first `#[cfg(test)]` (test modules come last).
fn non_test_lines(text: &str) -> Vec<&str> {
    text.lines().take_while(|l| l.trim() != "#[cfg(test)]").collect()
}

/// If `line` starts a function, its name and indentation.
fn fn_start(line: &str) -> Option<(String, usize)> {
    let indent = line.len() - line.trim_start().len();
    let mut t = line.trim_start();
    let qualifiers = ["pub(crate) ", "pub(super) ", "pub ", "async ", "const ", "unsafe ", "extern \"C\" "];
    while let Some(q) = qualifiers.iter().find(|q| t.starts_with(**q)) {
        t = &t[q.len()..];
    }
    let rest = t.strip_prefix("fn ")?;
    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some((name, indent))
}

/// Every function with a body: (name, first line number, length in lines).
fn functions(lines: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((name, indent)) = fn_start(line) else { continue };
        // The signature ends at the first line ending in `{` (a body) or `;` (none).
        let Some(open) = (i..lines.len()).find(|&j| {
            let t = lines[j].trim_end();
            t.ends_with('{') || t.ends_with(';') || t.ends_with('}')
        }) else {
            continue;
        };
        let t = lines[open].trim_end();
        if t.ends_with(';') {
            continue;
        }
        if t.ends_with('}') && open == i {
            out.push((name, i + 1, 1));
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = (open + 1..lines.len()).find(|&j| lines[j].trim_end() == close) {
            out.push((name, i + 1, end - i + 1));
        }
    }
    out
}

/// Goal: the sans-IO core stays sans-IO. Method: scan `src/proto/` for names of I/O,
/// threads, the runtime and clock reads, outside comments and test modules.
#[test]
fn proto_does_no_io() {
    let mut bad = Vec::new();
    for (name, text) in src_files().iter().filter(|(n, _)| n.starts_with("src/proto/")) {
        for (i, line) in non_test_lines(text).iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (word, what) in PROTO_FORBIDDEN {
                if code.contains(word) {
                    bad.push(format!("{name}:{}: `{word}` ({what})", i + 1));
                }
            }
        }
    }
    assert!(bad.is_empty(), "src/proto/ must not do I/O, spawn threads or read the clock:\n{}", bad.join("\n"));
}

/// Goal: no file in `src/` grows past `FILE_LINES_MAX` lines. Method: count them.
#[test]
fn files_stay_short() {
    let long: Vec<String> = src_files()
        .iter()
        .map(|(name, text)| (name, text.lines().count()))
        .filter(|(_, n)| *n > FILE_LINES_MAX)
        .map(|(name, n)| format!("{name}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "files over {FILE_LINES_MAX} lines (split by responsibility):\n{}", long.join("\n"));
}

/// Goal: no function in `src/` grows past `FN_LINES_MAX` lines unless `LONG_FNS` says why,
/// and `LONG_FNS` only shrinks. Method: find each function's body by rustfmt's indentation.
#[test]
fn functions_stay_short() {
    let mut long = Vec::new();
    let mut still_long = Vec::new();
    for (name, text) in src_files() {
        for (f, line, len) in functions(&non_test_lines(&text)) {
            if len <= FN_LINES_MAX {
                continue;
            }
            if LONG_FNS.iter().any(|(file, func, _)| *file == name && *func == f) {
                still_long.push((name.clone(), f));
            } else {
                long.push(format!("{name}:{line}: fn {f} is {len} lines"));
            }
        }
    }
    assert!(long.is_empty(), "functions over {FN_LINES_MAX} lines (split them, or justify in LONG_FNS):\n{}", long.join("\n"));
    for (file, func, _) in LONG_FNS {
        assert!(
            still_long.iter().any(|(f, n)| f == file && n == func),
            "LONG_FNS lists {file}: fn {func}, which is no longer over {FN_LINES_MAX} lines: remove it"
        );
    }
}

/// Goal: the function finder itself works (a checker that finds nothing passes vacuously).
#[test]
fn function_finder_measures_bodies() {
    let src = "pub(crate) fn a(x: u8) -> u8 {\n    let y = x;\n    y\n}\n\nfn b() {}\n\ntrait T {\n    fn c(&self);\n}\n\nimpl S {\n    async fn d(\n        &self,\n    ) {\n        work();\n    }\n}\n";
    let lines: Vec<&str> = src.lines().collect();
    let found = functions(&lines);
    assert_eq!(found, vec![("a".to_owned(), 1, 4), ("b".to_owned(), 6, 1), ("d".to_owned(), 13, 5)]);
    assert!(src_files().iter().map(|(_, t)| functions(&non_test_lines(t)).len()).sum::<usize>() > 100);
}
