//! Maps a problem's path (`devices[2].site`) to a line and column of the file, using
//! `toml_edit`, which keeps spans.

use toml_edit::{ImDocument, Item};

use crate::Problem;

/// 1-based line and column of byte offset `at`.
pub(crate) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Step::Key(name));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                out.push(Step::Index(i));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

/// The span of the deepest item of `path` that exists in the document.
fn span_of(doc: &ImDocument<&str>, path: &str) -> Option<std::ops::Range<usize>> {
    let mut item: &Item = doc.as_item();
    let mut best = None;
    for step in steps(path) {
        let next = match step {
            Step::Key(k) => {
                let Some((key, value)) = item.as_table_like().and_then(|t| t.get_key_value(k))
                else {
                    return best;
                };
                best = key.span().or_else(|| value.span()).or(best);
                value
            }
            Step::Index(i) => {
                if let Some(aot) = item.as_array_of_tables() {
                    let Some(t) = aot.get(i) else { return best };
                    best = t.span().or(best);
                    // Tables of an array are reached through `Item::Table`; keep walking.
                    return walk_rest(t, path, best);
                }
                let Some(v) = item.as_array().and_then(|a| a.get(i)) else { return best };
                best = v.span().or(best);
                return best;
            }
        };
        item = next;
    }
    best
}

/// Continues the walk inside one table of an array of tables.
fn walk_rest(
    table: &toml_edit::Table,
    path: &str,
    best: Option<std::ops::Range<usize>>,
) -> Option<std::ops::Range<usize>> {
    // The remainder is what follows the first `]`.
    let rest = path.split_once(']').map(|(_, r)| r.trim_start_matches('.')).unwrap_or("");
    let mut best = best;
    if let Some(first) = steps(rest).first()
        && let Step::Key(k) = first
        && let Some((key, value)) = table.get_key_value(k)
    {
        best = key.span().or(value.span()).or(best);
    }
    best
}

pub(crate) fn fill_position(text: &str, p: &mut Problem) {
    fill_positions(text, std::slice::from_mut(p));
}

pub(crate) fn fill_positions(text: &str, problems: &mut [Problem]) {
    let Ok(doc) = ImDocument::parse(text) else { return };
    for p in problems.iter_mut().filter(|p| p.position.is_none() && !p.path.is_empty()) {
        p.position = span_of(&doc, &p.path).map(|s| line_col(text, s.start));
    }
}
