use super::*;
use crate::event::EnvelopeKind;
use serde_json::json;

const CONV: &str = "3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b";

fn event_of(event_type: &str, body: Value) -> InboundEvent<'static> {
    InboundEvent {
        kind: EnvelopeKind::Webhook,
        event_type: event_type.to_string(),
        event_id: Some("evt-1".into()),
        organization_id: Some("org-1".into()),
        timestamp: Some("2026-11-23T10:00:00Z".into()),
        body: body
            .as_object()
            .cloned()
            .map(crate::json::Object::from)
            .unwrap_or_default(),
    }
}

fn event(body: Value) -> InboundEvent<'static> {
    event_of(
        &format!("v2.detail.events.conversation.{CONV}.customer.end"),
        body,
    )
}

fn default() -> Mapping {
    Mapping::default_mapping().expect("built-in mapping loads")
}

fn map(body: Value) -> IncidentDraft {
    default().apply(&event(body), "gc-key").unwrap().incident()
}

fn load_err(file: &Value) -> Option<String> {
    Mapping::from_json(&file.to_string())
        .err()
        .map(|e| e.to_string())
}

fn base() -> Value {
    serde_json::from_str(DEFAULT_MAPPING_JSON).unwrap()
}

#[test]
fn default_mapping_has_the_three_profiles() {
    let m = default();
    let names: Vec<&str> = m.profiles().iter().map(Profile::name).collect();
    assert_eq!(
        names,
        [
            "genesys-conversation",
            "architect-flow-webhook",
            "ivr-escalation"
        ]
    );
    assert!(m
        .event_types()
        .contains(&"flow:webhook:outbound".to_string()));
    assert!(m.event_types().contains(&"ivr:escalation".to_string()));
}

#[test]
fn profiles_are_selected_by_event_type() {
    let m = default();
    let pick = |t: &str| m.select(&event_of(t, json!({}))).map(Profile::name);
    assert_eq!(
        pick(&format!("v2.detail.events.conversation.{CONV}.acw")),
        Some("genesys-conversation")
    );
    assert_eq!(
        pick("v2.detail.events.conversation.customer.end"),
        Some("genesys-conversation")
    );
    assert_eq!(
        pick("flow:webhook:outbound"),
        Some("architect-flow-webhook")
    );
    assert_eq!(pick("ivr:escalation"), Some("ivr-escalation"));
    assert_eq!(pick("v2.users.presence"), None);
    let err = m
        .apply(&event_of("v2.users.presence", json!({})), "k")
        .unwrap_err();
    assert!(matches!(err, MappingError::NoProfile { .. }), "{err}");
}

#[test]
fn maps_a_conversation_event() {
    let inc = map(json!({
        "conversationId": CONV, "participantId": "p-1", "ani": "tel:+14155550123",
        "queueName": "Billing", "mediaType": "voice", "direction": "inbound",
        "disconnectType": "TRANSPORT_FAILURE", "escalationReason": "Card 4111 1111 1111 1111 declined, call back on 415-555-0199",
        "eventTime": 1_795_428_000_000i64, "attributes": {"vip": "true"}
    }));
    assert_eq!(inc.correlation_id, conversation_key(CONV));
    assert_eq!(inc.contact_type, "phone");
    assert_eq!(inc.caller_phone.as_deref(), Some("+14155550123"));
    assert!(inc.description.contains(&format!("Conversation: {CONV}")));
    assert!(
        inc.description.contains("Caller: ***0123"),
        "{}",
        inc.description
    );
    assert!(!inc.description.contains("4155550123"));
    assert!(inc.description.contains("[REDACTED CARD]"));
    assert!(inc.description.contains("***0199"));
    assert!(!inc.description.contains("4111"));
    assert!(inc.description.contains("Queue: Billing"));
    assert!(
        inc.description.contains("Event time: 2026-11-23T10:00:00Z"),
        "{}",
        inc.description
    );
    assert!(inc
        .short_description
        .starts_with("Genesys voice escalation: Card [REDACTED CARD]"));
    assert_eq!((inc.impact, inc.urgency), (2, 1));
    assert_eq!(inc.matched_rules, vec!["vip-caller", "call-dropped"]);
    assert!(inc.work_notes.contains("vip-caller, call-dropped"));
    assert!(
        inc.work_notes.contains("event customer.end"),
        "{}",
        inc.work_notes
    );
    assert_eq!(
        inc.correlation_display,
        format!("Genesys conversation {CONV}")
    );
    let json = serde_json::to_value(&inc).unwrap();
    assert_eq!(json["impact"], "2");
    assert!(json.get("priority").is_none());
    assert!(json.get("caller_phone").is_none());
    assert!(json.get("caller_id").is_none());
}

