//! The store conformance suite against memory, a real Valkey/Redis server,
//! and DynamoDB on a real moto server.

use std::sync::Arc;

use relay_core::store::dynamodb::DynamoStore;
use relay_core::store::{SharedStore, memory::MemoryStore};
use relay_tests::conformance::{self, Factory};
use relay_tests::servers::{MotoServer, ValkeyServer};

fn memory() -> Factory {
    // Replicas of a memory store share one instance (one process).
    let store: SharedStore = Arc::new(MemoryStore::default());
    Arc::new(move || {
        let s = store.clone();
        Box::pin(async move { s })
    })
}

fn valkey(server: &ValkeyServer, prefix: &str) -> Factory {
    let url = server.url(prefix);
    Arc::new(move || {
        let url = url.clone();
        Box::pin(async move { relay_core::store::open(&url).await.unwrap() })
    })
}

async fn dynamodb(server: &MotoServer) -> Factory {
    let conf = server.sdk_config();
    let table = "relay-conformance";
    DynamoStore::from_conf(&conf, table)
        .create_table()
        .await
        .unwrap();
    Arc::new(move || {
        let conf = conf.clone();
        Box::pin(async move { Arc::new(DynamoStore::from_conf(&conf, table)) as SharedStore })
    })
}

macro_rules! suite {
    ($backend:ident, $setup:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn claim_done_release() {
                let (_server, f) = $setup.await;
                conformance::claim_done_release(f().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lease_and_ttl_expire() {
                let (_server, f) = $setup.await;
                conformance::lease_and_ttl_expire(f().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn versioned_records() {
                let (_server, f) = $setup.await;
                conformance::versioned_records(f().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_claims_have_one_winner() {
                let (_server, f) = $setup.await;
                conformance::concurrent_claims_have_one_winner(f).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn accumulator_converges_in_every_order() {
                let (_server, f) = $setup.await;
                conformance::accumulator_converges_in_every_order(f().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_accumulator_updates_are_not_lost() {
                let (_server, f) = $setup.await;
                conformance::concurrent_accumulator_updates_are_not_lost(f).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn message_created_once() {
                let (_server, f) = $setup.await;
                conformance::message_created_once(f).await;
            }
        }
    };
}

suite!(memory_store, async { ((), memory()) });
suite!(valkey_store, async {
    let server = ValkeyServer::start();
    let f = valkey(&server, "conformance");
    (server, f)
});
suite!(dynamodb_store, async {
    let server = MotoServer::start();
    let f = dynamodb(&server).await;
    (server, f)
});
