//! No two files of `migrator/src` import each other, directly or around a longer loop (issue 19).
//!
//! Every `use` and every `crate::`/`super::`/`self::` path of every file is resolved to the file
//! that defines what it names: through `mod` files and inline modules, and through the `use`
//! lines of the module it lands in (a re-export or a private import seen by `super::`), so that
//! `crate::Error` counts as an import of `error.rs`, not of `lib.rs`. A `use` line is an import
//! of its target's file even when it only re-exports it. The graph of files must be acyclic; a
//! failure prints each cycle as a list of files, with the line of each import.
//!
//! The files also sit in layers, one folder each (a file's layer is its top folder), each
//! importing only from itself and the layers before it ([`LAYERS`], in order); each folder's
//! `mod.rs` opens with its map, which names every file in it.
//!
//! Run alone: `scripts/check-cycles` (or `cargo test -p migrator --test import_cycles`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn no_import_cycle_between_files() {
    let graph = Graph::read(&src());
    let cycles = graph.cycles();
    if !cycles.is_empty() {
        let mut text = format!(
            "{} import cycle(s) between files of migrator/src:\n",
            cycles.len()
        );
        for cycle in &cycles {
            text.push_str(&graph.describe(cycle));
        }
        text.push_str("move the items so that layers import downward (STYLE.md 21)\n");
        panic!("{text}");
    }
}

