//! Creates the AWS resources template.yaml defines, on an emulator (moto server) for local runs and tests.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

pub use shared::BoxError;

#[derive(Debug, Clone)]
pub struct ResourceNames {
    pub queue: String,
    pub dead_letter_queue: String,
    pub table: String,
    pub webhook_secret: String,
    pub servicenow_secret: String,
    pub servicenow_oauth_secret: String,
    pub genesys_client_secret: String,
    pub servicenow_token_secret: String,
    pub genesys_token_secret: String,
    pub data_action_secret: String,
    /// Reservations, slot counters, connections (with a stream, as template.yaml's CallbacksTable).
    pub callbacks_table: String,
    pub callback_access_secret: String,
    pub callback_events_queue: String,
    pub callback_webhooks_queue: String,
    pub callback_webhooks_dead_letter_queue: String,
    /// Receives before SQS moves a message to the DLQ.
    pub max_receive_count: u32,
    pub visibility_timeout_secs: u32,
    /// The events queue's `MaximumMessageSize` (template.yaml: 262144).
    pub max_message_size: u32,
}

impl ResourceNames {
    /// Names used by `make run` (the template's defaults for a `local` stack).
    pub fn local() -> Self {
        Self::with_prefix("genesys-servicenow-local")
    }

    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            queue: format!("{prefix}-events"),
            dead_letter_queue: format!("{prefix}-events-dlq"),
            table: format!("{prefix}-idempotency"),
            webhook_secret: format!("{prefix}/webhook-hmac"),
            servicenow_secret: format!("{prefix}/servicenow-credentials"),
            servicenow_oauth_secret: format!("{prefix}/servicenow-oauth-client"),
            genesys_client_secret: format!("{prefix}/genesys-client-credentials"),
            servicenow_token_secret: format!("{prefix}/servicenow-token"),
            genesys_token_secret: format!("{prefix}/genesys-token"),
            data_action_secret: format!("{prefix}/data-action-credentials"),
            callbacks_table: format!("{prefix}-callbacks"),
            callback_access_secret: format!("{prefix}/callback-access-key"),
            callback_events_queue: format!("{prefix}-callback-events"),
            callback_webhooks_queue: format!("{prefix}-callback-webhooks.fifo"),
            callback_webhooks_dead_letter_queue: format!("{prefix}-callback-webhooks-dlq.fifo"),
            max_receive_count: 5,
            visibility_timeout_secs: 30,
            max_message_size: 262_144,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Resources {
    pub queue_url: String,
    pub queue_arn: String,
    pub dead_letter_queue_url: String,
    pub table: String,
    pub webhook_secret_id: String,
    pub servicenow_secret_id: String,
    pub servicenow_oauth_secret_id: String,
    pub genesys_client_secret_id: String,
    pub servicenow_token_secret_id: String,
    pub genesys_token_secret_id: String,
    pub data_action_secret_id: String,
    pub callbacks_table: String,
    /// The callbacks table's stream (new and old images).
    pub callbacks_stream_arn: String,
    pub callback_access_secret_id: String,
    pub callback_events_queue_url: String,
    pub callback_webhooks_queue_url: String,
    pub callback_webhooks_dead_letter_queue_url: String,
}

/// Values written into the secrets.
pub struct SecretValues {
    pub webhook: String,
    /// `{"username", "password"}` (Basic auth)
    pub servicenow_basic: serde_json::Value,
    /// `{"client_id", "client_secret", "username", "password"}`
    pub servicenow_oauth: serde_json::Value,
    /// `{"client_id", "client_secret"}`
    pub genesys_client: serde_json::Value,
    /// What Architect's data action calls present (`{"username", "password"}` for Basic).
    pub data_action: serde_json::Value,
    /// The key callback access tokens are signed with.
    pub callback_access: String,
}

/// Creates (or reuses) the queues, table and secrets; writes the secret values given.
pub async fn ensure(
    config: &aws_config::SdkConfig,
    names: &ResourceNames,
    secrets: &SecretValues,
) -> Result<Resources, BoxError> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let dlq_url = sqs
        .create_queue()
        .queue_name(&names.dead_letter_queue)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await?
        .queue_url
        .ok_or("no DLQ url")?;
    let dlq_arn = queue_arn(&sqs, &dlq_url).await?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": names.max_receive_count});
    let queue_url = sqs
        .create_queue()
        .queue_name(&names.queue)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            names.visibility_timeout_secs.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(
            QueueAttributeName::MaximumMessageSize,
            names.max_message_size.to_string(),
        )
        .send()
        .await?
        .queue_url
        .ok_or("no queue url")?;
    let queue_arn = queue_arn(&sqs, &queue_url).await?;

