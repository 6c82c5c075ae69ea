//! data-action against moto and the ServiceNow simulator: every action's happy path, contracts, the shared
//! conversation idempotency with the writer, deadlines, and authentication.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{json, Value};

use data_action::actions::{Action, ActionError, Input, Output, Services, Spec};
use data_action::contract::{required, Contract, Kind};
use integration_tests::data_action::{
    basic_header, put_secret, seed_001_body, Auth, DataActionHarness, DataActionOptions,
};
use integration_tests::{new_conversation, webhook_event, DATA_ACTION_PASSWORD, DATA_ACTION_USER};
use local::servicenow_sim::Faults;
use shared::keys::conversation_key;
use shared::retry::Deadline;

const CALLER_PHONE: &str = "+15550199888";

fn incident_count(d: &DataActionHarness) -> usize {
    d.h.sim.incidents().len()
}

#[tokio::test]
async fn seed_001_body_creates_one_incident_and_answers_its_number() {
    let d = DataActionHarness::start().await;
    let caller = d.h.sim.add_user_with("Ada Lovelace", CALLER_PHONE, true);
    let call = new_conversation();
    let a = d.call("createIncident", seed_001_body(&call)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let incidents = d.h.sim.incidents();
    assert_eq!(incidents.len(), 1);
    let inc = &incidents[0];
    let number = inc["number"].as_str().unwrap();
    assert_eq!(
        a.body,
        json!({"incidentNumber": number, "sysId": inc["sys_id"], "created": true,
               "spokenNumber": number.chars().map(String::from).collect::<Vec<_>>().join(" ")})
    );
    // The writer's conversation key, the caller resolved, the seed's "High" honoured.
    assert_eq!(inc["correlation_id"], json!(conversation_key(&call)));
    assert_eq!(inc["caller_id"], json!(caller));
    assert_eq!(inc["urgency"], "1");
    assert!(inc["short_description"]
        .as_str()
        .unwrap()
        .contains("IVR_TIMEOUT_EXCEEDED"));
    // Asked again for the same call: the same incident, not created.
    let again = d.call("createIncident", seed_001_body(&call)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["incidentNumber"], number);
    assert_eq!(again.body["created"], false);
    assert_eq!(incident_count(&d), 1);
}

#[tokio::test]
async fn genesys_conversation_fields_work_too() {
    let d = DataActionHarness::start().await;
    let conv = new_conversation();
    let body = json!({"conversationId": conv, "ani": "tel:+15550100123", "queueName": "Billing",
                      "escalationReason": "Portal outage", "userId": null});
    let a = d.call("createIncident", body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let inc = &d.h.sim.incidents()[0];
    assert_eq!(inc["correlation_id"], json!(conversation_key(&conv)));
    // "outage" raises impact to 1 under the ivr-escalation profile's rules.
    assert_eq!(inc["impact"], "1");
    assert!(!inc["description"].as_str().unwrap().contains("5550100123"));
}

#[tokio::test]
async fn create_then_the_webhook_of_the_same_call_gives_one_incident_with_a_note() {
    let d = DataActionHarness::start().await;
    let conv = new_conversation();
    let a = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let number = a.body["incidentNumber"].as_str().unwrap().to_string();
    let event = webhook_event(&conv, json!({})).to_string();
    let (status, reply) = d.h.post_signed(&event).await;
    assert_eq!(status, 202, "{reply}");
    let outcomes = d.h.drain().await;
    assert_eq!(
        outcomes.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(),
        [servicenow_writer::Outcome::Updated {
            number: number.clone()
        }]
    );
    assert_eq!(incident_count(&d), 1);
    let notes = d.h.sim.work_notes(&number);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[1].contains("customer.end"), "{notes:?}");
}

#[tokio::test]
async fn an_escalation_after_the_webhook_is_added_to_its_incident_once() {
    let d = DataActionHarness::start().await;
    let conv = new_conversation();
    // A quiet call: no rule raises its levels (3/3).
    let quiet = json!({"escalationReason": "question about an invoice", "disconnectType": "CLIENT",
                       "attributes": {"vip": "false", "queueWaitMs": 1000}});
    let event = webhook_event(&conv, quiet).to_string();
    let (status, reply) = d.h.post_signed(&event).await;
    assert_eq!(status, 202, "{reply}");
    d.h.drain().await;
    let number = d.h.sim.incidents()[0]["number"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(d.h.sim.incidents()[0]["urgency"], "3");
    // The IVR escalates during a later leg of the call: ticketPriority High.
    let a = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (&a.body["incidentNumber"], &a.body["created"]),
        (&json!(number), &json!(false))
    );
    let notes = d.h.sim.work_notes(&number);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[1].contains("IVR escalation again"), "{notes:?}");
    assert_eq!(
        d.h.sim.incidents()[0]["urgency"],
        "1",
        "raised by the escalation"
    );
    // Architect retrying the action adds nothing more.
    let again = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(again.body["incidentNumber"], json!(number));
    assert_eq!(d.h.sim.work_notes(&number).len(), 2);
    assert_eq!(incident_count(&d), 1);
}