/// `migrator/src`, or the tree that `IMPORT_SRC` names (to measure another version).
fn src() -> PathBuf {
    std::env::var_os("IMPORT_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// The layers of `migrator/src`, lowest first: one folder each, and what it holds. A file's
/// layer is its top folder; it may import from its own layer and those before it in this list,
/// never from one after it. `lib.rs`, the crate root, declares the layers and re-exports the
/// public modules: it stands above all of them. Each folder's `mod.rs` opens with its map.
const LAYERS: &[(&str, &str)] = &[
    (
        "foundation",
        "errors, reports, metric names, configuration, backoff",
    ),
    // The raw Argon2id (kernels, lanes, memory, all of the hashing's `unsafe`) is the
    // migrator-hasher package (`migrator/hasher/`), outside `migrator/src`.
    ("hashing", "password hashing, no database code"),
    (
        "access",
        "URLs, connections, the catalog, one file per backend with its SQL",
    ),
    (
        "records",
        "the library's tables, the migration lock, backups, the backfill tables",
    ),
    ("policy", "what a run may do: the plan, confirmation"),
    (
        "running",
        "registry, context, runner, start-up, waiting, the backfill engine",
    ),
    (
        "front",
        "the command line, the test harness, the variable table",
    ),
];

/// The crate root: above every layer.
const ROOT: &str = "lib.rs";

/// The layer of `file` (relative to `src`), as an index into [`LAYERS`]; `lib.rs` is
/// `LAYERS.len()`, above them all. `None` for a file outside the layer folders.
fn layer(file: &str) -> Option<usize> {
    if file == ROOT {
        return Some(LAYERS.len());
    }
    let (top, _) = file.split_once('/')?;
    LAYERS.iter().position(|(name, _)| *name == top)
}

fn layer_name(i: usize) -> &'static str {
    LAYERS.get(i).map_or("the crate root", |(name, _)| name)
}

#[test]
fn layers_import_downward() {
    let graph = Graph::read(&src());
    let mut problems = Vec::new();
    for f in 0..graph.files.len() {
        let name = graph.name(f);
        if layer(&name).is_none() {
            problems.push(match name.split_once('/') {
                Some((top, _)) => format!(
                    "{name} is in {top}/, which is not a layer: move it into a layer's \
                     folder, or add {top} to LAYERS (in order)"
                ),
                None => format!("{name} is outside the layer folders: move it into one of them"),
            });
        }
    }
    for (&(from, to), line) in &graph.edges() {
        let (a, b) = (graph.name(from), graph.name(to));
        if let (Some(la), Some(lb)) = (layer(&a), layer(&b)) {
            if lb > la {
                problems.push(format!(
                    "{a}:{line} ({}) imports {b} ({}), a layer above it",
                    layer_name(la),
                    layer_name(lb)
                ));
            }
        }
    }
    if std::env::var_os("IMPORT_LAYERS").is_some() {
        for (i, (name, _)) in LAYERS.iter().enumerate() {
            let files: Vec<usize> = (0..graph.files.len())
                .filter(|&f| layer(&graph.name(f)) == Some(i))
                .collect();
            let lines: usize = files
                .iter()
                .map(|&f| fs::read_to_string(&graph.files[f]).unwrap().lines().count())
                .sum();
            eprintln!("layer {name}: {} files, {lines} lines", files.len());
        }
    }
    assert!(
        problems.is_empty(),
        "layers broken:\n{}",
        problems.join("\n")
    );
}

/// Each layer is a folder whose `mod.rs` opens with its map, a `//!` paragraph that names every
/// file and folder in it; `lib.rs` declares the layers in the order of [`LAYERS`].
#[test]
fn each_layer_is_a_folder_with_a_map() {
    let src = src();
    let mut problems = Vec::new();
    for (name, _) in LAYERS {
        let dir = src.join(name);
        let Ok(map) = fs::read_to_string(dir.join("mod.rs")) else {
            problems.push(format!(
                "{name}/mod.rs is missing: each layer is a folder with a map"
            ));
            continue;
        };
        let doc: String = map
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!")))
            .collect();
        if doc.trim().is_empty() {
            problems.push(format!("{name}/mod.rs does not open with a `//!` map"));
        }
        let mut children: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let file = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() {
                    format!("`{file}/")
                } else {
                    format!("`{file}`")
                }
            })
            .filter(|c| c != "`mod.rs`")
            .collect();
        children.sort();
        for child in children {
            if !doc.contains(&child) {
                problems.push(format!(
                    "{name}/mod.rs: its map does not name {}",
                    child.trim_matches('`')
                ));
            }
        }
    }
    let root = fs::read_to_string(src.join(ROOT)).unwrap();
    let declared: Vec<usize> = LAYERS
        .iter()
        .filter_map(|(name, _)| root.find(&format!("mod {name};")))
        .collect();
    if declared.len() != LAYERS.len() || !declared.windows(2).all(|w| w[0] < w[1]) {
        problems
            .push("lib.rs must declare every layer (`mod NAME;`), in the order of LAYERS".into());
    }
    assert!(
        problems.is_empty(),
        "layer folders:\n{}",
        problems.join("\n")
    );
}

/// One token of a source file with comments and literals removed.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Path, // `::`
    Open,
    Close,
    Comma,
    Semi,
    Star,
    Dollar,
    Other,
}

fn tokenize(text: &str) -> Vec<(Tok, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if b[i] == b'\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && raw_string_at(b, i) => {
                i += 1;
                let mut hashes = 0;
                while b[i] == b'#' {
                    hashes += 1;
                    i += 1;
                }
                i += 1;
                loop {
                    if i >= b.len() {
                        break;
                    }
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    if b[i] == b'"'
                        && b[i + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&h| h == b'#')
                            .count()
                            == hashes
                    {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
                out.push((Tok::Other, line));
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    if i < b.len() && b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push((Tok::Other, line));
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else if b.get(i + 1) == Some(&b'\\') {
                    i += 2;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                    i += 1;
                } else {
                    i += 1;
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                }
                out.push((Tok::Other, line));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push((Tok::Ident(text[start..i].to_string()), line));
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push((Tok::Path, line));
                i += 2;
            }
            b'{' => push(&mut out, &mut i, Tok::Open, line),
            b'}' => push(&mut out, &mut i, Tok::Close, line),
            b',' => push(&mut out, &mut i, Tok::Comma, line),
            b';' => push(&mut out, &mut i, Tok::Semi, line),
            b'*' => push(&mut out, &mut i, Tok::Star, line),
            b'$' => push(&mut out, &mut i, Tok::Dollar, line),
            c if c.is_ascii_whitespace() => i += 1,
            _ => push(&mut out, &mut i, Tok::Other, line),
        }
    }
    out
}

