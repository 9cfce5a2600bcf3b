// Package collector is the behaviour collector: an HTTP server that takes
// shopper events from the apps and the web (POST /v1/events, API key
// required; opens, clicks and unsubscribes refused) and tracking hits from
// messages (open pixel GET /t/o/{token}, click redirect GET /t/c/{token},
// one-click unsubscribe POST /t/u/{token}, RFC 8058), and produces them to
// behavior.events keyed by member_id.
//
// An event is acknowledged (202) only after Kafka has acknowledged it
// (idempotent producer, acks=all); when Kafka is unavailable the collector
// answers 503 with Retry-After instead of dropping events. Event IDs make
// retries safe: a client's event_id is kept, a missing one is derived from
// the event's content, and a tracking hit's from its token, so a retried
// request or a double click yields the same event_id and is deduplicated
// downstream.
package collector
