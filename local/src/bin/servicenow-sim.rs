//! ServiceNow simulator for local runs. Env: `SIM_ADDR` (127.0.0.1:8091), `SIM_USERNAME`, `SIM_PASSWORD`,
//! `SIM_FAULTS` (JSON, see `Faults`). Seeds one caller, Ada Lovelace, +14155550123.

use local::servicenow_sim::{Faults, ServiceNowSim};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    shared::logging::init_json_logging();
    let addr: std::net::SocketAddr = std::env::var("SIM_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8091".into())
        .parse()?;
    let user = std::env::var("SIM_USERNAME").unwrap_or_else(|_| local::LOCAL_SN_USER.into());
    let password =
        std::env::var("SIM_PASSWORD").unwrap_or_else(|_| local::LOCAL_SN_PASSWORD.into());
    let sim = ServiceNowSim::new(&user, &password);
    sim.add_oauth_client(
        &std::env::var("SIM_OAUTH_CLIENT_ID").unwrap_or_else(|_| local::LOCAL_SN_CLIENT_ID.into()),
        &std::env::var("SIM_OAUTH_CLIENT_SECRET")
            .unwrap_or_else(|_| local::LOCAL_SN_CLIENT_SECRET.into()),
    );
    if let Ok(secs) = std::env::var("SIM_TOKEN_LIFETIME_SECONDS") {
        sim.set_token_lifetime(std::time::Duration::from_secs(secs.parse()?));
    }
    if let Ok(f) = std::env::var("SIM_FAULTS") {
        sim.set_faults(serde_json::from_str::<Faults>(&f)?);
    }
    let caller = sim.add_user("Ada Lovelace", "+14155550123");
    let bound = sim.spawn(addr).await?;
    tracing::info!(%bound, caller_sys_id = %caller, "ServiceNow simulator listening");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
