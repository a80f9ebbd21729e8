//! When a peer answers with something other than the protocol we spoke, say what it was:
//! an HTTP server on 8883 (the classic that TCP- and TLS-only checkers pass), a captive
//! portal's HTML, or just bytes. This is what turns "protocol error" into "wrong service".

/// What the first bytes from a peer look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP response; the status line.
    Http(String),
    /// HTML or other text; the first line.
    Text(String),
    /// Opaque bytes; a hex preview.
    Binary(String),
}

impl Answer {
    /// Whether the peer is recognisably some other service (rather than a broken peer).
    pub fn is_other_service(&self) -> bool {
        matches!(self, Answer::Http(_) | Answer::Text(_))
    }

    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Answer::Http(line) => format!("an HTTP server answered ({line})"),
            Answer::Text(line) => format!("the peer answered with text ({line})"),
            Answer::Binary(hex) => format!("the peer sent unexpected bytes ({hex})"),
        }
    }
}

/// Classifies the first bytes a peer sent.
pub fn classify(bytes: &[u8]) -> Answer {
    let first_line = |b: &[u8]| -> String {
        let end = b
            .iter()
            .position(|&c| c == b'\r' || c == b'\n')
            .unwrap_or(b.len())
            .min(80);
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    if bytes.starts_with(b"HTTP/") {
        return Answer::Http(first_line(bytes));
    }
    let printable = bytes
        .iter()
        .take(32)
        .all(|&c| c.is_ascii_graphic() || c.is_ascii_whitespace());
    if !bytes.is_empty() && printable {
        return Answer::Text(first_line(bytes));
    }
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Answer::Binary(hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_http_text_and_bytes() {
        assert_eq!(
            classify(b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n"),
            Answer::Http("HTTP/1.1 400 Bad Request".into())
        );
        assert!(classify(b"<html><title>Login</title>").is_other_service());
        assert_eq!(
            classify(&[0x20, 0x02, 0x00]),
            Answer::Binary("20 02 00".into())
        );
    }
}
