//! What the AMQP probe sends before the peer has answered (#19): the SASL header and
//! `sasl-init` in one flight; then the AMQP header, `open`, `begin` and the two `$cbs` links'
//! attaches in one flight. The peer here is
//! fe2o3-amqp's own frame codec driven by hand, so the test can hold back its answers and
//! look at what has already arrived.

use std::time::Duration;

use edgeprobe_probes::amqp::{handshake, AmqpErrorKind, AmqpParams, AmqpSasl, CbsPutToken};
use fe2o3_amqp::frames::amqp::{Frame, FrameBody};
use fe2o3_amqp::frames::sasl;
use fe2o3_amqp::transport::Transport;
use fe2o3_amqp::types::definitions::{self, AmqpError, Handle, Role};
use fe2o3_amqp::types::messaging::TargetArchetype;
use fe2o3_amqp::types::performatives::{Begin, Close, Flow, Open};
use fe2o3_amqp::types::primitives::{Array, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslMechanisms, SaslOutcome};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::{timeout, Instant};

const HEADER: &[u8; 8] = b"AMQP\x00\x01\x00\x00";

const SASL_HEADER: &[u8; 8] = b"AMQP\x03\x01\x00\x00";

fn params(sasl: AmqpSasl) -> AmqpParams {
    AmqpParams {
        hostname: "hub.lab".into(),
        container_id: "dev1".into(),
        sasl,
        cbs: Some(CbsPutToken {
            audience: "hub.lab/devices/dev1".into(),
            // Longer than the 512-byte frames allowed before the peer's `open` is read.
            token: format!(
                "SharedAccessSignature sr=hub.lab%2Fdevices%2Fdev1&sig={}&se=1",
                "x".repeat(900)
            ),
        }),
        link_address: Some("/devices/dev1/messages/events".into()),
    }
}

/// The next frame from the probe, which must already be on its way: the peer has not
/// answered what the probe sent before it.
async fn next(transport: &mut Transport<DuplexStream, Frame>) -> Frame {
    timeout(Duration::from_secs(3), transport.next())
        .await
        .expect("the probe sent it without waiting for an answer")
        .expect("a frame, not the end of the stream")
        .expect("a well-formed AMQP frame")
}

