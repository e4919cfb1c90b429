//! Clients built with `build()` share a few actor threads: a hundred clients
//! cost a hundred actor trees on the pool, not a hundred threads, and a client
//! that shuts down leaves its place. No server is needed (the clients try an
//! address where nothing listens).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use spacelink::Client;

/// The threads of this process, as the kernel counts them.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

#[test]
fn a_hundred_clients_share_the_actor_pool_and_leave_it_when_they_shut_down() {
    assert!(spacelink::runtime::set_actor_threads(2), "the pool is not started yet");
    let build = || Client::builder().with_uri("http://127.0.0.1:9").with_database("nowhere").build().unwrap();
    // The pool and the network thread start with the first client.
    let first = build();
    let before = threads();
    let clients: Vec<Client> = (0..100).map(|_| build()).collect();
    let during = threads();
    assert!(during <= before + 2, "{before} threads before, {during} with a hundred more clients");
    assert_eq!(spacelink::runtime::sync_threads().iter().sum::<usize>(), 101, "each client's sync has a place");
    let places = spacelink::runtime::actor_threads();
    assert_eq!(places.len(), 2);
    assert_eq!(places.iter().sum::<usize>(), 101);
    assert!(places.iter().all(|&n| n >= 50), "placed on the least busy thread: {places:?}");
    assert!(!spacelink::runtime::set_actor_threads(8), "too late: the pool runs");

    for client in &clients {
        client.shutdown();
        assert!(client.status().shut_down);
    }
    drop(clients);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = || spacelink::runtime::actor_threads().iter().chain(&spacelink::runtime::sync_threads()).sum::<usize>();
    while held() > 0 {
        assert!(Instant::now() < deadline, "places still held: {:?}", spacelink::runtime::actor_threads());
        std::thread::sleep(Duration::from_millis(10));
    }
    // A client built after all that still starts.
    let again = build();
    assert_eq!(spacelink::runtime::actor_threads().iter().sum::<usize>(), 1);
    drop(again);
}
