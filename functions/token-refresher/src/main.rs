use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use token_refresher::{build, summarise, Config};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let config = Config::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let refresher = build(config, &aws).await?;
    let refresher = &refresher;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = shared::retry::Deadline::from_epoch_ms(event.context.deadline);
        let results = refresher.run(deadline).await;
        summarise(&results).map_err(Error::from)
    }))
    .await
}