#[test]
fn non_string_values_are_redacted_in_incident_text() {
    let cases = [
        (json!(4111111111111111u64), "Reason: [REDACTED CARD]"),
        (
            json!(["call +1 415 555 0123", 14155550199u64]),
            r#"Reason: ["call ***0123","***0199"]"#,
        ),
        (
            json!({"ssn": 123456789, "mail": "ana@example.com", "card": "4111.1111.1111.1111"}),
            r#"Reason: {"card":"[REDACTED CARD]","mail":"[REDACTED EMAIL]","ssn":"[REDACTED SSN]"}"#,
        ),
    ];
    for (reason, want) in cases {
        let inc = map(json!({"conversationId": CONV, "escalationReason": reason}));
        assert!(inc.description.contains(want), "{}", inc.description);
        for leak in ["4111", "415", "0123 ", "123456789", "ana@"] {
            assert!(
                !inc.short_description.contains(leak),
                "{}",
                inc.short_description
            );
        }
    }
}

#[test]
fn measures_keep_seven_digit_durations_but_lose_card_numbers() {
    let m = default();
    let body = json!({
        "conversationId": CONV, "interactingDurationMs": 1234567, "wrapupDurationSeconds": "4111111111113"
    });
    let note = m
        .apply(
            &event_of(&format!("v2.detail.events.conversation.{CONV}.acw"), body),
            "k",
        )
        .unwrap()
        .update_note()
        .unwrap();
    assert!(note.contains("Talk time (ms): 1234567"), "{note}");
    // 4 111 111 111 113 s is 4111111111113000 ms, a Luhn-valid 16-digit number.
    assert!(
        note.contains("Wrap-up time (ms): [REDACTED CARD]"),
        "{note}"
    );
}

#[test]
fn one_conversation_one_incident_key_whatever_the_profile() {
    let m = default();
    let end = m
        .apply(&event(json!({"conversationId": CONV})), "k1")
        .unwrap();
    let acw = m
        .apply(
            &event_of(
                &format!("v2.detail.events.conversation.{CONV}.acw"),
                json!({"conversationId": CONV, "wrapupCode": "Resolved"}),
            ),
            "k2",
        )
        .unwrap();
    let ivr = m
        .apply(&event_of("ivr:escalation", json!({"callId": CONV})), "k3")
        .unwrap();
    assert_eq!(end.incident_key, acw.incident_key);
    assert_eq!(end.incident_key, ivr.incident_key);
    assert!(end.per_conversation());
    assert_eq!(end.conversation_id.as_deref(), Some(CONV));
    let note = acw.update_note().unwrap();
    assert!(note.starts_with("Genesys event acw at"), "{note}");
    assert!(note.contains("Wrap-up code: Resolved"), "{note}");
    // Lines whose variables are all empty are left out of a multi-line template.
    assert!(!note.contains("Wrap-up notes:"), "{note}");
    assert!(!note.contains("Agent:"), "{note}");
}

#[test]
fn seed_000_flow_webhook_converts_its_strings() {
    let m = default();
    let body = |vip: &str, wait: &str| {
        json!({"callerId": "+15551234567", "callReason": "Router down since this morning",
               "interactionId": CONV, "customAttributes": {"vip": vip, "queue_wait": wait}})
    };
    let vip = m
        .apply(&event_of("flow:webhook:outbound", body("true", "45")), "k")
        .unwrap();
    assert_eq!(vip.profile, "architect-flow-webhook");
    assert_eq!(vip.conversation_id.as_deref(), Some(CONV));
    assert_eq!(vip.incident().urgency, 1);
    assert_eq!(vip.incident().caller_phone.as_deref(), Some("+15551234567"));
    assert!(vip.incident().description.contains("Caller: ***4567"));
    assert!(vip
        .incident()
        .description
        .contains("Queue wait (ms): 45000"));
    // "false" is not a VIP, and 45 s is not a long wait: seconds are not compared with milliseconds.
    let plain = m
        .apply(&event_of("flow:webhook:outbound", body("false", "45")), "k")
        .unwrap();
    assert_eq!(plain.incident().matched_rules, vec!["outage-reported"]);
    let long = m
        .apply(
            &event_of("flow:webhook:outbound", body("false", "301")),
            "k",
        )
        .unwrap();
    assert!(long
        .incident()
        .matched_rules
        .contains(&"long-queue-wait".to_string()));
    // Not a number: the default applies.
    let odd = m
        .apply(
            &event_of("flow:webhook:outbound", body("maybe", "soon")),
            "k",
        )
        .unwrap();
    assert!(odd.incident().description.contains("VIP: false"));
    assert!(odd.incident().description.contains("Queue wait (ms): 0"));
}

