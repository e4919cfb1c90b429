//! Hostile schemas and a hostile schema endpoint: every one gives a typed
//! error, in bounded time and memory, and never overflows the stack.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use spacelink_connection::hostile::{
    deep_schema, doubling_schema, empty_module_schema, recursive_schema, ref_chain_schema, Case, HostileServer,
    SchemaCase,
};
use spacelink_connection::{ConnectionConfig, ModuleSchema, RetryPolicy, SchemaError, SchemaFetchConfig};

#[test]
fn a_chain_of_20000_type_references_is_refused_not_a_stack_overflow() {
    let err = ModuleSchema::from_json(&ref_chain_schema(20_000)).unwrap_err();
    assert!(matches!(err, SchemaError::TooComplex { .. }), "{err}");
    assert!(err.to_string().contains("deeper than 64"), "{err}");
    // A short chain is fine.
    let schema = ModuleSchema::from_json(&ref_chain_schema(10)).unwrap();
    assert!(schema.table("t").is_some());
}

#[test]
fn a_recursive_type_is_refused() {
    let err = ModuleSchema::from_json(&recursive_schema()).unwrap_err();
    assert!(matches!(err, SchemaError::TooComplex { .. }), "{err}");
    assert!(err.to_string().contains("recursive"), "{err}");
}

#[test]
fn a_type_nested_20000_deep_in_the_json_is_refused() {
    let err = ModuleSchema::from_json(&deep_schema(20_000)).unwrap_err();
    assert!(matches!(err, SchemaError::Parse(_) | SchemaError::TooComplex { .. }), "{err}");
    // Within the JSON parser's nesting limit, the type depth limit speaks.
    let err = ModuleSchema::from_json(&deep_schema(100)).unwrap_err();
    assert!(matches!(err, SchemaError::TooComplex { .. } | SchemaError::Parse(_)), "{err}");
    assert!(ModuleSchema::from_json(&deep_schema(8)).is_ok());
}

#[test]
fn a_typespace_that_doubles_at_every_level_is_refused_by_size() {
    let err = ModuleSchema::from_json(&doubling_schema(25)).unwrap_err();
    assert!(matches!(err, SchemaError::TooComplex { .. }), "{err}");
    assert!(err.to_string().contains("type nodes"), "{err}");
    assert!(ModuleSchema::from_json(&doubling_schema(8)).is_ok());
}

/// A 1 MiB limit and a timeout generous for a loaded machine.
fn fetch_config(server: &HostileServer) -> ConnectionConfig {
    let mut config = ConnectionConfig::new(server.url(), "hostile");
    config.schema_fetch = SchemaFetchConfig { timeout: Duration::from_secs(5), max_size: 1 << 20 };
    config.retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(20),
        backoff_multiplier: 2.0,
        max_delay: Duration::from_millis(100),
        jitter: 0.0,
    };
    config
}

fn hold() -> Case {
    Case::Frames { frames: Vec::new(), then: spacelink_connection::hostile::After::Hold }
}

#[tokio::test]
async fn a_schema_never_answered_times_out_and_is_retried_on_the_backoff() {
    let server = HostileServer::start(hold()).unwrap();
    server.set_schema(SchemaCase::NeverAnswer);
    let mut config = fetch_config(&server);
    config.schema_fetch.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = ModuleSchema::fetch_for(&config).await.unwrap_err();
    assert!(matches!(err, SchemaError::Fetch { .. }), "{err}");
    assert!(err.to_string().contains("no complete answer within 1s"), "{err}");
    assert_eq!(server.schema_requests(), 4, "one fetch and three retries");
    // Functional bound: four timeouts and the backoff, not forever.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn an_endless_schema_is_cut_at_the_size_limit_and_not_retried() {
    let server = HostileServer::start(hold()).unwrap();
    server.set_schema(SchemaCase::Endless);
    let err = ModuleSchema::fetch_for(&fetch_config(&server)).await.unwrap_err();
    assert!(matches!(err, SchemaError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("over the limit of 1048576"), "{err}");
    assert_eq!(server.schema_requests(), 1);
}

#[tokio::test]
async fn a_server_error_is_retried_and_a_client_error_is_not() {
    let server = HostileServer::start(hold()).unwrap();
    server.set_schema(SchemaCase::Status(503));
    let err = ModuleSchema::fetch_for(&fetch_config(&server)).await.unwrap_err();
    assert!(matches!(err, SchemaError::Fetch { .. }) && err.to_string().contains("503"), "{err}");
    assert_eq!(server.schema_requests(), 4);
    server.set_schema(SchemaCase::Status(404));
    let err = ModuleSchema::fetch_for(&fetch_config(&server)).await.unwrap_err();
    assert!(matches!(err, SchemaError::Refused { .. }) && err.to_string().contains("404"), "{err}");
    assert_eq!(server.schema_requests(), 5);
}

#[tokio::test]
async fn a_server_down_at_start_is_retried_until_it_is_up() {
    // Nothing listens yet: the fetch retries until the server appears.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config = ConnectionConfig::new(format!("http://{addr}"), "hostile");
    config.retry.max_attempts = 0;
    let err = ModuleSchema::fetch_for(&config).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("error sending request"), "{err}");
    // A hostile schema over a good connection is not retried.
    let server = HostileServer::start(hold()).unwrap();
    server.set_schema(SchemaCase::Json(std::sync::Arc::new(ref_chain_schema(20_000))));
    let err = ModuleSchema::fetch_for(&fetch_config(&server)).await.unwrap_err();
    assert!(matches!(err, SchemaError::TooComplex { .. }), "{err}");
    assert_eq!(server.schema_requests(), 1);
    server.set_schema(SchemaCase::Json(std::sync::Arc::new(empty_module_schema())));
    assert!(ModuleSchema::fetch_for(&fetch_config(&server)).await.is_ok());
}
