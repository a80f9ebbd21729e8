//! YAML (IoT Edge 1.1's `/etc/iotedge/config.yaml`): serde_yaml_ng has no spans, so lines
//! are found by walking the text's indentation.

use super::tree::{Node, Val};
use super::{ConfigError, ConfigFormat};

pub(super) fn parse_yaml(text: &str, origin: &str) -> Result<Node, ConfigError> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let loc = e.location();
        let mut message = e.to_string();
        if let Some(l) = &loc {
            message = message.replacen(
                &format!(" at line {} column {}", l.line(), l.column()),
                "",
                1,
            );
        }
        ConfigError::Syntax {
            origin: origin.to_owned(),
            line: loc.map(|l| l.line()),
            format: ConfigFormat::Yaml,
            message: message.replace('\n', " "),
        }
    })?;
    let lines: Vec<&str> = text.lines().collect();
    let mut path = Vec::new();
    Ok(yaml_to_node(value, &lines, &mut path, None))
}

fn yaml_to_node(
    value: serde_yaml_ng::Value,
    lines: &[&str],
    path: &mut Vec<String>,
    line: Option<usize>,
) -> Node {
    use serde_yaml_ng::Value as Y;
    let val = match value {
        Y::Null => Val::Null,
        Y::Bool(b) => Val::Bool(b),
        Y::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Y::String(s) => Val::Str(s),
        Y::Sequence(items) => Val::Seq(
            items
                .into_iter()
                .map(|v| yaml_to_node(v, lines, path, line))
                .collect(),
        ),
        Y::Mapping(map) => {
            let mut entries = Vec::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    _ => continue,
                };
                path.push(key.clone());
                let child_line = yaml_line(lines, path).or(line);
                let node = yaml_to_node(v, lines, path, child_line);
                path.pop();
                entries.push((key, node));
            }
            Val::Map(entries)
        }
        Y::Tagged(t) => return yaml_to_node(t.value, lines, path, line),
    };
    Node { line, val }
}

/// The 1-based line of the block-style key at `path` (first match), by indentation.
fn yaml_line(lines: &[&str], path: &[String]) -> Option<usize> {
    let mut from = 0;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    for key in path {
        found = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                continue;
            }
            let indent = line.len() - trimmed.len();
            match parent_indent {
                Some(p) if indent <= p => break,
                None if indent > 0 => continue,
                _ => {}
            }
            let item = trimmed.strip_prefix("- ").unwrap_or(trimmed);
            if yaml_key_is(item, key) {
                found = Some((i, indent));
                break;
            }
        }
        let (i, indent) = found?;
        from = i + 1;
        parent_indent = Some(indent);
    }
    found.map(|(i, _)| i + 1)
}

fn yaml_key_is(text: &str, key: &str) -> bool {
    [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|k| {
            text.strip_prefix(k.as_str())
                .and_then(|rest| rest.trim_start().strip_prefix(':'))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        })
}
