// Package sinks runs local stand-ins for the channels RTM delivers to: an
// SMTP server that keeps the mail it receives, and one HTTP server with the
// LINE Messaging API push endpoint and the FCM HTTP v1 send endpoint. They
// speak the real protocols (auth headers, body shapes, LINE's retry-key
// deduplication), so `rtm dev` and the tests run the real channel adapters
// end to end with no outside service, and a person can look at what was
// sent (GET /sinks/mail, /sinks/line, /sinks/push).
//
// For tests each sink can fail its next requests on purpose (FailNext,
// LoseNextResponses). The sinks keep only the last Config.Keep messages
// each, in memory.
package sinks
