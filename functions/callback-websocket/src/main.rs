use callback_websocket::{build, handle_event, Config};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init_json_logging();
    let config = Config::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let live = build(config, &aws).await?;
    let live = &live;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(handle_event(live, &event.payload).await)
    }))
    .await
}