#[test]
fn seed_001_ivr_body_maps_ticket_priority_to_urgency() {
    let m = default();
    let body = |p: &str| {
        json!({"callId": CONV, "startTime": "2023-10-27T14:30:00.000Z", "endTime": "2023-10-27T14:35:00.000Z",
               "direction": "inbound", "queueName": "IT_Support_Hotline", "agentUserId": "admin_user_01",
               "escalationReason": "IVR_TIMEOUT_EXCEEDED", "customerPhone": "+15550199888", "ticketPriority": p})
    };
    let urgency = |p: &str| {
        m.apply(&event_of("ivr:escalation", body(p)), "k")
            .unwrap()
            .incident()
            .urgency
    };
    assert_eq!(
        (urgency("High"), urgency("Medium"), urgency("Low")),
        (1, 2, 3)
    );
    let inc = m
        .apply(&event_of("ivr:escalation", body("High")), "k")
        .unwrap()
        .incident();
    assert_eq!(
        inc.short_description,
        "IVR escalation: IVR_TIMEOUT_EXCEEDED (queue IT_Support_Hotline)"
    );
    assert!(inc.description.contains("Caller: ***9888"));
    assert!(!inc.description.contains("5550199888"));
    assert!(inc.description.contains("Started: 2023-10-27T14:30:00Z"));
    assert_eq!(inc.caller_phone.as_deref(), Some("+15550199888"));
}

#[test]
fn missing_required_field_names_profile_variable_and_pointers() {
    let m = default();
    let err = m
        .apply(&event(json!({"ani": "+14155550123"})), "k")
        .unwrap_err();
    assert_eq!(
        err,
        MappingError::MissingField {
            profile: "genesys-conversation".into(),
            variable: "conversation_id".into(),
            pointers: "/conversationId".into(),
            format: "value",
        }
    );
    let text = err.to_string();
    assert!(text.contains("genesys-conversation") && text.contains("conversation_id"));
    // Empty strings count as missing.
    assert!(m
        .apply(&event(json!({"conversationId": " "})), "k")
        .is_err());
    let err = m
        .apply(
            &event_of("flow:webhook:outbound", json!({"callerId": "+1"})),
            "k",
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("/interactionId, /conversationId"),
        "{err}"
    );
}

#[test]
fn defaults_and_fallback_pointers() {
    let inc =
        map(json!({"conversationId": CONV, "queueId": "q-9", "wrapupCode": "Network outage"}));
    assert!(inc.description.contains("Queue: q-9"));
    assert!(inc.short_description.contains("Network outage"));
    assert_eq!((inc.impact, inc.urgency), (1, 2));
    assert_eq!(inc.caller_phone, None);
    assert!(!inc.description.contains("Caller:"), "{}", inc.description);
}

#[test]
fn short_description_is_capped() {
    let inc = map(json!({"conversationId": CONV, "escalationReason": "x".repeat(500)}));
    assert_eq!(inc.short_description.chars().count(), 160);
}

#[test]
fn version_1_files_still_load_as_one_incident_per_event() {
    let v1 = json!({
        "version": 1, "name": "legacy",
        "variables": {"conversation_id": {"pointers": ["/conversationId"], "required": true, "pii": "none"}},
        "incident": {"short_description": "x {{conversation_id}}", "description": "d", "work_notes": "w",
                     "category": "inquiry", "subcategory": "s", "correlation_display": "c"},
        "priority": {"default": {"impact": 3, "urgency": 3}}
    });
    let m = Mapping::from_json(&v1.to_string()).unwrap();
    let mapped = m
        .apply(&event(json!({"conversationId": CONV})), "gc-event")
        .unwrap();
    assert_eq!(mapped.incident_key, "gc-event");
    assert!(!mapped.per_conversation());
    assert_eq!(mapped.incident().short_description, format!("x {CONV}"));
}

