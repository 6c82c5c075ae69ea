//! What template.yaml must say for the code's assumptions to hold (cfn-lint checks the syntax; these check
//! the contract): the EventBridge path's queue policy, the queue limit the receiver reads, log groups and the
//! log level, and the writer's auth-mode IAM.

use integration_tests::workspace_root;

fn template() -> String {
    std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template.yaml")
}

/// The lines of top-level resource `name` (two-space indented key under `Resources:`).
fn resource(t: &str, name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = t.lines().skip_while(|l| *l != header);
    let first = lines.next().unwrap_or_else(|| panic!("no resource {name}"));
    std::iter::once(first)
        .chain(lines.take_while(|l| l.is_empty() || l.starts_with("    ") || l.starts_with("  #")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn functions(t: &str) -> Vec<String> {
    t.lines()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[1].trim() == "Type: AWS::Serverless::Function")
        .map(|w| w[0].trim().trim_end_matches(':').to_string())
        .collect()
}

#[test]
fn the_events_queue_lets_only_the_genesys_eventbridge_rule_send_to_it() {
    let t = template();
    let policy = resource(&t, "EventsQueuePolicy");
    for needed in [
        "Type: AWS::SQS::QueuePolicy",
        "- !Ref EventsQueue",
        "Service: events.amazonaws.com",
        "Action: sqs:SendMessage",
        "aws:SourceArn: !GetAtt GenesysEventsRule.Arn",
    ] {
        assert!(policy.contains(needed), "{needed}:\n{policy}");
    }
    let rule = resource(&t, "GenesysEventsRule");
    assert!(rule.contains("Arn: !GetAtt EventsQueue.Arn"), "{rule}");
    assert!(rule.contains("EventBusName: !Ref GenesysEventSourceName"));
}

#[test]
fn the_events_queue_limit_is_set_readable_by_the_receiver_and_the_same_locally() {
    let t = template();
    let queue = resource(&t, "EventsQueue");
    let local = local::aws_setup::ResourceNames::local().max_message_size;
    assert!(
        queue.contains(&format!("MaximumMessageSize: {local}")),
        "template and local setup disagree:\n{queue}"
    );
    let receiver = resource(&t, "WebhookReceiverFunction");
    assert!(receiver.contains("sqs:GetQueueAttributes"), "{receiver}");
}

#[test]
fn every_function_logs_to_its_group_with_retention_at_the_log_level_parameter() {
    let t = template();
    let names = functions(&t);
    assert_eq!(names.len(), 9, "{names:?}");
    for f in &names {
        let block = resource(&t, f);
        let group = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("LogGroup: !Ref "))
            .unwrap_or_else(|| panic!("{f} has no LoggingConfig.LogGroup"));
        assert!(
            block.contains("ApplicationLogLevel: !FindInMap [LogLevels, !Ref LogLevel, Lambda]"),
            "{f}: the LogLevel parameter must reach Lambda's ApplicationLogLevel"
        );
        let group_block = resource(&t, group);
        assert!(
            group_block.contains("RetentionInDays: !Ref LogRetentionDays"),
            "{group}"
        );
    }
    assert!(!t.contains("ApplicationLogLevel: INFO"), "a fixed level");
    let api = resource(&t, "HttpApi");
    assert!(api.contains("AccessLogSettings:"), "{api}");
    assert!(
        api.contains("\"POST /webhooks/genesys\":"),
        "its own throttling budget"
    );
}

#[test]
fn the_writer_and_the_data_action_are_granted_only_the_secrets_of_their_servicenow_auth_mode() {
    for function in ["ServiceNowWriterFunction", "DataActionFunction"] {
        servicenow_secrets_follow_the_auth_mode(&resource(&template(), function));
    }
}

#[test]
fn the_data_action_reads_and_locks_conversations_but_claims_and_deletes_nothing() {
    let t = template();
    let f = resource(&t, "DataActionFunction");
    assert!(
        f.contains("IDEMPOTENCY_TABLE: !Ref IdempotencyTable"),
        "{f}"
    );
    assert!(
        f.contains("WRITER_SETTLE_SECONDS: !Ref WriterSettleSeconds"),
        "same settle window as the writer"
    );
    for granted in ["dynamodb:GetItem", "dynamodb:UpdateItem"] {
        assert!(f.contains(granted), "{granted}");
    }
    for denied in ["dynamodb:PutItem", "dynamodb:DeleteItem", "sqs:"] {
        assert!(!f.contains(denied), "{denied}");
    }
    for route in ["/data-actions/{action}", "/data-actions/oauth/token"] {
        assert!(f.contains(&format!("Path: {route}\n")), "{route}");
    }
}

fn servicenow_secrets_follow_the_auth_mode(writer: &str) {
    let policies = &writer[writer.find("Policies:").expect("writer policies")..];
    // Every statement naming a ServiceNow secret sits in a ServiceNowOAuth condition.
    let conditional = policies
        .matches("- !If\n              - ServiceNowOAuth")
        .count();
    assert_eq!(conditional, 2, "{policies}");
    let unconditional = policies
        .split("- !If")
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        !unconditional.contains("!Ref ServiceNow"),
        "{unconditional}"
    );
}

