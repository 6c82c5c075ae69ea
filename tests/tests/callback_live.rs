//! Live status and change notifications: a booked callback's changes reach its WebSocket clients (through the
//! callbacks table's stream, callback-notifier and the API Gateway stand-in) and a webhook subscriber (signed,
//! in order, retried, dead-lettered with the reason).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use shared::retry::Deadline;
use tokio_tungstenite::tungstenite::Message;

use callback_api::access::{AccessKeys, Scope};
use callback_api::reservations::{Reservation, Status};
use integration_tests::callbacks::{body, live_rig, now, LiveRig, SUBSCRIBER_SECRET};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn book(rig: &LiveRig) -> Reservation {
    rig.booking
        .book(
            &body("+15550199888"),
            None,
            now(),
            Deadline::after(Duration::from_secs(4)),
        )
        .await
        .unwrap()
}

fn live_token(id: &str) -> String {
    AccessKeys::from_secret(integration_tests::CALLBACK_ACCESS_KEY).issue(
        Scope::Live,
        id,
        shared::clock::epoch_secs() + 600,
    )
}

async fn connect(
    rig: &LiveRig,
    token: &str,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    tokio_tungstenite::connect_async(format!("{}?token={token}", rig.ws_url))
        .await
        .map(|(s, _)| s)
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Genesys moves the callback on: its event goes through the events queue to callback-events.
async fn genesys_moves(rig: &LiveRig, conversation: &str, kind: &str) {
    let event = rig
        .sim
        .advance_callback(conversation, kind)
        .expect("applies");
    let queue = &rig.resources.callback_events_queue_url;
    local::callback_pumps::deliver_event(&rig.sqs, queue, &event)
        .await
        .unwrap();
    let events = callback_events::CallbackEvents {
        reservations: rig.booking.reservations.clone(),
        booking: None,
        deadline: Duration::from_secs(4),
    };
    while local::callback_pumps::pump_callback_events(&rig.sqs, queue, &events)
        .await
        .unwrap()
        > 0
    {}
}

/// Delivers queued webhooks until `n` arrived or `limit` passed.
async fn webhooks(rig: &LiveRig, n: usize, limit: Duration) {
    let until = std::time::Instant::now() + limit;
    while rig
        .sink
        .received()
        .iter()
        .filter(|r| r.body.starts_with(b"{"))
        .count()
        < n
        && std::time::Instant::now() < until
    {
        local::callback_pumps::pump_webhooks(
            &rig.sqs,
            &rig.resources.callback_webhooks_queue_url,
            &rig.notifier,
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn verify(received: &integration_tests::webhook_sink::Received) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(SUBSCRIBER_SECRET).unwrap();
    mac.update(format!("{}.", received.timestamp).as_bytes());
    mac.update(&received.body);
    received.signature == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn scheduled_connected_completed_reach_the_websocket_and_the_subscriber_in_order() {
    let mut rig = live_rig().await;
    let r = book(&rig).await;
    let conversation = r.conversation_id.clone().unwrap();
    let mut socket = connect(&rig, &live_token(&r.id)).await.expect("connects");
    // Any message is answered with where the reservation is now.
    socket.send(Message::Text("status".into())).await.unwrap();
    let now = next_json(&mut socket).await;
    assert_eq!(
        (now["status"].as_str(), now["reservation_id"].as_str()),
        (Some("scheduled"), Some(r.id.as_str()))
    );
    rig.stream.pump(&rig.notifier).await.unwrap();
    genesys_moves(&rig, &conversation, "user.start").await;
    rig.stream.pump(&rig.notifier).await.unwrap();
    genesys_moves(&rig, &conversation, "acw").await;
    rig.stream.pump(&rig.notifier).await.unwrap();
    let mut pushed = Vec::new();
    for _ in 0..3 {
        let n = next_json(&mut socket).await;
        pushed.push((
            n["status"].as_str().unwrap().to_string(),
            n["sequence"].as_u64().unwrap(),
        ));
    }
    assert_eq!(
        pushed,
        [
            ("scheduled".to_string(), 1),
            ("connected".into(), 2),
            ("completed".into(), 3)
        ]
    );
    // The subscriber: the same three, in order, each signed over its timestamp and body, without the caller.
    webhooks(&rig, 3, Duration::from_secs(10)).await;
    let received = rig.sink.received();
    let statuses: Vec<String> = received
        .iter()
        .map(|w| {
            serde_json::from_slice::<Value>(&w.body).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(statuses, ["scheduled", "connected", "completed"]);
    for w in &received {
        assert!(verify(w), "signature");
        let text = String::from_utf8_lossy(&w.body);
        assert!(
            !text.contains("5550199888") && !text.contains("Lovelace"),
            "{text}"
        );
        let age = shared::clock::epoch_secs() as i64 - w.timestamp.parse::<i64>().unwrap();
        assert!((0..60).contains(&age));
    }
    // Replaying the stream (a retried batch) queues nothing new: the notices are deduplicated.
    let records = local::callback_pumps::StreamPump::new(
        &integration_tests::aws_config().await,
        &rig.resources.callbacks_stream_arn,
    )
    .next()
    .await
    .unwrap();
    assert_eq!(rig.notifier.on_stream(&records).await, None);
    webhooks(&rig, 4, Duration::from_secs(1)).await;
    let ids: Vec<String> = rig
        .sink
        .received()
        .iter()
        .map(|w| w.event_id.clone())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
}

#[tokio::test]
async fn a_connection_needs_the_reservations_live_token_and_a_gone_one_is_forgotten() {
    let mut rig = live_rig().await;
    let r = book(&rig).await;
    // No token, another key's token, a manage token: refused before any upgrade.
    assert!(connect(&rig, "").await.is_err());
    let forged = AccessKeys::from_secret("not-the-key").issue(
        Scope::Live,
        &r.id,
        shared::clock::epoch_secs() + 600,
    );
    assert!(connect(&rig, &forged).await.is_err());
    let manage = AccessKeys::from_secret(integration_tests::CALLBACK_ACCESS_KEY).issue(
        Scope::Manage,
        &r.id,
        shared::clock::epoch_secs() + 600,
    );
    assert!(connect(&rig, &manage).await.is_err());
    assert_eq!(rig.gateway.open_connections(), 0);
    // A connection API Gateway has closed without $disconnect reaching us: the push answers 410 and it is
    // forgotten; the open one gets the change.
    let mut socket = connect(&rig, &live_token(&r.id)).await.unwrap();
    rig.notifier
        .connections
        .add(&r.id, "gone-connection=")
        .await
        .unwrap();
    assert_eq!(rig.notifier.connections.of(&r.id).await.unwrap().len(), 2);
    rig.stream.pump(&rig.notifier).await.unwrap();
    assert_eq!(next_json(&mut socket).await["status"], "scheduled");
    assert_eq!(rig.notifier.connections.of(&r.id).await.unwrap().len(), 1);
    // Closing the socket runs $disconnect.
    socket.close(None).await.unwrap();
    for _ in 0..50 {
        if rig.notifier.connections.of(&r.id).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rig.notifier.connections.of(&r.id).await.unwrap().is_empty());
}

async fn dead_letters(rig: &LiveRig) -> Vec<(String, String)> {
    let got = rig
        .sqs
        .receive_message()
        .queue_url(&rig.resources.callback_webhooks_dead_letter_queue_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    got.messages()
        .iter()
        .map(|m| {
            let attr = |k: &str| {
                m.message_attributes()
                    .and_then(|a| a.get(k))
                    .and_then(|v| v.string_value())
                    .unwrap_or_default()
                    .to_string()
            };
            (attr("reason"), attr("notice_id"))
        })
        .collect()
}

#[tokio::test]
async fn a_failing_subscriber_is_retried_in_order_then_dead_lettered_with_the_reason() {
    let mut rig = live_rig().await;
    let r = book(&rig).await;
    let conversation = r.conversation_id.clone().unwrap();
    // The first attempt fails (503): retried after the backoff, and the next change waits behind it.
    rig.sink.answer_next(&[503]);
    rig.stream.pump(&rig.notifier).await.unwrap();
    genesys_moves(&rig, &conversation, "user.start").await;
    rig.stream.pump(&rig.notifier).await.unwrap();
    webhooks(&rig, 3, Duration::from_secs(10)).await;
    let statuses: Vec<String> = rig
        .sink
        .received()
        .iter()
        .map(|w| {
            serde_json::from_slice::<Value>(&w.body).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(statuses, ["scheduled", "scheduled", "connected"]);
    let ids: Vec<String> = rig
        .sink
        .received()
        .iter()
        .map(|w| w.event_id.clone())
        .collect();
    assert_eq!(ids[0], ids[1], "a retry carries the same event id");
    // A refusal (400) is dead-lettered at once; a subscriber that keeps failing, after three attempts.
    rig.sink.answer_next(&[400]);
    genesys_moves(&rig, &conversation, "acw").await;
    rig.stream.pump(&rig.notifier).await.unwrap();
    webhooks(&rig, 4, Duration::from_secs(5)).await;
    let letters = dead_letters(&rig).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, "refused: HTTP 400");
    assert_eq!(letters[0].1, format!("{}:3", r.id));
    let after = rig.booking.reservations.get(&r.id).await.unwrap().unwrap();
    assert_eq!(
        after.status,
        Status::Completed,
        "the status never waits for a subscriber"
    );
}

/// A stream batch the notifier failed for good (Lambda's on-failure record names its shard and range, not its
/// records) is read back from the stream by `bridge-ops replay-stream`: listed in a dry run, replayed, and
/// delivered once however often it is replayed; a message that is no on-failure record stays on the queue.
#[tokio::test]
async fn a_failed_stream_batch_is_read_back_replayed_and_delivered_once() {
    use ops::stream_replay::{Fate, StreamReplay};
    let rig = live_rig().await;
    let r = book(&rig).await;
    let aws = integration_tests::aws_config().await;
    let arn = rig.resources.callbacks_stream_arn.clone();
    let streams = aws_sdk_dynamodbstreams::Client::new(&aws);
    let described = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    let shard = described
        .stream_description()
        .and_then(|d| d.shards().first())
        .and_then(|s| s.shard_id())
        .unwrap()
        .to_string();
    // Nothing was pumped: the batch the notifier never delivered is everything the stream holds.
    let mut reader = local::callback_pumps::StreamPump::new(&aws, &arn);
    let records = reader.next().await.unwrap();
    let sequence = |r: &Value| {
        r["dynamodb"]["SequenceNumber"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (start, end) = (sequence(&records[0]), sequence(records.last().unwrap()));
    let failure = serde_json::json!({
        "requestContext": {"requestId": "r1", "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 21},
        "version": "1.0", "timestamp": "2026-12-02T10:00:00.000Z",
        "DDBStreamBatchInfo": {"shardId": shard, "startSequenceNumber": start, "endSequenceNumber": end,
            "batchSize": records.len(), "streamArn": arn}})
    .to_string();
    let queue = rig
        .sqs
        .create_queue()
        .queue_name(format!("{}-stream-failures", rig.resources.callbacks_table))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    // A range reaching past what the stream holds (its records expired, or never there) is kept.
    let beyond = failure.replace(
        &format!("\"endSequenceNumber\":\"{end}\""),
        "\"endSequenceNumber\":\"9999999999999999999999999999\"",
    );
    assert_ne!(beyond, failure);
    // A range whose last record the stream does not hold (here: it ends before it starts) hands over
    // nothing, and so is kept rather than deleted as replayed.
    let second = sequence(&records[1]);
    let inverted = failure
        .replace(
            &format!("\"startSequenceNumber\":\"{start}\""),
            &format!("\"startSequenceNumber\":\"{second}\""),
        )
        .replace(
            &format!("\"endSequenceNumber\":\"{end}\""),
            &format!("\"endSequenceNumber\":\"{start}\""),
        );
    assert!(inverted.contains(&format!("\"endSequenceNumber\":\"{start}\"")));
    let holed = Fate::Kept(format!(
        "the stream does not hold the range's last record {start}"
    ));
    for body in [
        failure.as_str(),
        beyond.as_str(),
        inverted.as_str(),
        r#"{"note": "not from Lambda"}"#,
    ] {
        rig.sqs
            .send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let replay = StreamReplay {
        sqs: rig.sqs.clone(),
        streams,
        failures_queue_url: queue.clone(),
    };
    let fates = |listed: &[ops::stream_replay::Failure]| {
        // A range's records past its end keep coming (the replay writes too): the end is what counts.
        let mut f: Vec<Fate> = listed
            .iter()
            .map(|f| match &f.fate {
                Fate::Kept(why) if why.starts_with("the stream holds ") => Fate::Kept(
                    why.split_once(", ")
                        .map_or(why.clone(), |(_, end)| end.into()),
                ),
                other => other.clone(),
            })
            .collect();
        f.sort_by_key(|f| format!("{f:?}"));
        f
    };
    let junk = Fate::Kept("not an on-failure record: no DDBStreamBatchInfo.streamArn".into());
    let short = Fate::Kept("not up to 9999999999999999999999999999".into());
    let listed = replay.run(None, None).await.unwrap();
    assert_eq!(
        fates(&listed),
        [
            junk.clone(),
            short.clone(),
            holed.clone(),
            Fate::Readable(records.len())
        ]
    );
    let info = listed
        .iter()
        .find(|f| f.fate == Fate::Readable(records.len()))
        .and_then(|f| f.info.clone())
        .unwrap();
    assert_eq!((info.start, info.end, info.shard_id), (start, end, shard));
    assert!(rig.sink.received().is_empty(), "a dry run delivers nothing");

    let replayed = replay.run(Some(&rig.notifier), None).await.unwrap();
    assert_eq!(
        fates(&replayed),
        [
            junk.clone(),
            short.clone(),
            holed.clone(),
            Fate::Replayed(records.len())
        ]
    );
    webhooks(&rig, 1, Duration::from_secs(10)).await;
    // Lambda may write the same on-failure record again, or an operator replay twice: nothing twice.
    rig.sqs
        .send_message()
        .queue_url(&queue)
        .message_body(&failure)
        .send()
        .await
        .unwrap();
    let again = replay.run(Some(&rig.notifier), None).await.unwrap();
    assert_eq!(
        fates(&again),
        [
            junk.clone(),
            short.clone(),
            holed.clone(),
            Fate::Replayed(records.len())
        ]
    );
    webhooks(&rig, 2, Duration::from_secs(3)).await;
    let statuses: Vec<(String, String)> = rig
        .sink
        .received()
        .iter()
        .map(|w| {
            let v: Value = serde_json::from_slice(&w.body).unwrap();
            (
                v["reservation_id"].as_str().unwrap().to_string(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(statuses, [(r.id.clone(), "scheduled".to_string())]);
    assert_eq!(
        fates(&replay.run(None, None).await.unwrap()),
        [junk, short, holed]
    );
    // Replayed failures are deleted, not merely hidden: the three kept are all the queue holds.
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attributes = rig
        .sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let count = |a: A| {
        attributes
            .get(&a)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap()
    };
    assert_eq!(
        count(A::ApproximateNumberOfMessages) + count(A::ApproximateNumberOfMessagesNotVisible),
        3
    );
}
