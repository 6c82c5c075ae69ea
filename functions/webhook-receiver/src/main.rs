use lambda_http::{service_fn, Error};
use shared::http::run;
use webhook_receiver::{build, handle_lambda, Config};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let config = Config::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let receiver = build(config, &aws).await?;
    let receiver = &receiver;
    run(service_fn(move |req| async move {
        Ok::<_, std::convert::Infallible>(handle_lambda(receiver, req).await)
    }))
    .await
}
