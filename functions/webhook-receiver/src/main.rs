use lambda_http::{run, service_fn, Error};
use webhook_receiver::{handle_lambda, Config, Receiver};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let config = Config::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let receiver = Receiver::new(
        config,
        aws_sdk_sqs::Client::new(&aws),
        aws_sdk_secretsmanager::Client::new(&aws),
    );
    receiver.warm_up().await?;
    let receiver = &receiver;
    run(service_fn(move |req| async move {
        Ok::<_, std::convert::Infallible>(handle_lambda(receiver, req).await)
    }))
    .await
}