#[test]
fn the_notifier_may_push_only_to_the_callback_websocket_stage() {
    let t = template();
    let notifier = resource(&t, "CallbackNotifierFunction");
    assert!(notifier.contains("Action: execute-api:ManageConnections"));
    assert!(
        notifier.contains("${CallbackWebSocketApi}/live/POST/@connections/*"),
        "{notifier}"
    );
    assert_eq!(notifier.matches("Action: execute-api").count(), 1);
    // Nothing else may manage connections.
    assert_eq!(t.matches("execute-api:ManageConnections").count(), 1);
    let queue = resource(&t, "CallbackWebhooksQueue");
    assert!(queue.contains("FifoQueue: true"), "{queue}");
}

#[test]
fn the_dashboard_is_valid_json_over_emitted_metrics_and_the_alarms_are_there() {
    let t = template();
    let dashboard = resource(&t, "OperationsDashboard");
    let body: String = dashboard
        .lines()
        .skip_while(|l| !l.contains("DashboardBody: !Sub |"))
        .skip(1)
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join("\n");
    // The substitutions as CloudFormation fills them.
    let mut filled = String::new();
    let mut rest = body.as_str();
    while let Some(at) = rest.find("${") {
        filled.push_str(&rest[..at]);
        let end = rest[at..].find('}').expect("closed substitution");
        filled.push_str("value");
        rest = &rest[at + end + 1..];
    }
    filled.push_str(rest);
    let parsed: serde_json::Value = serde_json::from_str(&filled).expect("dashboard body is JSON");
    let widgets = parsed["widgets"].as_array().unwrap();
    assert!(widgets.len() >= 6);
    // Every metric of the bridge's namespace on the dashboard is one the code emits.
    let sources: String = ["functions", "shared/src"]
        .iter()
        .flat_map(|d| walk(&workspace_root().join(d)))
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for w in widgets {
        for m in w["properties"]["metrics"].as_array().unwrap() {
            let name = m[1].as_str().unwrap_or(".");
            if m[0] == "GenesysServiceNowIntegration" {
                assert!(
                    sources.contains(&format!("\"{name}\"")),
                    "{name} is never emitted"
                );
            }
        }
    }
    for alarm in [
        "DeadLetterAlarm",
        "OldestEventAlarm",
        "WriterErrorsAlarm",
        "WriterThrottlesAlarm",
        "RefresherFailuresAlarm",
        "ServiceNowThrottleRatioAlarm",
        "TokenFallbacksAlarm",
    ] {
        assert!(
            resource(&t, alarm).contains("AWS::CloudWatch::Alarm"),
            "{alarm}"
        );
    }
}

/// The top-level resources of `kind` (their lines).
fn resources_of(t: &str, kind: &str) -> Vec<String> {
    let lines: Vec<&str> = t.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[1].trim() == format!("Type: {kind}"))
        .map(|w| resource(t, w[0].trim().trim_end_matches(':')))
        .collect()
}

#[test]
fn every_queue_failures_land_in_has_a_depth_alarm_and_every_alarm_can_notify() {
    let t = template();
    // Redrive targets and on-failure destinations: where work that failed for good waits for someone.
    let failure_queues: std::collections::BTreeSet<&str> = t
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("deadLetterTargetArn: !GetAtt ")
                .or_else(|| l.strip_prefix("Destination: !GetAtt "))?
                .strip_suffix(".Arn")
        })
        .collect();
    assert_eq!(
        failure_queues.len(),
        4,
        "events, webhooks, stream failures, callback events: {failure_queues:?}"
    );
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    for queue in failure_queues {
        assert!(
            alarms.iter().any(
                |a| a.contains("MetricName: ApproximateNumberOfMessagesVisible")
                    && a.contains("Threshold: 0")
                    && a.contains(&format!("Value: !GetAtt {queue}.QueueName"))
            ),
            "no depth alarm for {queue}"
        );
    }
    assert!(t.contains("  HasAlarmTopic: !Not [!Equals [!Ref AlarmTopicArn, \"\"]]"));
    for alarm in &alarms {
        assert!(
            alarm.contains(
                "AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]"
            ),
            "an alarm that notifies nobody: {alarm}"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
