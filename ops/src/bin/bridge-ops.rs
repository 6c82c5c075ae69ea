//! `bridge-ops replay (--dlq <url> | --dlq-name <name>) (--queue <url> | --queue-name <name>) [--dry-run] [--reason R] [--older-than 1h] [--newer-than 2d]
//! [--rate 10] [--limit N]`: replays dead-lettered events (the stack's `EventsDeadLetterQueueUrl` and
//! `EventsQueueUrl` outputs), with the AWS credentials and region of the environment (`AWS_ENDPOINT_URL` for an
//! emulator).
//!
//! `bridge-ops replay-stream --failures <url> [--dry-run] [--limit N]`: the callback stream batches
//! callback-notifier failed (`CallbackStreamFailureQueue`), read back from the stream and handed to the notifier
//! again, configured from the environment as the function is (its variables: `CALLBACKS_TABLE`,
//! `CALLBACK_SUBSCRIBERS`, the webhook queues, `CALLBACK_WEBSOCKET_ENDPOINT`).
//!
//! `bridge-ops trace --conversation <id> --table <idempotency table> --dlq <url> [--servicenow-url <url>
//! --servicenow-secret-id <secret>]`: the conversation's incident, its notes and its dead letters.

use std::process::ExitCode;

use ops::replay::{parse_duration, Filter, Options, Replay};

fn usage() -> ExitCode {
    eprintln!(
        "usage: bridge-ops replay (--dlq <url> | --dlq-name N) (--queue <url> | --queue-name N) [--dry-run] [--reason R] [--older-than 1h] \
         [--newer-than 2d] [--rate 10] [--limit N]\n       \
         bridge-ops replay-stream --failures <CallbackStreamFailureQueue url> [--dry-run] [--limit N]\n       \
         bridge-ops trace --conversation <id> --table <idempotency table> (--dlq <url> | --dlq-name N) \
         [--servicenow-url <url> --servicenow-secret-id <secret with username, password>]"
    );
    ExitCode::from(2)
}