fn open() -> Frame {
    Frame::new(
        0u16,
        FrameBody::Open(Open {
            container_id: "peer".into(),
            hostname: None,
            max_frame_size: Default::default(),
            channel_max: Default::default(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }),
    )
}

fn begin_reply() -> Frame {
    Frame::new(
        0u16,
        FrameBody::Begin(Begin {
            remote_channel: Some(0),
            next_outgoing_id: 0,
            incoming_window: 2048,
            outgoing_window: 2048,
            handle_max: Handle(u32::MAX),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }),
    )
}

/// Plays SASL ANONYMOUS: the client's `sasl-init` must arrive before the peer says
/// anything. Returns the stream, ready for the AMQP header.
async fn sasl_anonymous(mut server: DuplexStream) -> DuplexStream {
    let mut header = [0u8; 8];
    server.read_exact(&mut header).await.unwrap();
    assert_eq!(&header, SASL_HEADER);
    let mut sasl = Transport::<_, sasl::Frame>::bind(server, 512, None);
    let init = timeout(Duration::from_secs(3), sasl.next())
        .await
        .expect("sasl-init sent without waiting for sasl-mechanisms")
        .expect("a frame")
        .expect("a SASL frame");
    let sasl::Frame::Init(init) = init else {
        panic!("expected sasl-init, got {init:?}");
    };
    assert_eq!(init.mechanism, Symbol::from("ANONYMOUS"));

    let (mut write, read) = sasl.into_framed_codec();
    write.get_mut().write_all(SASL_HEADER).await.unwrap();
    let mut sasl = Transport::<_, sasl::Frame>::bind_to_framed_codec(write, read, None);
    let mechanisms = SaslMechanisms {
        sasl_server_mechanisms: Array(vec![Symbol::from("ANONYMOUS")]),
    };
    sasl.send(sasl::Frame::Mechanisms(mechanisms))
        .await
        .unwrap();
    let outcome = SaslOutcome {
        code: SaslCode::Ok,
        additional_data: None,
    };
    sasl.send(sasl::Frame::Outcome(outcome)).await.unwrap();
    let (write, read) = sasl.into_framed_codec();
    assert!(read.read_buffer().is_empty(), "nothing before the outcome");
    read.into_inner().unsplit(write.into_inner())
}

async fn flights(sasl: AmqpSasl) {
    let anonymous = matches!(sasl, AmqpSasl::Anonymous);
    let (client, server) = tokio::io::duplex(64 * 1024);
    let deadline = Instant::now() + Duration::from_secs(4);
    let probe = tokio::spawn(async move { handshake(client, &params(sasl), deadline).await });
    let mut server = if anonymous {
        sasl_anonymous(server).await
    } else {
        server
    };

    let mut header = [0u8; 8];
    server.read_exact(&mut header).await.unwrap();
    assert_eq!(&header, HEADER);
    // Our header is not sent yet: the probe's `open` must come anyway.
    let mut transport = Transport::<_, Frame>::bind(server, 512, None);
    let first = next(&mut transport).await;
    assert!(
        matches!(first.body, FrameBody::Open(ref o) if o.container_id == "dev1"),
        "{first:?}"
    );

    // And the session's `begin` right behind it, still before any answer.
    let begin = next(&mut transport).await;
    assert!(matches!(begin.body, FrameBody::Begin(_)), "{begin:?}");

    // Then the $cbs sender's and receiver's attaches, still before any answer.
    let mut roles = Vec::new();
    let mut attaches = Vec::new();
    for _ in 0..2 {
        let frame = next(&mut transport).await;
        let FrameBody::Attach(attach) = frame.body else {
            panic!("expected an attach, got {frame:?}");
        };
        attaches.push(attach.clone());
        let sender = matches!(attach.role, Role::Sender);
        roles.push(if sender { "sender" } else { "receiver" });
        let node = match attach.role {
            Role::Sender => attach.target.and_then(|t| match *t {
                TargetArchetype::Target(t) => t.address,
                #[allow(unreachable_patterns)]
                _ => None,
            }),
            Role::Receiver => attach.source.and_then(|s| s.address.clone()),
        };
        assert_eq!(node.as_deref(), Some("$cbs"), "{}", attach.name);
    }
    roles.sort();
    assert_eq!(roles, ["receiver", "sender"]);

    // Now the peer answers: its header, `open` and `begin`, in one flight.
    let (mut write, read) = transport.into_framed_codec();
    write.get_mut().write_all(HEADER).await.unwrap();
    let mut transport = Transport::bind_to_framed_codec(write, read, None);
    transport.send(open()).await.unwrap();
    transport.send(begin_reply()).await.unwrap();
    // Frames as large as our `open` allows (its default: no limit) from now on.
    transport.set_decoder_max_frame_size(64 * 1024);

    // Answer both, give the sender credit: the put-token request comes in one transfer
    // frame, longer than the 512 bytes allowed before the peer's `open` was read. The
    // negotiated frame size reached the link although the link was made before it was
    // known.
    for (handle, attach) in attaches.into_iter().enumerate() {
        let sender = matches!(attach.role, Role::Sender);
        let mut reply = attach;
        reply.handle = Handle(handle as u32);
        reply.role = if sender { Role::Receiver } else { Role::Sender };
        reply.initial_delivery_count = (!sender).then_some(0);
        transport
            .send(Frame::new(0u16, FrameBody::Attach(reply)))
            .await
            .unwrap();
        if sender {
            transport.send(credit(handle as u32)).await.unwrap();
        }
    }
    let transfer = loop {
        let frame = next(&mut transport).await;
        if let FrameBody::Transfer {
            performative,
            payload,
        } = frame.body
        {
            break (performative, payload);
        }
    };
    assert!(!transfer.0.more, "split into frames: {:?}", transfer.0);
    assert!(transfer.1.len() > 512, "{} bytes", transfer.1.len());

    // The peer goes away with the put-token unanswered. fe2o3-amqp keeps a sent message
    // waiting for its outcome when the connection stops, so the probe ends at its deadline
    // (a timeout), without a panic.
    drop(transport);
    let trace = timeout(Duration::from_secs(10), probe)
        .await
        .expect("the probe ends")
        .expect("no panic");
    assert!(trace.open.result.is_ok(), "{trace:?}");
    assert!(trace.auth.expect("auth was tried").result.is_err());
}

fn credit(handle: u32) -> Frame {
    Frame::new(
        0u16,
        FrameBody::Flow(Flow {
            next_incoming_id: Some(0),
            incoming_window: 2048,
            next_outgoing_id: 0,
            outgoing_window: 2048,
            handle: Some(Handle(handle)),
            delivery_count: Some(0),
            link_credit: Some(10),
            available: None,
            drain: false,
            echo: false,
            properties: None,
        }),
    )
}

#[tokio::test]
async fn header_open_begin_and_both_cbs_attaches_go_in_one_flight() {
    flights(AmqpSasl::None).await;
}

#[tokio::test]
async fn with_sasl_the_sasl_header_and_init_go_in_one_flight_too() {
    flights(AmqpSasl::Anonymous).await;
}

/// A peer that refuses the connection (`close` with an error instead of `open`) while the
/// probe's `begin` and attaches are already on their way: the refusal is the open's, named
/// with the peer's condition, not a link's or the session's.
#[tokio::test]
async fn a_refused_open_is_named_as_the_open_s_refusal_though_begin_and_attaches_were_sent() {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let deadline = Instant::now() + Duration::from_secs(4);
    let probe =
        tokio::spawn(async move { handshake(client, &params(AmqpSasl::None), deadline).await });
    let mut header = [0u8; 8];
    server.read_exact(&mut header).await.unwrap();
    let mut transport = Transport::<_, Frame>::bind(server, 512, None);
    for expected in ["open", "begin", "attach", "attach"] {
        let frame = next(&mut transport).await;
        let got = match frame.body {
            FrameBody::Open(_) => "open",
            FrameBody::Begin(_) => "begin",
            FrameBody::Attach(_) => "attach",
            _ => "something else",
        };
        assert_eq!(got, expected, "{frame:?}");
    }
    let (mut write, read) = transport.into_framed_codec();
    write.get_mut().write_all(HEADER).await.unwrap();
    let mut transport = Transport::bind_to_framed_codec(write, read, None);
    let refusal = definitions::Error::new(
        AmqpError::UnauthorizedAccess,
        Some("no such hub".to_string()),
        None,
    );
    transport
        .send(Frame::new(
            0u16,
            FrameBody::Close(Close {
                error: Some(refusal),
            }),
        ))
        .await
        .unwrap();

    let trace = timeout(Duration::from_secs(10), probe)
        .await
        .expect("the probe ends")
        .expect("no panic");
    let error = trace.open.result.expect_err("the open was refused");
    assert_eq!(error.kind, AmqpErrorKind::Unauthorized, "{error}");
    assert!(
        error
            .message
            .starts_with("AMQP open refused by peer: amqp:unauthorized-access: no such hub"),
        "{error}"
    );
    assert!(trace.auth.is_none());
}
