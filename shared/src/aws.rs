//! Small AWS helpers used by every function: SDK configuration, SQS string attributes, secrets.

use std::collections::HashMap;

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::failure::FailureClass;

/// SDK configuration from the environment (honours `AWS_ENDPOINT_URL` for local emulators).
pub async fn sdk_config() -> aws_config::SdkConfig {
    as_the_functions_call(aws_config::defaults(aws_config::BehaviorVersion::latest()))
        .timeout_config(aws_timeouts())
        .load()
        .await
}

/// The HTTP client and request pipeline every function's SDK clients use (timeouts aside), for `loader`:
/// tests and benchmarks that build their own configuration call AWS as the functions do.
pub fn as_the_functions_call(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    // Every body is a small JSON document under the attempt timeout: the per-request throughput monitor
    // would only add timers to each call.
    loader
        .stalled_stream_protection(
            aws_config::stalled_stream_protection::StalledStreamProtectionConfig::disabled(),
        )
        .http_client(https_client())
}

/// The SDK's default client (hyper 1, rustls on aws-lc, proxy from the environment), trusting the process's
/// one reading of the platform roots ([`crate::tls::native_roots`]) instead of reading them again.
pub fn https_client() -> aws_sdk_sqs::config::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    let roots = crate::tls::native_roots();
    let trust = if roots.is_empty() {
        TrustStore::default()
    } else {
        TrustStore::empty().with_pem_certificate(crate::tls::pem_bundle(roots))
    };
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .unwrap_or_default();
    // As aws-smithy-runtime's `default_https_client` does, with the trust store set.
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// Every AWS call is bounded (an attempt at most 3 s, a call with the SDK's retries at most 8 s), so a slow
/// DynamoDB or SQS cannot hold a function past its deadline unnoticed.
pub fn aws_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(1))
        .operation_attempt_timeout(std::time::Duration::from_secs(3))
        .operation_timeout(std::time::Duration::from_secs(8))
        .build()
}

/// SQS `String` message attributes; empty values are skipped (SQS rejects them).
pub fn string_attributes<'a>(
    pairs: impl IntoIterator<Item = (&'a str, String)>,
) -> HashMap<String, MessageAttributeValue> {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .filter_map(|(k, v)| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .ok()
                .map(|a| (k.to_string(), a))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {id} could not be read: {reason}")]
    Read {
        id: String,
        reason: String,
        class: FailureClass,
    },
    #[error("secret {id} could not be written: {reason}")]
    Write { id: String, reason: String },
    #[error("secret {id} has no string value")]
    Empty { id: String },
    #[error("secret {id} must be JSON with string fields {fields}")]
    Shape { id: String, fields: String },
}

impl SecretError {
    /// Whether trying again can help: a read as Secrets Manager classified it, a write always; an empty or
    /// misshapen secret stays so until someone fixes it.
    pub fn class(&self) -> FailureClass {
        match self {
            SecretError::Read { class, .. } => *class,
            SecretError::Write { .. } => FailureClass::Transient,
            SecretError::Empty { .. } | SecretError::Shape { .. } => FailureClass::Permanent,
        }
    }
}

/// Two string fields (`names`) of the JSON secret `id`, e.g. a username and password.
pub async fn read_pair(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    names: (&str, &str),
) -> Result<(String, String), SecretError> {
    let raw = read_secret(client, id).await?;
    let value: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
    match (value[names.0].as_str(), value[names.1].as_str()) {
        (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
        _ => Err(SecretError::Shape {
            id: id.to_string(),
            fields: format!("{} and {}", names.0, names.1),
        }),
    }
}

/// Reads a secret's string value. The value itself is never logged or put in errors.
pub async fn read_secret(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<String, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            let class = match e.as_service_error() {
                Some(se)
                    if se.is_resource_not_found_exception()
                        || se.is_invalid_parameter_exception() =>
                {
                    FailureClass::Permanent
                }
                _ => FailureClass::Transient,
            };
            SecretError::Read {
                id: id.to_string(),
                reason: DisplayErrorContext(&e).to_string(),
                class,
            }
        })?;
    out.secret_string()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| SecretError::Empty { id: id.to_string() })
}

/// The `AWSPREVIOUS` version's string, `None` when the secret has never been rotated.
pub async fn read_previous_secret(
    sm: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<Option<String>, SecretError> {
    match sm
        .get_secret_value()
        .secret_id(id)
        .version_stage("AWSPREVIOUS")
        .send()
        .await
    {
        Ok(out) => Ok(out.secret_string().map(str::to_string)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(SecretError::Read {
            id: id.to_string(),
            reason: DisplayErrorContext(&e).to_string(),
            class: FailureClass::Transient,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An endpoint that answers the headers and half of the body, then stalls: with stalled-stream
    /// protection off, the attempt timeout (3 s) still ends the call, as a transient failure. Retries are off,
    /// so the 8 s operation timeout cannot be what ends it.
    #[tokio::test]
    async fn a_stalled_response_body_is_cut_by_the_attempt_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\n\
                          content-length: 64\r\n\r\n{\"SecretString\":",
                    )
                    .await;
                held.push(socket);
            }
        });
        let base = sdk_config().await;
        let config = aws_sdk_secretsmanager::config::Builder::from(&base)
            .endpoint_url(url)
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
            .build();
        let client = aws_sdk_secretsmanager::Client::from_conf(config);
        let result = tokio::time::timeout(Duration::from_secs(7), read_secret(&client, "s"))
            .await
            .expect("the attempt timeout ends the call on the stalled body");
        match result {
            Err(e) => assert_eq!(e.class(), FailureClass::Transient, "{e}"),
            Ok(_) => panic!("a half-sent body cannot be a secret"),
        }
        server.abort();
    }
}
