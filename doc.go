// Package rtm is the module root of RTM, a realtime marketing system built as
// a Kafka stream-processing topology. See README.md; the code lives in
// topics/, rules/, processors/, connectors/ and cmd/rtm.
package rtm