#[test]
fn load_errors_name_the_profile_and_the_field() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &[&str])> = vec![
        (
            Box::new(|f| f["profiles"][1]["incident"]["description"] = json!("{{nope}}")),
            &["architect-flow-webhook", "description", "nope"],
        ),
        (
            Box::new(|f| f["profiles"][2]["update"]["work_notes"] = json!("{{queue")),
            &["ivr-escalation", "update.work_notes", "unclosed"],
        ),
        (
            Box::new(|f| f["profiles"][0]["variables"]["queue"]["pointers"] = json!(["queueName"])),
            &["genesys-conversation", "queue", "queueName"],
        ),
        (
            Box::new(|f| f["profiles"][0]["variables"]["queue"]["pointers"] = json!(["/a~2b"])),
            &["genesys-conversation", "/a~2b"],
        ),
        (
            Box::new(|f| f["profiles"][1]["incident"]["unknown_field"] = json!("x")),
            &["architect-flow-webhook", "incident", "unknown_field"],
        ),
        (
            Box::new(|f| f["profiles"][2]["surprise"] = json!(1)),
            &["ivr-escalation", "surprise"],
        ),
        (
            Box::new(|f| f["profiles"][2]["event_types"] = json!(["flow:*"])),
            &[
                "ivr-escalation",
                "flow:*",
                "architect-flow-webhook",
                "flow:webhook:outbound",
                "overlaps",
            ],
        ),
        (
            Box::new(|f| {
                f["profiles"][1]["event_types"] = json!(["v2.detail.events.conversation.*.acw"])
            }),
            &["architect-flow-webhook", "genesys-conversation", "overlaps"],
        ),
        (
            Box::new(|f| f["profiles"][0]["incident"]["extra"] = json!({"correlation_id": "x"})),
            &["genesys-conversation", "correlation_id"],
        ),
        (
            Box::new(|f| {
                f["profiles"][0]["variables"]["conversation_id"]["required"] = json!(false)
            }),
            &["genesys-conversation", "conversation_id", "required"],
        ),
        (
            Box::new(|f| {
                f["profiles"][0]["update"]
                    .as_object_mut()
                    .map(|u| u.remove("work_notes"));
            }),
            &["genesys-conversation", "work_notes"],
        ),
        (
            Box::new(|f| {
                f["profiles"][1].as_object_mut().map(|p| p.remove("update"));
            }),
            &["architect-flow-webhook", "update"],
        ),
        (
            Box::new(|f| f["profiles"][1]["variables"]["wait_ms"]["unit"] = json!("hours")),
            &["architect-flow-webhook", "unit"],
        ),
        (
            Box::new(|f| {
                f["profiles"][1]["variables"]["wait_ms"]
                    .as_object_mut()
                    .map(|v| v.remove("unit"));
            }),
            &["architect-flow-webhook", "wait_ms", "unit"],
        ),
        (
            Box::new(|f| f["profiles"][0]["priority"]["rules"][0]["impact"] = json!(4)),
            &["genesys-conversation", "vip-caller", "impact"],
        ),
        (
            Box::new(|f| {
                f["profiles"][0]["priority"]["rules"][0]["when"][0]["var"] = json!("vipp")
            }),
            &["genesys-conversation", "vipp"],
        ),
        (
            Box::new(|f| f["profiles"][0]["update"]["raise"] = json!(["priority"])),
            &["genesys-conversation", "raise"],
        ),
        (
            Box::new(|f| {
                f["profiles"][1]["event_types"] = json!(["v2.detail.events.conversation.{id}.acw"])
            }),
            &["architect-flow-webhook", "genesys-conversation", "overlaps"],
        ),
        (
            Box::new(|f| f["profiles"][2]["name"] = json!("genesys-conversation")),
            &["genesys-conversation", "same name"],
        ),
        (
            Box::new(|f| {
                f["profiles"][0]["variables"]["conversation_id"]["format"] = json!("boolean")
            }),
            &["genesys-conversation", "conversation_id", "raw"],
        ),
        (
            Box::new(|f| {
                f["profiles"][1]
                    .as_object_mut()
                    .map(|p| p.remove("conversation"));
                f["profiles"][1]["variables"]["conversation_id"]["required"] = json!(false);
            }),
            &["architect-flow-webhook", "`update` needs `conversation`"],
        ),
        (Box::new(|f| f["version"] = json!(3)), &["version 3"]),
        (Box::new(|f| f["profiles"] = json!([])), &["no profiles"]),
    ];
    for (i, (edit, needles)) in cases.iter().enumerate() {
        let mut file = base();
        edit(&mut file);
        let Some(err) = load_err(&file) else {
            panic!("case {i} loaded but must not");
        };
        for n in *needles {
            assert!(err.contains(n), "case {i}: `{n}` not in: {err}");
        }
    }
}

