//! The AWS SDK's configuration, one way for every AWS client of the relay
//! (the DynamoDB store, the SQS dead letters, SSM and Secrets Manager
//! secrets, the config from SSM or S3, EventBridge): region, credentials and
//! endpoint (`AWS_ENDPOINT_URL`) from the environment, as
//! `aws_config::defaults` finds them, over an HTTPS client of rustls with
//! ring — the crypto the relay's other HTTP client (reqwest) uses. The
//! SDK's default HTTPS client would bring aws-lc as well: two crypto
//! libraries, which took the Lambda artifacts over their 15 MB budget
//! (docs/deploy-aws.md).

use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The HTTPS client of every AWS SDK client: rustls with ring, the
/// platform's trusted certificates.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// `aws_config::defaults` with [`https_client`].
pub fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https_client())
}
