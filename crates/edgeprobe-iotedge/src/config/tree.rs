//! A format-neutral tree of settings: TOML and YAML both become [`Node`]s that know the line
//! they came from, so one reader serves both and every error can name its line.

pub(super) struct Node {
    pub(super) line: Option<usize>,
    pub(super) val: Val,
}

pub(super) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    pub(super) fn get(&self, key: &str) -> Option<&Node> {
        match &self.val {
            Val::Map(entries) => entries
                .iter()
                .find(|(k, v)| k == key && !matches!(v.val, Val::Null))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A key compared without case (environment variable names).
    pub(super) fn get_nocase(&self, key: &str) -> Option<&Node> {
        match &self.val {
            Val::Map(entries) => entries
                .iter()
                .find(|(k, v)| k.eq_ignore_ascii_case(key) && !matches!(v.val, Val::Null))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub(super) fn is_map(&self) -> bool {
        matches!(self.val, Val::Map(_))
    }

    pub(super) fn kind(&self) -> &'static str {
        match self.val {
            Val::Null => "nothing",
            Val::Bool(_) => "a boolean",
            Val::Int(_) | Val::Float(_) => "a number",
            Val::Str(_) => "a string",
            Val::Seq(_) => "a list",
            Val::Map(_) => "a table",
        }
    }
}

/// Byte offsets to 1-based line numbers.
pub(super) struct LineIndex(Vec<usize>);

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex(starts)
    }

    pub(super) fn line(&self, offset: usize) -> usize {
        match self.0.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

// TOML: parsed with toml_edit, whose items keep their spans, so every value knows its line.

/// `path.key`, or `key` at the top.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