fn push(out: &mut Vec<(Tok, usize)>, i: &mut usize, tok: Tok, line: usize) {
    out.push((tok, line));
    *i += 1;
}

fn raw_string_at(b: &[u8], i: usize) -> bool {
    let before_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    let mut j = i + 1;
    while j < b.len() && b[j] == b'#' {
        j += 1;
    }
    before_ok && b.get(j) == Some(&b'"')
}

/// A `use` binding or a path written in a module: where, to what, from which line.
#[derive(Debug)]
struct Import {
    file: usize,
    /// The module the path is written in (absolute, from the crate root).
    scope: Vec<String>,
    /// The path as written (`crate`, `super` and `self` still in it).
    path: Vec<String>,
    /// The name it binds in `scope` (`use` only), `*` for a glob.
    binds: Option<String>,
    line: usize,
}

struct Graph {
    files: Vec<PathBuf>,
    /// Module path (absolute) → (file, is that file's own module rather than an inline one).
    modules: BTreeMap<Vec<String>, usize>,
    imports: Vec<Import>,
    /// (scope, bound name) → index into `imports`.
    bindings: BTreeMap<(Vec<String>, String), usize>,
    src: PathBuf,
}

impl Graph {
    fn read(src: &Path) -> Graph {
        let mut paths = Vec::new();
        collect(src, &mut paths);
        paths.sort();
        let mut graph = Graph {
            files: Vec::new(),
            modules: BTreeMap::new(),
            imports: Vec::new(),
            bindings: BTreeMap::new(),
            src: src.to_path_buf(),
        };
        for path in paths {
            let rel = path.strip_prefix(src).unwrap();
            let mut module: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let last = module.pop().unwrap();
            let stem = last.trim_end_matches(".rs").to_string();
            if !(module.is_empty() && stem == "lib") && stem != "mod" {
                module.push(stem);
            }
            let file = graph.files.len();
            graph.files.push(path.clone());
            graph.modules.insert(module.clone(), file);
            let text = fs::read_to_string(&path).unwrap();
            graph.scan(file, module, &tokenize(&text));
        }
        for (i, import) in graph.imports.iter().enumerate() {
            if let Some(name) = &import.binds {
                graph
                    .bindings
                    .insert((import.scope.clone(), name.clone()), i);
            }
        }
        graph
    }

