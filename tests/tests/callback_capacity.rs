//! Callback slot capacity on moto: concurrent reservations never put more callbacks in a slot than its limit,
//! and a place is taken or given back only together with its reservation's write.

use std::time::Duration;

use callback_api::capacity::{Outcome, SlotCapacity};
use callback_api::reservations::{Reservation, Reservations, Status};
use integration_tests::aws_config;
use jiff::Timestamp;

async fn stores() -> (SlotCapacity, Reservations) {
    let aws = aws_config().await;
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let names = local::aws_setup::ResourceNames::with_prefix(&prefix);
    let resources = local::aws_setup::ensure(&aws, &names, &integration_tests::secret_values())
        .await
        .expect("moto resources");
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let day = Duration::from_secs(86_400);
    (
        SlotCapacity::new(client.clone(), resources.callbacks_table.clone(), day),
        Reservations::new(client, resources.callbacks_table, day),
    )
}

fn reservation(id: &str, queue: &str) -> Reservation {
    Reservation {
        id: id.into(),
        status: Status::Requested,
        queue: queue.into(),
        slot: String::new(),
        name: "Ada".into(),
        phone: "+15550100000".into(),
        reason: None,
        incident_number: None,
        conversation_id: None,
        create_sent_at: None,
        pending_slot: None,
        failure_reason: None,
        history: Vec::new(),
        revision: 0,
    }
}

/// The first slot with room, taken with the reservation's creation (as booking does).
async fn take_first(
    c: &SlotCapacity,
    store: &Reservations,
    id: &str,
    queue: &str,
    slots: &[Timestamp],
) -> Result<Option<Timestamp>, Outcome> {
    let mut r = reservation(id, queue);
    for slot in slots {
        r.slot = slot.to_string();
        let write = store.put_new(&r).unwrap();
        match c
            .transact(queue, Some((*slot, 5)), None, write)
            .await
            .expect("store")
        {
            Outcome::Done => return Ok(Some(*slot)),
            Outcome::Full => continue,
            Outcome::Stale => return Err(Outcome::Stale),
        }
    }
    Ok(None)
}

#[tokio::test]
async fn twenty_concurrent_bookings_fill_slots_of_five_in_order_and_the_rest_find_none() {
    let (c, store) = stores().await;
    let slots: Vec<Timestamp> = [
        "2026-12-02T09:00:00Z",
        "2026-12-02T09:30:00Z",
        "2026-12-02T10:00:00Z",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let ids: Vec<String> = (0..20).map(|i| format!("r-{i}")).collect();
    let bookings = ids
        .iter()
        .map(|id| take_first(&c, &store, id, "support", &slots));
    let taken: Vec<Option<Timestamp>> = futures::future::join_all(bookings)
        .await
        .into_iter()
        .map(|r| r.expect("new ids"))
        .collect();
    for slot in &slots {
        assert_eq!(
            taken.iter().filter(|t| **t == Some(*slot)).count(),
            5,
            "{slot}"
        );
        assert_eq!(c.taken("support", *slot).await.unwrap(), 5);
    }
    assert_eq!(
        taken.iter().filter(|t| t.is_none()).count(),
        5,
        "no room: 409 with alternatives"
    );
    let stored = futures::future::join_all(ids.iter().map(|id| store.get(id))).await;
    assert_eq!(
        stored.iter().filter(|r| matches!(r, Ok(Some(_)))).count(),
        15,
        "a reservation for each place, none without"
    );
}

#[tokio::test]
async fn a_reservation_that_exists_already_takes_no_place_and_a_give_back_needs_its_write() {
    let (c, store) = stores().await;
    let slot: Timestamp = "2026-12-02T09:00:00Z".parse().unwrap();
    assert_eq!(
        take_first(&c, &store, "r-1", "support", &[slot]).await,
        Ok(Some(slot))
    );
    // The same reservation again (a retried booking): refused as a whole, the counter untouched.
    assert_eq!(
        take_first(&c, &store, "r-1", "support", &[slot]).await,
        Err(Outcome::Stale)
    );
    assert_eq!(c.taken("support", slot).await.unwrap(), 1);
    // A give-back whose reservation moved meanwhile gives nothing back.
    let mut r = store.get("r-1").await.unwrap().unwrap();
    r.status = Status::Cancelled;
    let stale = store.replace(&r, Status::Scheduled).unwrap();
    assert_eq!(
        c.transact("support", None, Some(slot), stale)
            .await
            .unwrap(),
        Outcome::Stale
    );
    assert_eq!(c.taken("support", slot).await.unwrap(), 1);
    let write = store.replace(&r, Status::Requested).unwrap();
    assert_eq!(
        c.transact("support", None, Some(slot), write)
            .await
            .unwrap(),
        Outcome::Done
    );
    assert_eq!(c.taken("support", slot).await.unwrap(), 0);
    assert_eq!(
        store.get("r-1").await.unwrap().unwrap().status,
        Status::Cancelled
    );
    // Another queue's slots are its own.
    assert_eq!(
        take_first(&c, &store, "r-2", "billing", &[slot]).await,
        Ok(Some(slot))
    );
    assert_eq!(c.taken("support", slot).await.unwrap(), 0);
}
