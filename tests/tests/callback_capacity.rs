//! Callback slot capacity on moto: concurrent reservations never put more callbacks in a slot than its limit.

use std::time::Duration;

use callback_api::capacity::SlotCapacity;
use integration_tests::aws_config;
use jiff::Timestamp;

async fn capacity() -> SlotCapacity {
    let aws = aws_config().await;
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let names = local::aws_setup::ResourceNames::with_prefix(&prefix);
    let resources = local::aws_setup::ensure(&aws, &names, &integration_tests::secret_values())
        .await
        .expect("moto resources");
    SlotCapacity::new(
        aws_sdk_dynamodb::Client::new(&aws),
        resources.table,
        Duration::from_secs(86_400),
    )
}

#[tokio::test]
async fn twenty_concurrent_bookings_fill_slots_of_five_in_order_and_the_rest_find_none() {
    let c = capacity().await;
    let slots: Vec<Timestamp> = [
        "2026-12-02T09:00:00Z",
        "2026-12-02T09:30:00Z",
        "2026-12-02T10:00:00Z",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let bookings = (0..20).map(|_| c.take_first("support", &slots, 5));
    let taken = futures::future::join_all(bookings).await;
    let taken: Vec<Option<Timestamp>> = taken.into_iter().map(|r| r.expect("store")).collect();
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
    // A cancellation gives its place back, once; another queue's slots are its own.
    c.give_back("support", slots[0]).await.unwrap();
    assert_eq!(c.taken("support", slots[0]).await.unwrap(), 4);
    assert_eq!(
        c.take_first("support", &slots, 5).await.unwrap(),
        Some(slots[0])
    );
    assert_eq!(c.take_first("support", &slots, 5).await.unwrap(), None);
    assert_eq!(
        c.take_first("billing", &slots, 5).await.unwrap(),
        Some(slots[0])
    );
    c.give_back("billing", slots[2]).await.unwrap();
    assert_eq!(
        c.taken("billing", slots[2]).await.unwrap(),
        0,
        "never below zero"
    );
}