    fn scan(&mut self, file: usize, module: Vec<String>, toks: &[(Tok, usize)]) {
        // Inline modules: (name, brace depth inside them).
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0;
        let mut i = 0;
        let scope = |inline: &Vec<(String, usize)>| {
            let mut s = module.clone();
            s.extend(inline.iter().map(|(n, _)| n.clone()));
            s
        };
        while i < toks.len() {
            match &toks[i].0 {
                Tok::Open => depth += 1,
                Tok::Close => {
                    if inline.last().map(|(_, d)| *d) == Some(depth) {
                        inline.pop();
                    }
                    depth -= 1;
                }
                Tok::Ident(kw) if kw == "mod" => {
                    if let (Some((Tok::Ident(name), _)), Some((Tok::Open, _))) =
                        (toks.get(i + 1), toks.get(i + 2))
                    {
                        let mut s = scope(&inline);
                        s.push(name.clone());
                        self.modules.insert(s, file);
                        inline.push((name.clone(), depth + 1));
                        depth += 1;
                        i += 3;
                        continue;
                    }
                }
                Tok::Ident(kw) if kw == "use" => {
                    let line = toks[i].1;
                    let mut j = i + 1;
                    let mut found = Vec::new();
                    use_tree(toks, &mut j, Vec::new(), &mut found);
                    for (path, binds) in found {
                        let scope = scope(&inline);
                        let binds = Some(binds);
                        self.imports.push(Import {
                            file,
                            scope,
                            path,
                            binds,
                            line,
                        });
                    }
                    i = j;
                    continue;
                }
                // A path in code: `crate::`, `super::`, `self::` or a child module's name
                // (other first segments are not this crate's and are dropped when resolved).
                Tok::Ident(first)
                    if toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path)
                        && !(i > 0 && toks[i - 1].0 == Tok::Dollar)
                        && !(i > 0 && toks[i - 1].0 == Tok::Path) =>
                {
                    let line = toks[i].1;
                    let mut path = vec![first.clone()];
                    let mut j = i + 1;
                    while toks.get(j).map(|t| &t.0) == Some(&Tok::Path) {
                        match toks.get(j + 1) {
                            Some((Tok::Ident(seg), _)) => path.push(seg.clone()),
                            _ => break,
                        }
                        j += 2;
                    }
                    let scope = scope(&inline);
                    self.imports.push(Import {
                        file,
                        scope,
                        path,
                        binds: None,
                        line,
                    });
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// The absolute path of `path` written in `scope`; `None` outside this crate.
    fn absolute(&self, scope: &[String], path: &[String]) -> Option<Vec<String>> {
        let mut abs = scope.to_vec();
        let mut rest = path;
        match path.first().map(String::as_str) {
            Some("crate") | Some("migrator") => {
                abs.clear();
                rest = &path[1..];
            }
            Some("self") => rest = &path[1..],
            Some("super") => {}
            Some(child) => {
                let mut module = scope.to_vec();
                module.push(child.to_string());
                if !self.modules.contains_key(&module) {
                    return None;
                }
            }
            None => return None,
        }
        while rest.first().map(String::as_str) == Some("super") {
            abs.pop();
            rest = &rest[1..];
        }
        abs.extend(rest.iter().cloned());
        Some(abs)
    }

    /// The file that defines what `abs` names, following `use` bindings (`hops` bounds loops).
    fn target(&self, abs: &[String], hops: usize) -> Option<usize> {
        let mut k = abs.len();
        while !self.modules.contains_key(&abs[..k]) {
            k -= 1;
        }
        let module = &abs[..k];
        let file = self.modules[module];
        if k == abs.len() || hops == 0 {
            return Some(file);
        }
        let name = &abs[k];
        match self.bindings.get(&(module.to_vec(), name.clone())) {
            Some(&i) => {
                let import = &self.imports[i];
                let mut next = self.absolute(&import.scope, &import.path)?;
                next.extend(abs[k + 1..].iter().cloned());
                if next == abs {
                    return Some(file);
                }
                self.target(&next, hops - 1)
            }
            None => Some(file),
        }
    }

    /// Edges between files: (from, to) → the first line of `from` that makes it.
    fn edges(&self) -> BTreeMap<(usize, usize), usize> {
        let mut edges = BTreeMap::new();
        for import in &self.imports {
            let Some(abs) = self.absolute(&import.scope, &import.path) else {
                continue;
            };
            if let Some(to) = self.target(&abs, 16) {
                if std::env::var_os("IMPORT_EDGES").is_some() {
                    let (from, to) = (self.name(import.file), self.name(to));
                    eprintln!(
                        "{from}:{} -> {to} ({})",
                        import.line,
                        import.path.join("::")
                    );
                }
                if to != import.file {
                    edges.entry((import.file, to)).or_insert(import.line);
                }
            }
        }
        edges
    }

    /// One cycle per strongly connected component of more than one file (the shortest loop
    /// through its first file), so that each knot is reported once.
    fn cycles(&self) -> Vec<(BTreeSet<usize>, Vec<usize>)> {
        let edges = self.edges();
        let n = self.files.len();
        let mut next: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        for &(a, b) in edges.keys() {
            next[a].insert(b);
        }
        let reach = |from: usize| {
            let mut seen = BTreeSet::from([from]);
            let mut stack = vec![from];
            while let Some(f) = stack.pop() {
                for &t in &next[f] {
                    if seen.insert(t) {
                        stack.push(t);
                    }
                }
            }
            seen
        };
        let reaches: Vec<BTreeSet<usize>> = (0..n).map(reach).collect();
        let mut done = BTreeSet::new();
        let mut cycles = Vec::new();
        for a in 0..n {
            if done.contains(&a) {
                continue;
            }
            let component: BTreeSet<usize> = (0..n)
                .filter(|&b| reaches[a].contains(&b) && reaches[b].contains(&a))
                .collect();
            done.extend(component.iter().copied());
            if component.len() < 2 {
                continue;
            }
            // Breadth-first from `a` back to `a`, inside the component.
            let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([a]);
            'search: while let Some(f) = queue.pop_front() {
                for &t in &next[f] {
                    if !component.contains(&t) {
                        continue;
                    }
                    if t == a {
                        let mut cycle = vec![f];
                        let mut c = f;
                        while c != a {
                            c = parent[&c];
                            cycle.push(c);
                        }
                        cycle.reverse();
                        cycles.push((component.clone(), cycle));
                        break 'search;
                    }
                    if !parent.contains_key(&t) && t != a {
                        parent.insert(t, f);
                        queue.push_back(t);
                    }
                }
            }
        }
        cycles
    }

    fn name(&self, file: usize) -> String {
        self.files[file]
            .strip_prefix(&self.src)
            .unwrap()
            .display()
            .to_string()
    }

    fn describe(&self, (component, cycle): &(BTreeSet<usize>, Vec<usize>)) -> String {
        let edges = self.edges();
        let names: Vec<String> = component.iter().map(|&f| self.name(f)).collect();
        let mut text = format!(
            "- a knot of {} files: {}\n  e.g. ",
            names.len(),
            names.join(", ")
        );
        let cycle = cycle.as_slice();
        for (k, &f) in cycle.iter().enumerate() {
            let to = cycle[(k + 1) % cycle.len()];
            text.push_str(&format!("{}:{} -> ", self.name(f), edges[&(f, to)]));
        }
        text.push_str(&self.name(cycle[0]));
        text.push('\n');
        text
    }
}

/// Appends the paths of a use tree starting at `toks[*j]`, each with the name it binds.
fn use_tree(
    toks: &[(Tok, usize)],
    j: &mut usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) {
    let mut path = prefix;
    loop {
        match toks.get(*j).map(|t| &t.0) {
            Some(Tok::Path) => *j += 1,
            Some(Tok::Ident(seg)) if seg == "as" => {
                *j += 1;
                if let Some((Tok::Ident(alias), _)) = toks.get(*j) {
                    *j += 1;
                    out.push((path.clone(), alias.clone()));
                }
                return;
            }
            Some(Tok::Ident(seg)) => {
                path.push(seg.clone());
                *j += 1;
            }
            Some(Tok::Star) => {
                *j += 1;
                out.push((path.clone(), "*".to_string()));
                return;
            }
            Some(Tok::Open) => {
                *j += 1;
                loop {
                    match toks.get(*j).map(|t| &t.0) {
                        Some(Tok::Close) => {
                            *j += 1;
                            return;
                        }
                        Some(Tok::Comma) => *j += 1,
                        None => return,
                        _ => {
                            let before = *j;
                            use_tree(toks, j, path.clone(), out);
                            if *j == before {
                                *j += 1;
                            }
                        }
                    }
                }
            }
            _ => {
                // `self` inside braces names the prefix itself.
                if path.last().map(String::as_str) == Some("self") && path.len() > 1 {
                    path.pop();
                }
                if let Some(last) = path.last().cloned() {
                    out.push((path, last));
                }
                if toks.get(*j).map(|t| &t.0) == Some(&Tok::Semi) {
                    *j += 1;
                }
                return;
            }
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