#[test]
fn glob_overlap() {
    assert!(globs_intersect("flow:*", "flow:webhook:outbound"));
    assert!(globs_intersect("*.acw", "v2.*"));
    assert!(globs_intersect("a*", "*b"));
    assert!(globs_intersect("*", "anything"));
    assert!(globs_intersect("x", "x"));
    assert!(!globs_intersect("x", "y"));
    assert!(!globs_intersect("a*", "b*"));
    assert!(!globs_intersect("*.acw", "*.customer.end"));
    assert!(!globs_intersect(
        "v2.detail.events.conversation.*.acw",
        "v2.detail.events.conversation.acw"
    ));
    assert!(!globs_intersect("ivr:escalation", "flow:webhook:outbound"));
}

#[test]
fn pointer_syntax() {
    assert!(valid_pointer("/a/b"));
    assert!(valid_pointer("/x~1y~0"));
    assert!(!valid_pointer("a"));
    assert!(!valid_pointer("/a~"));
    assert!(!valid_pointer("/a~x"));
}

#[test]
fn template_parsing_and_line_dropping() {
    let parsed = parse_template("a {{ x }} b {{y}}").unwrap();
    assert_eq!(
        parsed,
        vec![vec![
            Segment::Text("a ".into()),
            Segment::Var("x".into()),
            Segment::Text(" b ".into()),
            Segment::Var("y".into())
        ]]
    );
    let slot = |v: &str| match v {
        "x" => Some(Slot::User(0)),
        "y" => Some(Slot::User(1)),
        "event_type" => Some(Slot::Builtin(0)),
        _ => None,
    };
    let compile = |text: &str| Template::resolve(parse_template(text).unwrap(), slot).unwrap();
    let values = Values {
        texts: "1",
        ends: &[1, 1],
        builtins: ["type"; BUILTINS.len()],
    };
    assert_eq!(compile("a {{ x }} b {{y}}").render(&values), "a 1 b ");
    assert_eq!(compile("only {{y}}").render(&values), "only ");
    assert_eq!(
        compile("head\nX: {{x}}\nY: {{y}}\nfixed {{event_type}}").render(&values),
        "head\nX: 1\nfixed type"
    );
    assert_eq!(compile("Y: {{y}}\nX: {{x}}").render(&values), "X: 1");
    assert_eq!(compile("\nX: {{x}}").render(&values), "\nX: 1");
    assert_eq!(
        Template::resolve(parse_template("{{nope}}").unwrap(), slot).unwrap_err(),
        "nope"
    );
    assert!(parse_template("{{open").is_err());
}