#[tokio::test]
async fn three_concurrent_creates_give_one_incident_and_the_same_number_three_times() {
    let d = DataActionHarness::start().await;
    // Slow enough that the three overlap.
    d.h.sim.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let conv = new_conversation();
    let body = seed_001_body(&conv);
    let (a, b, c) = tokio::join!(
        d.call("createIncident", body.clone()),
        d.call("createIncident", body.clone()),
        d.call("createIncident", body.clone())
    );
    let answers = [a, b, c];
    for x in &answers {
        assert_eq!(x.status, 200, "{}", x.body);
    }
    let numbers: Vec<&Value> = answers.iter().map(|x| &x.body["incidentNumber"]).collect();
    assert!(numbers.iter().all(|n| *n == numbers[0]), "{numbers:?}");
    let created = answers.iter().filter(|x| x.body["created"] == true).count();
    assert_eq!(created, 1);
    assert_eq!(incident_count(&d), 1);
}

#[tokio::test]
async fn a_429_within_the_deadline_is_waited_out() {
    let d = DataActionHarness::start().await;
    d.h.sim.set_faults(Faults {
        throttle_next: 1,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let a = d
        .call("createIncident", seed_001_body(&new_conversation()))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["created"], true);
    let statuses: Vec<u16> = d.h.sim.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(incident_count(&d), 1);
}

#[tokio::test]
async fn servicenow_hanging_answers_503_within_the_deadline_and_the_next_call_finds_the_late_commit(
) {
    let d = DataActionHarness::with(DataActionOptions {
        deadline: Duration::from_millis(1000),
        settle_secs: 4,
        ..DataActionOptions::default()
    })
    .await;
    // The create commits 1.5 s after it arrived, long after the deadline.
    d.h.sim.set_faults(Faults {
        late_commit_next: 1,
        late_commit_ms: 1500,
        ..Faults::default()
    });
    let conv = new_conversation();
    let started = Instant::now();
    let first = d.call("createIncident", seed_001_body(&conv)).await;
    let took = started.elapsed();
    let settle_ends = Instant::now() + Duration::from_secs(4);
    assert_eq!(first.status, 503, "{}", first.body);
    assert_eq!(first.body["error"], "incident_pending");
    assert_eq!(first.body["retryable"], true);
    assert!(first.headers.contains_key("retry-after"));
    assert!(
        took < Duration::from_millis(1400),
        "answered after {took:?}"
    );
    // The late commit lands; while the conversation settles, the next call looks instead of creating.
    let until = Instant::now() + Duration::from_secs(5);
    while incident_count(&d) == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(incident_count(&d), 1, "the late commit landed");
    let number = d.h.sim.incidents()[0]["number"].clone();
    let second = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        (&second.body["incidentNumber"], &second.body["created"]),
        (&number, &json!(false))
    );
    // After the settle window: the conversation's record has no incident yet, so it is reconciled.
    tokio::time::sleep_until((settle_ends + Duration::from_millis(300)).into()).await;
    let third = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(third.status, 200, "{}", third.body);
    assert_eq!(third.body["incidentNumber"], number);
    assert_eq!(third.body["created"], false);
    assert_eq!(incident_count(&d), 1);
}

