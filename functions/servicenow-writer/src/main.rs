use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use servicenow_writer::{build, Config};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let config = Config::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let writer = build(config, &aws).await?;
    let writer = &writer;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = shared::retry::Deadline::from_epoch_ms(event.context.deadline);
        let report = writer.process_batch(event.payload.records, deadline).await;
        Ok::<SqsBatchResponse, Error>(report.response)
    }))
    .await
}