/// `bridge-ops trace`: one conversation through the idempotency table, ServiceNow and the dead-letter queue.
async fn trace(args: &[String]) -> ExitCode {
    let mut flags = std::collections::HashMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match it.next() {
            Some(v) if flag.starts_with("--") => {
                flags.insert(flag.trim_start_matches("--").to_string(), v.clone())
            }
            _ => return usage(),
        };
    }
    let (Some(conversation), Some(table)) = (flags.get("conversation"), flags.get("table")) else {
        return usage();
    };
    let aws = shared::aws::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let dlq = match (flags.get("dlq"), flags.get("dlq-name")) {
        (Some(u), _) => u.clone(),
        (None, Some(n)) => match sqs
            .get_queue_url()
            .queue_name(n)
            .send()
            .await
            .ok()
            .and_then(|o| o.queue_url)
        {
            Some(u) => u,
            None => {
                eprintln!("no queue named {n}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => return usage(),
    };
    let servicenow = match (
        flags.get("servicenow-url"),
        flags.get("servicenow-secret-id"),
    ) {
        (Some(url), Some(secret)) => {
            let secrets = aws_sdk_secretsmanager::Client::new(&aws);
            let (username, password) =
                match shared::aws::read_pair(&secrets, secret, ("username", "password")).await {
                    Ok(pair) => pair,
                    Err(e) => {
                        eprintln!("ServiceNow credentials unreadable: {e}");
                        return ExitCode::FAILURE;
                    }
                };
            servicenow_writer::servicenow::ServiceNowClient::new(
                &servicenow_writer::servicenow::ServiceNowConfig {
                    instance_url: url.clone(),
                    auth: servicenow_writer::servicenow::ServiceNowAuth::Basic {
                        username,
                        password,
                    },
                    connect_timeout: std::time::Duration::from_secs(3),
                    request_timeout: std::time::Duration::from_secs(10),
                },
            )
            .ok()
        }
        _ => None,
    };
    let store = servicenow_writer::conversations::ConversationStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        table.clone(),
        std::time::Duration::from_secs(86_400),
    );
    let replay = Replay {
        sqs,
        dead_letter_queue_url: dlq,
        queue_url: String::new(),
    };
    let t = ops::trace::trace(conversation, &store, &replay, servicenow.as_ref()).await;
    println!(
        "conversation {} (correlation_id {})",
        t.conversation_id, t.key
    );
    println!(
        "  recorded incident: {}",
        t.recorded_incident.as_deref().unwrap_or("none")
    );
    match &t.servicenow {
        Some((number, state, opened)) => {
            println!("  ServiceNow: {number}, {state}, opened {opened}; {} note(s) written by the bridge", t.notes)
        }
        None if servicenow.is_some() => {
            println!("  ServiceNow: no incident with this correlation_id")
        }
        None => println!("  ServiceNow: not asked (--servicenow-url, --servicenow-secret-id)"),
    }
    println!("  dead letters: {}", t.dead_letters.len());
    for l in &t.dead_letters {
        println!(
            "    {}  {}  {}s ago  {}",
            l.message_id,
            l.reason,
            l.age.as_secs(),
            l.detail
        );
    }
    if let Some((reason, detail)) = t.last_error() {
        println!("  last error: {reason} {detail}");
    }
    for u in &t.unreadable {
        println!("  unreadable: {u}");
    }
    ExitCode::SUCCESS
}

/// `bridge-ops replay-stream`: the notifier's failed stream batches, read back and handed to it again.
async fn replay_stream(args: &[String]) -> ExitCode {
    let (mut failures, mut dry_run, mut limit) = (None, false, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--failures" => failures = it.next().cloned(),
            "--dry-run" => dry_run = true,
            "--limit" => match it.next().and_then(|v| v.parse().ok()) {
                Some(l) => limit = Some(l),
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    let Some(failures_queue_url) = failures else {
        return usage();
    };
    let aws = shared::aws::sdk_config().await;
    let notifier = if dry_run {
        None
    } else {
        let built = match callback_notifier::Config::from_env() {
            Ok(config) => callback_notifier::build(config, &aws)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match built {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("the notifier's configuration (its function's environment): {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let replay = ops::stream_replay::StreamReplay {
        sqs: aws_sdk_sqs::Client::new(&aws),
        streams: aws_sdk_dynamodbstreams::Client::new(&aws),
        failures_queue_url,
    };
    let listed = match replay.run(notifier.as_ref(), limit).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut kept = 0;
    for f in &listed {
        let range = f.info.as_ref().map_or("?".to_string(), |i| {
            format!(
                "{} {}..{} ({} records, {})",
                i.shard_id, i.start, i.end, i.batch_size, i.condition
            )
        });
        let fate = match &f.fate {
            ops::stream_replay::Fate::Readable(n) => format!("readable: {n} record(s)"),
            ops::stream_replay::Fate::Replayed(n) => format!("replayed: {n} record(s)"),
            ops::stream_replay::Fate::Kept(why) => {
                kept += 1;
                format!("kept: {why}")
            }
        };
        println!(
            "{}  {}s ago  {range}  {fate}",
            f.message_id,
            f.age.as_secs()
        );
    }
    println!("{} failure(s), {kept} kept", listed.len());
    // Scripts can tell: a failure that could not be read back or replayed is still there.
    match kept {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("replay") => {}
        Some("trace") => return trace(&args[1..]).await,
        Some("replay-stream") => return replay_stream(&args[1..]).await,
        _ => return usage(),
    }
    let mut options = Options {
        filter: Filter::default(),
        dry_run: false,
        rate: 10,
        limit: None,
    };
    let (mut dlq, mut queue) = (None, None);
    let (mut dlq_name, mut queue_name) = (None, None);
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned();
        match flag.as_str() {
            "--dry-run" => options.dry_run = true,
            "--dlq" => dlq = value(),
            "--queue" => queue = value(),
            "--dlq-name" => dlq_name = value(),
            "--queue-name" => queue_name = value(),
            "--reason" => options.filter.reason = value(),
            "--older-than" => match value().as_deref().and_then(parse_duration) {
                Some(d) => options.filter.older_than = Some(d),
                None => return usage(),
            },
            "--newer-than" => match value().as_deref().and_then(parse_duration) {
                Some(d) => options.filter.newer_than = Some(d),
                None => return usage(),
            },
            "--rate" => match value().and_then(|v| v.parse().ok()) {
                Some(r) if r > 0 => options.rate = r,
                _ => return usage(),
            },
            "--limit" => match value().and_then(|v| v.parse().ok()) {
                Some(l) => options.limit = Some(l),
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    let aws = shared::aws::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let resolve = |url: Option<String>, name: Option<String>| {
        let sqs = sqs.clone();
        async move {
            match (url, name) {
                (Some(u), _) => Some(u),
                (None, Some(n)) => sqs
                    .get_queue_url()
                    .queue_name(n)
                    .send()
                    .await
                    .ok()
                    .and_then(|o| o.queue_url),
                (None, None) => None,
            }
        }
    };
    let (Some(dlq), Some(queue)) = (
        resolve(dlq, dlq_name).await,
        resolve(queue, queue_name).await,
    ) else {
        eprintln!("the dead-letter queue and the events queue must be given (and exist)");
        return usage();
    };
    let replay = Replay {
        sqs,
        dead_letter_queue_url: dlq,
        queue_url: queue,
    };
    match replay.run(&options).await {
        Ok(report) => {
            if let Some(task) = &report.move_task {
                println!(
                    "StartMessageMoveTask started (task {task}); SQS moves every dead letter back"
                );
                return ExitCode::SUCCESS;
            }
            for l in &report.letters {
                println!(
                    "{}  {:<28} {:>8}s old  {}{}",
                    l.message_id,
                    l.reason,
                    l.age.as_secs(),
                    if l.replayed { "replayed" } else { "kept" },
                    if l.detail.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", l.detail)
                    }
                );
            }
            for (reason, (n, replayed)) in report.by_reason() {
                println!("{reason}: {n} dead-lettered, {replayed} replayed");
            }
            println!(
                "{} listed, {} replayed{}",
                report.letters.len(),
                report.moved,
                if options.dry_run { " (dry run)" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replay failed: {e}");
            ExitCode::FAILURE
        }
    }
}
