// Package channels is RTM's delivery edge: the payload each channel carries
// inside topics.Delivery.Payload, one Adapter per channel (SMTP, LINE
// Messaging API push, FCM HTTP v1, the in-app inbox topic), and Deliverer,
// which wraps any Adapter with a per-channel rate limit, retries with
// exponential backoff and metrics.
//
// Adapters classify every failure as *PermanentError (retrying cannot help:
// a malformed payload, a rejected request) or *RetryableError (rate limited,
// unavailable, timed out). Deliverer retries only the latter, and the
// adapters pass the delivery ID on as the channel's idempotency key where the
// channel has one (LINE's X-Line-Retry-Key, the mail's Message-ID), so a
// retry the channel already accepted is not sent twice.
//
// The local protocol servers in connectors/sinks implement the same wire
// protocols; `rtm dev` and the tests point the real adapters at them.
package channels
