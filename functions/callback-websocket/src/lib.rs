//! callback-websocket: the routes of the live status WebSocket API.
//!
//! - `$connect?token=<live_token>`: the token (from the booking answer or a read) names the reservation; the
//!   connection is recorded against it (with a TTL), or refused with 401.
//! - `$disconnect`: the connection is forgotten.
//! - `$default` (any message): answered with the reservation's current status (a route response), so a client
//!   that connects after a change still starts from the truth. Changes are pushed by callback-notifier.

use std::time::Duration;

use serde_json::{json, Value};
use tracing::{info, warn};

use callback_api::access::{AccessKeys, Scope};
use callback_api::live::{Connections, Notice};
use callback_api::reservations::Reservations;
use shared::config::{ConfigError, Env};
use shared::StartupError;

pub struct Config {
    pub table: String,
    pub access_secret_id: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required("CALLBACKS_TABLE")?,
            access_secret_id: env.required("CALLBACK_ACCESS_SECRET_ID")?,
        })
    }
}

pub struct Live {
    pub connections: Connections,
    pub reservations: Reservations,
    pub access: AccessKeys,
}

/// API Gateway's answer to a route: its status, and for `$default` the body sent back to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteAnswer {
    pub status: u16,
    pub body: Option<Value>,
}

fn answer(status: u16, body: Option<Value>) -> RouteAnswer {
    RouteAnswer { status, body }
}

pub async fn build(config: Config, aws: &aws_config::SdkConfig) -> Result<Live, StartupError> {
    let secrets = aws_sdk_secretsmanager::Client::new(aws);
    let key = shared::aws::read_secret(&secrets, &config.access_secret_id).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    Ok(Live {
        connections: Connections::new(dynamodb.clone(), &config.table, Duration::from_secs(7_200)),
        reservations: Reservations::new(dynamodb, config.table, Duration::from_secs(30 * 86_400)),
        access: AccessKeys::from_secret(&key),
    })
}

impl Live {
    pub async fn route(&self, route: &str, connection: &str, token: Option<&str>) -> RouteAnswer {
        match route {
            "$connect" => self.connect(connection, token).await,
            "$disconnect" => {
                if let Err(e) = self.connections.remove(connection).await {
                    warn!(connection_id = %connection, error = %e, "connection not forgotten; its TTL ends it");
                }
                answer(200, None)
            }
            _ => self.current(connection).await,
        }
    }

    async fn connect(&self, connection: &str, token: Option<&str>) -> RouteAnswer {
        let now = shared::clock::epoch_secs();
        let reservation = match self.access.verify(token.unwrap_or(""), Scope::Live, now) {
            Ok(id) => id,
            Err(e) => {
                info!(connection_id = %connection, reason = %e, "WebSocket connection refused");
                return answer(401, None);
            }
        };
        match self.reservations.get(&reservation).await {
            Ok(Some(_)) => {}
            Ok(None) => return answer(404, None),
            Err(e) => {
                warn!(error = %e, "reservation unreadable; connection refused");
                return answer(503, None);
            }
        }
        match self.connections.add(&reservation, connection).await {
            Ok(()) => {
                info!(connection_id = %connection, reservation_id = %reservation, "watching a reservation");
                answer(200, None)
            }
            Err(e) => {
                warn!(error = %e, "connection not recorded; refused");
                answer(503, None)
            }
        }
    }

    async fn current(&self, connection: &str) -> RouteAnswer {
        let reservation = match self.connections.reservation_of(connection).await {
            Ok(Some(id)) => self.reservations.get(&id).await,
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match reservation {
            Ok(Some(r)) => answer(200, serde_json::to_value(Notice::current(&r)).ok()),
            Ok(None) => answer(
                200,
                Some(
                    json!({"type": "error", "error": "not_watching", "message": "connect with a live_token"}),
                ),
            ),
            Err(e) => {
                warn!(error = %e, "reservation unreadable");
                answer(
                    200,
                    Some(
                        json!({"type": "error", "error": "store_unavailable", "message": "try again"}),
                    ),
                )
            }
        }
    }
}

/// The Lambda adapter: the WebSocket proxy event's route, connection and `token` query parameter.
pub async fn handle_event(live: &Live, event: &Value) -> Value {
    let context = &event["requestContext"];
    let route = context["routeKey"].as_str().unwrap_or("$default");
    let connection = context["connectionId"].as_str().unwrap_or("");
    let token = event["queryStringParameters"]["token"].as_str();
    let a = live.route(route, connection, token).await;
    let mut out = json!({"statusCode": a.status});
    if let Some(body) = a.body {
        out["body"] = Value::String(body.to_string());
    }
    out
}
