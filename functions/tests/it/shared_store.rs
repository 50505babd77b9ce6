//! Two `relay serve` processes sharing one store (Valkey, then DynamoDB on
//! moto) each receive the whole event stream of every scenario at the same
//! time, plus Tekton-style re-sends with new ids: the receiver still sees
//! each expected notification exactly once.

use std::path::Path;
use std::time::Duration;

use relay_tests::expect::{Outgoing, check_scenario, config, expected_status, outgoing};
use relay_tests::fixtures::Scenario;
use relay_tests::process::RelayProcess;
use relay_tests::receiver::Receiver;
use relay_tests::servers::{MotoServer, ValkeyServer};

const BIN: &str = env!("CARGO_BIN_EXE_relay");

/// Sends like a Knative Broker: a 503 is retried (here after 20 ms).
async fn send_until_settled(client: &reqwest::Client, url: &str, req: &Outgoing) -> u16 {
    for _ in 0..500 {
        let (status, _) = req.send(client, url).await;
        if status != 503 {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} kept answering 503", req.file_name());
}

async fn run_two_replicas(cfg: &str, env: &[(&str, &str)], rx: &Receiver) {
    let a = RelayProcess::start_with_env(Path::new(BIN), cfg, env).await;
    let b = RelayProcess::start_with_env(Path::new(BIN), cfg, env).await;
    let client = reqwest::Client::new();
    let urls = [format!("{}/", a.base), format!("{}/", b.base)];
    for sc in Scenario::all() {
        rx.clear();
        for req in outgoing(&sc) {
            let copies = [req.clone(), req.with_new_id("resent")];
            let sends = copies
                .iter()
                .flat_map(|c| urls.iter().map(move |u| (c, u)))
                .map(|(c, u)| {
                    let client = client.clone();
                    async move { send_until_settled(&client, u, c).await }
                });
            for status in futures::future::join_all(sends).await {
                assert_eq!(
                    status,
                    expected_status(&sc, req.file_name()),
                    "{}/{}",
                    sc.name,
                    req.file_name()
                );
            }
        }
        check_scenario(&sc, rx);
    }
    for r in [&a, &b] {
        let metrics = reqwest::get(format!("{}/metrics", r.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !metrics.contains("relay_store_errors_total{"),
            "no store errors expected:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_valkey_deliver_each_notification_once() {
    let server = ValkeyServer::start();
    let rx = Receiver::start().await;
    run_two_replicas(&config(&rx, &server.url("replicas")), &[], &rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_dynamodb_deliver_each_notification_once() {
    let moto = MotoServer::start();
    // The table comes from infra/ in production; here from the store's own schema.
    let url = moto.dynamodb_table("relay-replicas").await;
    let rx = Receiver::start().await;
    run_two_replicas(&config(&rx, &url), &MotoServer::PROCESS_ENV, &rx).await;
}
