//! TOML (`/etc/aziot/config.toml`): parsed with toml_edit, whose items keep their spans, so
//! every value knows its line.

use std::ops::Range;

use super::tree::{LineIndex, Node, Val};
use super::{ConfigError, ConfigFormat};

pub(super) fn parse_toml(text: &str, origin: &str, lines: &LineIndex) -> Result<Node, ConfigError> {
    let doc = toml_edit::ImDocument::parse(text).map_err(|e| ConfigError::Syntax {
        origin: origin.to_owned(),
        line: e.span().map(|s| lines.line(s.start)),
        format: ConfigFormat::Toml,
        // `message()` alone: the full Display quotes the offending line, which may hold a key.
        message: e.message().trim().replace('\n', " "),
    })?;
    Ok(toml_table(doc.as_table(), None, lines))
}

fn toml_line(
    span: Option<Range<usize>>,
    lines: &LineIndex,
    parent: Option<usize>,
) -> Option<usize> {
    span.map(|s| lines.line(s.start)).or(parent)
}

fn toml_table(table: &toml_edit::Table, parent: Option<usize>, lines: &LineIndex) -> Node {
    let line = toml_line(table.span(), lines, parent);
    let entries = table
        .iter()
        .map(|(k, item)| (k.to_owned(), toml_item(item, line, lines)))
        .collect();
    Node {
        line,
        val: Val::Map(entries),
    }
}

fn toml_item(item: &toml_edit::Item, parent: Option<usize>, lines: &LineIndex) -> Node {
    match item {
        toml_edit::Item::None => Node {
            line: parent,
            val: Val::Null,
        },
        toml_edit::Item::Value(v) => toml_value(v, parent, lines),
        toml_edit::Item::Table(t) => toml_table(t, parent, lines),
        toml_edit::Item::ArrayOfTables(a) => {
            let line = toml_line(a.span(), lines, parent);
            Node {
                line,
                val: Val::Seq(a.iter().map(|t| toml_table(t, line, lines)).collect()),
            }
        }
    }
}

fn toml_value(value: &toml_edit::Value, parent: Option<usize>, lines: &LineIndex) -> Node {
    use toml_edit::Value as T;
    let line = toml_line(value.span(), lines, parent);
    let val = match value {
        T::String(s) => Val::Str(s.value().clone()),
        T::Integer(i) => Val::Int(*i.value()),
        T::Float(f) => Val::Float(*f.value()),
        T::Boolean(b) => Val::Bool(*b.value()),
        T::Datetime(d) => Val::Str(d.value().to_string()),
        T::Array(a) => Val::Seq(a.iter().map(|v| toml_value(v, line, lines)).collect()),
        T::InlineTable(t) => Val::Map(
            t.iter()
                .map(|(k, v)| (k.to_owned(), toml_value(v, line, lines)))
                .collect(),
        ),
    };
    Node { line, val }
}

// YAML: serde_yaml_ng has no spans, so lines are found by walking the text's indentation.
