use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use token_refresher::{jobs_from_env, policy_from_env, summarise, Refresher};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let aws = shared::aws::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let refresher = Refresher {
        http: shared::http_client::client("token-refresher", shared::http_client::TOKEN_ENDPOINT)?,
        jobs: jobs_from_env(&secrets).await?,
        policy: policy_from_env()?,
        retry: token_refresher::retrier(),
    };
    let refresher = &refresher;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = shared::retry::Deadline::from_epoch_ms(event.context.deadline);
        let results = refresher.run(deadline).await;
        summarise(&results).map_err(Error::from)
    }))
    .await
}