#[tokio::test]
async fn servicenow_slower_than_the_deadline_everywhere_is_a_503_and_no_duplicate_afterwards() {
    let d = DataActionHarness::with(DataActionOptions {
        deadline: Duration::from_millis(1000),
        ..DataActionOptions::default()
    })
    .await;
    d.h.sim.set_faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    let conv = new_conversation();
    let started = Instant::now();
    let first = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(first.status, 503, "{}", first.body);
    // The slow caller lookup gave way to the default caller: the create was sent, and may commit.
    assert_eq!(first.body["error"], "incident_pending");
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    // ServiceNow recovers; whatever the slow requests did has landed by the time the settle window is over.
    d.h.sim.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(incident_count(&d), 1);
    let third = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(third.body["incidentNumber"], second.body["incidentNumber"]);
}

#[tokio::test]
async fn a_create_answered_by_a_dropped_connection_is_found_not_repeated() {
    let d = DataActionHarness::with(DataActionOptions {
        settle_secs: 30,
        ..DataActionOptions::default()
    })
    .await;
    d.h.sim.set_faults(Faults {
        drop_after_create: 1,
        ..Faults::default()
    });
    let conv = new_conversation();
    let first = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(first.status, 503, "{}", first.body);
    assert_eq!(first.body["error"], "incident_pending");
    let second = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["created"], false);
    assert_eq!(incident_count(&d), 1);
}

#[tokio::test]
async fn a_refused_create_is_a_502_and_frees_the_conversation() {
    let d = DataActionHarness::start().await;
    d.h.sim.set_faults(Faults {
        fail_next: 1,
        fail_status: 400,
        fail_method: Some("POST".into()),
        ..Faults::default()
    });
    let conv = new_conversation();
    let first = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(first.status, 502, "{}", first.body);
    assert_eq!(first.body["error"], "servicenow_rejected");
    assert_eq!(first.body["retryable"], false);
    assert_eq!(incident_count(&d), 0);
    let second = d.call("createIncident", seed_001_body(&conv)).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["created"], true);
}

#[tokio::test]
async fn lookup_incident_by_conversation_or_number() {
    let d = DataActionHarness::start().await;
    let agent = d.h.sim.add_user("Grace Hopper", "+15550100999");
    let conv = new_conversation();
    let created = d.call("createIncident", seed_001_body(&conv)).await;
    let number = created.body["incidentNumber"].as_str().unwrap().to_string();
    let a = d
        .call("lookupIncident", json!({"conversationId": conv}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["found"], true);
    assert_eq!(a.body["incidentNumber"], number.as_str());
    assert_eq!(
        (&a.body["state"], &a.body["stateLabel"]),
        (&json!("1"), &json!("New"))
    );
    assert_eq!(a.body["assignedTo"], "");
    d.h.sim
        .set_fields(&number, &[("state", "2"), ("assigned_to", &agent)]);
    let b = d
        .call("lookupIncident", json!({"incidentNumber": number}))
        .await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.body["stateLabel"], "In Progress");
    assert_eq!(b.body["assignedTo"], "Grace Hopper");
    assert!(b.body["shortDescription"]
        .as_str()
        .unwrap()
        .starts_with("IVR escalation"));
    let none = d
        .call(
            "lookupIncident",
            json!({"conversationId": new_conversation()}),
        )
        .await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(none.body["found"], false);
    let both = d
        .call(
            "lookupIncident",
            json!({"conversationId": conv, "incidentNumber": number}),
        )
        .await;
    assert_eq!(both.status, 400, "{}", both.body);
    // Architect's unset variables arrive as "": absent. Numbers as typed: any case.
    let typed = d
        .call(
            "lookupIncident",
            json!({"conversationId": "", "incidentNumber": number.to_lowercase()}),
        )
        .await;
    assert_eq!(typed.status, 200, "{}", typed.body);
    assert_eq!(typed.body["incidentNumber"], number.as_str());
}

#[tokio::test]
async fn lookup_caller_answers_from_servicenow_then_from_its_cache() {
    let d = DataActionHarness::start().await;
    d.h.sim.add_user_with("Ada Lovelace", CALLER_PHONE, true);
    let created = d
        .call("createIncident", seed_001_body(&new_conversation()))
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let a = d
        .call(
            "lookupCaller",
            json!({"phoneNumber": format!("tel:{CALLER_PHONE}")}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"found": true, "callerName": "Ada Lovelace", "vip": true, "openIncidents": 1})
    );
    let before = d.h.sim.requests().len();
    let b = d
        .call("lookupCaller", json!({"phoneNumber": CALLER_PHONE}))
        .await;
    assert_eq!(b.body, a.body);
    assert_eq!(d.h.sim.requests().len(), before, "answered from the cache");
    let unknown = d
        .call("lookupCaller", json!({"phoneNumber": "+442071838750"}))
        .await;
    assert_eq!(
        unknown.body,
        json!({"found": false, "callerName": "", "vip": false, "openIncidents": 0})
    );
    let bad = d
        .call("lookupCaller", json!({"phoneNumber": "call me"}))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["fields"][0]["field"], "phoneNumber");
}

