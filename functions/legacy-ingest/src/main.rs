use lambda_http::{service_fn, Error};
use legacy_ingest::{build, handle_lambda, Config};
use shared::http::run;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let config = Config::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let ingest = build(config, &aws).await?;
    let ingest = &ingest;
    run(service_fn(move |req| async move {
        Ok::<_, std::convert::Infallible>(handle_lambda(ingest, req).await)
    }))
    .await
}