    let ddb = aws_sdk_dynamodb::Client::new(config);
    ensure_table(&ddb, &names.table, false).await?;
    let callbacks_stream_arn = ensure_table(&ddb, &names.callbacks_table, true)
        .await?
        .ok_or("the callbacks table has no stream")?;
    let callback_events_queue_url =
        create_queue(&sqs, &names.callback_events_queue, None, false).await?;
    let webhooks_dlq_url =
        create_queue(&sqs, &names.callback_webhooks_dead_letter_queue, None, true).await?;
    let webhooks_dlq_arn = self::queue_arn(&sqs, &webhooks_dlq_url).await?;
    let callback_webhooks_queue_url = create_queue(
        &sqs,
        &names.callback_webhooks_queue,
        Some(serde_json::json!({"deadLetterTargetArn": webhooks_dlq_arn, "maxReceiveCount": 10})),
        true,
    )
    .await?;
    let sm = aws_sdk_secretsmanager::Client::new(config);
    let webhook_secret_id = put_secret(&sm, &names.webhook_secret, &secrets.webhook).await?;
    let servicenow_secret_id = put_secret(
        &sm,
        &names.servicenow_secret,
        &secrets.servicenow_basic.to_string(),
    )
    .await?;
    let servicenow_oauth_secret_id = put_secret(
        &sm,
        &names.servicenow_oauth_secret,
        &secrets.servicenow_oauth.to_string(),
    )
    .await?;
    let genesys_client_secret_id = put_secret(
        &sm,
        &names.genesys_client_secret,
        &secrets.genesys_client.to_string(),
    )
    .await?;
    // Token secrets start as a placeholder, as in template.yaml; the token-refresher fills them.
    let servicenow_token_secret_id = put_secret(&sm, &names.servicenow_token_secret, "{}").await?;
    let genesys_token_secret_id = put_secret(&sm, &names.genesys_token_secret, "{}").await?;
    let data_action_secret_id = put_secret(
        &sm,
        &names.data_action_secret,
        &secrets.data_action.to_string(),
    )
    .await?;
    let callback_access_secret_id =
        put_secret(&sm, &names.callback_access_secret, &secrets.callback_access).await?;
    Ok(Resources {
        queue_url,
        queue_arn,
        dead_letter_queue_url: dlq_url,
        table: names.table.clone(),
        webhook_secret_id,
        servicenow_secret_id,
        servicenow_oauth_secret_id,
        genesys_client_secret_id,
        servicenow_token_secret_id,
        genesys_token_secret_id,
        data_action_secret_id,
        callbacks_table: names.callbacks_table.clone(),
        callbacks_stream_arn,
        callback_access_secret_id,
        callback_events_queue_url,
        callback_webhooks_queue_url,
        callback_webhooks_dead_letter_queue_url: webhooks_dlq_url,
    })
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    redrive: Option<serde_json::Value>,
    fifo: bool,
) -> Result<String, BoxError> {
    let mut create = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "30");
    if fifo {
        create = create.attributes(QueueAttributeName::FifoQueue, "true");
    }
    if let Some(r) = redrive {
        create = create.attributes(QueueAttributeName::RedrivePolicy, r.to_string());
    }
    Ok(create.send().await?.queue_url.ok_or("no queue url")?)
}

/// Creates the table (key `id`, TTL on `expiration`) unless it exists; with `stream`, a stream of new and
/// old images, whose ARN is returned.
async fn ensure_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    stream: bool,
) -> Result<Option<String>, BoxError> {
    if let Ok(found) = ddb.describe_table().table_name(name).send().await {
        return Ok(found
            .table()
            .and_then(|t| t.latest_stream_arn())
            .map(str::to_string));
    }
    let mut create = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()?,
        );
    if stream {
        create = create.stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
                .build()?,
        );
    }
    let created = create.send().await?;
    ddb.update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expiration")
                .enabled(true)
                .build()?,
        )
        .send()
        .await?;
    Ok(created
        .table_description()
        .and_then(|t| t.latest_stream_arn())
        .map(str::to_string))
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, BoxError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| "queue has no ARN".into())
}

async fn put_secret(
    sm: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &str,
) -> Result<String, BoxError> {
    match sm
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
    {
        Ok(out) => Ok(out.arn().unwrap_or(name).to_string()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_exists_exception()) =>
        {
            sm.put_secret_value()
                .secret_id(name)
                .secret_string(value)
                .send()
                .await?;
            Ok(name.to_string())
        }
        Err(e) => Err(e.into()),
    }
}
