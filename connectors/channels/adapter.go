package channels

import (
	"context"

	"github.com/rtm-project/rtm/topics"
)

// Adapter sends one delivery on one channel. Send returns nil once the
// channel accepted the message, a *PermanentError when retrying cannot
// help, and a *RetryableError (or any other error, which Deliverer also
// retries) otherwise. Send must be safe for concurrent use and must pass
// d.DeliveryID on as the channel's idempotency key where it has one, so a
// retry of an accepted message is not sent twice.
type Adapter interface {
	Channel() string
	Send(ctx context.Context, d *topics.Delivery) error
}
