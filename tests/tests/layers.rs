//! The shape of relay-core (docs/design.md, "Layers"): its files sit in four
//! layers, `event` → `delivery` → `toolkit` | `host`, and a file imports
//! only from its own layer or a layer below; no files import each other
//! round a loop; and no crate of the workspace depends on itself round a
//! loop. Fails naming the file and the import, or the loop.
//!
//! What counts as an import: every path that names a module of the crate
//! — `crate::…`, `super::…`, `self::…`, and a parent naming a submodule it
//! declares (`memory::MemoryStore` in `store/mod.rs`) — in code, tests
//! included; comments and string literals are not read. One kind of arrow
//! is left out of the loop search: a file using its own parent module (a
//! backend taking its family's trait from `store/mod.rs`), since the parent
//! declares it; the parent's arrows to its children count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each layer and the layers its files may import from.
const LAYERS: &[(&str, &[&str])] = &[
    ("event", &["event"]),
    ("delivery", &["event", "delivery"]),
    ("toolkit", &["event", "delivery", "toolkit"]),
    ("host", &["event", "delivery", "host"]),
];

/// A module path, `["delivery", "store", "memory"]`; the crate root is `[]`.
type ModPath = Vec<String>;

/// Comments, string and char literals blanked out (newlines kept), so only
/// code is read.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if (rest.starts_with(b"r\"") || rest.starts_with(b"r#") || rest.starts_with(b"br"))
            && !prev_is_ident(b, i)
        {
            let start = if rest[0] == b'b' { 2 } else { 1 };
            let hashes = rest[start..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(start + hashes) != Some(&b'"') {
                out.push(rest[0] as char);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = start + hashes + 1;
            let end = rest[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |p| body + p + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' {
            // A char literal ('a', '\n', '\u{7f}'), not a lifetime ('a).
            let len = if rest.get(1) == Some(&b'\\') {
                // Past the escaped character, which may be a quote itself.
                rest.get(3..)
                    .and_then(|r| r.iter().position(|&c| c == b'\''))
                    .map(|p| p + 4)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            match len {
                Some(n) => {
                    blank(&mut out, &rest[..n]);
                    i += n;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The module path of a file under `src/`: `delivery/store/mod.rs` →
/// `delivery::store`, `lib.rs` → the root.
fn module_of(file: &str) -> ModPath {
    let mut segs: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
        segs.pop();
    }
    segs
}

/// Every module path a file names, with the line it is on, as absolute
/// module paths (items included: the caller finds the file).
fn paths_in(file: &str, src: &str) -> Vec<(usize, ModPath)> {
    let code = code_only(src);
    let b = code.as_bytes();
    let here = module_of(file);
    // Submodules declared in files of their own (`mod x;`).
    let mut children = BTreeSet::new();
    for line in code.lines() {
        let t = line.trim();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
        if let Some(name) = t.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            children.insert(name.trim().to_string());
        }
    }
    let mut found = Vec::new();
    // Inline modules (`mod tests { … }`) open at a brace depth.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut line = 1;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => line += 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            _ => {}
        }
        if !is_ident(c) || prev_is_ident(b, i) {
            i += 1;
            continue;
        }
        let end = i + b[i..].iter().take_while(|&&c| is_ident(c)).count();
        let word = &code[i..end];
        if word == "mod" {
            let rest = &code[end..];
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let after = rest.trim_start()[name.len()..].trim_start();
            if !name.is_empty() && after.starts_with('{') {
                inline.push((name, depth));
            }
        }
        let after_colons = i >= 2 && &b[i - 2..i] == b"::";
        let starts_path = code[end..].starts_with("::");
        if after_colons || !starts_path {
            i = end;
            continue;
        }
        let base: Option<ModPath> = match word {
            "crate" => Some(Vec::new()),
            "self" | "super" => {
                let mut m = here.clone();
                m.extend(inline.iter().map(|(n, _)| n.clone()));
                Some(m)
            }
            w if children.contains(w) && inline.is_empty() => {
                let mut m = here.clone();
                m.push(w.to_string());
                Some(m)
            }
            _ => None,
        };
        let Some(mut base) = base else {
            i = end;
            continue;
        };
        if word == "super" {
            base.pop();
        }
        let (tails, next) = path_tail(&code, end);
        for tail in tails {
            let mut p = base.clone();
            for seg in tail {
                if seg == "super" {
                    p.pop();
                } else if seg != "self" {
                    p.push(seg);
                }
            }
            found.push((line, p));
        }
        // Count the lines a multi-line group spans.
        line += code[end..next].matches('\n').count();
        i = next;
    }
    found
}

/// The segments after a path's first word (`::a::b`, `::a::{b, c::d}`),
/// each alternative of a group as its own tail; and where the path ends.
fn path_tail(code: &str, mut at: usize) -> (Vec<Vec<String>>, usize) {
    let mut segs = Vec::new();
    let b = code.as_bytes();
    loop {
        let rest = &code[at..];
        let Some(r) = rest.strip_prefix("::") else {
            return (vec![segs], at);
        };
        let skipped = r.len() - r.trim_start().len();
        at += 2 + skipped;
        if b.get(at) == Some(&b'{') {
            let close = matching_brace(code, at);
            let mut tails = Vec::new();
            for item in split_top(&code[at + 1..close]) {
                let item = item.trim();
                if item.is_empty() || item == "*" {
                    tails.push(segs.clone());
                    continue;
                }
                let first: String = item
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // `first::rest`: recurse over the text after `first`.
                let rest_text = item[first.len()..].to_string();
                let (more, _) = path_tail(&rest_text, 0);
                for m in more {
                    let mut t = segs.clone();
                    if first != "self" {
                        t.push(first.clone());
                    }
                    t.extend(m);
                    tails.push(t);
                }
            }
            return (tails, close + 1);
        }
        let n = b[at..].iter().take_while(|&&c| is_ident(c)).count();
        if n == 0 {
            return (vec![segs], at);
        }
        segs.push(code[at..at + n].to_string());
        at += n;
    }
}

fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (k, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + k;
                }
            }
            _ => {}
        }
    }
    code.len()
}

fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (k, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The file a module path lands in: the longest prefix that is a file's
/// module (an item or inline module inside it names that file).
fn file_of<'a>(modules: &'a BTreeMap<ModPath, String>, path: &[String]) -> Option<&'a String> {
    (0..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

fn layer_of(file: &str) -> Option<&str> {
    let first = file.split('/').next()?;
    (file.contains('/') && LAYERS.iter().any(|(l, _)| *l == first)).then_some(first)
}

/// Loops in a graph: one loop (its nodes in order, the first repeated at
/// the end) per strongly connected set of more than one node.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative enough for a few hundred files.
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        sccs: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            t.sccs.push(scc);
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        sccs: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    let mut out = Vec::new();
    for scc in t.sccs.into_iter().filter(|s| s.len() > 1) {
        let members: BTreeSet<&str> = scc.iter().copied().collect();
        let start = *members.iter().next().unwrap();
        // A shortest way back to `start` inside the set.
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        'bfs: while let Some(v) = queue.pop_front() {
            for w in graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !members.contains(w) {
                    continue;
                }
                if w == start {
                    last = Some(v);
                    break 'bfs;
                }
                if !prev.contains_key(w) {
                    prev.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut path = vec![start.to_string()];
        let mut v = last.unwrap();
        let mut back = vec![v.to_string()];
        while v != start {
            v = prev[v];
            if v != start {
                back.push(v.to_string());
            }
        }
        back.reverse();
        path.extend(back);
        path.push(start.to_string());
        out.push(path);
    }
    out
}

/// The problems of a source tree (paths relative to `src/`, contents).
fn check_tree(files: &[(String, String)]) -> Vec<String> {
    let modules: BTreeMap<ModPath, String> = files
        .iter()
        .map(|(f, _)| (module_of(f), f.clone()))
        .collect();
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, src) in files {
        graph.entry(file.clone()).or_default();
        if file == "lib.rs" {
            // The root declares the layers and keeps the old paths for the
            // crates outside; it is above every layer.
            continue;
        }
        let Some(layer) = layer_of(file) else {
            problems.push(format!("{file}: not in a layer ({})", layer_names()));
            continue;
        };
        let allowed = LAYERS.iter().find(|(l, _)| *l == layer).unwrap().1;
        let parent = {
            let mut m = module_of(file);
            m.pop();
            modules.get(&m).cloned()
        };
        for (line, path) in paths_in(file, src) {
            let Some(target) = file_of(&modules, &path) else {
                continue;
            };
            let shown = format!("crate::{}", path.join("::"));
            if target == file {
                continue;
            }
            if target == "lib.rs" {
                problems.push(format!(
                    "{file}:{line}: imports {shown} through the crate root's old paths; use the layered path"
                ));
                continue;
            }
            let to = layer_of(target).unwrap_or("?");
            if !allowed.contains(&to) {
                problems.push(format!(
                    "{file}:{line}: imports {shown} ({target}): layer {layer} may import only {}",
                    allowed.join(", ")
                ));
            }
            if parent.as_deref() != Some(target.as_str()) {
                graph
                    .entry(file.clone())
                    .or_default()
                    .insert(target.clone());
            }
        }
    }
    for c in cycles(&graph) {
        problems.push(format!("import cycle: {}", c.join(" -> ")));
    }
    problems
}

