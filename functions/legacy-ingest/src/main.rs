use lambda_http::{run, service_fn, Error};
use legacy_ingest::{from_env, handle_lambda, http_client};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let aws = shared::aws::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let ingest = from_env(&secrets, http_client()?).await?;
    let ingest = &ingest;
    run(service_fn(move |req| async move {
        Ok::<_, std::convert::Infallible>(handle_lambda(ingest, req).await)
    }))
    .await
}
