package topics

import "time"

// InAppMessage is the value on inapp.messages, keyed by member: what the
// send stage's in-app adapter writes and the inbox stage keeps. It is the
// in-app channel's payload as delivered, not an RTM envelope: it carries
// no schema_version, so that an app can read the topic as it is.
type InAppMessage struct {
	DeliveryID string    `json:"delivery_id"`
	Title      string    `json:"title"`
	Body       string    `json:"body"`
	URL        string    `json:"url,omitempty"`
	At         time.Time `json:"at"`
}