fn layer_names() -> String {
    LAYERS
        .iter()
        .map(|(l, _)| *l)
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn relay_core_layers_point_one_way_without_cycles() {
    let files = read_tree(&workspace().join("shared/src"));
    assert!(files.len() > 40, "read {} files", files.len());
    let problems = check_tree(&files);
    assert!(problems.is_empty(), "relay-core:\n{}", problems.join("\n"));
}

/// The crates of the workspace and their dependencies on each other
/// (normal, build and dev), from `cargo metadata`.
#[test]
fn workspace_crates_depend_on_each_other_without_cycles() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(
        names.contains("relay-core") && names.contains("relay") && names.contains("relay-tests"),
        "{names:?}"
    );
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in packages {
        let from = p["name"].as_str().unwrap().to_string();
        let deps = graph.entry(from).or_default();
        for d in p["dependencies"].as_array().unwrap() {
            let to = d["name"].as_str().unwrap();
            if names.contains(to) {
                deps.insert(to.to_string());
            }
        }
    }
    let loops = cycles(&graph);
    assert!(loops.is_empty(), "crate cycles: {loops:?}");
}

fn tree(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(f, s)| (f.to_string(), s.to_string()))
        .collect()
}

/// The check itself: a fake tree with an import of a higher layer and a
/// loop between two files sees both, and names them.
#[test]
fn the_check_sees_an_upward_import_and_a_cycle() {
    let files = tree(&[
        (
            "lib.rs",
            "pub mod event; pub mod delivery; pub mod host; pub mod toolkit;",
        ),
        ("event/mod.rs", "pub mod model;"),
        (
            "event/model.rs",
            "pub struct RunEvent;\nfn f() -> crate::delivery::engine::Engine { todo!() }",
        ),
        ("delivery/mod.rs", "pub mod engine; pub mod store;"),
        (
            "delivery/engine.rs",
            "use crate::delivery::store::{Store, memory::Mem};\npub struct Engine;",
        ),
        (
            "delivery/store.rs",
            "// crate::host::x in a comment is no import\nuse crate::delivery::engine::Engine;\nconst S: &str = \"crate::host::y\";",
        ),
        ("host/mod.rs", "pub mod server;"),
        ("host/server.rs", "use crate::event::model::RunEvent;"),
    ]);
    let problems = check_tree(&files);
    assert!(
        problems.iter().any(|p| p
            .starts_with("event/model.rs:2: imports crate::delivery::engine::Engine")
            && p.contains("layer event may import only event")),
        "{problems:#?}"
    );
    assert!(
        problems.contains(
            &"import cycle: delivery/engine.rs -> delivery/store.rs -> delivery/engine.rs"
                .to_string()
        ),
        "{problems:#?}"
    );
    assert!(
        !problems.iter().any(|p| p.contains("crate::host")),
        "comments and strings are not code: {problems:#?}"
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
}

/// `super::`, groups, toolkit beside host, a parent's own children, and a
/// path through the crate root's old names.
#[test]
fn the_check_reads_super_groups_and_the_layer_rules() {
    let files = tree(&[
        (
            "lib.rs",
            "pub mod event; pub mod delivery; pub mod host; pub mod toolkit; pub use delivery::store;",
        ),
        ("delivery/mod.rs", "pub mod store;"),
        (
            "delivery/store/mod.rs",
            "pub mod memory;\npub trait Store {}\npub fn open() { memory::Mem::new(); }",
        ),
        (
            "delivery/store/memory.rs",
            "use super::Store;\npub struct Mem;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}",
        ),
        ("toolkit/mod.rs", "pub mod chat;"),
        (
            "toolkit/chat.rs",
            "use crate::{delivery::store::Store, host::server};",
        ),
        ("host/mod.rs", "pub mod server;"),
        (
            "host/server.rs",
            "fn f() { crate::toolkit::chat::g(); crate::store::open(); }",
        ),
    ]);
    let problems = check_tree(&files);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("toolkit/chat.rs:1: imports crate::host::server")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("host/server.rs:1: imports crate::toolkit::chat::g")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p
            .starts_with("host/server.rs:1: imports crate::store::open through the crate root")),
        "{problems:#?}"
    );
    // A parent and the child it declares are no loop; toolkit <-> host is.
    assert!(
        !problems.iter().any(|p| p.contains("store/memory.rs")),
        "{problems:#?}"
    );
    assert!(
        problems.contains(
            &"import cycle: host/server.rs -> toolkit/chat.rs -> host/server.rs".to_string()
        ),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 4, "{problems:#?}");
}
