use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use callback_events::{build, process_batch, Config};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let config = Config::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let events = build(config, &aws).await?;
    let events = &events;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(process_batch(events, event.payload.records).await)
    }))
    .await
}
