//! What the peer sent, read from the stream tap: not AMQP at all, which step a timeout
//! happened in, the container id of the peer's `open` (decoded with serde_amqp).

use super::*;

pub(super) const RECORD_LIMIT: usize = 4096;

/// What the peer sent, read to tell "not AMQP" from "closed", to name the step a timeout
/// happened in, and to name the peer's container.
pub(super) trait AmqpHeard {
    fn non_amqp_preview(&self) -> Option<String>;
    fn first_header_id(&self) -> Option<u8>;
    fn waiting_for(&self, sasl: bool) -> &'static str;
    fn remote_container(&self) -> Option<String>;
}

impl AmqpHeard for Heard {
    /// Printable prefix of the peer's bytes if they do not start like AMQP.
    fn non_amqp_preview(&self) -> Option<String> {
        let head = self.head();
        if head.is_empty() || b"AMQP".starts_with(&head[..head.len().min(4)]) {
            return None;
        }
        let line = head
            .split(|b| *b == b'\r' || *b == b'\n')
            .next()
            .unwrap_or(&[]);
        let text: String = line
            .iter()
            .take(60)
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        Some(text)
    }

    /// Protocol id of the peer's first protocol header (0 = AMQP, 3 = SASL).
    fn first_header_id(&self) -> Option<u8> {
        let head = self.head();
        (head.len() >= 5 && head[..4] == *b"AMQP").then(|| head[4])
    }

    fn waiting_for(&self, sasl: bool) -> &'static str {
        let head = self.head();
        let has = |id: u8| head.windows(5).any(|w| w[..4] == *b"AMQP" && w[4] == id);
        if head.is_empty() {
            "the peer's AMQP protocol header"
        } else if has(0) {
            "the peer's AMQP open frame"
        } else if sasl && has(3) {
            "the SASL negotiation to complete"
        } else {
            "the AMQP protocol header exchange"
        }
    }

    /// The container-id of the peer's `open` frame: the first frame after its AMQP protocol
    /// header, decoded with serde_amqp (fe2o3-amqp does not expose the remote `open`).
    fn remote_container(&self) -> Option<String> {
        let head = self.head();
        let header = b"AMQP\x00\x01\x00\x00";
        let start = head.windows(8).rposition(|w| w == header)? + 8;
        remote_open(head.get(start..)?).map(|open| open.container_id.chars().take(200).collect())
    }
}

/// Decodes an AMQP frame (size, data offset, type 0, channel) that carries an `open`.
pub(super) fn remote_open(frame: &[u8]) -> Option<Open> {
    let size = u32::from_be_bytes(frame.get(..4)?.try_into().ok()?) as usize;
    let doff = usize::from(*frame.get(4)?) * 4;
    if *frame.get(5)? != 0 {
        return None; // not an AMQP frame (1 = SASL)
    }
    serde_amqp::from_slice(frame.get(doff..size)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a peer sends it: 8-byte header (size, doff 2, type 0, channel 0), then `open`.
    fn frame_of(open: &Open) -> Vec<u8> {
        let body = serde_amqp::to_vec(open).unwrap();
        let mut frame = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&[2, 0, 0, 0]);
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn the_peers_container_id_comes_from_its_open_frame() {
        let open = Open {
            container_id: "IoTHub-7a1".into(),
            hostname: Some("hub.azure-devices.net".into()),
            max_frame_size: 65536.into(),
            channel_max: 8191.into(),
            idle_time_out: Some(240_000),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let mut head = b"AMQP\x03\x01\x00\x00AMQP\x00\x01\x00\x00".to_vec();
        head.extend_from_slice(&frame_of(&open));
        let heard = Heard::of(&head);
        assert_eq!(heard.remote_container().as_deref(), Some("IoTHub-7a1"));

        // Cut short (the recorder keeps only the first bytes), or not AMQP: no name.
        let heard = Heard::of(&head[..head.len() - 3]);
        assert_eq!(heard.remote_container(), None);
        let mut sasl = frame_of(&open);
        sasl[5] = 1;
        assert!(remote_open(&sasl).is_none());
    }
}
