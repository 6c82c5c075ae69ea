//! Genesys Cloud simulator for local runs. Env: `GENESYS_SIM_ADDR` (127.0.0.1:8092), `GENESYS_SIM_CLIENT_ID`,
//! `GENESYS_SIM_CLIENT_SECRET`, `GENESYS_SIM_INGEST_PATH`, `GENESYS_SIM_TOKEN_LIFETIME_SECONDS`,
//! `GENESYS_SIM_DATATABLE_ID` (`legacy-events`: a data table with legacy-ingest's default columns).

use local::genesys_sim::{GenesysSim, DEFAULT_INGEST_PATH};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    shared::logging::init_json_logging();
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let addr: std::net::SocketAddr = env("GENESYS_SIM_ADDR", "127.0.0.1:8092").parse()?;
    let sim = GenesysSim::new(
        &env("GENESYS_SIM_CLIENT_ID", local::LOCAL_GENESYS_CLIENT_ID),
        &env(
            "GENESYS_SIM_CLIENT_SECRET",
            local::LOCAL_GENESYS_CLIENT_SECRET,
        ),
    )
    .with_ingest_path(&env("GENESYS_SIM_INGEST_PATH", DEFAULT_INGEST_PATH));
    if let Ok(secs) = std::env::var("GENESYS_SIM_TOKEN_LIFETIME_SECONDS") {
        sim.set_token_lifetime(std::time::Duration::from_secs(secs.parse()?));
    }
    sim.add_datatable(
        &env("GENESYS_SIM_DATATABLE_ID", local::LOCAL_DATATABLE_ID),
        "reference",
        local::genesys_sim::DEFAULT_DATATABLE_COLUMNS,
    );
    sim.add_queue(&env("GENESYS_SIM_QUEUE_ID", local::LOCAL_CALLBACK_QUEUE_ID));
    let bound = sim.spawn(addr).await?;
    tracing::info!(%bound, "Genesys simulator listening");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