#[tokio::test]
async fn inputs_that_break_the_contract_are_400s_naming_each_field() {
    let d = DataActionHarness::start().await;
    let a = d
        .call(
            "createIncident",
            json!({"callId": new_conversation(), "customerPhone": 15550199888u64, "mood": "grumpy"}),
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"], "invalid_input");
    assert_eq!(
        a.body["fields"],
        json!([{"field": "customerPhone", "problem": "must be a string"},
               {"field": "mood", "problem": "unknown field"}])
    );
    assert!(!a.body.to_string().contains("5550199888"));
    let missing = d.call("createIncident", json!({"queueName": "x"})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["fields"][0]["field"], "conversationId");
    let not_json = d
        .call_as("createIncident", "{not json", &Auth::default_basic())
        .await;
    assert_eq!(not_json.status, 400);
    let unknown = d.call("deleteEverything", json!({})).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body["message"]
        .as_str()
        .unwrap()
        .contains("createIncident"));
    assert_eq!(incident_count(&d), 0);
}

/// An action whose answer breaks its own contract.
struct Miscounting;

const COUNT: Contract = Contract {
    fields: &[required("count", Kind::Integer, "a count")],
};

impl Action for Miscounting {
    fn spec(&self) -> &'static Spec {
        const SPEC: Spec = Spec {
            name: "miscount",
            input: Contract { fields: &[] },
            output: COUNT,
        };
        &SPEC
    }
    fn run<'a>(
        &'a self,
        _: &'a Services,
        _: &'a Input,
        _: Deadline,
    ) -> BoxFuture<'a, Result<Output, ActionError>> {
        Box::pin(async {
            let mut out = Output::new();
            out.insert("count".into(), json!("+15550199888"));
            out.insert("nested".into(), json!({"a": [1]}));
            Ok(out)
        })
    }
}

#[tokio::test]
async fn an_answer_that_breaks_the_output_contract_is_never_sent() {
    let d = DataActionHarness::start().await;
    let opts = DataActionOptions::default();
    let actions = integration_tests::data_action::build(&d.h, &opts)
        .await
        .unwrap()
        .with_actions(vec![Box::new(Miscounting)]);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        basic_header(DATA_ACTION_USER, DATA_ACTION_PASSWORD)
            .parse()
            .unwrap(),
    );
    let reply = actions
        .handle(
            &http::Method::POST,
            "/data-actions/miscount",
            &headers,
            b"{}",
        )
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.body["error"], "output_contract_violation");
    let fields: Vec<&str> = reply.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["count", "nested"]);
    assert!(!reply.body.to_string().contains("5550199888"));
}