#[test]
fn a_profile_may_ask_for_a_callback_when_its_conditions_hold() {
    let mut file = base();
    file["profiles"][0]["callback"] = json!({"queue": "support",
        "when": [{"var": "disconnect_type", "in": ["TRANSPORT_FAILURE", "SYSTEM"]}]});
    let m = Mapping::from_json(&file.to_string()).unwrap();
    let dropped = json!({"conversationId": CONV, "ani": "tel:+15550199888", "disconnectType": "TRANSPORT_FAILURE"});
    let ask = m.apply(&event(dropped), "k").unwrap().callback;
    assert_eq!(
        ask,
        Some(CallbackAsk {
            queue: "support".into(),
            phone: "+15550199888".into()
        })
    );
    // Another disconnect, or no number to call: no callback.
    let hung_up =
        json!({"conversationId": CONV, "ani": "+15550199888", "disconnectType": "CLIENT"});
    assert_eq!(m.apply(&event(hung_up), "k").unwrap().callback, None);
    let anonymous = json!({"conversationId": CONV, "disconnectType": "SYSTEM"});
    assert_eq!(m.apply(&event(anonymous), "k").unwrap().callback, None);
    // The shipped profiles ask for none.
    assert_eq!(
        default()
            .apply(&event(json!({"conversationId": CONV, "ani": "+15550199888", "disconnectType": "SYSTEM"})), "k")
            .unwrap()
            .callback,
        None
    );
    // A callback needs a number to call and known variables.
    let mut bad = base();
    bad["profiles"][0]["callback"] =
        json!({"queue": "support", "when": [{"var": "nope", "truthy": true}]});
    assert!(load_err(&bad).unwrap().contains("unknown variable `nope`"));
    let mut no_caller = base();
    no_caller["profiles"][0]["callback"] =
        json!({"queue": "support", "when": [{"var": "vip", "truthy": true}]});
    no_caller["profiles"][0]
        .as_object_mut()
        .unwrap()
        .remove("caller");
    assert!(load_err(&no_caller)
        .unwrap()
        .contains("caller.phone_variable"));
}

#[test]
fn timestamps_keep_their_fraction_and_out_of_range_ones_stay_as_sent() {
    let render = |v: Json<'_>| {
        let mut buf = [0u8; 64];
        format_timestamp(&v, &mut buf).map(str::to_string)
    };
    let text = |s: &str| Json::String(s.to_string().into());
    for (value, want) in [
        (Json::Number(1.into()), Some("1970-01-01T00:00:00.001Z")),
        (
            Json::Number(1_795_428_000_123_i64.into()),
            Some("2026-11-23T10:00:00.123Z"),
        ),
        (
            Json::Number(1_795_428_000_000_i64.into()),
            Some("2026-11-23T10:00:00Z"),
        ),
        (text("1795428000120"), Some("2026-11-23T10:00:00.12Z")),
        (
            text("1985-04-12T23:20:50.52Z"),
            Some("1985-04-12T23:20:50.52Z"),
        ),
        (
            text("2026-11-23T11:00:00.123456789+01:00"),
            Some("2026-11-23T10:00:00.123456789Z"),
        ),
        (text("9999-12-31T23:59:59-01:00"), None),
        (text("0000-01-01T00:30:00+01:00"), None),
        (text("not a time"), None),
        (Json::Bool(true), None),
    ] {
        assert_eq!(render(value.clone()).as_deref(), want, "{value:?}");
    }
    // In an incident: the fraction is kept, and a time out of range is shown as sent, not a crash.
    let mapping = default();
    for (sent, shown) in [
        (json!(1_795_428_000_123_i64), "2026-11-23T10:00:00.123Z"),
        (
            json!("9999-12-31T23:59:59-01:00"),
            "9999-12-31T23:59:59-01:00",
        ),
    ] {
        let inc = mapping
            .apply(
                &event(json!({"conversationId": CONV, "eventTime": sent})),
                "gc-key",
            )
            .unwrap()
            .incident();
        assert!(
            inc.description.contains(&format!("Event time: {shown}\n")),
            "{}",
            inc.description
        );
    }
}

#[test]
fn built_ins_render_from_the_event() {
    let matched = map(json!({
        "conversationId": CONV,
        "attributes": {"vip": "true"},
        "disconnectType": "TRANSPORT_FAILURE"
    }));
    assert_eq!(
        matched.work_notes,
        "Created automatically from Genesys event customer.end (id evt-1). Priority rules matched: \
         vip-caller, call-dropped."
    );
    let one = map(json!({"conversationId": CONV, "disconnectType": "SYSTEM"}));
    assert!(
        one.work_notes
            .ends_with("Priority rules matched: call-dropped."),
        "{}",
        one.work_notes
    );
    let none = map(json!({"conversationId": CONV}));
    assert!(
        none.work_notes.ends_with("Priority rules matched: none."),
        "{}",
        none.work_notes
    );
    assert!(none.description.contains(&format!(
        "Sent at: 2026-11-23T10:00:00Z\nEvent type: v2.detail.events.conversation.{CONV}.customer.end"
    )));
    assert_eq!(
        none.correlation_display,
        format!("Genesys conversation {CONV}")
    );
}
