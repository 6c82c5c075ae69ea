use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use servicenow_writer::servicenow::ServiceNowClient;
use servicenow_writer::{mapping_from_env, servicenow_config_from_env, Writer, WriterConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let aws = shared::aws::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let writer = Writer::new(
        WriterConfig::from_env()?,
        mapping_from_env()?,
        ServiceNowClient::new(&servicenow_config_from_env(&secrets).await?)?,
        aws_sdk_dynamodb::Client::new(&aws),
        aws_sdk_sqs::Client::new(&aws),
    );
    let writer = &writer;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = shared::retry::Deadline::from_epoch_ms(event.context.deadline);
        let report = writer.process_batch(event.payload.records, deadline).await;
        Ok::<SqsBatchResponse, Error>(report.response)
    }))
    .await
}
