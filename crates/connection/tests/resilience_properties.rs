//! Properties of the resilience logic: backoff, circuit breaker, connection state machine.
//! Plain values with time as an input: no test here waits.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use spacelink_connection::breaker::{BreakerState, CircuitBreaker, CircuitBreakerConfig, Permit};
use spacelink_connection::{ConnectionEvent, ConnectionState, Jitter, RetryPolicy};

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (1u64..2_000, 1.0f64..4.0, 0u64..60_000, 0.0f64..=1.0, 0u32..10).prop_map(
        |(initial_ms, multiplier, extra_ms, jitter, max_attempts)| RetryPolicy {
            max_attempts,
            initial_delay: Duration::from_millis(initial_ms),
            backoff_multiplier: multiplier,
            max_delay: Duration::from_millis(initial_ms + extra_ms),
            jitter,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Feature: spacetimedb-integration, Property 1: Connection Lifecycle Management (automatic recovery with exponential backoff: delays stay within their bounds and jitter range)
    #[test]
    fn prop_backoff_delays_stay_within_bounds_and_jitter(p in policy(), seed in any::<u64>(), retries in 1u32..40) {
        let mut jitter = Jitter::new(seed);
        let mut previous_base = Duration::ZERO;
        for retry in 1..=retries {
            let base = p.base_delay(retry);
            prop_assert!(base <= p.max_delay, "base {base:?} over the cap");
            prop_assert!(base >= previous_base, "base delays never shrink");
            if retry == 1 {
                prop_assert_eq!(base, p.initial_delay.min(p.max_delay));
            }
            previous_base = base;
            let delay = p.delay(retry, jitter.next_unit());
            let low = base.as_secs_f64() * (1.0 - p.jitter) - 1e-6;
            let high = base.as_secs_f64() * (1.0 + p.jitter) + 1e-6;
            prop_assert!((low..=high).contains(&delay.as_secs_f64()), "{delay:?} outside [{low}, {high}]");
        }
    }

    // Feature: spacetimedb-integration, Property 11: Adaptive Network Behavior (the circuit breaker's state machine under random event sequences matches a simple model)
    #[test]
    fn prop_breaker_follows_its_model(
        threshold in 1u32..6,
        open_secs in 1u64..30,
        probes in 1u32..4,
        events in proptest::collection::vec((0u8..3, 0u64..20_000), 1..120),
    ) {
        let config = CircuitBreakerConfig {
            failure_threshold: threshold,
            open_duration: Duration::from_secs(open_secs),
            half_open_max_calls: probes,
        };
        let mut breaker = CircuitBreaker::new(config);
        let t0 = Instant::now();
        let mut now = t0;
        // The model: failures counted since the last success, an open deadline, probes started.
        let mut failures = 0u32;
        let mut open_until: Option<Instant> = None;
        let mut half_open_probes: Option<u32> = None;
        let mut trips = 0u32;
        for (kind, advance_ms) in events {
            now += Duration::from_millis(advance_ms);
            match kind {
                0 => {
                    let permit = breaker.permit(now);
                    let expected = match (open_until, half_open_probes) {
                        (Some(until), _) if now < until => Permit::WaitUntil(until),
                        (Some(_), _) => { open_until = None; half_open_probes = Some(1); Permit::Proceed }
                        (None, Some(n)) if n < probes => { half_open_probes = Some(n + 1); Permit::Proceed }
                        (None, Some(_)) => {
                            let until = now + config.open_duration;
                            open_until = Some(until);
                            half_open_probes = None;
                            Permit::WaitUntil(until)
                        }
                        (None, None) => Permit::Proceed,
                    };
                    prop_assert_eq!(permit, expected);
                    // An attempt is only made when permitted.
                }
                1 => {
                    breaker.record_failure(now);
                    failures += 1;
                    let opens = match (open_until, half_open_probes) {
                        (Some(_), _) => false,
                        (None, Some(_)) => true,
                        (None, None) => failures >= threshold,
                    };
                    if opens {
                        open_until = Some(now + config.open_duration);
                        half_open_probes = None;
                        trips += 1;
                    }
                }
                _ => {
                    breaker.record_success();
                    failures = 0;
                    open_until = None;
                    half_open_probes = None;
                }
            }
            let expected_state = match (open_until, half_open_probes) {
                (Some(until), _) => BreakerState::Open { until },
                (None, Some(probes)) => BreakerState::HalfOpen { probes },
                (None, None) => BreakerState::Closed,
            };
            prop_assert_eq!(breaker.state(), expected_state);
            prop_assert_eq!(breaker.trips(), trips);
            prop_assert_eq!(breaker.consecutive_failures(), failures);
            // Open never lasts longer than one open duration from now.
            if let BreakerState::Open { until } = breaker.state() {
                prop_assert!(until <= now + config.open_duration);
            }
        }
    }

    // Feature: spacetimedb-integration, Property 1: Connection Lifecycle Management (the connection state machine never reaches an undefined transition)
    #[test]
    fn prop_connection_state_machine_is_total_and_safe(events in proptest::collection::vec(0u8..6, 0..200)) {
        let all = [
            ConnectionEvent::AttemptStarted,
            ConnectionEvent::Established,
            ConnectionEvent::AttemptFailed,
            ConnectionEvent::SessionLost,
            ConnectionEvent::GaveUp,
            ConnectionEvent::Shutdown,
        ];
        let mut state = ConnectionState::Disconnected;
        for index in events {
            let event = all[index as usize];
            match state.next(event) {
                Ok(next) => {
                    // Each state is reached only by the events that mean it.
                    match next {
                        ConnectionState::Connected => prop_assert_eq!(event, ConnectionEvent::Established),
                        ConnectionState::Failed => prop_assert_eq!(event, ConnectionEvent::GaveUp),
                        ConnectionState::Disconnected => prop_assert_eq!(event, ConnectionEvent::Shutdown),
                        ConnectionState::Reconnecting => prop_assert!(matches!(
                            event,
                            ConnectionEvent::AttemptFailed | ConnectionEvent::SessionLost | ConnectionEvent::AttemptStarted
                        )),
                        ConnectionState::Connecting => prop_assert_eq!(event, ConnectionEvent::AttemptStarted),
                    }
                    // A session is only established from an attempt in progress.
                    if event == ConnectionEvent::Established {
                        prop_assert!(matches!(state, ConnectionState::Connecting | ConnectionState::Reconnecting));
                    }
                    state = next;
                }
                Err(e) => {
                    // Refused events name where they came from and change nothing.
                    prop_assert_eq!(e.from, state);
                    prop_assert_eq!(e.event, event);
                }
            }
            // Shutdown is accepted from anywhere.
            prop_assert_eq!(state.next(ConnectionEvent::Shutdown), Ok(ConnectionState::Disconnected));
        }
    }
}
