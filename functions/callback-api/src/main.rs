use callback_api::api::handle_lambda;
use callback_api::config::{build, Config};
use lambda_http::{service_fn, Error};
use shared::http::run;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let config = Config::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let api = build(config, &aws).await?;
    let api = &api;
    run(service_fn(move |req| async move {
        Ok::<_, std::convert::Infallible>(handle_lambda(api, req).await)
    }))
    .await
}