#[tokio::test]
async fn bad_or_missing_credentials_are_401s() {
    let d = DataActionHarness::start().await;
    let body = seed_001_body(&new_conversation()).to_string();
    for auth in [
        Auth::None,
        Auth::Basic(DATA_ACTION_USER.into(), "wrong-password".into()),
        Auth::Basic("someone-else".into(), DATA_ACTION_PASSWORD.into()),
        Auth::Bearer(DATA_ACTION_PASSWORD.into()),
    ] {
        let a = d.call_as("createIncident", &body, &auth).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert_eq!(a.headers["www-authenticate"], "Basic");
    }
    assert_eq!(incident_count(&d), 0);
    // Rotated in Secrets Manager: the new password works at once, the old one no longer.
    let rotated = "rotated-data-action-password";
    put_secret(
        &d.h,
        &d.h.resources.data_action_secret_id,
        &json!({"username": DATA_ACTION_USER, "password": rotated}),
    )
    .await;
    let new = Auth::Basic(DATA_ACTION_USER.into(), rotated.into());
    assert_eq!(d.call_as("createIncident", &body, &new).await.status, 200);
    // Genesys may still send the old pair until it is changed there: it stays accepted as the previous one,
    // in this container and in one started after the rotation (AWSPREVIOUS).
    assert_eq!(
        d.call_as("createIncident", &body, &Auth::default_basic())
            .await
            .status,
        200
    );
    let cold = integration_tests::data_action::build(&d.h, &DataActionOptions::default())
        .await
        .unwrap();
    let mut old = http::HeaderMap::new();
    old.insert(
        http::header::AUTHORIZATION,
        basic_header(DATA_ACTION_USER, DATA_ACTION_PASSWORD)
            .parse()
            .unwrap(),
    );
    let reply = cold
        .handle(
            &http::Method::POST,
            "/data-actions/createIncident",
            &old,
            body.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Rotated again: the oldest pair is refused.
    put_secret(
        &d.h,
        &d.h.resources.data_action_secret_id,
        &json!({"username": DATA_ACTION_USER, "password": "rotated-again-data-action-password"}),
    )
    .await;
    let newest = Auth::Basic(
        DATA_ACTION_USER.into(),
        "rotated-again-data-action-password".into(),
    );
    assert_eq!(
        d.call_as("createIncident", &body, &newest).await.status,
        200
    );
    assert_eq!(
        d.call_as("createIncident", &body, &Auth::default_basic())
            .await
            .status,
        401
    );
    assert_eq!(incident_count(&d), 1);
}

#[tokio::test]
async fn a_header_secret_can_authenticate_instead() {
    let secret = "header-secret-0123456789";
    let d = DataActionHarness::with(DataActionOptions {
        auth: "header",
        secret: Some(json!({"secret": secret})),
        extra_env: vec![("DATA_ACTION_AUTH_HEADER", "X-Bridge-Key".into())],
        ..DataActionOptions::default()
    })
    .await;
    let body = json!({"phoneNumber": CALLER_PHONE}).to_string();
    let ok = d
        .call_as(
            "lookupCaller",
            &body,
            &Auth::Header("x-bridge-key", secret.into()),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    for auth in [
        Auth::Header("x-bridge-key", "guess".into()),
        Auth::Header("x-api-key", secret.into()),
        Auth::None,
    ] {
        assert_eq!(d.call_as("lookupCaller", &body, &auth).await.status, 401);
    }
}

#[tokio::test]
async fn user_defined_oauth_issues_tokens_that_authenticate_calls() {
    let (client_id, client_secret) = ("genesys-org", "oauth-client-secret-0123456789");
    let d = DataActionHarness::with(DataActionOptions {
        auth: "oauth",
        secret: Some(json!({"client_id": client_id, "client_secret": client_secret})),
        ..DataActionOptions::default()
    })
    .await;
    let issued = d
        .token(&format!(
            "grant_type=client_credentials&client_id={client_id}&client_secret={client_secret}"
        ))
        .await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    assert_eq!(issued.body["token_type"], "Bearer");
    assert_eq!(issued.body["expires_in"], 900);
    let token = issued.body["access_token"].as_str().unwrap().to_string();
    let body = json!({"phoneNumber": CALLER_PHONE}).to_string();
    let ok = d
        .call_as("lookupCaller", &body, &Auth::Bearer(token.clone()))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let refused = d
        .token(&format!(
            "grant_type=client_credentials&client_id={client_id}&client_secret=guess"
        ))
        .await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.get("access_token").is_none());
    for auth in [
        Auth::Bearer(format!("{token}0")),
        Auth::Bearer("da1.9999999999.00.00".into()),
        Auth::Basic(client_id.into(), client_secret.into()),
    ] {
        let a = d.call_as("lookupCaller", &body, &auth).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert_eq!(a.headers["www-authenticate"], "Bearer");
    }
}

#[tokio::test]
async fn contracts_are_published_as_json_schema() {
    let d = DataActionHarness::start().await;
    let response = d
        .http
        .get(format!("{}/createIncident/contract", d.base_url))
        .basic_auth(DATA_ACTION_USER, Some(DATA_ACTION_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let schema: Value = response.json().await.unwrap();
    assert_eq!(schema["output"]["properties"]["created"]["type"], "boolean");
    assert_eq!(schema["input"]["properties"]["callId"]["type"], "string");
    for a in data_action::actions::registry() {
        assert!(a.input().invalid_names().is_empty() && a.output().invalid_names().is_empty());
    }
}
